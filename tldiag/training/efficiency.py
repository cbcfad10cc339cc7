"""Data efficiency: accuracy against the number of target labels, from scratch and with transfer.

The background calls this curve "the single most compelling business case for transfer learning": a horizontal
slice says how many labels transfer saves, a vertical slice how much accuracy it adds at a budget, and where the
curves cross, transfer stops paying. It is also the direct test for negative transfer.

The experiment (:func:`run_experiment`):

* One split of the labelled target, the first split of :func:`tldiag.probes.stratified_splits` with the seed (the
  one the Probes and Fine-tune pages score first): 20% of each class is the **test** set, fixed for every run;
  20% is the **validation** set, used for early stopping and for the probe's tap and regularisation, never for
  training and not counted in a budget; the other 60% is the **pool** the labels are drawn from.
* **Every spare labelled image in the test** (:func:`spare_test_images`): when the target spec samples a per-class
  ``limit``, the labelled images the limit left out join the test set after the pool and validation are drawn, up
  to ``test_per_class`` per class and ``test_max`` in all (100 and 2,000 by default). Only those extra images are
  embedded; the pool, the validation set and the budgets stay as they were.
* Label **budgets** per class (:data:`BUDGETS`, those smaller than the pool, plus all of the pool), each
  repeated ``repeats`` times with a different random subset of the pool, and more often at small budgets
  (:meth:`EfficiencyConfig.draws`: until budget x draws reaches ``draw_labels``, 8 draws at one label per class),
  where which images get labelled moves the answer most, and at least 6 at the team's budget, which the verdict
  reads. Within a repeat the subsets are nested (the 5 images of a class are among its 10), so a repeat's curve is
  one labelling campaign growing.
* **Arms** (:data:`ARMS`): ``scratch`` (the model's architecture from random initialisation, trained end to end),
  ``small-cnn`` (a 73k-parameter CNN sized for CPUs, from scratch), ``linear-probe`` (a logistic regression on
  the frozen pretrained features; tap and C chosen on validation, fitted on the budget only) and ``fine-tuned``
  (a short fine-tuning schedule from the pretrained weights). The trained arms share one training loop
  (:func:`tldiag.training.loop.fit`): the same augmentation, AdamW with warm-up and cosine decay, label smoothing,
  early stopping on the validation set with the best weights restored. Their settings (:class:`ArmSchedule`)
  come from a **profile**: ``cpu`` (reduced resolution and epochs, a partial fine-tune; labelled as such) or
  ``full`` (every arm at the full resolution with longer schedules); ``auto`` picks ``full`` on a GPU.

Every trained run is stored under ``$TLDIAG_HOME/efficiency`` as soon as it ends (one small JSON file, written
atomically), keyed by everything that determines it: a cancelled or failed experiment keeps the runs it finished,
and launching it again reuses them.

Readouts (:func:`readouts`): mean accuracy per budget with a 95% interval (:func:`crossed_interval`: the spread
between draws of the labelled images and the spread over test images, each with its own degrees of freedom, so
neither a difference of two test images nor a lucky draw of labels is mistaken for a finding), the labels each arm
needs to reach an accuracy (interpolated on a log scale) and their ratio (labels saved), the accuracy gain of
transfer at a budget (paired over repeats), the break-even budget where scratch catches up, and a
**negative-transfer flag** when scratch is at or above transfer at some budget, with the evidence.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import _config
from ..data import ImageDataset, load_dataset
from ..errors import SpecError, TldiagError
from ..stats import at_chance, chance_line as _chance_line
from ..models import DEFAULT_MODEL, LOGITS, Model, load_model, parse_model_id, random_init_id
from ..pixels import PIXEL_SIZE, pixel_features
from ..progress import ProgressFn
from ..validation import check_int, check_number, check_specs, metric_device
from .finetune import FinetuneConfig, auto_augmentation, recommend
from .loop import AUGMENTATIONS, IN_MEMORY_BYTES, STRATEGIES, fit, head_name, labelled_split, score_test, stages_of
from .smallcnn import small_cnn

BUDGETS = (1, 2, 5, 10, 20, 50, 100)
"""Labels per class tried (those below the pool size), always followed by the whole pool ("all")."""
ARMS = ("scratch", "small-cnn", "pixel-linear", "pixel-knn", "linear-probe", "fine-tuned")
ARM_TITLES = {
    "scratch": "Scratch (same architecture, random init)",
    "small-cnn": "Scratch (small CNN)",
    "pixel-linear": "Scratch (linear model on pixels)",
    "pixel-knn": "Scratch (k-NN on pixels)",
    "linear-probe": "Transfer, frozen (linear probe)",
    "fine-tuned": "Transfer, fine-tuned",
}
ARM_NAMES = {"scratch": "the same architecture from scratch", "small-cnn": "the small CNN from scratch",
             "pixel-linear": "a linear model on the raw pixels", "pixel-knn": "k-NN on the raw pixels",
             "linear-probe": "the linear probe", "fine-tuned": "fine-tuning"}
"""How an arm reads inside a sentence."""
SCRATCH_ARMS = ("scratch", "small-cnn", "pixel-linear", "pixel-knn")
TRANSFER_ARMS = ("linear-probe", "fine-tuned")
TRAINED_ARMS = ("scratch", "small-cnn", "fine-tuned")
FITTED_ARMS = ("pixel-linear", "pixel-knn", "linear-probe")
"""Arms fitted in closed form or by a convex solver on fixed features (seconds), not trained by gradient steps."""
KNN_GRID = (1, 3, 5, 9, 15)
LR_GRID = (0.3, 1.0, 3.0)
"""Every trained arm tries its learning rate times each of these on validation (the same search for every arm)."""
PROFILES = ("auto", "cpu", "full")
RUN_VERSION = 5  # 4: augmentations drawn per image, applied per batch; 5: spare labelled images in the test set
TEST_PER_CLASS, TEST_MAX = _config.TEST_PER_CLASS, _config.TEST_MAX
"""The test set's default cap when it takes the spare labelled images, per class and in all (``TLDIAG_TEST_PER_CLASS``
and ``TLDIAG_TEST_MAX`` change it; the configuration records the values a run used)."""
DRAW_LABELS, MAX_DRAWS, BUDGET_DRAWS = 8, 20, 6
"""Small budgets get draws until budget x draws reaches :data:`DRAW_LABELS` (at most :data:`MAX_DRAWS`); the team's
budget gets at least :data:`BUDGET_DRAWS` (:meth:`EfficiencyConfig.draws`)."""


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ArmSchedule:
    """How one trained arm trains (the fitted arms have no schedule).

    Attributes:
        resolution: Input size in pixels (None: the model's own).
        epochs: Most epochs; early stopping on validation may end sooner.
        strategy: A fine-tuning strategy (:data:`tldiag.training.finetune.STRATEGIES`), or ``auto``: the Fine-tune page's
            recommendation for the budget's number of labels.
        lr: Peak learning rate (of the new classifier).
        backbone_lr_mult: The backbone's rate as a fraction of ``lr`` (1 for training from scratch).
        batch_size: Images per step.
        patience: Epochs without a better validation accuracy before stopping.
        min_epochs: Early stopping never ends a run before this epoch.
        min_epoch_images: An epoch draws at least this many images (small budgets repeat theirs).
        lr_grid: ``lr`` times each of these is tried on validation (first repeat at the experiment's reference
            budget); the best is used for every run of the arm. ``(1.0,)`` searches nothing.
        at_budget_only: Train the arm at the experiment's reference budget only (the team's budget; the whole pool
            when none is set), the other budgets showing the other arms: the CPU profile's setting for fine-tuning,
            whose runs cost ten times the small CNN's there.
        note: Why these settings, shown with the results (e.g. "CPU setting").
    """

    resolution: int | None
    epochs: int
    strategy: str
    lr: float
    backbone_lr_mult: float = 1.0
    batch_size: int = 32
    patience: int = 3
    min_epochs: int = 0
    min_epoch_images: int = 64
    lr_grid: tuple[float, ...] = (1.0,)
    at_budget_only: bool = False
    note: str = ""

    @property
    def max_steps(self) -> int:
        """The cap in optimiser steps of a run whose budget is at most ``min_epoch_images`` images."""
        return self.epochs * math.ceil(self.min_epoch_images / self.batch_size)

    @property
    def summary(self) -> str:
        """The settings in one line: ``64 px, ≤ 12 epochs (early stop after 4, patience 3), partial, lr 0.01 ×
        {0.3, 1, 3} on validation``."""
        res = f"{self.resolution} px" if self.resolution else "native resolution"
        stop = f" (early stop after {self.min_epochs}, patience {self.patience})" if self.min_epochs else \
            f" (patience {self.patience})"
        mult = f" (backbone × {self.backbone_lr_mult:g})" if self.backbone_lr_mult != 1 else ""
        grid = "" if tuple(self.lr_grid) == (1.0,) else \
            f" × {{{', '.join(f'{g:g}' for g in self.lr_grid)}}} searched on validation"
        only = ", at your budget only" if self.at_budget_only else ""
        return (f"{res}, ≤ {self.epochs} epochs of ≥ {self.min_epoch_images} images{stop}, {self.strategy}, "
                f"lr {self.lr:g}{grid}{mult}{only}")

    @property
    def title(self) -> str:
        """:attr:`summary` with the note."""
        return self.summary + (f" ({self.note})" if self.note else "")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ArmSchedule":
        d = dict(d)
        if "lr_grid" in d:
            d["lr_grid"] = tuple(float(g) for g in d["lr_grid"])
        return cls(**d)


CPU_SCRATCH_NOTE = ("left out on a CPU: the same architecture from random weights needs tens of epochs at the model's "
                    "resolution to be a fair baseline (hours here), and a starved run would only flatter transfer; "
                    "the full profile (on a GPU) trains it")


def default_schedules(profile: str, resolution: int | None) -> dict[str, ArmSchedule]:
    """The trained arms' settings of a profile (``cpu`` or ``full``) for the transfer arms' ``resolution``.

    Within a profile every trained arm gets the same tuning effort: the same learning-rate search
    (:data:`LR_GRID`), the same patience and minimum epochs, and the same cap in optimiser steps."""
    if profile == "cpu":
        low = min(resolution or 64, 64)
        # 12 epochs: at 6, most small-CNN runs still improved at their last epoch and the scenario panel read
        # transfer as ahead where a fairly trained small CNN matches it (README, "How often is the verdict right?")
        effort = dict(epochs=12, patience=3, min_epochs=4, min_epoch_images=256, lr_grid=LR_GRID)
        return {
            "scratch": ArmSchedule(32, strategy="full", lr=2e-3, note=CPU_SCRATCH_NOTE, **effort),
            "small-cnn": ArmSchedule(32, strategy="full", lr=3e-3, **effort),
            "fine-tuned": ArmSchedule(low, strategy="partial", lr=1e-2, backbone_lr_mult=0.1, at_budget_only=True,
                                      note=f"CPU setting: {low} px, the last stage and a new head, at your budget "
                                           "only (the other budgets show the frozen probe); the full profile "
                                           "fine-tunes at every budget, at the model's resolution, with the strategy "
                                           "for the budget",
                                      **effort),
        }
    if profile == "full":
        effort = dict(epochs=30, patience=6, min_epochs=8, min_epoch_images=256, lr_grid=LR_GRID)
        return {
            "scratch": ArmSchedule(resolution, strategy="full", lr=2e-3, **effort),
            "small-cnn": ArmSchedule(32, strategy="full", lr=3e-3, **effort),
            "fine-tuned": ArmSchedule(resolution, strategy="auto", lr=1e-3, backbone_lr_mult=0.1,
                                      note="strategy by budget, as recommended on the Fine-tune page", **effort),
        }
    raise SpecError(f"Unknown profile {profile!r}; valid: cpu, full (or auto).")


@dataclass(frozen=True)
class EfficiencyConfig:
    """A data-efficiency experiment. Every field is JSON-serialisable (it is the job's record).

    Attributes:
        model: The pretrained model id whose transfer is measured (its architecture is the scratch arm).
        target: Labelled target dataset spec.
        source: Source dataset spec, kept for the record.
        resolution: Input size of the transfer arms (None: the model's own).
        budgets: Labels per class to try; those at or above a class's pool are replaced by "all".
        budget: The team's label budget (labels per class it has or can afford): always run, and the budget the
            readouts and the verdict answer for; None: the whole pool.
        trained_budgets: Budgets at which the trained arms run (the fitted arms run at every budget); None: all.
        include_all: Also run every arm on the whole pool.
        repeats: Random label subsets per budget (>= 3 gives a confidence band).
        arms: Which of :data:`ARMS` to run.
        profile: ``cpu``, ``full`` or ``auto`` (``full`` on a GPU, ``cpu`` otherwise).
        schedules: Per trained arm, settings that replace the profile's (:class:`ArmSchedule` fields).
        augment: Augmentation of every trained arm (:data:`tldiag.training.finetune.AUGMENTATIONS`); ``auto`` by dataset.
        label_smoothing: Cross-entropy label smoothing of every trained arm.
        seed: Seed of the split, the subsets, the initialisations and the training.
        device: Torch device; tldiag's default (the GPU when present) when None.
        test_per_class, test_max: The test set takes the spare labelled images (those the target spec's ``limit``
            left out) up to this many per class and in all (:func:`spare_test_images`); 0 keeps the split's own
            test set only. Defaults: :data:`TEST_PER_CLASS` and :data:`TEST_MAX`, or ``TLDIAG_TEST_PER_CLASS`` and
            ``TLDIAG_TEST_MAX``.
        draw_labels: At budgets below it, more draws of the labelled images: a budget of ``b`` per class runs
            ``max(repeats, ceil(draw_labels / b))`` draws (:meth:`draws`).
        budget_draws: Draws at the team's budget (the one the readouts and the verdict answer for; the whole pool
            when no budget is set), at least.
    """

    model: str = DEFAULT_MODEL
    target: str = "demo:printed-digits?limit=50"
    source: str | None = None
    resolution: int | None = 128
    budgets: tuple[int, ...] = BUDGETS
    budget: int | None = None
    trained_budgets: tuple[int, ...] | None = None
    include_all: bool = True
    repeats: int = 3
    arms: tuple[str, ...] = ARMS
    profile: str = "auto"
    schedules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    augment: str = "auto"
    label_smoothing: float = 0.1
    seed: int = 0
    device: str | None = None
    test_per_class: int = field(default_factory=lambda: _config.test_cap()[0])
    test_max: int = field(default_factory=lambda: _config.test_cap()[1])
    draw_labels: int = DRAW_LABELS
    budget_draws: int = BUDGET_DRAWS

    def draws(self, budget: int, reference: int | None = None) -> int:
        """How many random subsets a budget gets: ``repeats``; at small budgets enough for ``budget x draws`` to reach
        :attr:`draw_labels` labels per class (at one or two labels per class, which images are labelled moves the
        answer more than a few draws show); at the team's budget at least :attr:`budget_draws` (the verdict reads
        it: three draws leave a t quantile of 4.3 on the spread between them). ``reference``: the budget that stands
        for the team's (:attr:`ExperimentPlan.reference`: 0 when the whole pool does); by default the configured one."""
        n = self.repeats
        team = reference if reference is not None else (0 if self.budget is None else self.budget)
        if budget == team:
            n = max(n, self.budget_draws)
        if budget > 0 and self.draw_labels > 0:
            n = max(n, min(MAX_DRAWS, math.ceil(self.draw_labels / budget)))
        return n

    def validate(self) -> "EfficiencyConfig":
        """Check every value that does not need the model or the data; raise a :class:`TldiagError` naming the
        value and the fix."""
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms:
            raise SpecError(f"Unknown or no arms {list(self.arms)!r}; choose among {', '.join(ARMS)}.")
        if not any(a in TRANSFER_ARMS for a in self.arms) or not any(a in SCRATCH_ARMS for a in self.arms):
            raise SpecError(f"arms={list(self.arms)} compare nothing: the experiment needs at least one scratch arm "
                            f"({', '.join(SCRATCH_ARMS)}) and one transfer arm ({', '.join(TRANSFER_ARMS)}).")
        if not self.budgets and not self.include_all:
            raise SpecError("No label budgets: give budgets (e.g. 1,5,10,50) or include all labels.")
        for b in self.budgets:
            check_int(b, "budget", minimum=1, maximum=1_000_000)
        if self.budget is not None:
            check_int(self.budget, "budget", minimum=1, maximum=1_000_000)
        for b in self.trained_budgets or ():
            check_int(b, "trained budget", minimum=0, maximum=1_000_000)
        check_int(self.repeats, "repeats", minimum=1, maximum=100)
        check_int(self.test_per_class, "test_per_class", minimum=0, maximum=1_000_000)
        check_int(self.test_max, "test_max", minimum=0, maximum=10_000_000)
        check_int(self.draw_labels, "draw_labels", minimum=0, maximum=1_000)
        check_int(self.budget_draws, "budget_draws", minimum=1, maximum=100)
        check_int(self.seed, "seed", minimum=0, maximum=2**32 - 1)
        if self.profile not in PROFILES:
            raise SpecError(f"Unknown profile {self.profile!r}; valid: {', '.join(PROFILES)}.")
        if self.augment not in AUGMENTATIONS:
            raise SpecError(f"Unknown augmentation {self.augment!r}; valid: {', '.join(AUGMENTATIONS)}.")
        check_number(self.label_smoothing, "label_smoothing", low=0.0, high=1.0, high_open=True,
                      fix="e.g. 0.1; 0 turns it off")
        valid = {f.name for f in fields(ArmSchedule)}
        for arm, over in self.schedules.items():
            if arm not in TRAINED_ARMS:
                raise SpecError(f"schedules has arm {arm!r}; only {', '.join(TRAINED_ARMS)} train.")
            bad = sorted(set(over) - valid)
            if bad:
                raise SpecError(f"Unknown settings {bad} for arm {arm!r}; valid: {', '.join(sorted(valid))}.")
        spec = parse_model_id(self.model)
        if spec.kind == "random":
            raise SpecError(f"{self.model} has random weights, so there is no transfer to measure; choose a "
                            "pretrained model (its architecture gives the scratch arm).")
        check_specs(self.target, self.source, self.device)
        if self.resolution is not None:
            check_int(self.resolution, "resolution", minimum=16, maximum=1024)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budgets"], d["arms"] = list(self.budgets), list(self.arms)
        d["trained_budgets"] = None if self.trained_budgets is None else list(self.trained_budgets)
        d["schedules"] = {k: {n: list(x) if isinstance(x, tuple) else x for n, x in v.items()}
                          for k, v in self.schedules.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EfficiencyConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"Unknown data-efficiency settings {unknown}; valid: {', '.join(sorted(known))}.")
        d = dict(d)
        for key in ("budgets", "arms", "trained_budgets"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if "schedules" in d:
            d["schedules"] = {k: dict(v) for k, v in (d["schedules"] or {}).items()}
        return cls(**d)


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class ExperimentPlan:
    """What an experiment will run, known before anything trains.

    Attributes:
        config: The configuration with ``profile``, ``device`` and ``augment`` resolved.
        classes: Target class names.
        n_pool, n_val, n_test: Labelled images in the pool, the validation and the test set.
        budgets: Labels per class that will run, ``0`` standing for "all of the pool".
        pool_per_class: The smallest and largest number of pool images of a class.
        schedules: Resolved settings of each trained arm that runs.
        notes: Budgets left out, arms dropped, and anything else the user should know.
        reference: The budget the readouts answer for (the team's budget; 0 = all of the pool).
        trained_budgets: The budgets at which the trained arms run (see :meth:`budgets_of` for one arm).
        n_spare: Test images that are spare labelled images beyond the target's per-class limit.
    """

    config: EfficiencyConfig
    classes: tuple[str, ...]
    n_pool: int
    n_val: int
    n_test: int
    budgets: tuple[int, ...]
    pool_per_class: tuple[int, int]
    schedules: Mapping[str, ArmSchedule]
    augment_reason: str
    notes: tuple[str, ...] = ()
    reference: int = 0
    trained_budgets: tuple[int, ...] = ()
    n_spare: int = 0

    @property
    def arms(self) -> tuple[str, ...]:
        return self.config.arms

    def budgets_of(self, arm: str) -> tuple[int, ...]:
        """The budgets at which a trained arm runs: :attr:`trained_budgets`, or the reference budget alone for an
        arm whose schedule says ``at_budget_only``."""
        schedule = self.schedules[arm]
        if schedule.at_budget_only:
            return (self.reference,) if self.reference in self.trained_budgets else self.trained_budgets[-1:]
        return self.trained_budgets

    def draws(self, budget: int) -> int:
        """The draws of ``budget`` (:meth:`EfficiencyConfig.draws`, the reference budget standing for the team's)."""
        return self.config.draws(budget, self.reference)

    @property
    def n_runs(self) -> int:
        """Trained runs in all, the learning-rate search included (the fitted arms are not counted)."""
        return sum(sum(self.draws(b) for b in self.budgets_of(a)) + len(s.lr_grid) - 1
                   for a, s in self.schedules.items())


def _labelled_split(dataset: ImageDataset, seed: int):
    return labelled_split(dataset, seed, task="the data-efficiency experiment")


def _seed(*parts: int) -> int:
    """A 32-bit seed derived from several integers (different for every combination)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _init_seed(arm: str, seed: int, repeat: int) -> int:
    """The random initialisation of a scratch arm in one repeat."""
    return _seed(seed, repeat, {"small-cnn": 1, "scratch": 2}[arm])


def plan_experiment(config: EfficiencyConfig, *, dataset: ImageDataset | None = None) -> ExperimentPlan:
    """Check an experiment against its data and resolve its defaults, without loading weights or training.

    Raises a :class:`TldiagError` for anything that would make it fail: unknown arms, a random-init model, a
    target without labels or with a class too small to split.
    """
    return _prepare_experiment(config, dataset)[0]


class JoinedDataset:
    """Two datasets read as one: the rows of ``first`` (the target the split was drawn from), then those of
    ``second`` (the spare labelled images its test set takes, :func:`spare_test_images`). Each part keeps its own
    embedding cache entry."""

    def __init__(self, first: ImageDataset, second: ImageDataset):
        self.parts = (first, second)
        self.offset = len(first)
        self.spec, self.classes = first.spec, first.classes
        self.labels = np.concatenate([first.labels, second.labels])
        self.fingerprint = hashlib.sha256(f"{first.fingerprint}+{second.fingerprint}".encode()).hexdigest()

    def __len__(self) -> int:
        return self.offset + len(self.parts[1])

    def __getitem__(self, i: int):
        i = int(i)
        return self.parts[0][i] if i < self.offset else self.parts[1][i - self.offset]


def parts_of(dataset: Any) -> tuple[ImageDataset, ...]:
    """The datasets behind ``dataset`` (its two parts when it is a :class:`JoinedDataset`), in row order."""
    return dataset.parts if isinstance(dataset, JoinedDataset) else (dataset,)


def spare_test_images(config: EfficiencyConfig, dataset: ImageDataset, y_test: np.ndarray,
                      names: Sequence[str]) -> tuple[ImageDataset, np.ndarray] | None:
    """The labelled target images that ``dataset`` (the target spec with a per-class ``limit``) left out, as many as
    the test set may take: per class up to ``config.test_per_class`` test images in all (the split's own ones
    counted), and ``config.test_max`` in all, taken round-robin over the classes in a seeded order. Returns the
    images as a dataset of their own and their labels (indices into ``names``), or None when there are none (no
    limit, the cap reached already, or every image drawn).

    The limit draws a seeded prefix of each class's shuffled images, so the same spec with a larger limit holds the
    dataset's images and the next ones of each class: those are the spare images, never one of the pool or the
    validation set."""
    spec = dataset.spec_
    limit = spec.get("limit")
    n_test = len(y_test)
    if limit is None or config.test_per_class <= 0 or n_test >= config.test_max or not dataset.is_labelled:
        return None
    have = np.bincount(y_test, minlength=len(names))
    need = np.maximum(config.test_per_class - have, 0)
    if not need.any():
        return None
    options = dict(spec.options)
    options["limit"] = str(int(limit) + config.test_per_class)
    wider = load_dataset(str(replace(spec, options=tuple(sorted(options.items())))))
    index = {name: k for k, name in enumerate(names)}
    raw_to_y = np.array([index.get(c, -1) for c in wider.classes] + [-1])
    y_wider = raw_to_y[np.where(wider.labels >= 0, wider.labels, len(wider.classes))]
    spare = np.flatnonzero((y_wider >= 0) & ~np.isin(wider.index, dataset.index))
    rng = np.random.default_rng([config.seed, 20261204])
    ranked = []
    for k in range(len(names)):
        members = rng.permutation(spare[y_wider[spare] == k])[:need[k]]
        ranked.extend((rank, k, int(row)) for rank, row in enumerate(members))
    chosen = [row for _, _, row in sorted(ranked)][:config.test_max - n_test]
    if not chosen:
        return None
    extra = wider.subset(chosen, description=f"{len(chosen)} spare labelled test images of {dataset.spec}")
    extra.verify()
    return extra, raw_to_y[extra.labels]


def _prepare_experiment(config: EfficiencyConfig, dataset: ImageDataset | None
                        ) -> tuple[ExperimentPlan, np.ndarray, np.ndarray, tuple, Any]:
    """:func:`plan_experiment`, plus what it found on the way: the labelled rows, their labels, the split, and the
    dataset they index (the target, joined with its spare test images when the test set takes some)."""

    config = config.validate()
    dataset = dataset or load_dataset(config.target)
    rows, y, (tr, va, te), names = _labelled_split(dataset, config.seed)
    data: Any = dataset
    n_spare = 0
    spare = spare_test_images(config, dataset, y[te], names)
    if spare is not None:
        extra, y_extra = spare
        n_spare = len(extra)
        data = JoinedDataset(dataset, extra)
        start = len(rows)
        rows = np.concatenate([rows, len(dataset) + np.arange(n_spare)])
        y = np.concatenate([y, y_extra])
        te = np.concatenate([te, start + np.arange(n_spare)])
    per_class = np.bincount(y[tr], minlength=len(names))
    small, large = int(per_class.min()), int(per_class.max())
    device = config.device or _config.device_name()
    profile = config.profile if config.profile != "auto" else ("cpu" if device == "cpu" else "full")
    augment, reason = auto_augmentation(config.target) if config.augment == "auto" else (config.augment, "")
    resolved = replace(config, profile=profile, device=device, augment=augment)
    asked = set(config.budgets) | ({config.budget} if config.budget else set())
    budgets = sorted({int(b) for b in asked if b < large})
    notes = []
    dropped = sorted({int(b) for b in config.budgets if b >= large})
    if dropped:
        notes.append(f"Budgets {', '.join(map(str, dropped))} per class are at or above the {large} pool images of "
                     f"the largest class: the whole pool ('all') stands for them.")
    reference = 0 if config.budget is None or config.budget >= large else int(config.budget)
    if config.budget is not None and config.budget >= large:
        notes.append(f"Your budget of {config.budget} labels per class is at or above the pool of {large} per class "
                     f"(20% of each class is held out for validation and 20% for test): the whole pool stands for it.")
    if config.include_all or dropped or reference == 0:
        budgets.append(0)
    if any(0 < b > small for b in budgets):
        notes.append(f"Some classes have only {small} pool images: budgets above that take all of those classes' "
                     "images, so those runs have fewer labels than budget x classes (the x axis shows the real mean).")
    arms = list(config.arms)
    if "scratch" in arms and random_init_id(config.model) is None:
        arms.remove("scratch")
        notes.append(f"{config.model} has no architecture to rebuild with random weights (a TorchScript file); the "
                     "same-architecture scratch arm is left out.")
    if "scratch" in arms and profile == "cpu":
        arms.remove("scratch")
        notes.append(f"The same-architecture scratch arm is {CPU_SCRATCH_NOTE}. The small CNN and the pixel baselines "
                     "stand for training from scratch.")
    if not any(a in SCRATCH_ARMS for a in arms):
        raise SpecError(f"arms={list(config.arms)} leave no scratch arm to compare with on this {profile} profile; add "
                        f"small-cnn, pixel-linear or pixel-knn.")
    schedules = default_schedules(profile, config.resolution)
    for arm, over in config.schedules.items():
        schedules[arm] = replace(schedules[arm], **{k: tuple(v) if k == "lr_grid" else v for k, v in over.items()})
    schedules = {a: s for a, s in schedules.items() if a in arms}
    for arm, schedule in schedules.items():
        _check_schedule(arm, schedule, resolved)
    if config.trained_budgets is None:
        trained_at = tuple(budgets)
    else:
        wanted = {0 if b == 0 or b >= large else int(b) for b in config.trained_budgets}
        trained_at = tuple(b for b in budgets if b in wanted)
        if any(a in TRAINED_ARMS for a in arms) and not trained_at:
            raise SpecError(f"trained_budgets={list(config.trained_budgets)} matches none of the budgets run "
                            f"({', '.join(budget_label(b) for b in budgets)}).")
    resolved = replace(resolved, arms=tuple(arms))
    if len(rows) - n_spare < len(dataset):
        notes.append(f"{len(dataset) - len(rows) + n_spare} of {len(dataset)} target images have no label and are "
                     "left out.")
    if n_spare:
        notes.append(f"The test set has {len(te)} images: the split's {len(te) - n_spare} and {n_spare} spare labelled "
                     f"images that the per-class limit left out (at most {config.test_per_class} per class and "
                     f"{config.test_max:,} in all; the pool and the validation set are unchanged).")
    the_plan = ExperimentPlan(resolved, names, len(tr), len(va), len(te), tuple(budgets), (small, large),
                              schedules, reason, tuple(notes), reference=reference, trained_budgets=trained_at,
                              n_spare=n_spare)
    return the_plan, rows, y, (tr, va, te), data


def _schedule_config(schedule: ArmSchedule, config: EfficiencyConfig, **resolved: Any):
    """The fine-tuning configuration of one run of an arm (``resolved``: strategy, frozen stages, seed...)."""

    settings: dict[str, Any] = dict(
        model=config.model, target=config.target, resolution=schedule.resolution,
        strategy="full" if schedule.strategy == "auto" else schedule.strategy, epochs=schedule.epochs,
        batch_size=schedule.batch_size, lr=schedule.lr, backbone_lr_mult=schedule.backbone_lr_mult,
        label_smoothing=config.label_smoothing, augment=config.augment, patience=schedule.patience,
        min_epochs=min(schedule.min_epochs, schedule.epochs), warmup_epochs=min(1.0, schedule.epochs / 2),
        head_epochs=max(1, min(2, schedule.epochs - 1)), device=config.device)
    settings.update(resolved)
    return FinetuneConfig(**settings)


def _check_schedule(arm: str, schedule: ArmSchedule, config: EfficiencyConfig) -> None:

    try:
        if schedule.strategy != "auto" and schedule.strategy not in STRATEGIES:
            raise SpecError(f"Unknown strategy {schedule.strategy!r}; valid: auto, {', '.join(STRATEGIES)}.")
        check_int(schedule.min_epoch_images, "min_epoch_images", minimum=0, maximum=1_000_000)
        _schedule_config(schedule, config).validate()
    except SpecError as exc:
        raise SpecError(f"Arm {arm!r}: {exc}") from None


def budget_subsets(y_pool: np.ndarray, budgets: Sequence[int], repeats: int | Callable[[int], int], seed: int
                   ) -> dict[tuple[int, int], np.ndarray]:
    """Positions in the pool of each (budget, repeat)'s labelled images; budget 0 is the whole pool.

    Each repeat draws its own random order of every class's pool images, and a budget of ``b`` takes the first
    ``b`` of each class (all of them when the class has fewer): subsets are nested within a repeat and differ
    between repeats. ``repeats`` is a number, or the number of draws of each budget
    (:meth:`EfficiencyConfig.draws`).
    """
    draws = repeats if callable(repeats) else (lambda b: repeats)
    out = {}
    classes = np.unique(y_pool)
    for r in range(max((draws(b) for b in budgets), default=0)):
        rng = np.random.default_rng([seed, r, 20261122])
        orders = [rng.permutation(np.flatnonzero(y_pool == c)) for c in classes]
        for b in budgets:
            if r >= draws(b):
                continue
            take = [o if b == 0 else o[:b] for o in orders]
            out[(b, r)] = np.sort(np.concatenate(take))
    return out


# ----------------------------------------------------------------------------- runs and results
@dataclass(frozen=True)
class Run:
    """One arm trained (or probed) on one label subset, scored on the fixed test set.

    Attributes:
        arm: One of :data:`ARMS`.
        budget: Labels per class asked for; 0 for the whole pool.
        repeat: Which random subset (0-based).
        n_train: Labelled images it learned from.
        per_class: ``n_train`` per class (the x axis).
        accuracy, macro_f1: On the test set.
        val_accuracy: On the validation set (what chose the epoch, or the tap and C).
        epochs: Epochs trained (0 for the probe).
        best_epoch: The epoch whose weights were kept.
        detail: Arm-specific choices: the strategy and learning rate, the probe's tap and C, the k of k-NN.
        seconds: Wall time of the run.
        reused: Whether it was read from the run store instead of trained now.
        correct: Which test images it got right, "1"/"0" in the test set's order (for confidence intervals that
            count the test set's own sampling noise).
        converged: False when a trained run ended with its validation accuracy still at chance. A scratch arm's
            run that never learned does not vote: it says nothing about what training from scratch can do.
        lr: The peak learning rate it trained with (trained arms; chosen on validation by the search).
        steps: Optimiser steps it took (trained arms).
    """

    arm: str
    budget: int
    repeat: int
    n_train: int
    per_class: float
    accuracy: float
    macro_f1: float
    val_accuracy: float
    epochs: int = 0
    best_epoch: int = 0
    detail: str = ""
    seconds: float = 0.0
    reused: bool = False
    correct: str = ""
    converged: bool = True
    lr: float | None = None
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bits(correct: np.ndarray) -> str:
    return "".join("1" if c else "0" for c in np.asarray(correct, dtype=bool))


@dataclass(frozen=True)
class EfficiencyResult:
    """What an experiment measured: every run, and how it was set up (readouts are computed from it).

    Attributes:
        config: The resolved configuration.
        classes: Target class names.
        n_pool, n_val, n_test: Images in the pool, the validation set and the fixed test set.
        chance: Accuracy of always answering the most common test class.
        budgets: Budgets run (labels per class; 0 = all).
        runs: One :class:`Run` per arm, budget and repeat.
        schedules: Settings of each trained arm.
        augment_reason: Why ``auto`` chose the augmentation.
        device: Where the trained arms ran.
        seconds: Wall time of the experiment.
        notes: What the plan and the runs noticed.
        reference: The budget the readouts answer for by default (the team's budget; 0 = all of the pool).
    """

    config: EfficiencyConfig
    classes: tuple[str, ...]
    n_pool: int
    n_val: int
    n_test: int
    chance: float
    budgets: tuple[int, ...]
    runs: tuple[Run, ...]
    schedules: Mapping[str, ArmSchedule]
    augment_reason: str
    device: str
    seconds: float
    notes: tuple[str, ...] = ()
    reference: int = 0

    @property
    def arms(self) -> list[str]:
        return [a for a in ARMS if any(r.arm == a for r in self.runs)]

    def table(self):
        """The runs as a DataFrame, one row each."""
        import pandas as pd

        df = pd.DataFrame([r.to_dict() for r in self.runs])
        if len(df):
            df.insert(1, "arm title", df["arm"].map(ARM_TITLES))
        return df

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "classes": list(self.classes), "n_pool": self.n_pool,
                "n_val": self.n_val, "n_test": self.n_test, "chance": self.chance, "budgets": list(self.budgets),
                "runs": [r.to_dict() for r in self.runs],
                "schedules": {a: asdict(s) for a, s in self.schedules.items()},
                "augment_reason": self.augment_reason, "device": self.device, "seconds": self.seconds,
                "notes": list(self.notes), "reference": self.reference}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EfficiencyResult":
        return cls(config=EfficiencyConfig.from_dict(d["config"]), classes=tuple(d["classes"]), n_pool=d["n_pool"],
                   n_val=d["n_val"], n_test=d["n_test"], chance=d["chance"], budgets=tuple(d["budgets"]),
                   runs=tuple(Run(**r) for r in d["runs"]),
                   schedules={a: ArmSchedule.from_dict(s) for a, s in d["schedules"].items()},
                   augment_reason=d.get("augment_reason", ""), device=d["device"], seconds=d["seconds"],
                   notes=tuple(d.get("notes", ())), reference=int(d.get("reference", 0)))


def budget_label(budget: int, per_class: float | None = None) -> str:
    """How a budget reads: ``10`` or ``all (30)``."""
    if budget:
        return str(budget)
    return "all" if per_class is None else f"all ({per_class:.3g})"


def labels_per_class(budget: int, per_class: float | None = None) -> str:
    """A budget in words: ``1 label per class``, ``10 labels per class``, ``all (30) labels per class``."""
    return f"{budget_label(budget, per_class)} label{'' if budget == 1 else 's'} per class"


# ----------------------------------------------------------------------------- the experiment
class _Preloaded:
    """The images of some rows of a dataset, decoded once (the arms read each image many times)."""

    def __init__(self, dataset: ImageDataset, rows: Iterable[int]):
        self.images = {int(r): dataset[int(r)] for r in rows}

    def __getitem__(self, row: int):
        return self.images[int(row)]


def _images_for(dataset: ImageDataset, rows: np.ndarray) -> tuple[Any, bool]:
    """The dataset to train from: decoded in memory when that takes at most :data:`tldiag.training.loop.IN_MEMORY_BYTES`
    (the same bound as a split held as one tensor), else read as needed."""
    first = dataset[int(rows[0])]
    if first.width * first.height * 3 * len(rows) > IN_MEMORY_BYTES:
        return dataset, False
    return _Preloaded(dataset, rows), True


def _run_store() -> Path:
    return _config.home() / "efficiency" / "runs"


def _run_key(**parts: Any) -> str:
    payload = json.dumps({"v": RUN_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _read_run(path: Path) -> Run | None:
    try:
        return replace(Run(**json.loads(path.read_text())), reused=True)
    except (OSError, ValueError, TypeError):
        return None


def run_experiment(config: EfficiencyConfig, *, progress: ProgressFn | None = None,
                   on_run: Callable[[Run], None] | None = None, reuse: bool = True,
                   dataset: ImageDataset | None = None, model: Model | None = None) -> EfficiencyResult:
    """Run the data-efficiency experiment (see the module docstring).

    Args:
        config: The experiment; checked by :func:`plan_experiment` first.
        progress: Called as ``progress(done, total, message)`` as runs finish (and during each training).
        on_run: Called with each :class:`Run` as soon as it is known (stored runs too).
        reuse: Read runs already in the run store instead of training them again.
        dataset, model: The opened target and the loaded model, when the caller has them.
    """
    t0 = time.perf_counter()
    dataset = dataset or load_dataset(config.target)
    # a damaged file must not stop a run half-way: decode every image once first (a no-op once embedded)
    dataset.verify(progress=(lambda d, t, m: progress(0, 1, f"{m}: {d}/{t}")) if progress else None)
    the_plan, rows, y, split, data = _prepare_experiment(config, dataset)
    config = the_plan.config
    n_classes = len(the_plan.classes)
    subsets = budget_subsets(y[split[0]], the_plan.budgets, the_plan.draws, config.seed)
    counts = np.bincount(y[split[2]], minlength=n_classes)
    chance = float(counts.max() / counts.sum())
    runs: list[Run] = []
    notes = list(the_plan.notes)
    trained = [a for a in config.arms if a in TRAINED_ARMS]
    fitted = [a for a in config.arms if a in FITTED_ARMS]
    ledger = _Ledger(the_plan.n_runs + len(fitted), progress)

    def record(run: Run) -> None:
        runs.append(run)
        if on_run:
            on_run(run)

    base = model if model is not None and model.id == config.model else None
    if "linear-probe" in fitted:
        base = base or load_model(config.model, resolution=config.resolution)
    for run in _fitted_runs(fitted, base, data, rows, y, split, subsets, n_classes, ledger):
        record(run)
    if not trained:
        return _result(the_plan, chance, runs, notes, t0)
    arms = _TrainedArms(the_plan, data, rows, y, split, subsets, ledger, base=base)
    ref = the_plan.reference if the_plan.reference in the_plan.trained_budgets else the_plan.trained_budgets[-1]
    chosen_lr: dict[str, float] = {}
    most = max(the_plan.draws(b) for b in the_plan.trained_budgets)
    order = [(ref, 0)] + [(b, r) for r in range(most) for b in the_plan.trained_budgets
                          if r < the_plan.draws(b) and (b, r) != (ref, 0)]
    if _config.ray_address():
        _trained_on_ray(arms, trained, order, (ref, 0), dataset, record, reuse=reuse)
    else:
        for b, r in order:
            for arm in trained:
                if b not in the_plan.budgets_of(arm):
                    continue
                record(arms.run(arm, b, r, chosen_lr, search=(b, r) == (ref, 0), reuse=reuse))
    reused = sum(r.reused for r in runs if r.arm in TRAINED_ARMS)
    if reused:
        notes.append(f"{reused} trained runs were read from earlier runs of the same settings.")
    stuck = sorted({(r.arm, r.budget) for r in runs if not r.converged}, key=lambda ab: (ab[0], _budget_order(ab[1])))
    if stuck:
        notes.append("Did not converge (validation accuracy still at chance when the schedule ended; these points do "
                     "not vote): " + "; ".join(f"{ARM_TITLES[a]} at {labels_per_class(b)}" for a, b in stuck) + ".")
    return _result(the_plan, chance, runs, notes, t0)


class _Ledger:
    """The experiment's progress: ``done`` of ``total`` runs (a trained run's steps count as a fraction of one)."""

    def __init__(self, total: int, progress: ProgressFn | None):
        self.done, self.total, self.progress = 0.0, total, progress

    def tick(self, message: str, fraction: float = 0.0) -> None:
        if self.progress:
            self.progress(self.done + fraction, self.total, message)


def _fitted_runs(fitted: Sequence[str], base: Model | None, dataset: ImageDataset, rows: np.ndarray, y: np.ndarray,
                 split: tuple, subsets, n_classes: int, ledger: _Ledger) -> Iterable[Run]:
    """The runs of the fitted arms (``linear-probe`` on the frozen features of ``base``, ``pixel-linear`` and
    ``pixel-knn`` on the raw pixels), one arm after the other."""
    if "linear-probe" in fitted:
        from ..embed import embed_dataset

        ledger.tick("linear probes on the frozen pretrained features: embedding")
        taps = [t for t in base.default_taps() if t != LOGITS]
        # each part on its own: the target's embeddings are in the cache already, only the spare test images are new
        embs = [embed_dataset(base, part, taps, progress=(lambda d, t, m, what=what: ledger.tick(
                    f"linear probes: embedding {what} ({d}/{t})")))
                for part, what in zip(parts_of(dataset), ("the target", "the spare test images"))]
        features = {t: np.concatenate([np.asarray(e[t]) for e in embs])[rows] for t in taps}
        yield from _linear_runs("linear-probe", features, y, split, subsets, n_classes,
                                progress=lambda m: ledger.tick(f"linear probes: {m}"))
        ledger.done += 1
    if "pixel-linear" in fitted or "pixel-knn" in fitted:
        ledger.tick(f"pixel baselines: reading the images at {PIXEL_SIZE}x{PIXEL_SIZE} px")
        pixels = pixel_features(dataset, rows)
        if "pixel-linear" in fitted:
            yield from _linear_runs("pixel-linear", {f"{PIXEL_SIZE}px": pixels}, y, split, subsets, n_classes,
                                    progress=lambda m: ledger.tick(f"linear model on pixels: {m}"))
            ledger.done += 1
        if "pixel-knn" in fitted:
            ledger.tick("k-NN on pixels")
            yield from _knn_runs(pixels, y, split, subsets)
            ledger.done += 1


class _TrainedArms:
    """The trained arms of one experiment: their starting weights (loaded once), one trained run
    (:meth:`train`), its test score and record (:meth:`finish`), and the run store's key of each run."""

    def __init__(self, the_plan: ExperimentPlan, dataset: ImageDataset, rows: np.ndarray, y: np.ndarray,
                 split: tuple, subsets, ledger: _Ledger, *, base: Model | None, workers: int | None = None):
        config = the_plan.config
        self.plan, self.config, self.rows, self.y, self.split, self.subsets = the_plan, config, rows, y, split, subsets
        self.ledger, self.n_classes = ledger, len(the_plan.classes)
        tr, va, te = split
        self.images, preloaded = _images_for(dataset, rows)
        # workers measured slower here: fork + IPC per run; a Ray task takes the driver's number (part of the run)
        self.workers = workers if workers is not None else 0 if preloaded else _default_workers()
        # data-loading workers draw their own augmentation streams, so their number is part of what a run is
        self.common = {"target": dataset.fingerprint, "classes": the_plan.classes, "seed": config.seed,
                       "augment": config.augment, "workers": self.workers, "label_smoothing": config.label_smoothing,
                       "split": [int(len(tr)), int(len(va)), int(len(te))]}
        self.base = base
        if "fine-tuned" in config.arms:
            self.base = base or load_model(config.model, resolution=config.resolution)
        val_counts = np.bincount(y[va], minlength=self.n_classes)
        self.val_chance = float(val_counts.max() / val_counts.sum())
        self.chance_line = _chance_line(self.val_chance, len(va))  # what at_chance calls chance
        self.models: dict[tuple[str, int], Model] = {}

    def start_model(self, arm: str, repeat: int, schedule: ArmSchedule) -> Model:
        """A fresh copy of the arm's starting weights (loaded once per arm, and per repeat for random inits)."""
        config = self.config
        key = (arm, 0 if arm == "fine-tuned" else repeat)
        if key not in self.models:
            if arm == "small-cnn":
                self.models[key] = small_cnn(self.n_classes, resolution=schedule.resolution or 32,
                                             seed=_init_seed(arm, config.seed, repeat))
            elif arm == "scratch":
                rid = random_init_id(config.model)
                self.models[key] = load_model(f"{rid}?seed={_init_seed(arm, config.seed, repeat)}",
                                              resolution=schedule.resolution)
            else:
                self.base = self.base or load_model(config.model, resolution=config.resolution)
                self.models[key] = self.base if schedule.resolution == config.resolution else \
                    load_model(config.model, resolution=schedule.resolution)
        m = self.models[key]
        return m.with_module(copy.deepcopy(m.module))

    def train(self, arm: str, b: int, r: int, lr: float, label: str) -> tuple[Run, Any]:
        """One trained run of ``arm`` at budget ``b``, repeat ``r`` and peak rate ``lr`` (not yet tested)."""

        config, (tr, va, _), y, rows, n_classes = self.config, self.split, self.y, self.rows, self.n_classes
        schedule = self.plan.schedules[arm]
        sub = tr[self.subsets[(b, r)]]
        model = self.start_model(arm, r, schedule)
        n_stages = len(stages_of(model, head_name(model.module, model.backend))[0])
        strategy, frozen, mult = schedule.strategy, None, schedule.backbone_lr_mult
        if strategy == "auto":
            rec = recommend(len(sub), n_stages, pretrained=model.pretrained)
            strategy, frozen, mult = rec.strategy, rec.frozen_stages, rec.backbone_lr_mult
        if strategy == "partial" and frozen is None:
            frozen = max(n_stages - 1, 0)
        cfg = _schedule_config(schedule, config, strategy=strategy, backbone_lr_mult=mult, lr=lr,
                               frozen_stages=frozen, seed=_seed(config.seed, r, b, 3), num_workers=self.workers)
        if strategy == "freeze-unfreeze" and schedule.epochs < 2:
            cfg = replace(cfg, strategy="partial", frozen_stages=max(n_stages - 1, 0))
        cfg.validate()
        t1 = time.perf_counter()

        def step(k: int, steps: int, message: str) -> None:
            self.ledger.tick(f"{label}: {message}", k / max(steps, 1))

        out = fit(model, self.images, (rows[sub], y[sub]), (rows[va], y[va]), cfg, n_classes, workers=self.workers,
                  progress=step, min_epoch_images=schedule.min_epoch_images, keep_pretrained=False,
                  learning_above=self.chance_line)
        run = Run(arm=arm, budget=b, repeat=r, n_train=len(sub), per_class=len(sub) / n_classes, accuracy=0.0,
                  macro_f1=0.0, val_accuracy=round(out.val_accuracy, 6), epochs=out.epochs_run,
                  best_epoch=out.best_epoch,
                  detail=cfg.strategy + (f", {cfg.frozen_stages} stages frozen" if cfg.strategy == "partial" else "")
                  + f", lr {lr:g}",
                  seconds=round(time.perf_counter() - t1, 3), lr=float(lr), steps=int(out.steps_done),
                  converged=not at_chance(out.val_accuracy, self.val_chance, len(va)))
        return run, (out, model, cfg)

    def finish(self, run: Run, trained: Any, path: Path | None) -> Run:
        """Score a trained run on the test images and store it in the run store (unless ``path`` is None)."""
        from ..cache import atomic_write_text

        out, model, cfg = trained
        te, y = self.split[2], self.y
        acc, f1, pred = score_test(out.module, model, self.images, (self.rows[te], y[te]), cfg, self.n_classes,
                                   self.workers)
        run = replace(run, accuracy=round(acc, 6), macro_f1=round(f1, 6), correct=_bits(pred == y[te]))
        if path is not None:
            atomic_write_text(path, json.dumps(run.to_dict()))
        return run

    def key_path(self, arm: str, b: int, r: int, lr: float | str) -> Path:
        config = self.config
        weights = self.base.weights_hash if arm == "fine-tuned" else f"random init {_init_seed(arm, config.seed, r)}"
        key = _run_key(**self.common, arm=arm, model=config.model if arm != "small-cnn" else "small-cnn",
                       weights=weights, schedule=asdict(self.plan.schedules[arm]), budget=b, repeat=r, lr=lr)
        return _run_store() / f"{key}.json"

    def reused(self, arm: str, b: int, r: int, path: Path, chosen_lr: dict[str, float], *, search: bool
               ) -> Run | None:
        """The run stored at ``path`` (counted as done; a search sets ``chosen_lr[arm]`` from it), or None."""
        cached = _read_run(path) if path.is_file() else None
        if cached is not None:
            schedule = self.plan.schedules[arm]
            if search:
                chosen_lr[arm] = float(cached.lr or schedule.lr)
            self.ledger.done += len(schedule.lr_grid) if search else 1
            self.ledger.tick(f"{ARM_TITLES[arm]} · {labels_per_class(b)} · repeat {r + 1}/{self.plan.draws(b)}: "
                             "reused")
        return cached

    def run(self, arm: str, b: int, r: int, chosen_lr: dict[str, float], *, search: bool, reuse: bool,
            store: bool = True) -> Run:
        """The run of ``arm`` at budget ``b`` and repeat ``r``: from the run store, or trained, tested and stored
        (``store=False``: the caller stores it, as the driver of a Ray task does). With ``search`` (the reference
        budget, repeat 0) it searches the learning rate on validation and sets ``chosen_lr[arm]`` for the others."""
        ledger = self.ledger
        schedule = self.plan.schedules[arm]
        label = f"{ARM_TITLES[arm]} · {labels_per_class(b)} · repeat {r + 1}/{self.plan.draws(b)}"
        path = self.key_path(arm, b, r, "search" if search else chosen_lr[arm])
        if reuse and (cached := self.reused(arm, b, r, path, chosen_lr, search=search)) is not None:
            return cached
        if search:
            tried = []
            for g in schedule.lr_grid:
                lr = schedule.lr * g
                run, state = self.train(arm, b, r, lr, f"{label} · learning-rate search, lr {lr:g}")
                tried.append((run.val_accuracy, -abs(math.log(g)), lr, run, state))
                ledger.done += 1
                ledger.tick(f"{label}: lr {lr:g} → validation accuracy {run.val_accuracy:.3f}")
            _, _, lr, run, state = max(tried, key=lambda t: t[:2])
            chosen_lr[arm] = lr
            run = replace(run, detail=run.detail + " (chosen on validation from "
                          + ", ".join(f"{t[2]:g}: {t[0]:.3f}" for t in tried) + ")")
            del tried
        else:
            run, state = self.train(arm, b, r, chosen_lr[arm], label)
            ledger.done += 1
        run = self.finish(run, state, path if store else None)
        del state
        ledger.tick(f"{label}: test accuracy {run.accuracy:.3f}" + ("" if run.converged else " (did not converge)"))
        return run


def _trained_on_ray(arms: _TrainedArms, trained: Sequence[str], order: Sequence[tuple[int, int]],
                    search_at: tuple[int, int], dataset: ImageDataset, record: Callable[[Run], None], *,
                    reuse: bool) -> None:
    """The trained runs as Ray tasks (see :mod:`tldiag.distributed`): first each arm's learning-rate search at the reference
    budget (in parallel), then every other run at the rate it chose (all in parallel). The driver stores each run in
    the run store as it comes back, exactly as a local run stores itself, and reuses stored ones without a task."""
    from ..distributed import Call, run_tasks

    plan, ledger, config = arms.plan, arms.ledger, arms.config
    chosen_lr: dict[str, float] = {}
    payload = config.to_dict()
    for phase in ("search", "runs"):
        calls, paths, weights = [], {}, {}
        for b, r in order:
            if (phase == "search") != ((b, r) == search_at):
                continue
            for arm in trained:
                if b not in plan.budgets_of(arm):
                    continue
                search = phase == "search"
                path = arms.key_path(arm, b, r, "search" if search else chosen_lr[arm])
                if reuse and (cached := arms.reused(arm, b, r, path, chosen_lr, search=search)) is not None:
                    record(cached)
                    continue
                key = f"{arm}|{b}|{r}"
                paths[key], weights[key] = path, len(plan.schedules[arm].lr_grid) if search else 1
                calls.append(Call(key, (payload, arm, b, r, dict(chosen_lr), search, arms.workers)))

        def on_result(key: str, value: dict) -> None:
            from ..cache import atomic_write_text

            run = Run(**value)
            atomic_write_text(paths[key], json.dumps(run.to_dict()))
            if phase == "search":
                chosen_lr[run.arm] = float(run.lr or plan.schedules[run.arm].lr)
            ledger.done += weights[key]
            ledger.tick(f"{ARM_TITLES[run.arm]} · {labels_per_class(run.budget)} · repeat {run.repeat + 1}: test "
                        f"accuracy {run.accuracy:.3f}" + ("" if run.converged else " (did not converge)"))
            record(run)

        if calls:
            run_tasks(remote_run, calls, on_result=on_result, shared={"dataset": dataset},
                      progress=lambda finished, running, message: ledger.tick(message, running))


def remote_run(config: Mapping[str, Any], arm: str, b: int, r: int, chosen_lr: Mapping[str, float], search: bool,
               workers: int, *, dataset: ImageDataset, report: Callable[[float, str], None]) -> dict[str, Any]:
    """One trained run inside a Ray task: the experiment prepared as the driver prepared it (same split, subsets,
    seeds), the run trained and tested but not stored (the driver stores it). Returns the run as a dict."""
    cfg = EfficiencyConfig.from_dict(config)
    the_plan, rows, y, split, data = _prepare_experiment(cfg, dataset)
    subsets = budget_subsets(y[split[0]], the_plan.budgets, the_plan.draws, cfg.seed)
    units = len(the_plan.schedules[arm].lr_grid) if search else 1
    ledger = _Ledger(units, lambda done, total, message: report(done / max(total, 1), message))
    arms = _TrainedArms(the_plan, data, rows, y, split, subsets, ledger, base=None, workers=workers)
    return arms.run(arm, b, r, dict(chosen_lr), search=search, reuse=False, store=False).to_dict()


def _default_workers() -> int:
    from ..forward import default_num_workers

    return default_num_workers()


def _budget_order(budget: int) -> tuple[bool, int]:
    """Sort key of budgets: increasing, "all" (0) last."""
    return budget == 0, budget


def _in_order(runs: Iterable[Run]) -> tuple[Run, ...]:
    """Runs by arm (in :data:`ARMS` order), budget and repeat."""
    return tuple(sorted(runs, key=lambda r: (ARMS.index(r.arm), _budget_order(r.budget), r.repeat)))


def _result(the_plan: ExperimentPlan, chance: float, runs: list[Run], notes: list[str], t0: float
            ) -> EfficiencyResult:
    return EfficiencyResult(config=the_plan.config, classes=the_plan.classes, n_pool=the_plan.n_pool,
                            n_val=the_plan.n_val, n_test=the_plan.n_test, chance=chance, budgets=the_plan.budgets,
                            runs=_in_order(runs), schedules=dict(the_plan.schedules),
                            augment_reason=the_plan.augment_reason, device=str(the_plan.config.device),
                            seconds=time.perf_counter() - t0, notes=tuple(notes), reference=the_plan.reference)


def _by_budget(subsets: Mapping[tuple[int, int], np.ndarray]) -> dict[int, list[int]]:
    by: dict[int, list[int]] = {}
    for (b, r) in subsets:
        by.setdefault(b, []).append(r)
    return by


def _linear_runs(arm: str, features: Mapping[str, np.ndarray], y: np.ndarray, split: tuple,
                 subsets: Mapping[tuple[int, int], np.ndarray], n_classes: int,
                 progress: Callable[[str], None] | None = None) -> list[Run]:
    """A fitted linear arm (the probe on frozen features, or the linear model on pixels): for every budget and
    repeat, a logistic regression per feature set fitted on the budget's images only (no refit on validation),
    the feature set and C with the best validation accuracy, scored on test."""
    from ..probes import ProbeConfig, probe_tap

    t0 = time.perf_counter()
    tr, va, te = split
    dev = metric_device(None)
    config = ProbeConfig()
    runs = []
    for b, repeats in _by_budget(subsets).items():
        if progress:
            progress(labels_per_class(b))
        splits = [(tr[subsets[(b, r)]], va, te) for r in repeats]
        scores = []
        for t, X in features.items():
            acc, f1, chosen, val_acc, _, pred = probe_tap(X, y, splits, n_classes, config, dev, refit=False)
            scores.append((t, acc, f1, chosen, [max(v) for v in val_acc], pred))
        for i, r in enumerate(repeats):
            # the best validation accuracy; ties go to the deeper tap (taps run shallow to deep)
            t, acc, f1, chosen, best_val, pred = max(reversed(scores), key=lambda s: s[4][i])
            n = len(splits[i][0])
            what = f"tap {t}" if arm == "linear-probe" else f"{t} RGB"
            runs.append(Run(arm=arm, budget=b, repeat=r, n_train=n, per_class=n / n_classes,
                            accuracy=round(acc[i], 6), macro_f1=round(f1[i], 6), val_accuracy=round(best_val[i], 6),
                            detail=f"{what}, C={chosen[i]:.3g}", correct=_bits(pred[i] == y[te])))
    seconds = (time.perf_counter() - t0) / max(len(runs), 1)
    return [replace(r, seconds=round(seconds, 3)) for r in runs]


def knn_predict(X_train: np.ndarray, y_train: np.ndarray, X_eval: np.ndarray, k: int) -> np.ndarray:
    """k-NN by cosine similarity of mean-centred features (the mean of the training rows); each of the k
    nearest votes with its similarity, so ties between classes go to the closer images."""
    mu = X_train.mean(0, keepdims=True)

    def unit(X: np.ndarray) -> np.ndarray:
        Z = X - mu
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    S = unit(X_eval) @ unit(X_train).T
    k = min(k, len(X_train))
    idx = np.argpartition(-S, k - 1, axis=1)[:, :k]
    n_classes = int(max(y_train.max(), 0)) + 1
    votes = np.zeros((len(X_eval), n_classes))
    np.add.at(votes, (np.arange(len(X_eval))[:, None], y_train[idx]), 1.0 + 1e-3 * np.take_along_axis(S, idx, 1))
    return votes.argmax(1)


def _knn_runs(X: np.ndarray, y: np.ndarray, split: tuple, subsets: Mapping[tuple[int, int], np.ndarray]
              ) -> list[Run]:
    """The k-NN arm on pixels: for every budget and repeat, k chosen on validation from :data:`KNN_GRID`
    (ties: the smaller k), scored on test."""
    from sklearn.metrics import f1_score

    t0 = time.perf_counter()
    tr, va, te = split
    n_classes = int(y.max()) + 1
    runs = []
    for (b, r), pos in subsets.items():
        sub = tr[pos]
        grid = [k for k in KNN_GRID if k <= len(sub)] or [1]
        val = [float(np.mean(knn_predict(X[sub], y[sub], X[va], k) == y[va])) for k in grid]
        k = grid[int(np.argmax(val))]
        pred = knn_predict(X[sub], y[sub], X[te], k)
        runs.append(Run(arm="pixel-knn", budget=b, repeat=r, n_train=len(sub), per_class=len(sub) / n_classes,
                        accuracy=round(float(np.mean(pred == y[te])), 6),
                        macro_f1=round(float(f1_score(y[te], pred, labels=np.unique(y[te]), average="macro",
                                                      zero_division=0)), 6),
                        val_accuracy=round(max(val), 6), detail=f"{PIXEL_SIZE}px RGB, k={k}",
                        correct=_bits(pred == y[te])))
    seconds = (time.perf_counter() - t0) / max(len(runs), 1)
    return [replace(r, seconds=round(seconds, 3)) for r in runs]


# ----------------------------------------------------------------------------- readouts
def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of the mean (the mean itself for one value)."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, mean, mean
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


N_BOOTSTRAP = 2000


def _correct_matrix(runs: Sequence[Run]) -> np.ndarray | None:
    """The runs' test-image correctness as a (runs, test images) 0/1 matrix; None when a run lacks it."""
    if not runs or any(not r.correct for r in runs) or len({len(r.correct) for r in runs}) != 1:
        return None
    return np.stack([np.frombuffer(r.correct.encode(), dtype=np.uint8) - ord("0") for r in runs]).astype(float)


def bootstrap_interval(M: np.ndarray, *, confidence: float = 0.95, n_draws: int = N_BOOTSTRAP,
                       random_state: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``M`` (repeats x test images) from a two-level bootstrap: each draw
    resamples the repeats and, independently, the test images. Both sources of noise count: which labels were
    drawn (and how training went), and which images happen to be in the test set."""
    M = np.atleast_2d(np.asarray(M, dtype=float))
    R, n = M.shape
    rng = np.random.default_rng(random_state)
    means = []
    for start in range(0, n_draws, 256):
        b = min(256, n_draws - start)
        wr = rng.multinomial(R, np.full(R, 1.0 / R), size=b)
        wi = rng.multinomial(n, np.full(n, 1.0 / n), size=b)
        means.append(((wr @ M) * wi).sum(1) / (R * n))
    draws = np.concatenate(means)
    alpha = (1 - confidence) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


@dataclass(frozen=True)
class CrossedInterval:
    """The mean of a (draws x test images) table of per-image results and its confidence interval.

    The two sources of noise are crossed: every draw of the labelled images (a repeat) is scored on the same test
    images. The variance of the mean is estimated as ``s_draws**2 / n_draws + s_images**2 / n_images``, where
    ``s_draws`` is the spread of the per-draw means (which images got labelled, and how training went) and
    ``s_images`` the spread of the per-image means over the draws (which images happen to be in the test set);
    each term carries its own degrees of freedom (Welch-Satterthwaite), so three draws give a wide interval where
    the draws disagree. (The residual counts in both terms, which errs on the wide side by ``s_e**2 / (R n)``.)

    Attributes:
        mean, low, high: The mean and its interval.
        s_draws, s_images: The two spreads (0 when there is one draw, or one image).
        n_draws, n_images: The table's shape.
        df: Degrees of freedom of the t quantile (inf when the mean has no spread).
        confidence: Its level.
    """

    mean: float
    low: float
    high: float
    s_draws: float
    s_images: float
    n_draws: int
    n_images: int
    df: float
    confidence: float = 0.95

    @property
    def se(self) -> float:
        return se_of(self.s_draws, self.n_draws, self.s_images, self.n_images)

    def half_width(self, n_draws: int | None = None, n_images: int | None = None) -> float:
        """The interval's half-width with other numbers of draws or test images, the spreads as measured."""
        R, n = n_draws or self.n_draws, n_images or self.n_images
        return t_quantile(self.confidence, welch_df(self.s_draws, R, self.s_images, n)) * \
            se_of(self.s_draws, R, self.s_images, n)


def se_of(s_draws: float, n_draws: int, s_images: float, n_images: int) -> float:
    """Standard error of a crossed mean (see :class:`CrossedInterval`)."""
    return math.sqrt(s_draws ** 2 / max(n_draws, 1) + s_images ** 2 / max(n_images, 1))


def welch_df(s_draws: float, n_draws: int, s_images: float, n_images: int) -> float:
    """Welch-Satterthwaite degrees of freedom of the two-term variance (inf when it is 0)."""
    terms = [(s ** 2 / k, k - 1) for s, k in ((s_draws, n_draws), (s_images, n_images)) if k > 1 and s > 0]
    if not terms:
        return math.inf
    return sum(v for v, _ in terms) ** 2 / sum(v ** 2 / d for v, d in terms)


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided Student-t quantile (the normal one for infinite df)."""
    from scipy.stats import norm, t

    q = 0.5 + confidence / 2
    return float(norm.ppf(q) if not math.isfinite(df) else t.ppf(q, df))


def crossed_interval(M: np.ndarray, *, confidence: float = 0.95) -> CrossedInterval:
    """The mean of ``M`` (draws x test images: 0/1 correctness, or paired differences of two arms) and its interval
    (see :class:`CrossedInterval`)."""
    M = np.atleast_2d(np.asarray(M, dtype=float))
    R, n = M.shape
    if R == 0 or n == 0:
        raise TldiagError(f"crossed_interval needs at least one draw and one test image, got a {R}x{n} table.")
    s_draws = float(M.mean(1).std(ddof=1)) if R > 1 else 0.0
    s_images = float(M.mean(0).std(ddof=1)) if n > 1 else 0.0
    mean = float(M.mean())
    df = welch_df(s_draws, R, s_images, n)
    half = t_quantile(confidence, df) * se_of(s_draws, R, s_images, n)
    return CrossedInterval(mean, mean - half, mean + half, s_draws, s_images, R, n, df, confidence)


def _interval(values: Sequence[float], M: np.ndarray | None) -> tuple[float, float, float]:
    """Mean of ``values`` and its 95% interval: :func:`crossed_interval` when per-image results exist, else a
    t-interval over repeats."""
    if M is None:
        return t_interval(values)
    c = crossed_interval(M)
    return float(np.mean(values)), c.low, c.high


@dataclass(frozen=True)
class ArmCurve:
    """Test accuracy against labels for one arm.

    Attributes:
        arm: One of :data:`ARMS`.
        budgets: Budgets run (0 = all), smallest first.
        per_class: Mean labels per class of each budget (the x axis).
        mean, low, high: Mean accuracy over repeats and its 95% interval (:func:`crossed_interval` over draws
            and test images; a t-interval over repeats for runs without per-image results).
        accuracies: Each budget's accuracies, one per repeat (repeat order).
    """

    arm: str
    budgets: tuple[int, ...]
    per_class: tuple[float, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    accuracies: tuple[tuple[float, ...], ...]
    correct: tuple[np.ndarray | None, ...] = field(default=(), repr=False, compare=False)

    @property
    def area(self) -> float:
        """Mean accuracy over budgets (how good an arm is across the range)."""
        return float(np.mean(self.mean))


def curves(result: EfficiencyResult) -> dict[str, ArmCurve]:
    """One :class:`ArmCurve` per arm that ran, budgets in increasing order ("all" last). A budget where a scratch
    arm did not converge in some repeat is left out of its curve: it does not vote (see :attr:`Run.converged`; a
    stunted scratch run would only flatter transfer). A transfer arm at chance stays: that is what transfer gave."""
    out = {}
    for arm in result.arms:
        runs = [r for r in result.runs if r.arm == arm]
        stuck = {r.budget for r in runs if not r.converged} if arm in SCRATCH_ARMS else set()
        budgets = sorted({r.budget for r in runs} - stuck, key=_budget_order)
        if not budgets:
            continue
        per_class, mean, low, high, accs, correct = [], [], [], [], [], []
        for b in budgets:
            at = sorted((r for r in runs if r.budget == b), key=lambda r: r.repeat)
            m, lo, hi = _interval([r.accuracy for r in at], _correct_matrix(at))
            per_class.append(float(np.mean([r.per_class for r in at])))
            mean.append(m), low.append(max(lo, 0.0)), high.append(min(hi, 1.0))
            accs.append(tuple(r.accuracy for r in at))
            correct.append(_correct_matrix(at))
        out[arm] = ArmCurve(arm, tuple(budgets), tuple(per_class), tuple(mean), tuple(low), tuple(high), tuple(accs),
                            tuple(correct))
    return out


def _log_interp(x0: float, x1: float, f: float) -> float:
    """The point a fraction ``f`` of the way from ``x0`` to ``x1`` on a log scale."""
    return float(math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))))


@dataclass(frozen=True)
class Reach:
    """How many labels an arm needs to reach an accuracy.

    Attributes:
        arm: The arm.
        per_class: Labels per class, interpolated on a log scale between the budgets around the first crossing of
            the mean curve; the smallest budget when it is already reached there (``bound`` "≤"), the largest
            when never reached (``bound`` ">").
        bound: "" (interpolated), "≤" (at most) or ">" (more than: never reached).
    """

    arm: str
    per_class: float
    bound: str = ""

    @property
    def reached(self) -> bool:
        return self.bound != ">"


def labels_to_reach(curve: ArmCurve, accuracy: float) -> Reach:
    """Labels per class at which ``curve``'s mean first reaches ``accuracy`` (see :class:`Reach`)."""
    xs, ys = curve.per_class, curve.mean
    for k, (x, y) in enumerate(zip(xs, ys)):
        if y >= accuracy:
            if k == 0:
                return Reach(curve.arm, x, "≤")
            f = (accuracy - ys[k - 1]) / (y - ys[k - 1])
            return Reach(curve.arm, _log_interp(xs[k - 1], x, f))
    return Reach(curve.arm, xs[-1], ">")


@dataclass(frozen=True)
class Comparison:
    """The best transfer arm against the best scratch arm at one budget, paired over repeats (same subsets).

    Attributes:
        budget: The budget (0 = all); per_class: its mean labels per class.
        transfer_arm, scratch_arm: The arms with the higher mean accuracy in each family at this budget.
        transfer, scratch: Their mean accuracies.
        gain, low, high: Mean of (transfer - scratch) over repeats and its 95% interval (:func:`crossed_interval`
            of the paired per-image differences; a t-interval over repeats without per-image results).
        n: Repeats paired.
        s_draws, s_images, n_test: The interval's two spreads (between draws of the labelled images, over test
            images) and the test images it was measured on; None and 0 without per-image results. What a larger test
            set or more draws would make of the interval follows from them (:class:`CrossedInterval`).
    """

    budget: int
    per_class: float
    transfer_arm: str
    scratch_arm: str
    transfer: float
    scratch: float
    gain: float
    low: float
    high: float
    n: int
    s_draws: float | None = None
    s_images: float | None = None
    n_test: int = 0

    @property
    def verdict(self) -> str:
        """``transfer better``, ``scratch better`` (the interval excludes 0) or ``tie``."""
        degenerate = self.low == self.high  # one repeat and no per-image results: the sign is all there is
        if self.low > 0 or (degenerate and self.gain > 0):
            return "transfer better"
        if self.high < 0 or (degenerate and self.gain < 0):
            return "scratch better"
        return "tie"

    def describe(self) -> str:
        ci = f" (95% CI {self.low:+.3f} to {self.high:+.3f}, {self.n} repeat{'' if self.n == 1 else 's'})" \
            if self.high > self.low else ""
        return (f"at {labels_per_class(self.budget, self.per_class)}: {ARM_TITLES[self.scratch_arm]} "
                f"{self.scratch:.3f} vs {ARM_TITLES[self.transfer_arm]} {self.transfer:.3f}, transfer − scratch "
                f"{self.gain:+.3f}{ci}: {self.verdict}")


@dataclass(frozen=True)
class Readouts:
    """What the chart says, in numbers.

    Attributes:
        target_accuracy: The accuracy the "labels needed" readouts aim at.
        reach: Per arm, the labels per class it needs to reach ``target_accuracy``.
        labels_saved: Labels the best scratch arm needs / labels the best transfer arm needs, at the target
            accuracy; None when no transfer arm reaches it.
        labels_saved_bound: "≥" when scratch never reaches it (or transfer reaches it at the smallest budget) and
            the ratio is a lower bound; "" otherwise.
        budget: The budget of ``gain``; gain: the comparison there.
        comparisons: One :class:`Comparison` per budget.
        break_even: Labels per class where scratch catches up with transfer (interpolated on a log scale), None
            when it never does within the budgets; break_even_bound: "≤" when it already has at the smallest.
        negative_transfer: Scratch is at or above transfer at some budget.
        evidence: The comparisons where it is.
        summary: The readouts as sentences.
    """

    target_accuracy: float
    reach: Mapping[str, Reach]
    labels_saved: float | None
    labels_saved_bound: str
    budget: int
    gain: Comparison
    comparisons: tuple[Comparison, ...]
    break_even: float | None
    break_even_bound: str
    negative_transfer: bool
    evidence: tuple[Comparison, ...]
    summary: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _compare(cs: Mapping[str, ArmCurve], budget: int) -> Comparison:
    def best(family: Sequence[str]) -> ArmCurve:
        return max((cs[a] for a in family if a in cs and budget in cs[a].budgets),
                   key=lambda c: c.mean[c.budgets.index(budget)])

    t, s = best(TRANSFER_ARMS), best(SCRATCH_ARMS)
    i, j = t.budgets.index(budget), s.budgets.index(budget)
    n = min(len(t.accuracies[i]), len(s.accuracies[j]))
    diff = np.asarray(t.accuracies[i][:n]) - np.asarray(s.accuracies[j][:n])
    Mt = t.correct[i] if t.correct else None
    Ms = s.correct[j] if s.correct else None
    paired = Mt[:n] - Ms[:n] if Mt is not None and Ms is not None and Mt.shape[1] == Ms.shape[1] else None
    if paired is None:
        gain, low, high = t_interval(diff)
        return Comparison(budget, t.per_class[i], t.arm, s.arm, t.mean[i], s.mean[j], gain, low, high, n)
    c = crossed_interval(paired)
    return Comparison(budget, t.per_class[i], t.arm, s.arm, t.mean[i], s.mean[j], float(np.mean(diff)), c.low,
                      c.high, n, c.s_draws, c.s_images, c.n_images)


def readouts(result: EfficiencyResult, *, target_accuracy: float | None = None, budget: int | None = None,
             arm_curves: Mapping[str, ArmCurve] | None = None) -> Readouts:
    """The chart's readouts (see :class:`Readouts`).

    Args:
        result: A finished experiment with at least one transfer and one scratch arm.
        target_accuracy: Accuracy for "labels needed"; default: the best mean accuracy that both the best transfer
            arm and the best scratch arm reach (scratch's best, when transfer is better).
        budget: Budget of the gain readout; default the experiment's reference budget (the team's budget), else 10
            labels per class when run, else the middle budget.
        arm_curves: ``curves(result)`` when the caller has it already (its bootstrap intervals are the slow part).
    """
    cs = arm_curves if arm_curves is not None else curves(result)
    transfer = [a for a in TRANSFER_ARMS if a in cs]
    scratch = [a for a in SCRATCH_ARMS if a in cs]
    if not transfer or not scratch:
        raise TldiagError(f"The experiment has arms {list(cs)}; the readouts need a transfer arm "
                          f"({', '.join(TRANSFER_ARMS)}) and a scratch arm ({', '.join(SCRATCH_ARMS)}).")
    shared = [b for b in result.budgets if any(b in cs[a].budgets for a in transfer)
              and any(b in cs[a].budgets for a in scratch)]
    if not shared:
        raise TldiagError("No budget has runs of a transfer arm and of a scratch arm that converged (was the "
                          "experiment cancelled early?); run it again to complete it (finished runs are reused).")
    # an arm run at some budgets only (fine-tuning at the team's budget on a CPU) has no area to compare
    spans = lambda arms: [a for a in arms if set(shared) <= set(cs[a].budgets)] or arms  # noqa: E731
    best_t = max((cs[a] for a in spans(transfer)), key=lambda c: c.area)
    best_s = max((cs[a] for a in spans(scratch)), key=lambda c: c.area)
    if target_accuracy is None:
        target_accuracy = math.floor(1000 * min(max(best_t.mean), max(best_s.mean)) + 1e-9) / 1000
    elif not 0.0 < target_accuracy <= 1.0:
        raise TldiagError(f"target_accuracy={target_accuracy!r} must be an accuracy in (0, 1], e.g. 0.9.")
    if budget is None:
        budget = result.reference if result.reference in shared and (result.reference or result.config.budget) \
            else 10 if 10 in shared else shared[len(shared) // 2]
    elif budget not in shared:
        raise TldiagError(f"budget={budget!r} was not run for every arm; choose one of {shared} (0 = all).")
    reach = {a: labels_to_reach(c, target_accuracy) for a, c in cs.items()}
    rt = min((reach[a] for a in spans(transfer)), key=lambda r: (not r.reached, r.per_class))
    rs = min((reach[a] for a in spans(scratch)), key=lambda r: (not r.reached, r.per_class))
    saved, saved_bound = None, ""
    if rt.reached:
        saved = rs.per_class / rt.per_class
        saved_bound = "≥" if (not rs.reached or rt.bound == "≤") and rs.bound != "≤" else ""
    comparisons = tuple(_compare(cs, b) for b in shared)
    evidence = tuple(c for c in comparisons if c.scratch >= c.transfer)
    break_even, be_bound = None, ""
    for k, c in enumerate(comparisons):
        if c.scratch >= c.transfer:
            if k == 0:
                break_even, be_bound = c.per_class, "≤"
            else:
                p = comparisons[k - 1]
                d0, d1 = p.transfer - p.scratch, c.transfer - c.scratch
                break_even = _log_interp(p.per_class, c.per_class, d0 / (d0 - d1) if d0 != d1 else 1.0)
            break
    gain = next(c for c in comparisons if c.budget == budget)
    k = len(result.classes)
    lines = []
    if rt.reached:
        how = "at most" if rt.bound == "≤" else "about"
        s_how = ("more than" if not rs.reached else "at most" if rs.bound == "≤" else "about")
        lines.append(f"To reach {target_accuracy:.1%} test accuracy, {ARM_NAMES[rt.arm]} needs {how} "
                     f"{rt.per_class:.3g} labels per class ({rt.per_class * k:,.0f} in all); "
                     f"{ARM_NAMES[rs.arm]} needs {s_how} {rs.per_class:.3g} ({rs.per_class * k:,.0f})"
                     + (f": {saved_bound}{saved:.3g}x the labels." if saved else "."))
    else:
        lines.append(f"No transfer arm reaches {target_accuracy:.1%} within the budgets tried.")
    lines.append(f"At {labels_per_class(gain.budget, gain.per_class)}, transfer − scratch = "
                 f"{gain.gain:+.3f}" + (f" (95% CI {gain.low:+.3f} to {gain.high:+.3f})" if gain.high > gain.low else "")
                 + f": {gain.verdict}.")
    if break_even is None:
        top = comparisons[-1]
        lines.append(f"Scratch does not catch up with transfer within the budgets tried (up to "
                     f"{labels_per_class(top.budget, top.per_class)}): transfer pays everywhere here.")
    else:
        lines.append(f"Break-even: scratch catches up with transfer at {be_bound or 'about '}{break_even:.3g} labels "
                     "per class; beyond that transfer stops paying.")
    if evidence:
        worse = [c for c in evidence if c.verdict == "scratch better"]
        head = "Negative transfer: scratch beats transfer" if worse else \
            "Negative-transfer flag: scratch is at or above transfer (within noise)"
        lines.append(f"{head} {evidence[0].describe()}" + (f", and at {len(evidence) - 1} more budget(s)."
                                                           if len(evidence) > 1 else "."))
    return Readouts(float(target_accuracy), reach, saved, saved_bound, int(budget), gain, comparisons, break_even,
                    be_bound, bool(evidence), evidence, tuple(lines))


# ----------------------------------------------------------------------------- as a job
def run_job(config: Mapping[str, Any], context) -> dict[str, Any]:
    """The ``efficiency`` job kind (see :mod:`tldiag.training.jobs`): each finished run becomes a metric row, so a page can
    draw the chart while the experiment goes on."""
    cfg = EfficiencyConfig.from_dict(config)
    context.log(f"data efficiency of {cfg.model} on {cfg.target} ({', '.join(cfg.arms)}; {cfg.repeats} repeats)")

    def progress(done: float, total: int, message: str) -> None:
        context.report(done / max(total, 1), message)

    def on_run(run: Run) -> None:
        context.report(metrics=run.to_dict(), message=f"{ARM_TITLES[run.arm]} · {labels_per_class(run.budget)} · "
                                                       f"repeat {run.repeat + 1}: {run.accuracy:.3f}")

    result = run_experiment(cfg, progress=progress, on_run=on_run)
    context.log(f"done in {result.seconds:.0f} s")
    return result.to_dict()


def prepare_job(config: EfficiencyConfig, *, dataset: ImageDataset | None = None):
    """The ``efficiency`` job of ``config``, checked with :func:`plan_experiment` (see
    :func:`tldiag.training.jobs.launch`)."""
    from .jobs import Launch

    c = plan_experiment(config, dataset=dataset).config
    return Launch(c.to_dict(), f"{c.model} → {c.target} · data efficiency", c.device or "cpu")


def config_of(job) -> EfficiencyConfig:
    """The configuration of an ``efficiency`` job (a :class:`tldiag.training.jobs.Job`); keys this version does not
    know (a record written by a newer one, a test's replay) are left out."""
    known = {f.name for f in fields(EfficiencyConfig)}
    return EfficiencyConfig.from_dict({k: v for k, v in job.config.items() if k in known})


def result_of(job) -> EfficiencyResult | None:
    """The result of a finished ``efficiency`` job, or None while it has none."""
    return EfficiencyResult.from_dict(job.result) if job.status == "done" and job.result else None


def partial_result(config: Mapping[str, Any], metrics: Sequence[Mapping[str, Any]]) -> EfficiencyResult | None:
    """What an unfinished (running, cancelled or failed) job has measured so far, from its metric rows; None before
    its first run."""
    runs = [Run(**{k: v for k, v in m.items() if k in {f.name for f in fields(Run)}}) for m in metrics]
    if not runs:
        return None
    cfg = EfficiencyConfig.from_dict(config)
    budgets = tuple(sorted({r.budget for r in runs}, key=_budget_order))
    return EfficiencyResult(config=cfg, classes=(), n_pool=0, n_val=0, n_test=0, chance=float("nan"),
                            budgets=budgets, runs=_in_order(runs), schedules={}, augment_reason="", device="",
                            seconds=0.0, notes=("partial: the experiment has not finished",))


__all__ = ["CrossedInterval", "crossed_interval", "JoinedDataset", "parts_of", "spare_test_images", "se_of",
           "t_quantile", "welch_df", "TEST_PER_CLASS", "TEST_MAX", "DRAW_LABELS",
           "ARMS", "ARM_TITLES", "BUDGETS", "PROFILES", "ArmCurve", "ArmSchedule", "Comparison", "EfficiencyConfig",
           "bootstrap_interval",
           "EfficiencyResult", "ExperimentPlan", "Reach", "Readouts", "Run", "budget_label", "labels_per_class",
           "budget_subsets", "curves", "default_schedules", "labels_to_reach", "partial_result", "plan_experiment",
           "readouts", "result_of", "run_experiment", "run_job", "prepare_job", "config_of", "t_interval"]
