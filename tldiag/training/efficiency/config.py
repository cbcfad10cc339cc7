"""The experiment's settings: the arms and budgets, each arm's schedule by profile (:class:`ArmSchedule`) and the
experiment's configuration (:class:`EfficiencyConfig`: what a job records)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from ... import _config
from ...errors import SpecError
from ...models import DEFAULT_MODEL, parse_model_id
from ...validation import check_int, check_number, check_specs
from ..loop import AUGMENTATIONS


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


def schedule_caps(arms, *, epochs: int | None = None, epoch_images: int | None = None
                  ) -> dict[str, dict[str, int]]:
    """Per trained arm among ``arms``, the settings that replace its profile's for a quicker, rougher experiment (a
    first look on a CPU, a smoke test): at most ``epochs`` epochs (early stopping's minimum lowered to match) and at
    least ``epoch_images`` images per epoch. None or 0 keeps the profile's value; nothing given: ``{}``.

    Every trained arm gets the same caps, so the comparison keeps one tuning effort per arm."""
    over: dict[str, int] = {}
    if epochs:
        check_int(epochs, "epochs", minimum=1, maximum=1000, hint="(0 or none keeps the profile's)")
        over["epochs"] = int(epochs)
    if epoch_images:
        check_int(epoch_images, "epoch_images", minimum=1, maximum=10_000_000,
                  hint="(0 or none keeps the profile's)")
        over["min_epoch_images"] = int(epoch_images)
    return {a: dict(over) for a in arms if a in TRAINED_ARMS} if over else {}


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


__all__ = ["ARMS", "ARM_NAMES", "ARM_TITLES", "ArmSchedule", "BUDGETS", "BUDGET_DRAWS", "CPU_SCRATCH_NOTE",
           "DRAW_LABELS", "EfficiencyConfig", "FITTED_ARMS", "KNN_GRID", "LR_GRID", "MAX_DRAWS", "PROFILES",
           "RUN_VERSION", "SCRATCH_ARMS", "TEST_MAX", "TEST_PER_CLASS", "TRAINED_ARMS", "TRANSFER_ARMS",
           "default_schedules", "schedule_caps"]
