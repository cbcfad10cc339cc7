"""The plan of an experiment before anything trains: the split (pool, validation, test with every spare labelled
image), the arms' resolved schedules and the labelled subsets of each budget and draw."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ... import _config
from ...data import ImageDataset, load_dataset
from ...errors import SpecError
from ...models import random_init_id
from ...validation import check_int
from ..finetune import FinetuneConfig, auto_augmentation
from ..loop import STRATEGIES, labelled_split
from .config import ArmSchedule, CPU_SCRATCH_NOTE, EfficiencyConfig, SCRATCH_ARMS, TRAINED_ARMS, default_schedules
from .runs import budget_label


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


def seed_of(*parts: int) -> int:
    """A 32-bit seed derived from several integers (different for every combination)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def init_seed(arm: str, seed: int, repeat: int) -> int:
    """The random initialisation of a scratch arm in one repeat."""
    return seed_of(seed, repeat, {"small-cnn": 1, "scratch": 2}[arm])


def plan_experiment(config: EfficiencyConfig, *, dataset: ImageDataset | None = None) -> ExperimentPlan:
    """Check an experiment against its data and resolve its defaults, without loading weights or training.

    Raises a :class:`TldiagError` for anything that would make it fail: unknown arms, a random-init model, a
    target without labels or with a class too small to split.
    """
    return prepare_experiment(config, dataset)[0]


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


def prepare_experiment(config: EfficiencyConfig, dataset: ImageDataset | None
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
        s = replace(schedules[arm], **{k: tuple(v) if k == "lr_grid" else v for k, v in over.items()})
        if "epochs" in over and "min_epochs" not in over and s.min_epochs > s.epochs:
            s = replace(s, min_epochs=s.epochs)  # fewer epochs than the profile's minimum: early stopping's floor follows
        schedules[arm] = s
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


def schedule_config(schedule: ArmSchedule, config: EfficiencyConfig, **resolved: Any):
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
        schedule_config(schedule, config).validate()
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


__all__ = ["ExperimentPlan", "JoinedDataset", "budget_subsets", "init_seed", "parts_of", "plan_experiment",
           "prepare_experiment", "schedule_config", "seed_of", "spare_test_images"]
