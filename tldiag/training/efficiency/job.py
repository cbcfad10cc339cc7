"""The experiment as a background job (:mod:`tldiag.training.jobs`, kind ``efficiency``): run, checked before launch,
its configuration and its result read back, and what an unfinished job has measured so far."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, Sequence

from ...data import ImageDataset
from .config import ARM_TITLES, EfficiencyConfig
from .plan import plan_experiment
from .runner import run_experiment
from .runs import EfficiencyResult, Run, budget_order, in_order, labels_per_class


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
    from ..jobs import Launch

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
    budgets = tuple(sorted({r.budget for r in runs}, key=budget_order))
    return EfficiencyResult(config=cfg, classes=(), n_pool=0, n_val=0, n_test=0, chance=float("nan"),
                            budgets=budgets, runs=in_order(runs), schedules={}, augment_reason="", device="",
                            seconds=0.0, notes=("partial: the experiment has not finished",))


__all__ = ["config_of", "partial_result", "prepare_job", "result_of", "run_job"]
