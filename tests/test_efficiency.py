"""Data efficiency: label subsets, the readouts on known curves, and real experiments where transfer must help and
where it must not."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from scipy import stats

from tldiag.training.efficiency import (ArmCurve, EfficiencyConfig, EfficiencyResult, Run, budget_subsets, curves,
                                        labels_to_reach, partial_result, plan_experiment, readouts, run_experiment,
                                        schedule_caps, t_interval)
from tldiag.training.smallcnn import small_cnn
from tldiag.errors import TldiagError
from tldiag.training.jobs import JobStore
from tldiag.viz import efficiency_figure

FAST = {"small-cnn": {"epochs": 8, "min_epochs": 8, "min_epoch_images": 96, "lr_grid": (1.0,)}}
QUICK = {"small-cnn": {"epochs": 4, "min_epochs": 4, "min_epoch_images": 64, "lr_grid": (1.0,)}}  # 8 steps a run


# ----------------------------------------------------------------------------- label subsets
def test_subsets_are_nested_within_a_repeat_and_differ_between_repeats():
    y = np.repeat(np.arange(4), [30, 30, 30, 7])  # a small class: budgets above 7 take all of it
    subsets = budget_subsets(y, [1, 5, 10, 0], 3, seed=0)
    for r in range(3):
        for small, large in ((1, 5), (5, 10), (10, 0)):
            assert set(subsets[(small, r)]) <= set(subsets[(large, r)])
        counts = np.bincount(y[subsets[(10, r)]], minlength=4)
        assert counts.tolist() == [10, 10, 10, 7]
        assert np.bincount(y[subsets[(1, r)]]).tolist() == [1, 1, 1, 1]
        assert len(subsets[(0, r)]) == len(y)
    assert len({tuple(subsets[(5, r)]) for r in range(3)}) == 3, "repeats must draw different subsets"
    again = budget_subsets(y, [1, 5, 10, 0], 3, seed=0)
    assert all(np.array_equal(subsets[k], again[k]) for k in subsets)
    assert not np.array_equal(subsets[(5, 0)], budget_subsets(y, [5], 1, seed=1)[(5, 0)])


def test_small_budgets_get_more_draws_and_the_subsets_of_a_budget_stay_the_same():
    c = EfficiencyConfig(repeats=3, budget=10)
    assert [c.draws(b) for b in (1, 2, 3, 4, 5, 10, 0)] == [8, 4, 3, 3, 3, 6, 3]  # 6 at the team's budget
    assert EfficiencyConfig(repeats=5, draw_labels=0, budget=10).draws(1) == 5
    assert EfficiencyConfig(repeats=3).draws(0) == 6  # no budget: the whole pool is what the readouts answer for
    y = np.repeat(np.arange(3), 20)
    varied = budget_subsets(y, [1, 2, 5, 10], c.draws, seed=0)
    assert sorted(k for k in varied if k[0] == 1) == [(1, r) for r in range(8)]
    assert sorted(k for k in varied if k[0] == 5) == [(5, r) for r in range(3)]
    assert sorted(k for k in varied if k[0] == 10) == [(10, r) for r in range(6)]
    fixed = budget_subsets(y, [1, 2, 5, 10], 3, seed=0)  # the first three draws are the ones a fixed 3 gives
    assert all(np.array_equal(varied[k], fixed[k]) for k in fixed)


def test_the_crossed_interval_covers_when_the_draws_disagree():
    """Three draws of the labelled images that disagree (a between-draw spread of 12 points, as one label per class
    gives) on the same 200 test images: the crossed interval covers the true mean in about 90-95% of experiments; a
    bootstrap over the three draws and the images (what the verdict read before) covers it far less often."""
    from tldiag.training.efficiency import bootstrap_interval, crossed_interval

    rng = np.random.default_rng(0)
    hits, boot_hits = [], []
    for _ in range(300):
        p = np.clip(0.55 + rng.normal(0, 0.12, size=(3, 1)) + rng.normal(0, 0.2, size=(1, 200)), 0, 1)
        M = (rng.random((3, 200)) < p).astype(float)
        c = crossed_interval(M)
        hits.append(c.low <= 0.55 <= c.high)
        lo, hi = bootstrap_interval(M, n_draws=300, random_state=int(rng.integers(1 << 30)))
        boot_hits.append(lo <= 0.55 <= hi)
        assert c.n_draws == 3 and c.n_images == 200 and 2 <= c.df <= 2 + 199
    assert 0.88 <= np.mean(hits) <= 0.995  # 0.90 here (Welch's degrees of freedom from 3 draws are approximate)
    assert np.mean(boot_hits) < np.mean(hits) - 0.07  # 0.80 here


def test_the_crossed_interval_matches_its_formula():
    from tldiag.training.efficiency import crossed_interval

    M = np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 0]], dtype=float)
    c = crossed_interval(M)
    vr, vi = M.mean(1).var(ddof=1) / 3, M.mean(0).var(ddof=1) / 4
    df = (vr + vi) ** 2 / (vr ** 2 / 2 + vi ** 2 / 3)
    half = stats.t.ppf(0.975, df) * math.sqrt(vr + vi)
    assert (c.mean, c.df) == pytest.approx((M.mean(), df)) and c.high - c.mean == pytest.approx(half)
    one = crossed_interval(np.array([[1, 0, 1, 1]], dtype=float))  # one draw: the images' spread alone
    assert one.s_draws == 0 and one.df == 3
    with pytest.raises(TldiagError, match="at least one draw and one test image"):
        crossed_interval(np.zeros((0, 5)))


def test_the_test_set_takes_the_spare_labelled_images_and_never_a_pool_or_validation_image(monkeypatch):
    from tldiag import embed
    from tldiag.training.efficiency import prepare_experiment

    config = EfficiencyConfig(target="demo:digits?limit=20", device="cpu", test_per_class=30, test_max=250,
                              arms=("pixel-knn", "linear-probe"), budgets=(1,), include_all=False, repeats=1,
                              resolution=32)
    the_plan, rows, y, (tr, va, te), data = prepare_experiment(config, None)
    # the split's own 4 per class, and the spare images up to 30 per class, capped at 250 in all (25 a class)
    assert (the_plan.n_pool, the_plan.n_val, the_plan.n_test, the_plan.n_spare) == (120, 40, 250, 210)
    assert np.bincount(y[te]).tolist() == [25] * 10
    limited, spare = data.parts
    ids = lambda positions: {(limited.sample_ids + spare.sample_ids)[int(rows[p])] for p in positions}  # noqa: E731
    assert not ids(te) & (ids(tr) | ids(va)) and len(ids(te)) == 250
    assert not set(spare.sample_ids) & set(limited.sample_ids)  # none of the setup's 20 per class
    assert all(data[int(r)].size == limited[0].size for r in rows[te][-3:])
    assert any("spare labelled images" in n for n in the_plan.notes)
    # seeded: the same again, another seed another choice
    assert prepare_experiment(config, None)[4].parts[1].sample_ids == spare.sample_ids
    other = EfficiencyConfig(**{**config.to_dict(), "seed": 1, "arms": config.arms, "budgets": (1,)})
    assert prepare_experiment(other, None)[4].parts[1].sample_ids != spare.sample_ids
    # no limit, or a cap of 0: the split's own test set
    assert plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", test_per_class=0)).n_test == 40
    assert plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", test_max=40)).n_test == 40
    # the probe embeds the target once (cached) and only the spare images besides it
    seen = []
    real = embed.embed_dataset
    monkeypatch.setattr(embed, "embed_dataset", lambda model, ds, *a, **k: seen.append(len(ds)) or real(model, ds, *a,
                                                                                                          **k))
    result = run_experiment(config)
    assert seen == [200, 210] and result.n_test == 250
    assert all(len(r.correct) == 250 for r in result.runs)


# ----------------------------------------------------------------------------- readouts on known numbers
def test_t_interval_matches_scipy():
    values = [0.61, 0.7, 0.66, 0.72]
    mean, low, high = t_interval(values)
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx(ref)
    assert t_interval([0.5]) == (0.5, 0.5, 0.5)


def test_labels_to_reach_interpolates_on_a_log_scale():
    curve = ArmCurve("fine-tuned", (1, 2, 5, 10), (1.0, 2.0, 5.0, 10.0), (0.2, 0.4, 0.6, 0.8),
                     (0.2, 0.4, 0.6, 0.8), (0.2, 0.4, 0.6, 0.8), ((0.2,), (0.4,), (0.6,), (0.8,)))
    r = labels_to_reach(curve, 0.5)
    assert r.bound == "" and r.per_class == pytest.approx(math.sqrt(10))  # halfway from 2 to 5 in log space
    assert labels_to_reach(curve, 0.4).per_class == pytest.approx(2.0)
    assert labels_to_reach(curve, 0.1).bound == "≤" and labels_to_reach(curve, 0.1).per_class == 1.0
    never = labels_to_reach(curve, 0.9)
    assert never.bound == ">" and not never.reached and never.per_class == 10.0


def _result(accuracy: dict[str, dict[int, list[float]]], n_classes: int = 10) -> EfficiencyResult:
    runs = tuple(Run(arm=a, budget=b, repeat=r, n_train=b * n_classes, per_class=float(b), accuracy=v, macro_f1=v,
                     val_accuracy=v) for a, by in accuracy.items() for b, vs in by.items() for r, v in enumerate(vs))
    budgets = tuple(sorted({b for by in accuracy.values() for b in by}))
    return EfficiencyResult(EfficiencyConfig(arms=tuple(accuracy)), tuple(map(str, range(n_classes))), 300, 100, 100,
                            0.1, budgets, runs, {}, "", "cpu", 1.0)


def test_readouts_when_transfer_dominates():
    result = _result({
        "small-cnn": {1: [0.10, 0.12, 0.11], 10: [0.40, 0.42, 0.38], 100: [0.80, 0.79, 0.81]},
        "linear-probe": {1: [0.60, 0.62, 0.58], 10: [0.80, 0.81, 0.79], 100: [0.90, 0.91, 0.89]},
    })
    ro = readouts(result)
    assert ro.target_accuracy == pytest.approx(0.8)  # scratch's best mean, which transfer reaches too
    assert ro.reach["linear-probe"].per_class == pytest.approx(10.0)
    assert ro.reach["small-cnn"].per_class == pytest.approx(100.0)
    assert ro.labels_saved == pytest.approx(10.0) and ro.labels_saved_bound == ""
    assert ro.budget == 10 and ro.gain.gain == pytest.approx(0.4) and ro.gain.verdict == "transfer better"
    assert ro.gain.transfer_arm == "linear-probe" and ro.gain.scratch_arm == "small-cnn"
    assert not ro.negative_transfer and ro.evidence == () and ro.break_even is None
    assert any("does not catch up" in line for line in ro.summary)
    assert readouts(result, arm_curves=curves(result)) == ro
    custom = readouts(result, target_accuracy=0.6, budget=1)
    assert custom.reach["linear-probe"].bound == "≤" and custom.gain.gain == pytest.approx(0.49)
    with pytest.raises(TldiagError, match="budget=7"):
        readouts(result, budget=7)
    with pytest.raises(TldiagError, match="target_accuracy=1.5"):
        readouts(result, target_accuracy=1.5)


def test_readouts_find_the_break_even_and_flag_negative_transfer():
    result = _result({
        "small-cnn": {1: [0.20, 0.22, 0.18], 10: [0.60, 0.62, 0.58], 100: [0.95, 0.96, 0.94]},
        "scratch": {1: [0.10, 0.10, 0.10], 10: [0.10, 0.12, 0.11], 100: [0.30, 0.35, 0.25]},
        "fine-tuned": {1: [0.50, 0.52, 0.48], 10: [0.70, 0.72, 0.68], 100: [0.80, 0.81, 0.79]},
    })
    ro = readouts(result)
    assert ro.negative_transfer
    (ev,) = ro.evidence
    assert ev.budget == 100 and ev.scratch_arm == "small-cnn" and ev.verdict == "scratch better"
    assert ev.gain == pytest.approx(-0.15) and ev.high < 0
    # transfer − scratch is +0.1 at 10 and −0.15 at 100: the crossing is 40% of the way in log space
    assert ro.break_even == pytest.approx(10 ** 1.4) and ro.break_even_bound == ""
    assert any(line.startswith("Negative transfer: scratch beats transfer at 100") for line in ro.summary)
    tie = _result({"small-cnn": {1: [0.5, 0.6, 0.4], 5: [0.9, 0.7, 0.8]},
                   "linear-probe": {1: [0.6, 0.5, 0.7], 5: [0.8, 0.8, 0.8]}})
    ro = readouts(tie)
    assert ro.negative_transfer and ro.evidence[0].verdict == "tie"
    assert any(line.startswith("Negative-transfer flag: scratch is at or above transfer (within noise)")
               for line in ro.summary)


def test_readouts_say_when_no_scratch_arm_converged():
    from dataclasses import replace

    result = _result({"small-cnn": {1: [0.10, 0.11], 2: [0.10, 0.10]}, "linear-probe": {1: [0.6, 0.62], 2: [0.7, 0.7]}})
    starved = replace(result, runs=tuple(replace(r, converged=r.arm != "small-cnn") for r in result.runs))
    with pytest.raises(TldiagError, match=r"No scratch arm converged: every run of Scratch \(small CNN\) .*pixel-linear"):
        readouts(starved)


def test_result_round_trips_through_json_and_draws():
    result = _result({"small-cnn": {1: [0.2, 0.3, 0.25], 10: [0.5, 0.6, 0.55]},
                      "linear-probe": {1: [0.6, 0.62, 0.64], 10: [0.9, 0.9, 0.91]}})
    again = EfficiencyResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    fig = efficiency_figure(curves(result), chance=0.1, readouts=readouts(result))
    names = {t.name for t in fig.data if t.name}
    assert names == {"small-cnn", "linear-probe"}
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 2 and fig.layout.xaxis.type == "log"
    rows = result.table()
    assert len(rows) == 12 and set(rows["arm title"]) == {"Scratch (small CNN)", "Transfer, frozen (linear probe)"}


# ----------------------------------------------------------------------------- plans and bad input
def test_plan_caps_budgets_at_the_pool_and_resolves_the_profile():
    p = plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", device="cpu", test_per_class=0))
    assert (p.n_pool, p.n_val, p.n_test) == (120, 40, 40)
    assert p.budgets == (1, 2, 5, 10, 0) and p.pool_per_class == (12, 12)
    assert any("Budgets 20, 50, 100" in n for n in p.notes)
    assert p.config.profile == "cpu" and p.config.augment == "light"
    # the same architecture from scratch cannot be trained fairly on a CPU: it is left out, and the plan says so
    assert "scratch" not in p.schedules and "scratch" not in p.config.arms
    assert any("same-architecture scratch arm is left out on a CPU" in n for n in p.notes)
    # every trained arm gets the same effort: learning-rate search, patience, minimum epochs, cap in steps
    small, fine = p.schedules["small-cnn"], p.schedules["fine-tuned"]
    assert small.lr_grid == fine.lr_grid == (0.3, 1.0, 3.0) and small.patience == fine.patience
    assert small.max_steps == fine.max_steps and small.min_epochs == fine.min_epochs
    # on a CPU fine-tuning trains at the team's budget only (the whole pool here, no budget set), the small CNN
    # at every budget; each arm: its budgets' draws (8 at 1 label per class, 4 at 2, 3 from 3 on, 6 at the team's
    # budget: the whole pool here) + 2 more learning rates
    assert fine.at_budget_only and not small.at_budget_only and "at your budget only" in fine.summary
    assert p.budgets_of("small-cnn") == (1, 2, 5, 10, 0) and p.budgets_of("fine-tuned") == (0,)
    assert p.n_runs == (8 + 4 + 3 + 3 + 6 + 2) + (6 + 2)
    at7 = plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", device="cpu", budget=7))
    assert at7.budgets_of("fine-tuned") == (7,) and at7.n_runs == (8 + 4 + 3 + 6 + 3 + 3 + 2) + (6 + 2)
    full = plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", device="cpu", profile="full"))
    assert full.budgets_of("fine-tuned") == full.budgets_of("scratch") == (1, 2, 5, 10, 0)
    custom = plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", device="cpu", profile="full",
                                              arms=("small-cnn", "linear-probe"), schedules={"small-cnn": {"epochs": 2}}))
    assert custom.schedules["small-cnn"].epochs == 2 and set(custom.schedules) == {"small-cnn"}
    assert custom.n_runs == 8 + 4 + 3 + 3 + 6 + 2
    # the team's budget always runs, and the readouts answer for it
    b = plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", device="cpu", budgets=(1, 2), budget=7,
                                         include_all=False))
    assert b.budgets == (1, 2, 7) and b.reference == 7
    big = plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", device="cpu", budgets=(1,), budget=15,
                                           include_all=False))
    assert big.budgets == (1, 0) and big.reference == 0 and any("Your budget of 15" in n for n in big.notes)


def test_schedule_caps_shorten_every_trained_arm_and_early_stopping_follows():
    assert schedule_caps(("small-cnn", "linear-probe")) == {} == schedule_caps(("small-cnn",), epochs=0)
    caps = schedule_caps(("small-cnn", "fine-tuned", "pixel-knn"), epochs=2, epoch_images=32)
    assert caps == {"small-cnn": {"epochs": 2, "min_epoch_images": 32}, "fine-tuned": {"epochs": 2, "min_epoch_images": 32}}
    p = plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", device="cpu",
                                         arms=("small-cnn", "fine-tuned", "pixel-knn", "linear-probe"), schedules=caps))
    for arm in ("small-cnn", "fine-tuned"):
        s = p.schedules[arm]  # the cpu profile's minimum of 4 epochs would outlast the cap: it is lowered to 2
        assert (s.epochs, s.min_epochs, s.min_epoch_images) == (2, 2, 32), (arm, s)
        assert s.summary.split(" (")[0].endswith("≤ 2 epochs of ≥ 32 images")
    kept = plan_experiment(EfficiencyConfig(target="demo:digits?limit=20", device="cpu", arms=("small-cnn", "linear-probe"),
                                            schedules={"small-cnn": {"epochs": 20}}))
    assert kept.schedules["small-cnn"].min_epochs == plan_experiment(
        EfficiencyConfig(target="demo:digits?limit=20", device="cpu")).schedules["small-cnn"].min_epochs
    with pytest.raises(TldiagError, match=r"epochs=-1 must be a whole number from 1 to 1000 \(0 or none keeps"):
        schedule_caps(("small-cnn",), epochs=-1)
    with pytest.raises(TldiagError, match=r"epoch_images=2.5"):
        schedule_caps(("small-cnn",), epoch_images=2.5)


@pytest.mark.parametrize("change, match", [
    (dict(arms=("small-cnn", "scratch")), "compare nothing"),
    (dict(arms=("nope",)), "Unknown or no arms"),
    (dict(model="random:efficientnet-lite0"), "no transfer to measure"),
    (dict(repeats=0), "repeats=0"),
    (dict(budgets=(0,)), "budget=0"),
    (dict(profile="fast"), "Unknown profile 'fast'"),
    (dict(budget=0), "budget=0"),
    (dict(arms=("scratch", "linear-probe"), device="cpu"), "no scratch arm to compare with on this cpu profile"),
    (dict(schedules={"linear-probe": {"epochs": 2}}), "only scratch, small-cnn, fine-tuned train"),
    (dict(schedules={"small-cnn": {"epoch": 2}}), r"Unknown settings \['epoch'\]"),
    (dict(target="demo:digits?limit=2"), "fewer than 3 labelled images"),
])
def test_bad_configurations_are_refused_with_the_value(change, match):
    with pytest.raises(TldiagError, match=match):
        plan_experiment(EfficiencyConfig(**{"target": "demo:digits?limit=20", **change}))


def test_unlabelled_target_is_refused(make_folder):
    root = make_folder(flat=12)
    with pytest.raises(TldiagError, match="the data-efficiency experiment needs labels"):
        plan_experiment(EfficiencyConfig(target=f"folder:{root}"))


def test_small_cnn_is_a_model():
    m = small_cnn(7, seed=3)
    out = m.extract(torch.zeros(2, 3, 32, 32), ["features.2", "pre_logits", "logits"])
    assert out["features.2"].shape == (2, 64) and out["logits"].shape == (2, 7)
    assert 70_000 < m.n_parameters < 80_000 and not m.pretrained
    same = small_cnn(7, seed=3).module.state_dict()
    assert all(torch.equal(v, same[k]) for k, v in m.module.state_dict().items())


# ----------------------------------------------------------------------------- real experiments
@pytest.mark.slow
def test_a_starved_scratch_arm_does_not_vote_and_the_pixel_baselines_stand_in():
    """A small CNN given two short epochs stays at chance: its runs are flagged as not converged and left out of the
    comparison (a stunted baseline would flatter transfer), and the cheap pixel baselines carry the scratch side."""
    config = EfficiencyConfig(target="demo:digits?limit=20", resolution=64,
                              arms=("small-cnn", "pixel-linear", "pixel-knn", "linear-probe"), budgets=(1, 2), repeats=3,
                              device="cpu", schedules={"small-cnn": {"epochs": 2, "min_epochs": 2, "min_epoch_images": 32,
                                                                     "lr_grid": (1.0,)}})
    seen = []
    result = run_experiment(config, on_run=seen.append)
    # more draws of the labelled images at small budgets (8 at one label per class, 4 at two) and at the budget the
    # readouts answer for (6 of the whole pool here: no budget is set)
    assert [config.draws(b) for b in (1, 2, 0)] == [8, 4, 6]
    assert len(seen) == len(result.runs) == 4 * (8 + 4 + 6)
    stuck = [r for r in result.runs if r.arm == "small-cnn" and not r.converged]
    assert stuck and all(r.val_accuracy <= 0.25 for r in stuck)
    assert any(n.startswith("Did not converge") and "Scratch (small CNN)" in n for n in result.notes)
    cs = curves(result)
    assert not set(cs.get("small-cnn", ArmCurve("small-cnn", (), (), (), (), (), ())).budgets) & {r.budget for r in stuck}
    ro = readouts(result)
    assert {c.scratch_arm for c in ro.comparisons} <= {"pixel-linear", "pixel-knn", "small-cnn"}
    assert all(c.scratch_arm != "small-cnn" or c.budget not in {r.budget for r in stuck} for c in ro.comparisons)
    probe = cs["linear-probe"]
    assert probe.mean[0] > 0.4 and probe.mean[-1] >= probe.mean[0] - 0.05
    # the fitted arms learn from the budget only: with one label per class they fit 10 images
    assert {r.n_train for r in result.runs if r.budget == 1} == {10}
    assert all(r.detail.startswith("16px RGB, k=") for r in result.runs if r.arm == "pixel-knn")


@pytest.mark.slow
def test_useless_pretrained_features_raise_the_negative_transfer_flag(tmp_path):
    """A 'pretrained' model whose weights are all zero gives constant features: the transfer arms sit at chance
    while a small CNN learns the digits."""
    from tldiag.models import load_model

    state = {k: torch.zeros_like(v) for k, v in load_model("efficientnet-lite0").module.state_dict().items()}
    path = tmp_path / "zeros.pt"
    torch.save(state, path)
    config = EfficiencyConfig(model=f"checkpoint:{path}?arch=efficientnet-lite0", target="demo:printed-digits?limit=30",
                              resolution=32, arms=("small-cnn", "linear-probe", "fine-tuned"), budgets=(2,),
                              repeats=3, device="cpu", schedules={**FAST, "fine-tuned": {"epochs": 1,
                                                                                           "min_epoch_images": 32}})
    result = run_experiment(config)
    cs = curves(result)
    assert max(cs["linear-probe"].mean) <= 0.2 and max(cs["fine-tuned"].mean) <= 0.2
    assert cs["small-cnn"].mean[-1] > 0.5
    ro = readouts(result)
    assert ro.negative_transfer
    assert any(e.verdict == "scratch better" and e.budget == 0 for e in ro.evidence)
    assert ro.break_even is not None
    assert any(line.startswith("Negative transfer") for line in ro.summary)
    assert {r.detail.split(", lr")[0] for r in result.runs if r.arm == "fine-tuned"} == {"partial, 4 stages frozen"}
    # the fine-tune never left chance: flagged, but it still counts (it is what transfer gave)
    assert not any(r.converged for r in result.runs if r.arm == "fine-tuned")


@pytest.mark.slow
def test_a_cancelled_job_keeps_its_finished_runs_and_a_new_launch_reuses_them(tldiag_env):
    from tldiag.training.jobs import launch

    config = EfficiencyConfig(target="demo:digits?limit=12", resolution=32, arms=("small-cnn", "linear-probe"),
                              budgets=(1, 2), repeats=3, device="cpu", schedules=QUICK)
    store = JobStore()
    job = launch("efficiency", config, store=store)
    deadline = time.time() + 240
    while len([m for m in store.metrics(job.id) if m["arm"] == "small-cnn"]) < 2 and time.time() < deadline:
        assert store.get(job.id).active, store.get(job.id).error
        time.sleep(0.2)
    store.cancel(job.id)
    job = store.get(job.id)
    assert job.status == "cancelled" and job.result is None
    files = list((tldiag_env / "efficiency").rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")], "no half-written run"
    stored = [json.loads(f.read_text()) for f in files if f.suffix == ".json"]
    assert 2 <= len(stored) < 9 and all(r["arm"] == "small-cnn" for r in stored)
    partial = partial_result(job.config, store.metrics(job.id))
    assert partial is not None and len(partial.runs) == len(store.metrics(job.id))
    again = store.wait(launch("efficiency", config, store=store).id, timeout=300)
    assert again.status == "done", again.error
    result = EfficiencyResult.from_dict(again.result)
    reused = [r for r in result.runs if r.reused]
    assert len(reused) == len(stored) and len(result.runs) == (8 + 4 + 6) * 2  # budgets 1, 2, all: 8, 4, 6 draws
    assert any(f"{len(stored)} trained runs were read" in n for n in result.notes)


def test_a_damaged_image_in_the_target_is_dropped_before_the_runs_split(make_folder):
    """Opening reads headers only: an experiment decodes the target once before it splits, so a truncated file is
    listed and left out instead of failing a run half-way."""
    from tldiag.data import load_dataset

    root = make_folder({"a": 10, "b": 10})
    good = (root / "a" / "000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    dataset = load_dataset(f"folder:{root}")
    assert len(dataset) == 21
    result = run_experiment(EfficiencyConfig(model="efficientnet-lite0", target=f"folder:{root}", resolution=32,
                                             arms=("pixel-knn", "linear-probe"), budgets=(1,), repeats=1,
                                             device="cpu"), dataset=dataset)
    assert len(dataset) == 20 and dataset.verified and list(dataset.undecodable) == [str(root / "a" / "truncated.png")]
    assert result.n_pool + result.n_val + result.n_test == 20
