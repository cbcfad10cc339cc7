"""The experiment run end to end (:func:`run_experiment`): the plan, the fitted arms, the trained arms here or as Ray
tasks, every finished run stored at once and reused when the experiment is launched again."""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ... import _config
from ...data import ImageDataset, load_dataset
from ...models import Model, load_model
from ...progress import ProgressFn
from .arms import Ledger, TrainedArms, fitted_runs
from .config import ARM_TITLES, EfficiencyConfig, FITTED_ARMS, TRAINED_ARMS
from .plan import ExperimentPlan, budget_subsets, prepare_experiment
from .runs import EfficiencyResult, Run, budget_order, in_order, labels_per_class


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
    the_plan, rows, y, split, data = prepare_experiment(config, dataset)
    config = the_plan.config
    n_classes = len(the_plan.classes)
    subsets = budget_subsets(y[split[0]], the_plan.budgets, the_plan.draws, config.seed)
    counts = np.bincount(y[split[2]], minlength=n_classes)
    chance = float(counts.max() / counts.sum())
    runs: list[Run] = []
    notes = list(the_plan.notes)
    trained = [a for a in config.arms if a in TRAINED_ARMS]
    fitted = [a for a in config.arms if a in FITTED_ARMS]
    ledger = Ledger(the_plan.n_runs + len(fitted), progress)

    def record(run: Run) -> None:
        runs.append(run)
        if on_run:
            on_run(run)

    base = model if model is not None and model.id == config.model else None
    if "linear-probe" in fitted:
        base = base or load_model(config.model, resolution=config.resolution)
    for run in fitted_runs(fitted, base, data, rows, y, split, subsets, n_classes, ledger):
        record(run)
    if not trained:
        return _result(the_plan, chance, runs, notes, t0)
    arms = TrainedArms(the_plan, data, rows, y, split, subsets, ledger, base=base)
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
    stuck = sorted({(r.arm, r.budget) for r in runs if not r.converged}, key=lambda ab: (ab[0], budget_order(ab[1])))
    if stuck:
        notes.append("Did not converge (validation accuracy still at chance when the schedule ended; these points do "
                     "not vote): " + "; ".join(f"{ARM_TITLES[a]} at {labels_per_class(b)}" for a, b in stuck) + ".")
    return _result(the_plan, chance, runs, notes, t0)


def _trained_on_ray(arms: TrainedArms, trained: Sequence[str], order: Sequence[tuple[int, int]],
                    search_at: tuple[int, int], dataset: ImageDataset, record: Callable[[Run], None], *,
                    reuse: bool) -> None:
    """The trained runs as Ray tasks (see :mod:`tldiag.distributed`): first each arm's learning-rate search at the reference
    budget (in parallel), then every other run at the rate it chose (all in parallel). The driver stores each run in
    the run store as it comes back, exactly as a local run stores itself, and reuses stored ones without a task."""
    from ...distributed import Call, run_tasks

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
            from ...cache import atomic_write_text

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
    the_plan, rows, y, split, data = prepare_experiment(cfg, dataset)
    subsets = budget_subsets(y[split[0]], the_plan.budgets, the_plan.draws, cfg.seed)
    units = len(the_plan.schedules[arm].lr_grid) if search else 1
    ledger = Ledger(units, lambda done, total, message: report(done / max(total, 1), message))
    arms = TrainedArms(the_plan, data, rows, y, split, subsets, ledger, base=None, workers=workers)
    return arms.run(arm, b, r, dict(chosen_lr), search=search, reuse=False, store=False).to_dict()


def _result(the_plan: ExperimentPlan, chance: float, runs: list[Run], notes: list[str], t0: float
            ) -> EfficiencyResult:
    return EfficiencyResult(config=the_plan.config, classes=the_plan.classes, n_pool=the_plan.n_pool,
                            n_val=the_plan.n_val, n_test=the_plan.n_test, chance=chance, budgets=the_plan.budgets,
                            runs=in_order(runs), schedules=dict(the_plan.schedules),
                            augment_reason=the_plan.augment_reason, device=str(the_plan.config.device),
                            seconds=time.perf_counter() - t0, notes=tuple(notes), reference=the_plan.reference)


__all__ = ["remote_run", "run_experiment"]
