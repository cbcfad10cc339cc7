"""Fine-tuning a pretrained backbone on the target: five strategies, one training loop, an honest comparison.

Strategies (:data:`STRATEGIES`):

``linear``           the new classifier only; the backbone is frozen (BatchNorm statistics too).
``partial``          freeze the bottom ``frozen_stages`` stages (the model's taps, stem included in the first),
                     train the rest and the new classifier.
``full``             every layer, with discriminative learning rates: the backbone at ``lr * backbone_lr_mult``.
``freeze-unfreeze``  the new classifier alone for ``head_epochs``, then every layer at the small rate
                     ``lr * backbone_lr_mult`` (the default recipe of the background texts).
``l2-sp``            every layer, pulled toward the pretrained weights by ``l2sp_alpha/2 ‖w − w₀‖²`` instead of
                     weight decay, and ``l2sp_beta/2 ‖w‖²`` on the new classifier (Li et al. 2018).

The recipe: AdamW, a linear warm-up then a cosine decay per step, optional label smoothing, augmentations that
keep labels (:func:`auto_augmentation`: no mirror images for digits or text), early stopping on validation
accuracy (ties: lower validation loss) with the best weights restored, automatic mixed precision on a GPU,
and seeds for the split, the head's initialisation, shuffling and augmentation.

The split is the first split of :func:`tldiag.probes.stratified_splits` with the same seed (60/20/20 per
class): the one the Probes page scores first, so the fine-tuned test accuracy and the linear probe's are
measured on the same test images. The result also holds, per tap, how much fine-tuning changed the features
(``1 - linear CKA`` between the pretrained and the fine-tuned model on target images).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .. import _config
from ..data import ImageDataset, load_dataset, parse_dataset_spec
from ..forward import default_num_workers
from ..progress import ProgressFn
from ..errors import SpecError, TldiagError
from ..models import DEFAULT_MODEL, LOGITS, Model, load_model, parse_model_id, random_init_id
from ..validation import check_int, check_specs
from .loop import AUGMENTATIONS, STRATEGIES, Stage, TrainConfig, fit, head_name, labelled_split, save_state, score_test, stages_of, trains

STRATEGY_TITLES = {
    "linear": "Linear probe (new head only)",
    "partial": "Partial (freeze the bottom stages)",
    "full": "Full, discriminative learning rates",
    "freeze-unfreeze": "Freeze, then unfreeze (head first)",
    "l2-sp": "Full with L2-SP (stay near the pretrained weights)",
}


def strategy_title(config: "FinetuneConfig") -> str:
    """How a run's strategy reads in lists: full training at one rate (from scratch) is not "discriminative"."""
    if config.strategy == "full" and config.backbone_lr_mult == 1.0:
        return "Full, every layer at one rate"
    return STRATEGY_TITLES[config.strategy]


AUGMENTATION_TITLES = {
    "none": "none (resize and centre-crop only)",
    "light": "light: random crops of 80-100% of the image, rotations up to 10°, brightness and contrast",
    "flip": "light + horizontal mirror images",
    "aerial": "light + horizontal and vertical mirror images and 90° rotations",
}
_TEXT_LIKE = {"MNIST", "KMNIST", "EMNIST", "QMNIST", "SVHN", "USPS", "SEMEION", "RenderedSST2", "GTSRB"}
_OVERHEAD = {"EuroSAT", "PCAM"}
FEW_LABELS = 100
MANY_LABELS = 10_000
MAX_CKA_IMAGES = 2000


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """One fine-tuning run, the job's record (every field JSON-serialisable): the model, the data and the schedule (:class:`~tldiag.training.loop.TrainConfig`, whose
    fields it adds these to).

    Attributes:
        model: Model id to start from (see :mod:`tldiag.models`).
        target: Target dataset spec (labelled), with its per-class ``limit`` if any.
        source: Source dataset spec, kept for the record and for comparisons with the other pages.
        resolution: Input size in pixels; None keeps the weights' own.
    """

    model: str = DEFAULT_MODEL
    target: str = "demo:printed-digits?limit=50"
    source: str | None = None
    resolution: int | None = 128

    def validate(self) -> "FinetuneConfig":
        """The run checked (its schedule, its model and its data): raises :class:`~tldiag.errors.SpecError` naming
        the bad value and the fix."""
        super().validate()
        if self.resolution is not None:
            check_int(self.resolution, "resolution", minimum=16, maximum=1024)
        spec = parse_model_id(self.model)
        if spec.kind == "random" and self.strategy == "l2-sp":
            raise SpecError(f"L2-SP pulls toward the pretrained weights, and {self.model} has none (random init); "
                            "use strategy 'full' to train it from scratch.")
        check_specs(self.target, self.source, self.device)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Every field, the model and the data first (how a job's record reads)."""
        d = asdict(self)
        return {**{k: d.pop(k) for k in ("model", "target", "source", "resolution")}, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FinetuneConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"Unknown fine-tuning settings {unknown}; valid: {', '.join(sorted(known))}.")
        return cls(**dict(d))


# ----------------------------------------------------------------------------- defaults and their reasons
@dataclass(frozen=True)
class Recommendation:
    """The default strategy for an amount of target data, with the reasons shown to the user."""

    strategy: str
    frozen_stages: int | None
    backbone_lr_mult: float
    reasons: tuple[str, ...]

    def apply(self, config: FinetuneConfig) -> FinetuneConfig:
        return replace(config, strategy=self.strategy, frozen_stages=self.frozen_stages,
                       backbone_lr_mult=self.backbone_lr_mult)


def recommend(n_train: int, n_stages: int, *, pretrained: bool = True) -> Recommendation:
    """The background's guidance on how much to fine-tune for ``n_train`` training labels.

    Under ~100 labels only the last stage and a new head train (deeper layers would overfit); up to ~10,000
    the head trains first and then everything at a small rate (freeze-then-unfreeze); beyond that, every layer
    with discriminative learning rates. A random-init model trains every layer at one rate.
    """
    if not pretrained:
        return Recommendation("full", None, 1.0, (
            "The model has random weights: there is nothing pretrained to protect, so every layer trains at the "
            "same rate (training from scratch, the baseline transfer must beat).",))
    if n_train < FEW_LABELS:
        return Recommendation("partial", max(n_stages - 1, 0), 0.1, (
            f"{n_train} training labels (fewer than {FEW_LABELS}): only the last stage and a new head train. With "
            "this little data the deeper layers would overfit (background: \"with very little data (under 100 "
            "examples), only train the final 1-2 layers\").",))
    if n_train < MANY_LABELS:
        return Recommendation("freeze-unfreeze", None, 0.1, (
            f"{n_train} training labels: the default recipe. The new head trains alone first, so its random "
            "initial gradients do not disturb the pretrained features; then every layer trains at a 10x smaller "
            "learning rate (background: \"freeze the backbone for the first few epochs, then unfreeze with a tiny "
            "learning rate\").",))
    return Recommendation("full", None, 0.1, (
        f"{n_train} training labels (at least {MANY_LABELS:,}): enough to adapt every layer. The backbone learns "
        "10x slower than the new head (discriminative learning rates), which keeps the general early features.",))


def auto_augmentation(target: str) -> tuple[str, str]:
    """The augmentation that keeps the target's labels, and why: no mirror images where they change the meaning
    (digits, text, traffic signs), every flip and right-angle rotation for overhead imagery, a horizontal
    mirror for natural photos. Folders are unknown, so they get no mirror images."""
    spec = parse_dataset_spec(target)
    if spec.kind == "demo" or (spec.kind == "torchvision" and spec.name in _TEXT_LIKE):
        return "light", (f"{spec.name} holds digits, characters or signs: a mirror image can change the label "
                         "(a mirrored 2 is not a 2), so no flips; small crops and rotations keep the meaning.")
    if spec.kind == "torchvision" and spec.name in _OVERHEAD:
        return "aerial", (f"{spec.name} is overhead imagery with no up or left: flips and right-angle rotations "
                          "keep the label.")
    if spec.kind == "torchvision":
        return "flip", (f"{spec.name} holds photos of objects or scenes, which stay what they are when mirrored "
                        "left to right.")
    return "light", ("tldiag cannot tell whether mirroring changes a folder's labels (text, digits, left/right "
                     "signs), so no flips; choose 'flip' if your classes survive a mirror image.")


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    """What a configuration will do, known before anything trains: shown before a launch, checked by it.

    Attributes:
        config: The configuration with ``device``, ``augment`` and ``frozen_stages`` resolved.
        classes: Target class names.
        n_train, n_val, n_test: Images in each part of the split.
        stages: The backbone's stages, bottom to top.
        trainable: Parameters that train (in the second phase for freeze-unfreeze).
        total: Parameters of the model with the new head.
        recommendation: The default for this amount of data, and why.
        augment_reason: Why ``auto`` chose its augmentation (empty when chosen by hand).
        notes: Anything else the user should know (unlabelled images left out).
    """

    config: FinetuneConfig
    classes: tuple[str, ...]
    n_train: int
    n_val: int
    n_test: int
    stages: tuple[Stage, ...]
    trainable: int
    total: int
    recommendation: Recommendation
    augment_reason: str
    notes: tuple[str, ...] = ()



def plan(config: FinetuneConfig, *, model: Model | None = None, dataset: ImageDataset | None = None) -> Plan:
    """Check a configuration against its model and data, and resolve its defaults, without training.

    Raises a :class:`TldiagError` for anything that would make the job fail: an unknown strategy, a learning
    rate <= 0, weights that are not available, a target without labels, ``frozen_stages`` out of range.

    Args:
        config: The run.
        model: The loaded model of ``config.model`` at ``config.resolution`` (loaded when None).
        dataset: The opened ``config.target`` (opened when None).
    """
    return _prepare(config, model, dataset)[0]


def _prepare(config: FinetuneConfig, model: Model | None, dataset: ImageDataset | None
             ) -> tuple[Plan, np.ndarray, np.ndarray, tuple]:
    """:func:`plan`, plus what it found on the way: the labelled rows, their labels and the split."""
    config = config.validate()
    model = model or load_model(config.model, resolution=config.resolution)
    if model.backend == "torchscript":
        raise TldiagError(f"{model.id} is a TorchScript file, which cannot be fine-tuned; save a state dict "
                          "(torch.save(model.state_dict(), path)) and use checkpoint:<path>?arch=<id>.")
    dataset = dataset or load_dataset(config.target)
    rows, y, (tr, va, te), names = labelled_split(dataset, config.seed)
    head = head_name(model.module, model.backend)
    stages, stage_of = stages_of(model, head)
    if config.frozen_stages is not None and config.frozen_stages > len(stages):
        raise SpecError(f"frozen_stages={config.frozen_stages} but {model.id} has {len(stages)} stages "
                        f"({', '.join(s.name for s in stages)}); use 0 to {len(stages)}.")
    rec = recommend(len(tr), len(stages), pretrained=model.pretrained)
    augment, reason = (auto_augmentation(config.target) if config.augment == "auto" else (config.augment, ""))
    frozen = config.frozen_stages
    if config.strategy == "partial" and frozen is None:
        frozen = max(len(stages) - 1, 0)
    device = config.device or _config.device_name()
    resolved = replace(config, augment=augment, frozen_stages=frozen, device=device)
    n_head = sum(p.numel() for n, p in model.module.get_submodule(head).named_parameters())
    in_features = _head_in_features(model.module.get_submodule(head))
    new_head = in_features * len(names) + len(names) if in_features else n_head
    backbone = {n: p.numel() for n, p in model.module.named_parameters() if stage_of.get(n, 0) != -1}
    trainable = new_head + sum(k for n, k in backbone.items() if trains(resolved, stage_of[n], final_phase=True))
    notes = ()
    if len(rows) < len(dataset):
        notes = (f"{len(dataset) - len(rows)} of {len(dataset)} target images have no label and are left out.",)
    the_plan = Plan(resolved, names, len(tr), len(va), len(te), tuple(stages), trainable,
                    new_head + sum(backbone.values()), rec, reason, notes)
    return the_plan, rows, y, (tr, va, te)


def _head_in_features(head: nn.Module) -> int | None:
    if isinstance(head, nn.Linear):
        return head.in_features
    if isinstance(head, nn.Conv2d):
        return head.in_channels
    return None


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run measured.

    Attributes:
        config: The resolved configuration.
        classes: Target class names (the new head's outputs, in order).
        n_train, n_val, n_test: Images in each part of the split.
        test_accuracy, test_f1: Of the best weights, on the test part (never used for a choice).
        val_accuracy: The best validation accuracy (which picked the weights).
        best_epoch: The epoch (1-based) of the best weights.
        epochs_run: Epochs trained before the end or the early stop.
        stopped_early: Whether early stopping ended it.
        history: One row per epoch: epoch, phase, train/val loss and accuracy, learning rates, seconds.
        linear_probe: The linear probe of the frozen pretrained features on the same split: ``tap``,
            ``accuracy``, ``macro_f1`` (the best tap), or None when it could not be computed.
        cka: Tap -> linear CKA between pretrained and fine-tuned features on target images (1 = unchanged).
        checkpoint: Path of the best weights (a state dict, loadable as ``checkpoint:<path>?arch=<model>``).
        trainable, total: Parameters trained and in all.
        seconds: Wall time of training and evaluation.
        device: Where it ran.
        reasons: Why the defaults are what they are.
    """

    config: FinetuneConfig
    classes: tuple[str, ...]
    n_train: int
    n_val: int
    n_test: int
    test_accuracy: float
    test_f1: float
    val_accuracy: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: tuple[Mapping[str, Any], ...]
    linear_probe: Mapping[str, Any] | None
    cka: Mapping[str, float]
    checkpoint: str
    trainable: int
    total: int
    seconds: float
    device: str
    reasons: tuple[str, ...] = ()

    @property
    def changed_most(self) -> list[tuple[str, float]]:
        """Taps by how much fine-tuning changed their features (1 - CKA), most first."""
        return sorted(((t, 1.0 - c) for t, c in self.cka.items()), key=lambda tc: -tc[1])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [dict(r) for r in self.history]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FinetuneResult":
        d = dict(d)
        d["config"] = FinetuneConfig.from_dict(d["config"])
        d["classes"] = tuple(d["classes"])
        d["history"] = tuple(d["history"])
        d["reasons"] = tuple(d.get("reasons", ()))
        return cls(**d)


def register_result(result: FinetuneResult, name: str, *, job: str | None = None) -> str:
    """Register a finished run's best weights as the model ``finetuned:<name>``; returns that id."""
    from ..models import architecture_id, register_model

    try:
        arch = architecture_id(result.config.model)
    except TldiagError:  # e.g. a fine-tune of a fine-tune that has since been unregistered
        arch = None
    if arch is None:
        raise TldiagError(f"The architecture of {result.config.model} is unknown (was it unregistered?), so its "
                          "fine-tune cannot be registered; register it with tldiag.models.register_model(..., arch=).")
    c = result.config
    return register_model(name, result.checkpoint, arch, job=job, classes=result.classes, trained_on=result.config.target,
                          description=f"{c.model} fine-tuned on {c.target} ({c.strategy}, test accuracy "
                                      f"{result.test_accuracy:.3f})")



def finetune(config: FinetuneConfig, folder: str | os.PathLike[str], *, progress: ProgressFn | None = None,
             on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FinetuneResult:
    """Fine-tune ``config.model`` on ``config.target`` and measure it (see the module docstring).

    Args:
        config: The run; checked by :func:`plan` first.
        folder: Where the best weights (``best.pt``) are written.
        progress: Called as ``progress(done, total, message)`` during training (steps) and evaluation.
        on_epoch: Called with each epoch's row of the history as soon as it is known.
    """
    t0 = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = load_model(config.model, resolution=config.resolution)
    dataset = load_dataset(config.target)
    # a damaged file must not stop training half-way: decode every image once first (a no-op once embedded)
    dataset.verify(progress=(lambda d, t, m: progress(0, 1, f"{m}: {d}/{t}")) if progress else None)
    the_plan, rows, y, (tr, va, te) = _prepare(config, model, dataset)
    config, names = the_plan.config, the_plan.classes
    n_classes = len(names)
    reasons = the_plan.recommendation.reasons + ((the_plan.augment_reason,) if the_plan.augment_reason else ())
    workers = default_num_workers() if config.num_workers is None else config.num_workers
    fitted = fit(model, dataset, (rows[tr], y[tr]), (rows[va], y[va]), config, n_classes, workers=workers,
                  progress=progress, on_epoch=on_epoch)
    total_steps = fitted.total_steps
    if progress:
        progress(total_steps, total_steps, "evaluating the best weights on the test images")
    test_acc, test_f1, _ = score_test(fitted.module, model, dataset, (rows[te], y[te]), config, n_classes, workers)
    checkpoint = folder / "best.pt"
    save_state(fitted.state, checkpoint)
    dev = torch.device(config.device or "cpu")
    fitted.module.to("cpu").eval()
    assert fitted.pretrained is not None
    pretrained_model = model.with_module(fitted.pretrained)
    taps = [t for t in model.default_taps() if t != LOGITS]
    if progress:
        progress(total_steps, total_steps, "comparing pretrained and fine-tuned features (CKA)")
    # the probe reads every target image's pretrained features (embedded once, or read from the embedding cache
    # that the other pages fill); CKA takes its sample from them instead of a second forward pass
    pretrained_features = _embeddings(pretrained_model, dataset, taps, workers) \
        if parse_model_id(config.model).kind != "random" else None
    cka = _cka_by_tap(pretrained_model, model, dataset, rows, y, taps, dev, config.seed, workers,
                      pretrained_features=pretrained_features)
    probe = _linear_probe(pretrained_features, model.depths, rows, y, taps, config.seed) \
        if pretrained_features is not None else None
    return FinetuneResult(config=config, classes=names, n_train=len(tr), n_val=len(va), n_test=len(te),
                          test_accuracy=test_acc, test_f1=test_f1, val_accuracy=fitted.val_accuracy,
                          best_epoch=fitted.best_epoch, epochs_run=fitted.epochs_run,
                          stopped_early=fitted.stopped_early, history=tuple(fitted.history), linear_probe=probe,
                          cka=cka, checkpoint=str(checkpoint), trainable=the_plan.trainable, total=the_plan.total,
                          seconds=time.perf_counter() - t0, device=str(dev), reasons=reasons)


def _features(model: Model, dataset: ImageDataset, rows: np.ndarray, taps: Sequence[str], dev: torch.device,
              workers: int) -> dict[str, np.ndarray]:
    """The pooled features of some images at ``taps`` (the embedding engine's forward pass, not cached)."""
    from ..forward import compute_taps

    return compute_taps(model, dataset, taps, batch_size=64, device=str(dev), num_workers=workers, progress=None,
                    offset=0, total=len(rows), indices=rows)[0]


def _sample(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(y) <= limit:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(y), size=limit, replace=False))


def _cka_by_tap(pretrained: Model, finetuned: Model, dataset: ImageDataset, rows: np.ndarray, y: np.ndarray,
                taps: Sequence[str], dev: torch.device, seed: int, workers: int, *,
                pretrained_features=None) -> dict[str, float]:
    """Linear CKA per tap between the two models' features of the same target images (at most
    :data:`MAX_CKA_IMAGES`, a seeded sample). ``pretrained_features``: the pretrained model's embeddings of the
    whole dataset when the caller has them (:class:`tldiag.embed.Embeddings`); else they are computed."""
    from ..metrics import linear_cka

    pick = rows[_sample(y, MAX_CKA_IMAGES, seed)]
    a = {t: np.asarray(pretrained_features[t])[pick] for t in taps} if pretrained_features is not None else \
        _features(pretrained, dataset, pick, taps, dev, workers)
    b = _features(finetuned, dataset, pick, taps, dev, workers)
    out = {}
    for t in taps:
        try:
            out[t] = round(linear_cka(a[t], b[t]), 6)
        except TldiagError:  # a constant (dead) tap: no similarity to report
            continue
    return out


def _embeddings(model: Model, dataset: ImageDataset, taps: Sequence[str], workers: int):
    """The model's embeddings of every image of ``dataset`` at ``taps`` (cached); None when they cannot be made."""
    from ..embed import embed_dataset

    try:
        return embed_dataset(model, dataset, taps, num_workers=workers)
    except TldiagError:
        return None


def _linear_probe(embeddings, depths: Mapping[str, float], rows: np.ndarray, y: np.ndarray, taps: Sequence[str],
                  seed: int) -> dict[str, Any] | None:
    """The linear probe of the frozen pretrained ``embeddings`` (of the whole dataset) on the same first split (the
    best tap)."""
    from ..probes import ProbeConfig, probe_curve

    try:
        labels = np.full(len(embeddings.labels), -1, dtype=np.int64)
        labels[rows] = y
        curve = probe_curve({t: np.asarray(embeddings[t]) for t in taps}, labels, depths=depths,
                            config=ProbeConfig(n_splits=1), random_state=seed)
    except TldiagError:
        return None
    best = curve.best
    return {"tap": best.tap, "accuracy": float(best.accuracy[0]), "macro_f1": float(best.macro_f1[0])}


# ----------------------------------------------------------------------------- as a job
def run_job(config: Mapping[str, Any], context) -> dict[str, Any]:
    """The ``finetune`` job kind (see :mod:`tldiag.training.jobs`): progress and per-epoch metrics go to the job store."""
    cfg = FinetuneConfig.from_dict(config)
    context.log(f"fine-tuning {cfg.model} on {cfg.target} ({cfg.strategy}, {cfg.epochs} epochs, device "
                f"{cfg.device or _config.device_name()})")

    def progress(done: int, total: int, message: str) -> None:
        context.report(done / max(total, 1), message)
        if not message.startswith("epoch"):  # phase lines go to the log; per-step ticks do not
            context.log(message)

    def on_epoch(row: dict[str, Any]) -> None:
        context.report(metrics=row, message=f"epoch {row['epoch']}/{cfg.epochs} done: train loss "
                                            f"{row['train_loss']:.3f}, val accuracy {row['val_accuracy']:.3f}")

    result = finetune(cfg, context.folder, progress=progress, on_epoch=on_epoch)
    context.log(f"test accuracy {result.test_accuracy:.3f} (best epoch {result.best_epoch})")
    return result.to_dict()


def prepare_job(config: FinetuneConfig, *, model: Model | None = None, dataset: ImageDataset | None = None):
    """The ``finetune`` job of ``config``, checked with :func:`plan` (see :func:`tldiag.training.jobs.launch`)."""
    from .jobs import Launch

    c = plan(config, model=model, dataset=dataset).config
    return Launch(c.to_dict(), f"{c.model} → {c.target} · {c.strategy}", c.device or "cpu")


def config_of(job) -> FinetuneConfig:
    """The configuration of a ``finetune`` job (a :class:`tldiag.training.jobs.Job`); keys this version does not
    know (a record written by a newer one, a test's replay) are left out."""
    known = {f.name for f in fields(FinetuneConfig)}
    return FinetuneConfig.from_dict({k: v for k, v in job.config.items() if k in known})


def scratch_config(config: FinetuneConfig) -> FinetuneConfig | None:
    """The from-scratch baseline of a run: the same architecture with random weights, every layer at one rate,
    same data, split, epochs and augmentation; None when the model has no random-init twin."""
    rid = random_init_id(config.model)
    if rid is None:
        return None
    return replace(config, model=rid, strategy="full", backbone_lr_mult=1.0, frozen_stages=None)


def scratch_job(config: FinetuneConfig, jobs: Iterable[Any]) -> Any | None:
    """The newest finished from-scratch twin of a run among ``jobs`` (:class:`tldiag.training.jobs.Job`, newest
    first): a ``finetune`` job of :func:`scratch_config`'s model on the same target, resolution and seed; None when
    there is none (or the model has no random-init twin)."""
    try:
        twin = scratch_config(config)
    except TldiagError:
        return None
    if twin is None:
        return None
    for job in jobs:
        if job.kind != "finetune" or job.status != "done" or not job.result:
            continue
        try:
            c = config_of(job)
        except TldiagError:
            continue
        if (c.model, c.target, c.resolution, c.seed) == (twin.model, twin.target, twin.resolution, twin.seed):
            return job
    return None


__all__ = ["STRATEGIES", "STRATEGY_TITLES", "AUGMENTATIONS", "AUGMENTATION_TITLES", "FinetuneConfig", "FinetuneResult",
           "Plan", "Recommendation", "finetune", "plan", "recommend", "register_result", "auto_augmentation",
           "prepare_job", "config_of", "run_job", "scratch_config", "scratch_job", "strategy_title"]
