"""The scenario panel: outcomes read from their interval, agreement and kappa, the simple rules, the stored outcomes."""
from __future__ import annotations

import json
import math

import pytest

from tldiag.decision import panel
from tldiag.decision.verdict import CAUTION, GO, NO_GO


@pytest.mark.parametrize("gain, low, high, outcome", [
    (0.2, 0.05, 0.3, GO), (0.05, -0.01, 0.1, CAUTION), (0.0, -0.1, 0.1, CAUTION),
    (-0.1, -0.2, -0.05, NO_GO), (0.01, -0.01, 0.025, NO_GO),
    # the old panel's null-seed0: -0.3 points with an interval of -7.3 to +6.7 was stored as NO-GO; it cannot tell
    (-0.003, -0.073, 0.067, CAUTION)])
def test_the_realised_outcome_reads_its_interval_like_the_verdict(gain, low, high, outcome):
    assert panel.outcome_of(gain, low, high, 0.03) == outcome


def test_cohen_kappa_against_the_formula():
    pairs = [(GO, GO), (NO_GO, NO_GO), (CAUTION, GO), (NO_GO, NO_GO)]
    # observed 3/4; chance (1/4)(2/4) + (2/4)(2/4) + (1/4)(0) = 3/8; kappa (3/4 - 3/8) / (5/8)
    assert panel.cohen_kappa(pairs) == pytest.approx(0.6)
    assert panel.cohen_kappa([(NO_GO, NO_GO)] * 3 + [(NO_GO, GO)]) == pytest.approx(0.0)  # a constant rule: 0
    assert math.isnan(panel.cohen_kappa([(GO, GO)] * 3))
    assert panel.confusion(pairs)[CAUTION][GO] == 1


def _row(name, realised, fast, full, simple=None):
    sc = next(s for s in panel.SCENARIOS if s.name == name)
    return panel.Row(sc, realised, fast, full, "", "", 1, 2, simple={"always NO-GO": NO_GO, **(simple or {})})


def test_agreement_counts_confusions_both_ways_and_scores_the_simple_rules():
    rows = [_row("print-1-label", GO, GO, GO), _row("null-seed0", NO_GO, GO, NO_GO),
            _row("rotate-high", CAUTION, CAUTION, GO), _row("null-seed1", NO_GO, NO_GO, NO_GO),
            _row("photos-1-label", GO, NO_GO, GO)]
    a = panel.agreement(rows)
    assert (a.n, a.fast, a.full) == (5, 0.6, 0.8) and a.fast_go_on_no_go == 1 and a.confusions == 2 and not a.ok
    assert a.confused == ("null-seed0: realised NO-GO, fast GO", "photos-1-label: realised GO, fast NO-GO")
    lazy = next(s for s in a.scores if s.name == "always NO-GO")
    assert lazy.agreement == 0.4 and lazy.kappa == pytest.approx(0.0) and lazy.no_go_on_go == 2
    assert a.realised == {GO: 2, CAUTION: 1, NO_GO: 2}


def test_the_panel_covers_what_the_issue_asks_for():
    names = {s.name for s in panel.SCENARIOS}
    assert len(panel.SCENARIOS) >= 20 and len(names) == len(panel.SCENARIOS)
    assert {s.budget for s in panel.SCENARIOS} >= {1, 2, 5, 20}
    assert any(s.target.startswith("demo:tiles") for s in panel.SCENARIOS)  # ImageNet features carry far more
    assert any("set=all" in s.target for s in panel.SCENARIOS)  # more classes: 18
    # the realised schedule: its own subsample and split, 10 draws, the largest test set, the long small CNN
    sc = next(s for s in panel.SCENARIOS if s.name == "print-1-label")
    config = panel.realised_config(sc)
    assert config.seed == panel.REALISED_SEED != 0 and "seed=1000" in config.target and "n=3000" in config.target
    assert config.draws(sc.budget) == panel.REALISED_DRAWS == 10 and config.test_per_class == 150
    assert config.schedules["small-cnn"] == panel.REALISED_EFFORT and config.budgets == (1,)


def test_the_stored_outcomes_are_complete_balanced_and_consistent():
    outcomes = panel.load_outcomes()
    assert set(outcomes) == {s.name for s in panel.SCENARIOS}, "run: python -m tldiag.bench verdict --realise"
    counts = {k: sum(o["outcome"] == k for o in outcomes.values()) for k in (GO, CAUTION, NO_GO)}
    assert counts[GO] >= 5 and counts[NO_GO] >= 5 and counts[CAUTION] >= 3, counts
    for name, row in outcomes.items():
        if row["by_definition"]:
            assert row["outcome"] == NO_GO
            continue
        assert row["outcome"] == panel.outcome_of(row["gain"], row["low"], row["high"], row["margin"])
        assert row["low"] <= row["gain"] <= row["high"] and row["seed"] == panel.REALISED_SEED
        assert row["draws"] == 10 and all(len(a["accuracies"]) == 10 for a in row["arms"].values())
        assert row["n_test"] >= 500, f"{name}: {row['n_test']} test images"
    data = json.loads(panel.OUTCOMES_FILE.read_text())
    assert data["command"] == "python -m tldiag.bench verdict --realise" and data["version"] == panel.PANEL_VERSION


@pytest.mark.slow
def test_bench_verdict_prints_the_tables_and_the_agreement(tmp_path, capsys):
    from tldiag.bench import main

    outcomes = tmp_path / "outcomes.json"
    row = {"scenario": {"name": "random-weights"}, "outcome": NO_GO, "by_definition": True, "gain": None}
    outcomes.write_text(json.dumps({"version": 2, "command": "", "outcomes": [row]}))
    assert main(["verdict", "--outcomes", str(outcomes), "--scenarios", "random-weights"]) == 0
    out = capsys.readouterr().out
    assert "random-weights" in out and "over 1 scenarios: full 100%" in out and "always GO: agreement 0%" in out
    assert "decided / realised" in out and "GO and NO-GO confused: none" in out
    assert main(["verdict", "--scenarios", "nope"]) == 2
    assert main(["verdict", "--limits", "50,many"]) == 2 and "--limits '50,many'" in capsys.readouterr().err


def test_the_sweep_decides_the_same_evidence_again_and_ranks_the_targets_first():
    from tests.test_verdict import base
    from tldiag.decision.verdict import Evidence

    # transfer ahead by 2 points, measured precisely, where scratch realises as good; clearly ahead where transfer wins
    close, clear = Evidence(baseline=base(0.02, 0.01, 0.035)), Evidence(baseline=base(0.2))
    evidences = {"null-seed0": (close, close), "print-1-label": (clear, clear)}
    # realised: +0.5 points within +-1 where scratch is as good, +15 clear where transfer wins (read at each margin)
    outcomes = {"null-seed0": {"outcome": NO_GO, "gain": 0.005, "low": -0.005, "high": 0.015},
                "print-1-label": {"outcome": GO, "gain": 0.15, "low": 0.1, "high": 0.2}}
    assert panel.reread(outcomes["null-seed0"], 0.0)["outcome"] == CAUTION
    rows = panel.sweep(evidences, outcomes, margins=(0.0, 0.03, 0.05))
    assert [r.margin for r in rows] == [0.05, 0.03, 0.0]
    best, default, zero = rows
    assert best.agreement.ok and (best.agreement.fast, best.agreement.full) == (1.0, 1.0)
    assert default.agreement.fast == 0.5  # at +3 points the close call's interval still reaches it: CAUTION
    assert zero.agreement.fast == 0.5  # at 0 the verdict reads GO, the realised +0.5 within noise CAUTION
