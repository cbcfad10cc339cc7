"""Job functions for the job-system tests: they run in a job process, so they live in an importable module."""
from __future__ import annotations

import time


def sleepy(config, ctx):
    """Report ``steps`` metric rows over ``seconds``, write an artefact, return what it did."""
    steps, seconds = int(config.get("steps", 4)), float(config.get("seconds", 1.0))
    for i in range(steps):
        time.sleep(seconds / steps)
        ctx.log(f"step {i + 1} of {steps}")
        ctx.report((i + 1) / steps, f"step {i + 1}/{steps}", metrics={"step": i + 1, "loss": 1.0 / (i + 1)})
    (ctx.folder / "artefact.txt").write_text("made by sleepy")
    return {"steps": steps, "artefact": str(ctx.folder / "artefact.txt")}


def crash(config, ctx):
    ctx.log("about to fail")
    raise RuntimeError("the job broke on purpose")


def replay(config, ctx):
    """Finish at once with the result stored in the config (a finished job of any kind, for readers' tests)."""
    ctx.report(1.0, "replayed")
    return config["_result"]


def ticks_then_row(config, ctx):
    """Progress ticks faster than the store takes them, then a metric row without a fraction: return the progress
    the store holds after the row."""
    for fraction in (0.1, 0.2, 0.3, 0.4):
        ctx.report(fraction, f"at {fraction}")
    ctx.report(metrics={"step": 1}, message="row")
    return {"progress": ctx.store.get(ctx.job.id).progress}
