"""The verdict's rules, how signals combine, the recipe, and the rules file (pure logic on synthetic evidence)."""
from __future__ import annotations

import json

import pytest

from tldiag.errors import TldiagError
from tldiag.verdict import (CAUTION, GO, INFO, NO_GO, RULES_FILE, Comparison, DivergenceEvidence, EfficiencyEvidence,
                            Evidence, FinetuneEvidence, ProbeEvidence, Rules, TransferabilityEvidence, _read_toml,
                            decide, load_rules)


def div(mmd=0.05, p=0.001, ci=None) -> DivergenceEvidence:
    return DivergenceEvidence(tap="pre_logits", mmd=mmd, mmd_ci=ci or (max(mmd - 0.01, 0), mmd + 0.01), p_value=p,
                              n_permutations=1000, balanced_accuracy=0.9, roc_auc=0.95, pad=1.6, n_source=500,
                              n_target=500, layers=(("blocks.0", 0.2), ("pre_logits", mmd)))


def probe(best=0.95, floor=0.6, n_train=300) -> ProbeEvidence:
    return ProbeEvidence(best_tap="blocks.4", best_accuracy=best, best_se=0.01, recommended_tap="blocks.4",
                         recommended_accuracy=best, floor_accuracy=floor, floor_se=0.02, chance=0.1, n_train=n_train,
                         n_val=100, n_test=100, n_splits=3, taps=("blocks.0", "blocks.4", "pre_logits"))


def comp(per_class, gain, low, high, verdict) -> Comparison:
    return Comparison(per_class=per_class, transfer_arm="linear-probe", scratch_arm="small-cnn", transfer=0.5 + gain,
                      scratch=0.5, gain=gain, low=low, high=high, verdict=verdict, text=f"at {per_class} labels")


def eff(comparisons, saved=3.0, break_even=None) -> EfficiencyEvidence:
    gain = next(c for c in comparisons if c.per_class == 10)
    return EfficiencyEvidence(job="efficiency-1", profile="cpu", repeats=3, arms=("small-cnn", "linear-probe"),
                              target_accuracy=0.95, labels_saved=saved, labels_saved_bound="", transfer_labels=10.0,
                              scratch_labels=30.0, gain=gain, comparisons=tuple(comparisons), break_even=break_even,
                              break_even_bound="")


def ft(acc=0.97, probe_acc=0.95, scratch=None, best_epoch=5, epochs_run=8) -> FinetuneEvidence:
    return FinetuneEvidence(job="finetune-1", strategy="freeze-unfreeze", lr=1e-3, backbone_lr_mult=0.1, epochs=10,
                            test_accuracy=acc, probe_accuracy=probe_acc, probe_tap="blocks.4", best_epoch=best_epoch,
                            epochs_run=epochs_run, stopped_early=epochs_run < 10, n_train=300, n_test=100,
                            scratch_accuracy=scratch, scratch_job=None if scratch is None else "finetune-2")


@pytest.mark.parametrize("mmd, p, status", [(0.05, 0.001, GO), (0.0999, 0.001, GO), (0.1, 0.001, CAUTION),
                                            (0.4999, 0.001, CAUTION), (0.5, 0.001, NO_GO), (0.9, 0.001, NO_GO),
                                            (0.9, 0.2, GO)])  # p > alpha: no detectable shift, whatever the MMD
def test_divergence_thresholds(mmd, p, status):
    s = decide(Evidence(divergence=div(mmd, p))).signal("divergence")
    assert s.status == status and s.kind == "predicted"
    assert f"MMD {mmd:.3f}" in s.evidence and "PAD" not in s.evidence and "proxy A-distance 1.60" in s.evidence
    assert f": {status}" in s.rule or "(GO whatever the MMD)" in s.rule


def test_a_borderline_interval_is_said():
    s = decide(Evidence(divergence=div(0.52, ci=(0.47, 0.56)))).signal("divergence")
    assert s.status == NO_GO and "crosses 0.5" in s.rule


@pytest.mark.parametrize("best, floor, status", [(0.95, 0.60, GO), (0.65, 0.60, GO), (0.64, 0.60, CAUTION),
                                                 (0.60, 0.60, CAUTION), (0.55, 0.60, NO_GO)])
def test_probe_gain_over_the_random_floor(best, floor, status):
    s = decide(Evidence(probe=probe(best, floor))).signal("probe")
    assert s.status == status and s.kind == "measured"
    assert f"{best:.3f}" in s.evidence and f"{floor:.3f}" in s.evidence


def test_probe_without_a_floor_does_not_vote_and_is_listed_missing():
    v = decide(Evidence(probe=probe(floor=None)))
    assert v.signal("probe") is None and v.decision is None
    assert "floor" in [m.key for m in v.missing]


@pytest.mark.parametrize("gap, status", [(0.5, GO), (0.1, GO), (0.05, CAUTION), (0.0, CAUTION), (-0.1, NO_GO)])
def test_transferability_is_logme_against_random_features(gap, status):
    ev = TransferabilityEvidence(tap="pre_logits", logme=0.2 + gap, logme_random=0.2, knn_accuracy=0.9, knn_random=0.7)
    assert decide(Evidence(transferability=ev)).signal("transferability").status == status


def test_logme_alone_has_no_scale_and_does_not_vote():
    ev = TransferabilityEvidence(tap="pre_logits", logme=1.1, logme_random=None, knn_accuracy=0.9, knn_random=None)
    v = decide(Evidence(transferability=ev))
    assert v.signal("transferability").status == INFO and v.decision is None


def test_efficiency_rules():
    better = [comp(1, 0.3, 0.2, 0.4, "transfer better"), comp(10, 0.12, 0.05, 0.2, "transfer better"),
              comp(30, 0.05, 0.01, 0.1, "transfer better")]
    assert decide(Evidence(efficiency=eff(better))).signal("efficiency").status == GO
    # scratch catches up within the budgets tried: transfer pays only below the break-even
    caught = better[:2] + [comp(30, -0.02, -0.05, 0.01, "tie")]
    s = decide(Evidence(efficiency=eff(caught, break_even=27.5))).signal("efficiency")
    assert s.status == CAUTION and "catches up at ~27.5" in s.rule
    # too few labels saved
    assert decide(Evidence(efficiency=eff(better, saved=1.5))).signal("efficiency").status == CAUTION
    # scratch significantly better at a small budget: negative transfer
    worse = [comp(1, -0.2, -0.3, -0.1, "scratch better")] + better[1:]
    s = decide(Evidence(efficiency=eff(worse))).signal("efficiency")
    assert s.status == NO_GO and "scratch beats transfer at 1 labels" in s.rule
    # scratch better only beyond the reference budget is not a NO-GO by itself
    late = better[:2] + [comp(30, -0.1, -0.2, -0.05, "scratch better")]
    assert decide(Evidence(efficiency=eff(late, break_even=20.0))).signal("efficiency").status == CAUTION


def test_finetune_votes_only_against_scratch():
    assert decide(Evidence(finetune=ft())).signal("finetune").status == INFO
    assert decide(Evidence(finetune=ft(acc=0.97, scratch=0.5))).signal("finetune").status == GO
    assert decide(Evidence(finetune=ft(acc=0.5, scratch=0.6))).signal("finetune").status == NO_GO
    v = decide(Evidence(finetune=ft()))
    assert "scratch" in [m.key for m in v.missing]


def test_measured_signals_decide_and_predicted_ones_temper():
    v = decide(Evidence(divergence=div(0.3), probe=probe()))
    assert v.decision == GO and not v.provisional  # amber divergence is a caveat, not a veto
    assert "Caveats" in v.headline and "CAUTION" in v.headline
    v = decide(Evidence(divergence=div(0.7), probe=probe()))
    assert v.decision == CAUTION  # a predicted NO-GO turns a measured GO into CAUTION
    assert v.disagreements == ("Divergence at the penultimate layer says NO-GO (MMD 0.700) but Linear probe vs "
                               "random-init floor says GO (+35.0 pts).",)
    v = decide(Evidence(divergence=div(0.05), probe=probe(0.55, 0.6)))
    assert v.decision == NO_GO  # measured outranks predicted
    assert len(v.disagreements) == 1 and "shown side by side" in " ".join(v.reasons)


def test_measured_signals_that_disagree_give_caution():
    worse = [comp(1, -0.2, -0.3, -0.1, "scratch better"), comp(10, -0.1, -0.2, -0.05, "scratch better")]
    v = decide(Evidence(probe=probe(), efficiency=eff(worse, saved=None)))
    assert v.decision == CAUTION and len(v.disagreements) == 1
    assert {s.status for s in v.signals} == {GO, NO_GO}  # each keeps its own status: nothing is averaged


def test_only_predictors_give_a_provisional_verdict():
    v = decide(Evidence(divergence=div(0.05)))
    assert v.decision == GO and v.provisional and "Provisional" in v.headline
    assert [m.key for m in v.missing] == ["probes", "efficiency", "finetune"]


def test_nothing_computed_is_no_verdict():
    v = decide(Evidence())
    assert v.decision is None and v.recipe is None
    assert [m.key for m in v.missing] == ["shift", "probes", "efficiency", "finetune"]


def test_recipe_linear_probe_when_the_probe_leaves_no_headroom():
    v = decide(Evidence(divergence=div(0.3), probe=probe(best=0.995)))
    r = v.recipe
    assert r.approach == "linear-probe" and r.freeze_up_to == "blocks.4" and not r.another_source
    assert any("would usually call for fine-tuning" in s for s in r.steps)
    # a fine-tune that beats the probe by more than a point: fine-tune
    r = decide(Evidence(probe=probe(best=0.90), finetune=ft(acc=0.95, probe_acc=0.90), n_stages=5)).recipe
    assert r.approach == "freeze-unfreeze" and any("0.0001" in s for s in r.steps)
    # one that adds nothing over the probe: the probe is the cheaper recipe
    assert decide(Evidence(probe=probe(best=0.9), finetune=ft(acc=0.905, probe_acc=0.9))).recipe.approach == \
        "linear-probe"


def test_recipe_strategy_follows_the_amount_of_data_and_reads_the_run():
    r = decide(Evidence(probe=probe(best=0.8, n_train=60), n_stages=5)).recipe
    assert r.approach == "partial" and any("bottom 4 of 5 stages (up to blocks.4" in s for s in r.steps)
    r = decide(Evidence(probe=probe(best=0.8, n_train=20_000), n_stages=5)).recipe
    assert r.approach == "full"
    r = decide(Evidence(probe=probe(best=0.8), finetune=ft(acc=0.9, probe_acc=0.8, best_epoch=10, epochs_run=10),
                        n_stages=5)).recipe
    assert any("still improving" in s for s in r.steps)
    r = decide(Evidence(probe=probe(best=0.8), finetune=ft(acc=0.9, probe_acc=0.8, best_epoch=1, epochs_run=5),
                        n_stages=5)).recipe
    assert any("lower the learning rate" in s for s in r.steps)


def test_recipe_no_go_looks_for_another_source_and_states_the_savings():
    v = decide(Evidence(divergence=div(0.8), probe=probe(0.55, 0.6)))
    assert v.decision == NO_GO and v.recipe.approach == "another-source" and v.recipe.another_source
    assert "MMD at pre_logits is 0.800" in v.recipe.another_source_reason
    better = [comp(1, 0.3, 0.2, 0.4, "transfer better"), comp(10, 0.12, 0.05, 0.2, "transfer better")]
    r = decide(Evidence(probe=probe(), efficiency=eff(better, break_even=None))).recipe
    assert r.label_savings.startswith("About 3× fewer labels to reach 95.0% (10 instead of 30 per class)")


def test_evidence_round_trips_through_json():
    ev = Evidence(divergence=div(0.3), probe=probe(), efficiency=eff([comp(10, 0.1, 0.05, 0.2, "transfer better")]),
                  finetune=ft(scratch=0.4), transferability=TransferabilityEvidence("pre_logits", 1.0, 0.1, 0.9, 0.6),
                  n_stages=5)
    back = Evidence.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert back == ev and decide(back) == decide(ev)


def test_the_rules_file_holds_the_defaults():
    assert Rules.from_dict(_read_toml(RULES_FILE), origin="defaults") == Rules()


def test_a_rules_file_changes_only_what_it_names(tmp_path, monkeypatch):
    path = tmp_path / "rules.toml"
    path.write_text("[divergence]\nmmd_red = 0.3\n")
    rules = load_rules(path)
    assert rules.divergence.mmd_red == 0.3 and rules.divergence.mmd_green == 0.1 and rules.origin == str(path)
    assert decide(Evidence(divergence=div(0.35)), rules).signal("divergence").status == NO_GO
    monkeypatch.setenv("TLDIAG_VERDICT_RULES", str(path))
    assert load_rules().divergence.mmd_red == 0.3


@pytest.mark.parametrize("text, message", [
    ("[divergence]\nmmd_redd = 0.3\n", "unknown key divergence.mmd_redd; [divergence] has alpha, mmd_green, mmd_red"),
    ("[diverge]\nmmd_red = 0.3\n", "unknown section [diverge]"),
    ("[divergence]\nmmd_red = 'high'\n", "divergence.mmd_red = 'high' must be a finite number (the default is 0.5)"),
    ("[divergence]\nmmd_green = 0.6\n", "divergence.mmd_green=0.6 must be >= 0 and below divergence.mmd_red=0.5"),
    ("[divergence\n", "is not valid TOML"),
])
def test_bad_rules_are_refused_with_the_fix(tmp_path, text, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(TldiagError, match=None) as err:
        load_rules(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_missing_rules_file_is_named(tmp_path):
    with pytest.raises(TldiagError, match="does not exist; copy .*verdict_rules.toml"):
        load_rules(tmp_path / "nope.toml")
