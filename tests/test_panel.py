"""The scenario panel: outcomes from a paired interval, agreement rates, the stored outcomes file."""
from __future__ import annotations

import json

import pytest

from tldiag.decision import panel
from tldiag.decision.verdict import CAUTION, GO, NO_GO


@pytest.mark.parametrize("gain, low, outcome", [(0.2, 0.05, GO), (0.05, -0.01, CAUTION), (0.0, -0.1, NO_GO),
                                                (-0.1, -0.2, NO_GO), (0.001, 0.0, CAUTION)])
def test_the_realised_outcome_reads_the_paired_interval(gain, low, outcome):
    assert panel.outcome_of(gain, low) == outcome


def test_agreement_counts_the_dangerous_error_separately():
    sc = panel.SCENARIOS[0]
    rows = [panel.Row(sc, GO, GO, GO, "", "", 1, 2), panel.Row(sc, NO_GO, GO, NO_GO, "", "", 1, 2),
            panel.Row(sc, CAUTION, CAUTION, GO, "", "", 1, 2), panel.Row(sc, NO_GO, NO_GO, NO_GO, "", "", 1, 2)]
    a = panel.agreement(rows)
    assert (a.n, a.fast, a.full) == (4, 0.75, 0.75) and a.fast_go_on_no_go == 1 and not a.ok


def test_the_panel_covers_what_the_issue_asks_for():
    names = {s.name for s in panel.SCENARIOS}
    assert len(panel.SCENARIOS) >= 10 and len(names) == len(panel.SCENARIOS)
    assert {"null-seed0", "null-seed1", "hand-to-print", "print-to-hand", "random-weights", "damaged-checkpoint",
            "scratch-competitive"} <= names
    assert {s.target.split("shift=")[1].split("&")[0] for s in panel.SCENARIOS if "shift=" in s.target} >= {"rotate",
                                                                                                          "noise"}
    # the realised schedule is the long one, on a split of its own
    config = panel.realised_config(panel.SCENARIOS[0])
    assert config.seed == panel.REALISED_SEED != 0 and config.repeats >= 3 and config.budgets == (5,)
    assert config.schedules["small-cnn"] == config.schedules["fine-tuned"] == panel.REALISED_EFFORT


def test_the_stored_outcomes_are_complete_and_consistent():
    outcomes = panel.load_outcomes()
    assert set(outcomes) == {s.name for s in panel.SCENARIOS}, "run: python -m tldiag.bench verdict --realise"
    for name, row in outcomes.items():
        if row["by_definition"]:
            assert row["outcome"] == NO_GO
            continue
        assert row["outcome"] == panel.outcome_of(row["gain"], row["low"])
        assert row["low"] <= row["gain"] <= row["high"] and row["seed"] == panel.REALISED_SEED
        assert all(len(a["accuracies"]) == 3 for a in row["arms"].values())
    assert json.loads(panel.OUTCOMES_FILE.read_text())["command"] == "python -m tldiag.bench verdict --realise"


@pytest.mark.slow
def test_bench_verdict_prints_the_table_and_the_agreement(tmp_path, capsys):
    from tldiag.bench import main

    outcomes = tmp_path / "outcomes.json"
    row = {"scenario": {"name": "random-weights"}, "outcome": NO_GO, "by_definition": True, "gain": None}
    outcomes.write_text(json.dumps({"version": 1, "command": "", "outcomes": [row]}))
    assert main(["verdict", "--outcomes", str(outcomes), "--scenarios", "random-weights"]) == 0
    out = capsys.readouterr().out
    assert "random-weights" in out and "agreement with the realised outcome over 1 scenarios: fast 100%" in out
    assert main(["verdict", "--scenarios", "nope"]) == 2


def test_the_sweep_decides_the_same_evidence_again_and_ranks_the_targets_first():
    from tests.test_verdict import base
    from tldiag.decision.verdict import Evidence

    # transfer ahead by 1 point within noise where scratch really wins, and clearly ahead where transfer wins
    close, clear = Evidence(baseline=base(0.01, low=-0.05, high=0.07)), Evidence(baseline=base(0.2))
    evidences = {"null-seed0": (close, close), "print-1-label": (clear, clear)}
    outcomes = {"null-seed0": {"outcome": NO_GO}, "print-1-label": {"outcome": GO}}
    rows = panel.sweep(evidences, outcomes, no_go=(0.0, 0.02), go=(0.03,))
    assert [(r.gain_no_go, r.gain_go) for r in rows] == [(0.02, 0.03), (0.0, 0.03)]
    best, default = rows
    assert best.agreement.ok and (best.agreement.fast, best.agreement.full) == (1.0, 1.0)
    assert default.agreement.fast == 0.5  # at the default 0.0 the close call reads CAUTION
    assert all(r.gain_no_go <= r.gain_go for r in panel.sweep(evidences, outcomes, no_go=(0.0, 0.05), go=(0.03,)))
