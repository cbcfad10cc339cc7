"""The Verdict page under AppTest: what is missing and its buttons, a verdict from what exists, the export."""
from __future__ import annotations

import pytest

QUERY = dict(model="efficientnet-lite0", resolution="32", limit="4", target="demo:printed-digits")
PAGE = "pages/7_verdict.py"


def test_nothing_computed_lists_what_is_missing_with_buttons(open_page):
    at = open_page(PAGE, QUERY, timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert any(i.value.startswith("No verdict yet") for i in at.info)
    text = " ".join(m.value for m in at.markdown)
    for title in ("Shift tests", "Linear probes", "Scratch baselines at your budget", "Data-efficiency experiment",
                  "Fine-tuning run"):
        assert f"**{title}**" in text
    assert {b.key for b in at.button} >= {"v_run_shift", "v_run_probes", "v_run_baselines", "v_run_efficiency", "v_run_finetune"}
    assert at.code[0].value.startswith("/verdict?model=efficientnet-lite0&source=demo%3Adigits")


@pytest.mark.slow
def test_running_the_shift_tests_gives_a_provisional_verdict_and_a_record(open_page):
    at = open_page(PAGE, QUERY, timeout=300)
    at.button(key="v_run_shift").click().run()
    assert not at.exception, [e.value for e in at.exception]
    boxes = [b.value for b in (*at.success, *at.warning, *at.error)]
    assert any(b.startswith("### ") and "(provisional)" in b for b in boxes), boxes
    text = " ".join(m.value for m in at.markdown)
    assert "**Divergence at the penultimate layer** · MMD" in text
    assert "v_run_shift" not in {b.key for b in at.button}
    # a new session (the permalink opened later) reads the stored summary: no button, the same verdict
    again = open_page(PAGE, QUERY, timeout=300)
    assert not again.exception
    assert [b.value for b in (*again.success, *again.warning, *again.error)][:1] == \
        [b for b in boxes if b.startswith("### ")][:1]


@pytest.mark.slow
def test_the_baselines_at_the_budget_give_a_measured_verdict(open_page):
    at = open_page(PAGE, {**QUERY, "limit": "10", "budget": "3"}, timeout=300)
    assert "**Label budget:** 3 labels per class" in " ".join(m.value for m in at.markdown)
    at.button(key="v_run_baselines").click().run()
    assert not at.exception, [e.value for e in at.exception]
    boxes = [b.value for b in (*at.success, *at.warning, *at.error)]
    assert any(b.startswith("### ") and "provisional" not in b and "At 3 labels per class" in b for b in boxes), boxes
    assert any(h.value == "Transfer against training from scratch at 3 labels per class" for h in at.subheader)
    table = at.dataframe[0].value
    assert set(table["arm"]) == {"Scratch (small CNN)", "Scratch (linear model on pixels)",
                                 "Scratch (k-NN on pixels)", "Transfer, frozen (linear probe)"}
    assert set(table["converged"]) <= {"yes", "no (does not vote)"}
    assert any("searched on validation" in s for s in table["settings"])
    text = " ".join(m.value for m in at.markdown)
    assert "**Transfer vs the best scratch baseline at your budget**" in text
    # the measured gain with its interval against the margin (the forest plot), and the test set it was measured on
    assert any(h.value == "Measured gains against their margins" for h in at.subheader)
    import json

    forest = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "margin" in c.proto.spec]
    assert forest and forest[0]["data"][0]["error_x"]["array"]
    assert "the same 200 test images" in text or "the same 200 held-out" in " ".join(c.value for c in at.caption)


def test_an_admin_saves_the_team_rules_and_the_change_is_logged(open_page):
    """The single-user server's one user is an admin: the rules editor writes $TLDIAG_HOME/verdict_rules.toml,
    every verdict then reads it, and the audit log holds what changed; a refused value writes nothing."""
    from tldiag.audit import AuditLog
    from tldiag.decision.verdict import load_rules, team_rules_path

    at = open_page(PAGE, QUERY, timeout=300)
    at.text_area(key="v_rules_text").input("[baseline]\nmargin = 0.04\n")
    at.button(key="v_rules_save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert load_rules().baseline.margin == 0.04 and load_rules().origin == str(team_rules_path())
    [entry] = AuditLog().entries(action="rules-change")
    assert entry.detail["changed"] == {"baseline.margin": [0.03, 0.04]}
    before = team_rules_path().read_text()
    at.text_area(key="v_rules_text").input("[baseline]\nmargin = 'high'\n")
    at.button(key="v_rules_save").click().run()
    assert any("baseline.margin = 'high' must be a finite number" in e.value for e in at.error)
    assert team_rules_path().read_text() == before
