"""One run (an arm at a budget and draw: its test accuracy and per-image correctness), an experiment's result, and
the run store under ``$TLDIAG_HOME/efficiency`` (one JSON file per finished run, keyed by all that determines it)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ... import _config
from .config import ARMS, ARM_TITLES, ArmSchedule, EfficiencyConfig, RUN_VERSION


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


def correct_bits(correct: np.ndarray) -> str:
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


def run_store() -> Path:
    return _config.home() / "efficiency" / "runs"


def run_key(**parts: Any) -> str:
    payload = json.dumps({"v": RUN_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def read_run(path: Path) -> Run | None:
    try:
        return replace(Run(**json.loads(path.read_text())), reused=True)
    except (OSError, ValueError, TypeError):
        return None


def budget_order(budget: int) -> tuple[bool, int]:
    """Sort key of budgets: increasing, "all" (0) last."""
    return budget == 0, budget


def in_order(runs: Iterable[Run]) -> tuple[Run, ...]:
    """Runs by arm (in :data:`ARMS` order), budget and repeat."""
    return tuple(sorted(runs, key=lambda r: (ARMS.index(r.arm), budget_order(r.budget), r.repeat)))


__all__ = ["EfficiencyResult", "Run", "budget_label", "budget_order", "correct_bits", "in_order", "labels_per_class",
           "read_run", "run_key", "run_store"]
