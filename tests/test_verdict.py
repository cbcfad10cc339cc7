"""The verdict's rules, how signals combine, the recipe, and the rules file (pure logic on synthetic evidence)."""
from __future__ import annotations

import json

import pytest

from tldiag.errors import TldiagError
from tldiag.decision.verdict import (CAUTION, GO, INFO, NO_GO, RULES_FILE, ArmScore, BaselineEvidence, Comparison,
                            DivergenceEvidence, EfficiencyEvidence, Evidence, FinetuneEvidence, ProbeEvidence, Rules,
                            TransferabilityEvidence, decide, load_rules)
from tldiag.decision.rules import _read_toml
from tldiag.sourcehead import ClassAccuracy, SourceHeadResult


def div(mmd=0.05, p=0.001, ci=None) -> DivergenceEvidence:
    return DivergenceEvidence(tap="pre_logits", mmd=mmd, mmd_ci=ci or (max(mmd - 0.01, 0), mmd + 0.01), p_value=p,
                              n_permutations=1000, balanced_accuracy=0.9, roc_auc=0.95, pad=1.6, n_source=500,
                              n_target=500, layers=(("blocks.0", 0.2), ("pre_logits", mmd)))


def probe(best=0.95, floor=0.6, n_train=300) -> ProbeEvidence:
    return ProbeEvidence(best_tap="blocks.4", best_accuracy=best, best_se=0.01, recommended_tap="blocks.4",
                         recommended_accuracy=best, floor_accuracy=floor, floor_se=0.02, chance=0.1, n_train=n_train,
                         n_val=100, n_test=100, n_splits=3, taps=("blocks.0", "blocks.4", "pre_logits"))


def base(gain=0.2, low=None, high=None, budget=10, scratch_arm="small-cnn", stuck=(), s_draws=0.03,
         s_images=0.25) -> BaselineEvidence:
    low = gain - 0.05 if low is None else low
    high = gain + 0.05 if high is None else high
    c = Comparison(per_class=budget or 30, transfer_arm="linear-probe", scratch_arm=scratch_arm, transfer=0.6 + gain,
                   scratch=0.6, gain=gain, low=low, high=high, verdict="transfer better" if low > 0 else
                   "scratch better" if high < 0 else "tie", text=f"at {budget} labels per class: ...", n=3,
                   n_test=100, s_draws=s_draws, s_images=s_images)
    arms = (ArmScore("small-cnn", "Scratch (small CNN)", 0.6, 0.5, 0.7, "32 px", "small-cnn" not in stuck),
            ArmScore("pixel-knn", "Scratch (k-NN on pixels)", 0.4, 0.3, 0.5, "k=3"),
            ArmScore("linear-probe", "Transfer, frozen (linear probe)", 0.6 + gain, 0.5 + gain, 0.7 + gain, "tap"))
    return BaselineEvidence(budget=budget, per_class=budget or 30, repeats=3, n_test=100, chance=0.1, comparison=c,
                            arms=arms)


def head(source=0.96, target=0.21) -> SourceHeadResult:
    per_class = (ClassAccuracy("4", 10, 1.0, (0.72, 1.0), 50, 0.0, (0.0, 0.07)),
                 ClassAccuracy("3", 10, 1.0, (0.72, 1.0), 50, 0.06, (0.02, 0.16)))
    return SourceHeadResult(classes=tuple("0123456789"), n_source=100, source_accuracy=source,
                            source_ci=(source - 0.05, min(source + 0.03, 1)), n_target=500, target_accuracy=target,
                            target_ci=(target - 0.04, target + 0.04), drop=source - target,
                            drop_ci=(source - target - 0.05, source - target + 0.05), per_class=per_class)


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


@pytest.mark.parametrize("best, floor", [(0.95, 0.60), (0.64, 0.60), (0.55, 0.60)])
def test_the_random_init_floor_is_context_and_never_votes(best, floor):
    s = decide(Evidence(probe=probe(best, floor))).signal("probe")
    assert s.status == INFO and s.kind == "measured" and "does not vote" in s.rule
    assert f"{best:.3f}" in s.evidence and f"{floor:.3f}" in s.evidence and "own best tap" in s.evidence
    assert decide(Evidence(probe=probe(best, floor))).decision is None  # nothing that votes yet


def test_probe_without_a_floor_shows_no_floor():
    v = decide(Evidence(probe=probe(floor=None)))
    assert v.signal("probe") is None and v.decision is None
    assert "baselines" in [m.key for m in v.missing]


@pytest.mark.parametrize("gain, low, high, status", [
    (0.20, 0.10, 0.30, GO), (0.03, 0.01, 0.05, GO),          # reaches the +3-point margin, interval above 0
    (0.02, 0.01, 0.029, NO_GO), (0.0, -0.02, 0.02, NO_GO),   # narrow, below the margin: cannot be worth it
    (-0.1, -0.2, -0.05, NO_GO),                              # scratch ahead, clear of 0
    (0.017, -0.09, 0.13, CAUTION),                           # the issue's --limit 50 case: wide, reads both ways
    (0.10, -0.02, 0.22, CAUTION), (0.029, 0.01, 0.05, CAUTION), (0.0, -0.1, 0.05, CAUTION)])
def test_baseline_reads_its_interval_against_the_margin(gain, low, high, status):
    s = decide(Evidence(baseline=base(gain, low, high))).signal("baseline")
    assert s.status == status and s.kind == "measured"
    assert "Scratch (k-NN on pixels) 0.400" in s.evidence and "at 10 labels per class" in s.evidence
    assert s.reading.status == status and (s.reading.low, s.reading.high, s.reading.margin) == (low, high, 0.03)
    if status == CAUTION:
        assert "cannot tell at this sample size" in s.rule and "not a NO-GO" in s.rule
        assert s.reading.settle is not None and "what would settle it: if the gain stays" in s.rule
    else:
        assert s.reading.settle is None and "cannot tell" not in s.rule


def test_a_wide_interval_is_caution_whatever_the_point_estimate_says():
    """The issue's case: at one label per class, +1.7 points with an interval of -9.0 to +13.0 read NO-GO before
    (the point estimate below +2 points); it cannot tell, and the verdict says so, with what would settle it."""
    v = decide(Evidence(baseline=base(0.017, -0.09, 0.13), budget=1))
    assert v.decision == CAUTION and v.led_by == "baseline"
    assert v.headline.startswith("At 1 label per class: Cannot tell at this sample size: transfer vs the best "
                                 "scratch baseline at your budget +1.7 pts, 95% interval -9.0 to +13.0 pts")
    assert any(r.startswith("Cannot tell at this sample size. What would settle it:") for r in v.reasons)


def test_a_scratch_arm_that_did_not_converge_is_named_and_does_not_vote():
    s = decide(Evidence(baseline=base(0.2, stuck=("small-cnn",), scratch_arm="pixel-knn"))).signal("baseline")
    assert "Scratch (small CNN) 0.600 (0.500–0.700), did not converge" in s.evidence
    assert "Not voting (did not converge): Scratch (small CNN)" in s.evidence


def test_random_weights_have_nothing_to_transfer():
    v = decide(Evidence(probe=probe(best=0.7, floor=None), divergence=div(0.05), pretrained=False,
                        model="random:efficientnet-lite0"))
    assert v.decision == NO_GO and v.signal("candidate").status == NO_GO and "Nothing to transfer" in v.headline
    assert "random:efficientnet-lite0 has random weights" in v.reasons[0]
    r = v.recipe
    assert r.approach == "scratch" and r.another_source
    text = " ".join(r.steps) + r.another_source_reason
    assert "pretrained BatchNorm" not in text and "L2-SP" not in text and "No need to look" not in text
    assert "baselines" not in [m.key for m in v.missing]


def test_features_at_chance_have_nothing_to_transfer():
    # an all-constant checkpoint: the best probe stays at chance (0.1 of 100 test images, 2 se = 0.06)
    v = decide(Evidence(probe=probe(best=0.15, floor=0.6), baseline=base(-0.4)))
    assert v.decision == NO_GO and v.signal("candidate").value == "features carry no information"
    assert decide(Evidence(probe=probe(best=0.17, floor=0.6))).signal("candidate") is None


def test_the_source_model_on_the_target_with_no_adaptation():
    v = decide(Evidence(baseline=base(0.2), source_head=head(0.96, 0.21), probe=probe(best=0.9)))
    s = v.signal("source_head")
    assert s.status == INFO and s.value == "0.96 → 0.21" and "the shift costs +75.0 pts" in s.evidence
    assert "largest drops '4' 1.00 → 0.00" in s.evidence
    assert any("cannot be used as it is" in step for step in v.recipe.steps)
    # the model as it is beats every scratch baseline at the budget: zero labels already win
    v = decide(Evidence(baseline=base(0.2), source_head=head(0.97, 0.95), probe=probe(best=0.9)))
    assert v.signal("source_head").status == GO and v.decision == GO
    v = decide(Evidence(baseline=base(0.2), source_head=head(0.96, 0.95), probe=probe(best=0.9)))
    assert any("works on the target as it is" in step for step in v.recipe.steps)


def test_the_verdict_answers_for_the_budget_and_says_where_it_changes():
    v = decide(Evidence(baseline=base(0.2), budget=10))
    assert v.headline.startswith("At 10 labels per class: Transfer pays here.")
    assert v.budget == "10 labels per class" and "unknown until the data-efficiency experiment" in v.break_even
    caught = [comp(1, 0.3, 0.2, 0.4, "transfer better"), comp(10, 0.12, 0.05, 0.2, "transfer better"),
              comp(30, -0.02, -0.05, 0.01, "tie")]
    v = decide(Evidence(baseline=base(0.2), efficiency=eff(caught, break_even=27.5), budget=10))
    assert "from about 27.5 labels per class scratch catches up" in v.break_even and "below it" in v.break_even
    assert decide(Evidence(baseline=base(0.2, budget=None))).headline.startswith("With all labelled images (30 per "
                                                                                 "class to train on): Transfer pays")


@pytest.mark.parametrize("gap, status", [(0.5, GO), (0.1, GO), (0.05, CAUTION), (0.0, CAUTION), (-0.1, NO_GO)])
def test_transferability_is_logme_against_the_raw_pixels(gap, status):
    ev = TransferabilityEvidence(tap="pre_logits", logme=0.2 + gap, logme_reference=0.2, knn_accuracy=0.9,
                                 knn_reference=0.7)
    s = decide(Evidence(transferability=ev)).signal("transferability")
    assert s.status == status and "with the raw pixels" in s.evidence and "raw pixels 0.700" in s.evidence


def test_an_older_record_compared_with_random_features_and_says_so():
    old = {"tap": "pre_logits", "logme": 0.3, "logme_random": 0.2, "knn_accuracy": 0.9, "knn_random": 0.7}
    ev = Evidence.from_dict({"transferability": old}).transferability
    assert (ev.reference, ev.logme_reference, ev.knn_reference) == ("random init", 0.2, 0.7)
    assert "with the random init at pre_logits" in decide(Evidence(transferability=ev)).signal("transferability").evidence
    assert Evidence.from_dict(Evidence(transferability=ev).to_dict()).transferability == ev


def test_logme_alone_has_no_scale_and_does_not_vote():
    ev = TransferabilityEvidence(tap="pre_logits", logme=1.1, logme_reference=None, knn_accuracy=0.9,
                                 knn_reference=None)
    v = decide(Evidence(transferability=ev))
    assert v.signal("transferability").status == INFO and v.decision is None


def test_efficiency_rules_answer_for_the_budget():
    better = [comp(1, 0.3, 0.2, 0.4, "transfer better"), comp(10, 0.12, 0.05, 0.2, "transfer better"),
              comp(30, 0.05, 0.01, 0.1, "transfer better")]
    s = decide(Evidence(efficiency=eff(better))).signal("efficiency")
    assert s.status == GO and s.value == "+12.0 pts" and "at your budget (10 labels/class)" in s.rule
    # scratch catches up beyond the budget: still GO at this budget, and the break-even is stated
    caught = better[:2] + [comp(30, -0.02, -0.05, 0.01, "tie")]
    s = decide(Evidence(efficiency=eff(caught, break_even=27.5))).signal("efficiency")
    assert s.status == GO and "catches up at ~27.5" in s.rule
    # within noise at the budget
    noisy = [better[0], comp(10, 0.05, -0.01, 0.1, "tie"), better[2]]
    assert decide(Evidence(efficiency=eff(noisy))).signal("efficiency").status == CAUTION
    # scratch significantly better at a smaller budget: a sign of negative transfer, so the budget's GO is cautious
    worse = [comp(1, -0.2, -0.3, -0.1, "scratch better")] + better[1:]
    s = decide(Evidence(efficiency=eff(worse))).signal("efficiency")
    assert s.status == CAUTION and "scratch is ahead at a smaller budget (at 1 labels" in s.rule
    # scratch level with transfer at the budget, measured precisely: transfer cannot be worth it
    level = [better[0], comp(10, 0.0, -0.01, 0.01, "tie"), better[2]]
    assert decide(Evidence(efficiency=eff(level))).signal("efficiency").status == NO_GO
    # level, but the interval still reaches the margin: cannot tell
    wide = [better[0], comp(10, 0.0, -0.05, 0.05, "tie"), better[2]]
    assert decide(Evidence(efficiency=eff(wide))).signal("efficiency").status == CAUTION


def test_finetune_votes_only_against_scratch():
    assert decide(Evidence(finetune=ft())).signal("finetune").status == INFO
    s = decide(Evidence(finetune=ft(acc=0.97, scratch=0.5))).signal("finetune")
    assert s.status == GO and s.reading.n_test == 100 and s.reading.draws == 1
    # two accuracies on 100 test images: se = sqrt(0.4*0.6/100 + 0.6*0.4/100) = 0.0693, half-width 1.96 se
    s = decide(Evidence(finetune=ft(acc=0.4, scratch=0.6))).signal("finetune")
    assert s.status == NO_GO and s.reading.high == pytest.approx(-0.2 + 1.959964 * 0.069282, abs=1e-5)
    assert decide(Evidence(finetune=ft(acc=0.5, scratch=0.6))).signal("finetune").status == CAUTION
    v = decide(Evidence(finetune=ft()))
    assert "scratch" in [m.key for m in v.missing]


def test_measured_signals_decide_and_predicted_ones_temper():
    v = decide(Evidence(divergence=div(0.3), probe=probe(), baseline=base(0.2)))
    assert v.decision == GO and not v.provisional  # amber divergence is a caveat, not a veto
    assert "Caveats" in v.headline and "CAUTION" in v.headline
    v = decide(Evidence(divergence=div(0.7), probe=probe(), baseline=base(0.2, low=0.02)))
    assert v.decision == CAUTION  # a predicted NO-GO turns a measured GO into CAUTION
    assert v.disagreements == ("Transfer vs the best scratch baseline at your budget says GO (+20.0 pts) but "
                               "Divergence at the penultimate layer says NO-GO (MMD 0.700).",)
    # ... unless the measurement is decisive: its whole interval above the GO threshold (the panel's finding)
    v = decide(Evidence(divergence=div(0.7), probe=probe(), baseline=base(0.2, low=0.15)))
    assert v.decision == GO and v.signal("baseline").decisive and len(v.disagreements) == 1
    assert any("the measurement is decisive" in r for r in v.reasons)
    v = decide(Evidence(divergence=div(0.05), probe=probe(), baseline=base(-0.05)))
    assert v.decision == NO_GO  # measured outranks predicted
    assert len(v.disagreements) == 1 and "shown side by side" in " ".join(v.reasons)


def test_measured_signals_that_disagree_give_caution():
    worse = [comp(1, -0.2, -0.3, -0.1, "scratch better"), comp(10, -0.1, -0.2, -0.05, "scratch better")]
    v = decide(Evidence(probe=probe(), baseline=base(0.2), efficiency=eff(worse, saved=None)))
    assert v.decision == CAUTION and len(v.disagreements) == 1 and v.led_by == "efficiency"
    assert {s.status for s in v.signals} == {GO, NO_GO, INFO}  # each keeps its own status: nothing is averaged
    assert any(r.startswith("A noisier measurement disagrees firmly: transfer vs the best scratch baseline") for r in
               v.reasons)


def test_the_more_precise_signal_leads_and_a_noisier_one_never_overturns_it():
    # the full path at one label per class: the experiment cannot tell (+7.7, interval includes 0), the fast
    # baseline's +1.7 was read as NO-GO; the experiment leads, and a noisier NO-GO adds nothing to a CAUTION
    noisy_no = base(-0.03, -0.07, 0.01)
    cannot_tell = [comp(10, 0.077, -0.02, 0.18, "tie")]
    v = decide(Evidence(baseline=noisy_no, efficiency=eff(cannot_tell)))
    assert v.signal("baseline").status == NO_GO and v.signal("efficiency").status == CAUTION
    assert v.decision == CAUTION and v.led_by == "efficiency" and v.headline.startswith("With all labelled images")
    assert "Cannot tell at this sample size: data efficiency at your budget" in v.headline
    # a firm experiment is not overturned by the baseline either: GO against a baseline CAUTION stays GO
    firm = [comp(10, 0.12, 0.05, 0.2, "transfer better")]
    assert decide(Evidence(baseline=base(0.1, -0.02, 0.22), efficiency=eff(firm))).decision == GO
    # a fine-tune against its scratch twin leads over both
    v = decide(Evidence(baseline=base(0.2), efficiency=eff(firm), finetune=ft(acc=0.4, scratch=0.6)))
    assert v.led_by == "finetune" and v.decision == CAUTION  # two firm GOs against it: caution, not GO
    assert Evidence.from_dict(json.loads(json.dumps(Evidence(baseline=noisy_no).to_dict()))).baseline == noisy_no
    record = json.loads(json.dumps(v.to_dict()))
    assert record["led_by"] == "finetune" and record["signals"][0]["reading"]["margin"] == 0.03


def test_a_rules_file_of_the_point_estimate_era_is_refused_with_the_new_key(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[baseline]\ngain_go = 0.03\ngain_no_go = 0.02\n")
    with pytest.raises(TldiagError, match=r"baseline.gain_go is no longer read.*margin = 0.03"):
        load_rules(path)


def test_what_would_settle_it_matches_a_simulation():
    """The estimate (test images needed at these draws) against data drawn with the spreads it measured: intervals
    measured at the recommended size are about as narrow as the estimate says, and at the current size wider."""
    import numpy as np

    from tldiag.decision.verdict import what_would_settle
    from tldiag.training.efficiency import crossed_interval

    rng = np.random.default_rng(0)
    sd, si, se, gain = 0.01, 0.3, 0.1, 0.04  # spreads: between draws, between test images, residual

    def table(R, n):
        return gain + rng.normal(0, sd, size=(R, 1)) + rng.normal(0, si, size=(1, n)) + rng.normal(0, se, (R, n))

    # what the estimate reads from the spreads a measurement of 3 draws x 100 test images shows
    s = what_would_settle(gain, 0.03, n_test=100, draws=3, s_draws=sd, s_images=(si ** 2 + se ** 2 / 3) ** 0.5)
    assert s is not None and s.half_width == gain and s.n_test is not None and 150 < s.n_test < 400
    at_size = [crossed_interval(table(3, s.n_test)) for _ in range(300)]
    widths = np.array([c.half_width() for c in at_size])
    assert abs(np.median(widths) - s.half_width) / s.half_width < 0.15  # as narrow as it said
    assert 0.3 < np.mean([c.low > 0 for c in at_size]) < 0.7  # centred on the gain: it decides about half the time
    assert np.median([crossed_interval(table(3, 100)).half_width() for _ in range(300)]) > 1.2 * s.half_width


def test_only_predictors_give_a_provisional_verdict():
    v = decide(Evidence(divergence=div(0.05)))
    assert v.decision == GO and v.provisional and "Provisional" in v.headline
    assert [m.key for m in v.missing] == ["probes", "baselines", "efficiency", "finetune"]


def test_nothing_computed_is_no_verdict():
    v = decide(Evidence())
    assert v.decision is None and v.recipe is None
    assert [m.key for m in v.missing] == ["shift", "probes", "baselines", "efficiency", "finetune"]


def test_recipe_linear_probe_when_the_probe_leaves_no_headroom():
    v = decide(Evidence(divergence=div(0.3), baseline=base(0.39), probe=probe(best=0.995)))
    r = v.recipe
    assert r.approach == "linear-probe" and r.freeze_up_to == "blocks.4" and not r.another_source
    assert any("would usually call for fine-tuning" in s for s in r.steps)
    assert any("reaches 0.990 at 10 labels per class" in s for s in r.steps)
    # a fine-tune that beats the probe by more than a point: fine-tune
    r = decide(Evidence(baseline=base(0.2), probe=probe(best=0.90), finetune=ft(acc=0.95, probe_acc=0.90), n_stages=5)).recipe
    assert r.approach == "freeze-unfreeze" and any("0.0001" in s for s in r.steps)
    # one that adds nothing over the probe: the probe is the cheaper recipe
    assert decide(Evidence(baseline=base(0.2), probe=probe(best=0.9), finetune=ft(acc=0.905, probe_acc=0.9))).recipe.approach == \
        "linear-probe"


def test_the_recipe_reads_the_probe_at_the_budget_not_on_the_whole_pool():
    # 99.5% with every label, 80% at the team's 10 per class: fine-tuning has something to win at the budget
    r = decide(Evidence(baseline=base(0.2), probe=probe(best=0.995, n_train=20_000), n_stages=5)).recipe
    assert r.approach != "linear-probe"
    assert any("100 training labels" in s for s in r.steps)  # 10 per class x 10 classes, not the pool's 20,000
    assert any("(0.800 at 10 labels per class)" in s for s in r.steps)
    # the same pool with every label (no budget): the pool's probe decides
    r = decide(Evidence(baseline=base(0.2, budget=None), probe=probe(best=0.995, n_train=20_000), n_stages=5)).recipe
    assert r.approach == "linear-probe" and any("with 20000 training labels" in s for s in r.steps)


def test_a_no_go_recipe_names_the_scratch_model_to_beat():
    r = decide(Evidence(probe=probe(0.55, 0.6), baseline=base(-0.1, scratch_arm="pixel-knn"))).recipe
    assert r.approach == "another-source"
    assert "at 10 labels per class, k-NN on the raw pixels scored 0.600 against 0.500 for the linear probe" in r.steps[0]


def test_recipe_strategy_follows_the_amount_of_data_and_reads_the_run():
    r = decide(Evidence(baseline=base(0.2, budget=5), probe=probe(best=0.8, n_train=300), n_stages=5)).recipe
    assert r.approach == "partial" and any("bottom 4 of 5 stages (up to blocks.4" in s for s in r.steps)
    r = decide(Evidence(baseline=base(0.2, budget=None), probe=probe(best=0.8, n_train=20_000), n_stages=5)).recipe
    assert r.approach == "full"
    r = decide(Evidence(baseline=base(0.2), probe=probe(best=0.8), finetune=ft(acc=0.9, probe_acc=0.8, best_epoch=10, epochs_run=10),
                        n_stages=5)).recipe
    assert any("had not converged: its best epoch was its last (10 of 10)" in s for s in r.steps)
    # an unconverged run that trails the probe does not decide for the probe: the headroom rule does
    r = decide(Evidence(baseline=base(0.2), probe=probe(best=0.94), finetune=ft(acc=0.89, probe_acc=0.94, best_epoch=10, epochs_run=10),
                        n_stages=5)).recipe
    assert r.approach == "freeze-unfreeze" and not any("fine-tuning added" in s for s in r.steps)
    r = decide(Evidence(baseline=base(0.2), probe=probe(best=0.8), finetune=ft(acc=0.9, probe_acc=0.8, best_epoch=1, epochs_run=5),
                        n_stages=5)).recipe
    assert any("lower the learning rate" in s for s in r.steps)


def test_recipe_no_go_looks_for_another_source_and_states_the_savings():
    v = decide(Evidence(divergence=div(0.8), probe=probe(0.55, 0.6), baseline=base(-0.1)))
    assert v.decision == NO_GO and v.recipe.approach == "another-source" and v.recipe.another_source
    assert "MMD at pre_logits is 0.800" in v.recipe.another_source_reason
    better = [comp(1, 0.3, 0.2, 0.4, "transfer better"), comp(10, 0.12, 0.05, 0.2, "transfer better")]
    r = decide(Evidence(probe=probe(), efficiency=eff(better, break_even=None))).recipe
    assert r.label_savings.startswith("About 3× fewer labels to reach 95.0% (10 instead of 30 per class)")


def test_evidence_round_trips_through_json():
    ev = Evidence(divergence=div(0.3), probe=probe(), efficiency=eff([comp(10, 0.1, 0.05, 0.2, "transfer better")]),
                  finetune=ft(scratch=0.4), transferability=TransferabilityEvidence("pre_logits", 1.0, 0.1, 0.9, 0.6),
                  n_stages=5, baseline=base(0.1, stuck=("small-cnn",)), budget=10, model="efficientnet-lite0",
                  source_head=head())
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


def test_team_rules_are_read_after_the_named_file_and_before_the_defaults(tmp_path, monkeypatch):
    from tldiag.decision.verdict import load_rules, rules_changes, save_team_rules, team_rules_path

    monkeypatch.delenv("TLDIAG_VERDICT_RULES", raising=False)
    assert load_rules().origin == "defaults"
    saved = save_team_rules("[baseline]\nmargin = 0.05")
    assert team_rules_path().read_text() == "[baseline]\nmargin = 0.05\n"
    assert load_rules() == saved and saved.baseline.margin == 0.05
    assert rules_changes(Rules(), saved) == {"baseline.margin": [0.03, 0.05]}
    named = tmp_path / "mine.toml"
    named.write_text("[baseline]\nmargin = 0.07\n")
    monkeypatch.setenv("TLDIAG_VERDICT_RULES", str(named))
    assert load_rules().baseline.margin == 0.07  # the operator's file wins
    for bad, match in (("[baseline", "not valid TOML"), ("[baseline]\nmargin = 1.5", "must be a worthwhile accuracy "
                                                                                     "gain in")):
        with pytest.raises(TldiagError, match=match):
            save_team_rules(bad)
    assert team_rules_path().read_text() == "[baseline]\nmargin = 0.05\n"  # nothing written for a refused one


@pytest.fixture
def clean_signals():
    """The table of signals as it was, whatever a test registers."""
    from tldiag.decision.signals import SIGNALS

    before = dict(SIGNALS)
    yield SIGNALS
    SIGNALS.clear()
    SIGNALS.update(before)


def test_a_signal_registered_through_the_table_votes_and_says_what_it_lacks(clean_signals):
    """The seam: one SignalKind in SIGNALS and the verdict reads it, lists it, and asks for its evidence; nothing
    else changes (see CONTRIBUTING.md, "a new signal")."""
    from tldiag.decision.signals import Missing, Signal, SignalKind, register_signal

    def read(ev, rules):
        if ev.divergence is None:
            return None
        return Signal("strict-shift", "A stricter shift rule", "predicted", NO_GO, f"MMD {ev.divergence.mmd:.2f}",
                      "the same MMD", "NO-GO from 0.01 (a test rule)")

    register_signal(SignalKind("strict-shift", "divergence", None, read, "A test signal.",
                               lambda ev: () if ev.divergence else (Missing("strict", "Strict shift", "a test", step=0),)))
    with pytest.raises(TldiagError, match="'strict-shift' is already registered"):
        register_signal(SignalKind("strict-shift", "divergence", None, read, "again"))
    v = decide(Evidence(divergence=div(0.05)))
    assert [s.key for s in v.signals] == ["divergence", "strict-shift"]
    assert v.decision == CAUTION  # a predicted GO and a predicted NO-GO: a mix
    assert "a stricter shift rule NO-GO (MMD 0.05)" in " ".join(v.reasons)
    assert decide(Evidence()).missing[0].key == "strict"
