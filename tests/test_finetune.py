"""Fine-tuning: configuration checks, what each strategy trains, a real (tiny) run, and the job around it."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tldiag.data import load_dataset
from tldiag.errors import DatasetError, SpecError, TldiagError
from tldiag.training.finetune import (FinetuneConfig, FinetuneResult, auto_augmentation, finetune, plan, recommend,
                                      scratch_config)
from tldiag.training.jobs import JobStore, launch
from tldiag.training.loop import _l2sp, _param_groups, replace_head, stages_of
from tldiag.models import architecture_id, load_model, register_model
from tldiag.probes import stratified_splits

TINY = dict(model="random:timm:test_resnet", target="demo:digits?limit=6", resolution=32, strategy="full",
            epochs=2, batch_size=16, num_workers=0, warmup_epochs=0.5)


@pytest.mark.parametrize("changes, match", [
    ({"strategy": "finetune-all"}, "Unknown fine-tuning strategy 'finetune-all'"),
    ({"lr": 0.0}, r"lr=0.0 must be a number in \(0, 10\]"),
    ({"lr": -1e-3}, "lr=-0.001"),
    ({"lr": float("nan")}, "lr=nan"),
    ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
    ({"epochs": 0}, "epochs=0 must be a whole number"),
    ({"strategy": "freeze-unfreeze", "epochs": 2, "head_epochs": 2}, "head_epochs=2 leaves no epoch"),
    ({"model": "random:efficientnet-lite0", "strategy": "l2-sp"}, "L2-SP pulls toward the pretrained weights"),
    ({"augment": "mixup"}, "Unknown augmentation 'mixup'"),
    ({"target": "demo:nope"}, "Unknown demo dataset 'nope'"),
])
def test_bad_configuration_names_the_value(changes, match):
    with pytest.raises(SpecError, match=match):
        FinetuneConfig(**{**TINY, **changes}).validate()


def test_unknown_settings_are_refused_when_read_back():
    with pytest.raises(SpecError, match=r"Unknown fine-tuning settings \['learning_rate'\]"):
        FinetuneConfig.from_dict({"learning_rate": 0.1})


def test_a_target_without_labels_is_refused(make_folder, tmp_path):
    folder = make_folder(flat=9)
    with pytest.raises(DatasetError, match="has a label, and fine-tuning needs labels"):
        plan(FinetuneConfig(**{**TINY, "target": f"folder:{folder}"}))
    small = make_folder({"a": 5, "b": 2}, name="small")
    with pytest.raises(DatasetError, match=r"fewer than 3 labelled images: 'b' \(2\)"):
        plan(FinetuneConfig(**{**TINY, "target": f"folder:{small}"}))


def test_recommendation_follows_the_amount_of_data():
    few, some, many = recommend(60, 5), recommend(600, 5), recommend(20_000, 5)
    assert (few.strategy, few.frozen_stages) == ("partial", 4) and "under 100" in few.reasons[0]
    assert some.strategy == "freeze-unfreeze" and many.strategy == "full"
    assert recommend(60, 5, pretrained=False).strategy == "full"
    assert recommend(60, 5, pretrained=False).backbone_lr_mult == 1.0


@pytest.mark.parametrize("spec, policy", [("demo:digits", "light"), ("torchvision:MNIST", "light"),
                                          ("torchvision:GTSRB", "light"), ("torchvision:CIFAR10", "flip"),
                                          ("torchvision:EuroSAT", "aerial"), ("folder:/data/x", "light")])
def test_auto_augmentation_never_mirrors_digits_or_unknown_folders(spec, policy):
    assert auto_augmentation(spec)[0] == policy


def test_plan_resolves_defaults_and_counts_what_trains():
    p = plan(FinetuneConfig(**{**TINY, "strategy": "partial"}))
    assert [s.name for s in p.stages] == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert p.config.frozen_stages == 4 and p.config.augment == "light" and p.config.device == "cpu"
    assert (p.n_train, p.n_val, p.n_test) == (40, 10, 10) and len(p.classes) == 10
    linear = plan(FinetuneConfig(**{**TINY, "strategy": "linear"}))
    assert linear.trainable == 96 * 10 + 10  # the new head only
    assert plan(FinetuneConfig(**TINY)).trainable == linear.total
    with pytest.raises(SpecError, match="frozen_stages=9 but random:timm:test_resnet has 5 stages"):
        plan(FinetuneConfig(**{**TINY, "strategy": "partial", "frozen_stages": 9}))


@pytest.mark.parametrize("strategy, final_phase, trains", [
    ("linear", True, {-1}), ("partial", True, {-1, 3, 4, 5}), ("full", True, {-1, 0, 1, 2, 3, 4, 5}),
    ("freeze-unfreeze", False, {-1}), ("freeze-unfreeze", True, {-1, 0, 1, 2, 3, 4, 5}),
    ("l2-sp", True, {-1, 0, 1, 2, 3, 4, 5}),
])
def test_each_strategy_trains_what_it_says(strategy, final_phase, trains):
    model = load_model("efficientnet-lite0", resolution=64)
    head = replace_head(model, 3, torch.Generator().manual_seed(0))
    stages, stage_of = stages_of(model, head)
    config = FinetuneConfig(model="efficientnet-lite0", strategy=strategy, frozen_stages=3)
    groups = _param_groups(model.module, stage_of, config, final_phase=final_phase)
    trained = {stage_of[n] for n, p in model.module.named_parameters() if p.requires_grad}
    assert trained == trains
    lrs = {g["name"].split()[0]: g["lr"] for g in groups}
    if strategy in ("full", "l2-sp", "partial"):
        assert lrs == {"head": 1e-3, "backbone": pytest.approx(1e-4)}  # discriminative rates
    if strategy == "freeze-unfreeze" and final_phase:
        assert lrs == {"head": pytest.approx(1e-4), "backbone": pytest.approx(1e-4)}  # everything at a small rate
    if strategy == "l2-sp":
        assert all(g["weight_decay"] == 0 for g in groups)  # the penalty replaces weight decay


def test_l2sp_penalty_is_the_squared_distance_to_the_pretrained_weights():
    model = load_model("random:timm:test_resnet", resolution=32)
    head = replace_head(model, 4, torch.Generator().manual_seed(0))
    _, stage_of = stages_of(model, head)
    anchor = {n: p.detach().clone() for n, p in model.module.named_parameters() if stage_of[n] != -1}
    config = FinetuneConfig(model="efficientnet-lite0", strategy="l2-sp", l2sp_alpha=0.3, l2sp_beta=0.0)
    assert float(_l2sp(model.module, anchor, stage_of, config).detach()) == 0.0
    with torch.no_grad():
        model.module.get_parameter("layer1.0.conv1.weight").add_(0.5)
    n = model.module.get_parameter("layer1.0.conv1.weight").numel()
    assert float(_l2sp(model.module, anchor, stage_of, config).detach()) == pytest.approx(0.5 * 0.3 * 0.25 * n)


def test_a_tiny_finetune_runs_on_the_probe_split_and_saves_a_loadable_checkpoint(tmp_path):
    rows = []
    result = finetune(FinetuneConfig(**TINY), tmp_path / "job", on_epoch=rows.append)
    assert [r["epoch"] for r in result.history] == [1, 2] == [r["epoch"] for r in rows]
    assert all(math.isfinite(r["train_loss"]) and 0 <= r["val_accuracy"] <= 1 for r in rows)
    assert (result.n_train, result.n_val, result.n_test) == (40, 10, 10)
    assert 0.0 <= result.test_accuracy <= 1.0 and result.best_epoch in (1, 2)
    assert set(result.cka) == {"act1", "layer1", "layer2", "layer3", "layer4", "pre_logits"}
    assert all(0.0 <= v <= 1.0 + 1e-6 for v in result.cka.values())
    assert result.linear_probe is None  # random init: nothing pretrained to probe
    # the test images are the probe's first split, so the two accuracies are comparable
    y = np.unique(load_dataset(TINY["target"]).labels, return_inverse=True)[1]
    assert len(stratified_splits(y, 3, random_state=0)[0][2]) == result.n_test
    assert FinetuneResult.from_dict(result.to_dict()) == result
    model_id = register_model("tiny-digits", result.checkpoint, architecture_id(TINY["model"]))
    tuned = load_model(model_id, resolution=32)
    assert tuned.id == "finetuned:tiny-digits" and tuned.num_classes == 10
    out = tuned.extract(torch.zeros(2, 3, 32, 32), ["logits", "pre_logits"])
    assert out["logits"].shape == (2, 10)


def test_same_seed_same_run(tmp_path):
    a = finetune(FinetuneConfig(**{**TINY, "epochs": 1}), tmp_path / "a")
    b = finetune(FinetuneConfig(**{**TINY, "epochs": 1}), tmp_path / "b")
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    assert a.history[0]["val_loss"] == b.history[0]["val_loss"]


def test_scratch_baseline_is_the_random_twin_trained_fully():
    s = scratch_config(FinetuneConfig(model="efficientnet-lite0", strategy="partial", frozen_stages=2))
    assert (s.model, s.strategy, s.backbone_lr_mult, s.frozen_stages) == ("random:efficientnet-lite0", "full", 1.0, None)


@pytest.mark.slow
def test_a_finetune_job_end_to_end(tmp_path):
    store = JobStore()
    job = launch("finetune", FinetuneConfig(**{**TINY, "epochs": 3}), store=store, name="tiny")
    done = store.wait(job.id, timeout=300, poll_s=0.2)
    assert done.status == "done", done.error
    rows = store.metrics(job.id)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all("val_accuracy" in r for r in rows)
    # the epoch rows were stored in order while the job ran (that progress moves while a job runs is
    # test_jobs.py's, with a job that lasts long enough: polling for a fraction in (0, 1) races a run this small,
    # which can finish between two polls)
    times = [r["time"] for r in rows]
    assert done.started <= times[0] < times[1] < times[2] <= done.finished
    result = FinetuneResult.from_dict(done.result)
    assert result.checkpoint.startswith(str(done.folder)) and torch.load(result.checkpoint, weights_only=True)
    assert "epoch 3" in done.log_tail(50)


@pytest.mark.parametrize("changes, error", [
    ({"strategy": "everything"}, SpecError), ({"lr": 0}, SpecError), ({"target": "folder:{flat}"}, DatasetError),
])
def test_bad_configuration_is_refused_before_any_job_starts(make_folder, changes, error):
    flat = make_folder(flat=6)
    changes = {k: v.format(flat=flat) if isinstance(v, str) else v for k, v in changes.items()}
    store = JobStore()
    with pytest.raises(error):
        launch("finetune", FinetuneConfig(**{**TINY, **changes}), store=store)
    assert store.list() == [] and not [p for p in store.root.iterdir() if p.is_dir()]


def test_torchscript_models_cannot_be_finetuned(tmp_path):
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                                                  torch.nn.Flatten(), torch.nn.Linear(4, 2)))
    path = tmp_path / "scripted.pt"
    module.save(str(path))
    with pytest.raises(TldiagError, match="TorchScript file, which cannot be fine-tuned"):
        plan(FinetuneConfig(**{**TINY, "model": f"checkpoint:{path}"}))


@pytest.mark.gpu
def test_finetune_on_the_gpu_with_mixed_precision(tmp_path):
    result = finetune(FinetuneConfig(**{**TINY, "device": "cuda"}), tmp_path / "gpu")
    assert result.device.startswith("cuda") and all(math.isfinite(r["train_loss"]) for r in result.history)
    state = torch.load(result.checkpoint, weights_only=True)
    assert all(t.device.type == "cpu" for t in state.values())  # loadable anywhere
