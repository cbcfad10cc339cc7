"""The scenario panel: how often the verdict is right, measured against outcomes it never sees.

Each :class:`Scenario` is a model, a source, a target built from the offline data, and a label budget. Its
**realised outcome** (:func:`realise`) comes from a long, fair schedule that the verdict never runs: the best
transfer arm (the frozen probe, and a fine-tune for up to 15 epochs with its learning rate searched on validation)
against the best scratch arm (a linear model and k-NN on the pixels, the small CNN trained as long with the same
search and patience; the same architecture from scratch is left out on a CPU) at the scenario's budget, 3 repeats on a split of their own (seed :data:`REALISED_SEED`, not
the verdict's), compared with a paired 95% interval over repeats and test images:

* GO when transfer is ahead beyond the interval (its lower end above 0),
* NO-GO when scratch is at or above transfer (the gain is at most 0),
* CAUTION when transfer is ahead but within noise.

A candidate with random weights has nothing to transfer: its outcome is NO-GO by definition, and it is recorded
as such without training. The outcomes are computed once (:func:`realise_all`, ``python -m tldiag.bench verdict
--realise``, about 45 minutes on a 2-core CPU) and stored in ``tldiag/decision/panel_outcomes.json``; ``python -m tldiag.bench
verdict`` then computes the fast verdict (shift tests, probes and the scratch baselines at the budget: no training
beyond seconds) and the full verdict (the fast one plus the data-efficiency experiment at the budget, ``cpu``
profile) of every scenario and prints them next to the realised outcome with the agreement rates
(:func:`agreement`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .verdict import CAUTION, GO, NO_GO

OUTCOMES_FILE = Path(__file__).with_name("panel_outcomes.json")
REALISED_SEED = 1000
PANEL_VERSION = 1
DAMAGED = "damaged"
"""A scenario model written at run time: the candidate's architecture with every weight set to zero."""


@dataclass(frozen=True)
class Scenario:
    """One row of the panel.

    Attributes:
        name: Short key.
        what: What it stands for, in a sentence.
        model: Model id; :data:`DAMAGED` is the EfficientNet-Lite0 architecture with all-zero weights.
        source, target: Dataset specs (the per-class ``limit`` is applied by the setup).
        budget: Labels per class the team has.
        limit: Images per class of each dataset.
        resolution: Input size of the model.
    """

    name: str
    what: str
    target: str
    budget: int
    source: str = "demo:digits"
    model: str = "efficientnet-lite0"
    limit: int = 50
    resolution: int = 32


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("null-seed0", "same distribution as the source (handwritten digits), seed 0", "demo:digits", 5),
    Scenario("null-seed1", "same distribution as the source, another subsample (seed 1)", "demo:digits?seed=1", 5),
    Scenario("rotate-low", "rotated digits, severity 1", "demo:digits?shift=rotate&severity=1", 5),
    Scenario("rotate-high", "rotated digits, severity 5", "demo:digits?shift=rotate&severity=5", 5),
    Scenario("noise-low", "Gaussian noise, severity 1", "demo:digits?shift=noise&severity=1", 5),
    Scenario("noise-high", "Gaussian noise, severity 5", "demo:digits?shift=noise&severity=5", 5),
    Scenario("hand-to-print", "handwritten source, printed digits as target", "demo:printed-digits", 5),
    Scenario("print-to-hand", "printed source, handwritten digits as target", "demo:digits", 5,
             source="demo:printed-digits"),
    Scenario("random-weights", "a candidate with random weights", "demo:printed-digits", 5,
             model="random:efficientnet-lite0"),
    Scenario("damaged-checkpoint", "a damaged checkpoint: every weight zero", "demo:printed-digits", 5, model=DAMAGED),
    Scenario("scratch-competitive", "printed digits at 20 labels per class, where a small CNN is strong",
             "demo:printed-digits", 20),
    Scenario("print-1-label", "printed digits with one label per class, at 64 px", "demo:printed-digits", 1,
             resolution=64),
)


def damaged_checkpoint() -> str:
    """The model id of :data:`DAMAGED`: an all-zero EfficientNet-Lite0 state dict under the data roots."""
    import torch

    from .._config import datasets_dir
    from ..models import load_model

    path = datasets_dir() / "panel" / "zeros-efficientnet-lite0.pt"
    if not path.is_file():
        from ..cache import atomic_write

        state = {k: torch.zeros_like(v) for k, v in load_model("efficientnet-lite0").module.state_dict().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(state, f))
    return f"checkpoint:{path}?arch=efficientnet-lite0"


def setup_of(sc: Scenario, *, seed: int = 0):
    """The :class:`~tldiag.setup.Setup` a team would open for the scenario."""
    from ..setup import Setup

    model = damaged_checkpoint() if sc.model == DAMAGED else sc.model
    return Setup(model=model, source=sc.source, target=sc.target, resolution=sc.resolution, limit=sc.limit,
                 seed=seed, budget=sc.budget)


# ----------------------------------------------------------------------------- realised outcomes
REALISED_EFFORT = {"epochs": 15, "patience": 4, "min_epochs": 5, "min_epoch_images": 256, "lr_grid": (0.3, 1.0, 3.0)}
"""The realised outcome's schedule of every trained arm (1.25x the cpu profile's cap in steps, patience 4 against 3)."""


def realised_config(sc: Scenario):
    """The long, fair schedule of the realised outcome: every trained arm (the small CNN at 32 px, the fine-tune at
    the scenario's resolution with the strategy for its budget) gets :data:`REALISED_EFFORT`."""
    from ..training.efficiency import EfficiencyConfig

    s = setup_of(sc, seed=0)
    return EfficiencyConfig(model=s.model, target=s.target_spec, source=s.source_spec, resolution=sc.resolution,
                            arms=("small-cnn", "pixel-linear", "pixel-knn", "linear-probe", "fine-tuned"),
                            budgets=(sc.budget,), budget=sc.budget, include_all=False, repeats=3, profile="full",
                            seed=REALISED_SEED, device="cpu",
                            schedules={"small-cnn": REALISED_EFFORT, "fine-tuned": REALISED_EFFORT})


def outcome_of(gain: float, low: float) -> str:
    """GO when transfer is ahead beyond the interval, NO-GO when scratch is at or above it, CAUTION otherwise."""
    if low > 0:
        return GO
    if gain <= 0:
        return NO_GO
    return CAUTION


def realise(sc: Scenario, progress: Callable[[float, int, str], None] | None = None) -> dict[str, Any]:
    """The realised outcome of one scenario (see the module docstring), as stored."""
    from ..training.efficiency import ARM_TITLES, curves, readouts, run_experiment
    from ..models import parse_model_id

    t0 = time.perf_counter()
    if sc.model != DAMAGED and parse_model_id(sc.model).kind == "random":
        return {"scenario": asdict(sc), "outcome": NO_GO, "by_definition": True, "gain": None, "low": None,
                "high": None, "arms": {}, "seconds": 0.0,
                "note": "random weights: nothing to transfer, so transfer cannot beat training from scratch"}
    config = realised_config(sc)
    result = run_experiment(config, progress=progress)
    cs = curves(result)
    g = readouts(result, arm_curves=cs).gain
    arms = {}
    for arm in result.arms:
        at = [r for r in result.runs if r.arm == arm]
        c = cs.get(arm)
        i = c.budgets.index(g.budget) if c is not None and g.budget in c.budgets else None
        arms[arm] = {"title": ARM_TITLES[arm], "mean": None if i is None else round(c.mean[i], 4),
                     "accuracies": [r.accuracy for r in at], "converged": all(r.converged for r in at),
                     "detail": sorted({r.detail for r in at})[:3]}
    return {"scenario": asdict(sc), "outcome": outcome_of(g.gain, g.low), "by_definition": False,
            "gain": round(g.gain, 4), "low": round(g.low, 4), "high": round(g.high, 4), "transfer_arm": g.transfer_arm,
            "scratch_arm": g.scratch_arm, "per_class": g.per_class, "n_test": result.n_test, "arms": arms,
            "schedules": {a: s.summary for a, s in result.schedules.items()}, "seed": REALISED_SEED,
            "seconds": round(time.perf_counter() - t0, 1)}


def load_outcomes(path: Path = OUTCOMES_FILE) -> dict[str, dict[str, Any]]:
    """The stored realised outcomes by scenario name (empty when none were computed)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {row["scenario"]["name"]: row for row in data.get("outcomes", [])}


def realise_all(names: Sequence[str] | None = None, path: Path = OUTCOMES_FILE, *,
                log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Compute the realised outcomes of the scenarios named (default: all) and store them in ``path`` as each one
    finishes (the others stay as stored)."""
    from ..cache import atomic_write_text

    stored = load_outcomes(path)
    for sc in SCENARIOS:
        if names and sc.name not in names:
            continue
        log(f"realising {sc.name}: {sc.what} (budget {sc.budget} per class)")
        row = realise(sc)
        stored[sc.name] = row
        log(f"  {sc.name}: {row['outcome']} (gain {row['gain']}, interval {row['low']} to {row['high']}, "
            f"{row['seconds']} s)")
        ordered = [stored[s.name] for s in SCENARIOS if s.name in stored]
        atomic_write_text(path, json.dumps({"version": PANEL_VERSION, "command":
                                            "python -m tldiag.bench verdict --realise",
                                            "outcomes": ordered}, indent=1))
    return stored


# ----------------------------------------------------------------------------- the verdicts
@dataclass(frozen=True)
class Row:
    """One scenario: its realised outcome and the two verdicts."""

    scenario: Scenario
    realised: str
    fast: str
    full: str
    fast_reason: str
    full_reason: str
    fast_seconds: float
    full_seconds: float
    realised_gain: float | None = None


def evidence(sc: Scenario) -> tuple[Any, Any, float, float]:
    """What the fast and the full verdict of a scenario read (computed from empty caches, or read from warm ones),
    and the seconds each took: ``(fast_evidence, full_evidence, fast_s, full_s)``."""
    from ..training.efficiency import curves, readouts, run_experiment
    from ..training.configs import efficiency_config
    from .report import FAST, gather
    from .verdict import EfficiencyEvidence

    setup = setup_of(sc)
    t0 = time.perf_counter()
    fast = gather(setup, compute=FAST).evidence
    t_fast = time.perf_counter() - t0
    full = fast
    if fast.pretrained:
        config = efficiency_config(setup, arms=("small-cnn", "pixel-linear", "pixel-knn", "linear-probe",
                                                "fine-tuned"), budgets=(sc.budget,), include_all=False,
                                   profile="cpu")
        result = run_experiment(config)
        ro = readouts(result, arm_curves=curves(result))
        full = replace(fast, efficiency=EfficiencyEvidence.from_readouts(ro, result))
    return fast, full, t_fast, time.perf_counter() - t0


def _reason(v) -> str:
    voting = [s for s in v.signals if s.status in (GO, CAUTION, NO_GO) and s.kind == "measured"]
    return "; ".join(f"{s.key} {s.status} {s.value}" for s in voting) or "no measured signal"


def run_panel(outcomes: Mapping[str, Mapping[str, Any]], names: Sequence[str] | None = None, rules=None,
              log: Callable[[str], None] | None = None, evidences: dict | None = None) -> list[Row]:
    """The fast and the full verdict of every scenario with a realised outcome (``names``: only those), next to it;
    ``evidences`` (a dict) receives what each verdict read, for :func:`sweep`."""
    from .verdict import decide

    rows = []
    for sc in SCENARIOS:
        if (names and sc.name not in names) or sc.name not in outcomes:
            continue
        fe, fu, tf, tfull = evidence(sc)
        if evidences is not None:
            evidences[sc.name] = (fe, fu)
        fast, full = decide(fe, rules), decide(fu, rules)
        o = outcomes[sc.name]
        row = Row(sc, o["outcome"], fast.decision or "none", full.decision or "none", _reason(fast), _reason(full),
                  tf, tfull, o.get("gain"))
        rows.append(row)
        if log:
            log(f"  {sc.name}: realised {row.realised}, fast {row.fast}, full {row.full} ({tf:.0f} s, {tfull:.0f} s)")
    return rows


SWEEP_NO_GO = (-0.02, -0.01, 0.0, 0.01, 0.02, 0.03)
SWEEP_GO = (0.0, 0.01, 0.03, 0.05, 0.1)
"""The thresholds :func:`sweep` tries for ``[baseline]`` and ``[efficiency]`` (``gain_no_go``, ``gain_go``)."""


@dataclass(frozen=True)
class SweepRow:
    """The panel's agreement under one setting of the measured signals' thresholds."""

    gain_no_go: float
    gain_go: float
    agreement: "Agreement"


def sweep(evidences: Mapping[str, tuple[Any, Any]], outcomes: Mapping[str, Mapping[str, Any]], rules=None,
          no_go: Sequence[float] = SWEEP_NO_GO, go: Sequence[float] = SWEEP_GO) -> list[SweepRow]:
    """The agreement of the fast and full verdicts for every pair of thresholds (the same pair for ``[baseline]``
    and ``[efficiency]``, the two readings of transfer against scratch at the budget), decided again on the same
    evidence (``name -> (fast_evidence, full_evidence)``, see :func:`evidence`); nothing is recomputed. The rows
    come sorted best first: the targets met, then the fewest GO where the outcome is NO-GO, then the full and the
    fast agreement, then the thresholds closest to the defaults."""
    from .verdict import BaselineRules, EfficiencyRules, Rules, decide

    base = rules or Rules()
    scenarios = [sc for sc in SCENARIOS if sc.name in evidences and sc.name in outcomes]
    out = []
    for lo in no_go:
        for hi in go:
            if hi < lo:
                continue
            r = replace(base, baseline=BaselineRules(gain_go=hi, gain_no_go=lo),
                        efficiency=EfficiencyRules(gain_go=hi, gain_no_go=lo))
            rows = [Row(sc, outcomes[sc.name]["outcome"], decide(evidences[sc.name][0], r).decision or "none",
                        decide(evidences[sc.name][1], r).decision or "none", "", "", 0.0, 0.0) for sc in scenarios]
            out.append(SweepRow(lo, hi, agreement(rows)))
    d_lo, d_hi = BaselineRules().gain_no_go, BaselineRules().gain_go
    return sorted(out, key=lambda x: (not x.agreement.ok, x.agreement.fast_go_on_no_go + x.agreement.full_go_on_no_go,
                                      -x.agreement.full, -x.agreement.fast,
                                      abs(x.gain_no_go - d_lo) + abs(x.gain_go - d_hi)))


@dataclass(frozen=True)
class Agreement:
    n: int
    fast: float
    full: float
    fast_go_on_no_go: int
    full_go_on_no_go: int

    @property
    def ok(self) -> bool:
        """The targets: full >= 90%, fast >= 75%, and the fast verdict never GO where the outcome is NO-GO."""
        return self.full >= 0.9 and self.fast >= 0.75 and self.fast_go_on_no_go == 0


def agreement(rows: Sequence[Row]) -> Agreement:
    n = len(rows)
    if not n:
        return Agreement(0, math.nan, math.nan, 0, 0)
    return Agreement(n, sum(r.fast == r.realised for r in rows) / n, sum(r.full == r.realised for r in rows) / n,
                     sum(r.fast == GO and r.realised == NO_GO for r in rows),
                     sum(r.full == GO and r.realised == NO_GO for r in rows))


__all__ = ["DAMAGED", "OUTCOMES_FILE", "REALISED_SEED", "SCENARIOS", "Agreement", "Row", "Scenario", "agreement",
           "damaged_checkpoint", "load_outcomes", "outcome_of", "realise", "realise_all", "realised_config",
           "run_panel", "setup_of", "evidence",
           "SweepRow", "sweep", "SWEEP_GO", "SWEEP_NO_GO"]
