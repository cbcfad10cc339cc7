"""The scenario panel: how often the verdict is right, measured against outcomes it never sees.

Each :class:`Scenario` is a model, a source, a target built from the offline data (scikit-learn's handwritten
digits and their shifts, printed digits, tiles of scikit-image's photographs and textures), and a label budget. Its
**realised outcome** (:func:`realise`) is measured apart from the verdict: its own subsample and split (seed
:data:`REALISED_SEED`, not the verdict's 0), the largest test set the scenario's data allows (every spare labelled
image up to 150 per class; printed digits are rendered 3,000 strong for it), 10 draws of the labelled images at every
budget, and a longer schedule with the same learning-rate search (:data:`REALISED_EFFORT`). Transfer is the frozen
probe (every tap, C chosen on validation); scratch is the best of a linear model and k-NN on the pixels and the small
CNN. On a CPU the realised outcome leaves fine-tuning out (ten draws of it at 64 px would take hours; on this panel
the CPU fine-tune never beat the probe except at one label per class, so the outcome can only understate transfer).
The gain of transfer over scratch at the budget, with the crossed interval over draws and test images, is read the
way the verdict reads it (:func:`outcome_of`, the ``[baseline]`` margin): GO when it reaches the margin with its
interval above 0, NO-GO when the interval's upper end is below the margin, CAUTION otherwise.

A candidate with random weights has nothing to transfer: its outcome is NO-GO by definition, recorded as such
without training. The outcomes are computed once (:func:`realise_all`, ``python -m tldiag.bench verdict --realise``)
and stored in ``tldiag/decision/panel_outcomes.json``; ``python -m tldiag.bench verdict`` then computes the fast
verdict (shift tests, probes and the scratch baselines at the budget: no training beyond seconds) and the full
verdict (the fast one plus the data-efficiency experiment at the budget, ``cpu`` profile) of every scenario and
prints them against the realised outcome (:func:`agreement`: the 3x3 table, agreement, Cohen's kappa, and the same
for simple rules beside them), and ``--limits`` decides every scenario again at other per-class limits
(:func:`stability`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .verdict import CAUTION, DECISIONS, GO, NO_GO

OUTCOMES_FILE = Path(__file__).with_name("panel_outcomes.json")
REALISED_SEED = 1000
PANEL_VERSION = 2  # 2: outcomes read with their interval against the margin, own subsample, 10 draws, larger tests
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


_PHOTOS, _GRAY, _ALL = "demo:tiles?set=photos", "demo:tiles?set=gray", "demo:tiles?set=all"
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
    Scenario("print-2-labels", "printed digits with two labels per class, at 64 px", "demo:printed-digits", 2,
             resolution=64),
    Scenario("null-1-label", "handwritten digits with one label per class", "demo:digits", 1),
    Scenario("rotate-high-1-label", "rotated digits (severity 5) with one label per class", 
             "demo:digits?shift=rotate&severity=5", 1),
    Scenario("noise-high-2-labels", "Gaussian noise (severity 5) with two labels per class",
             "demo:digits?shift=noise&severity=5", 2),
    Scenario("photos-1-label", "which of 8 photographs a 32-px tile comes from, one label per class, 64 px", _PHOTOS,
             1, source=_GRAY, resolution=64),
    Scenario("photos-2-labels", "which of 8 photographs a tile comes from, two labels per class", _PHOTOS, 2,
             source=_GRAY, resolution=64),
    Scenario("textures-1-label", "which of 10 gray photographs and textures a tile comes from, one label per class",
             _GRAY, 1, source=_PHOTOS, resolution=64),
    Scenario("textures-2-labels", "which gray photograph or texture a tile comes from, two labels per class", _GRAY,
             2, source=_PHOTOS, resolution=64),
    Scenario("textures-5-labels", "which gray photograph or texture a tile comes from, five labels per class", _GRAY,
             5, source=_PHOTOS, resolution=64),
    Scenario("tiles-18-classes-1-label", "18 photographs and textures, one label per class", _ALL, 1,
             resolution=64),
    Scenario("tiles-18-classes-2-labels", "18 photographs and textures, two labels per class", _ALL, 2,
             resolution=64),
    Scenario("tiles-random-weights", "the photograph tiles with a random-weights candidate", _PHOTOS, 2,
             source=_GRAY, model="random:efficientnet-lite0", resolution=64),
    Scenario("rotate-high-2-labels", "rotated digits (severity 5) with two labels per class",
             "demo:digits?shift=rotate&severity=5", 2),
    Scenario("rotate-high-3-labels", "rotated digits (severity 5) with three labels per class",
             "demo:digits?shift=rotate&severity=5", 3),
    Scenario("print-5-labels", "printed digits with five labels per class, at 64 px", "demo:printed-digits", 5,
             resolution=64),
    Scenario("photos-5-labels", "which of 8 photographs a tile comes from, five labels per class", _PHOTOS, 5,
             source=_GRAY, resolution=64),
    Scenario("tiles-18-classes-5-labels", "18 photographs and textures, five labels per class", _ALL, 5,
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
"""The realised outcome's schedule of the small CNN (1.25x the cpu profile's cap in steps, patience 4 against 3)."""
REALISED_DRAWS = 10
REALISED_TEST_PER_CLASS, REALISED_TEST_MAX = 150, 3000
REALISED_ARMS = ("small-cnn", "pixel-linear", "pixel-knn", "linear-probe")


def realised_target(sc: Scenario) -> str:
    """The target the realised outcome measures on: the scenario's, with printed digits rendered 3,000 strong (the
    same distribution, more test images)."""
    from ..data import parse_dataset_spec, with_options

    spec = parse_dataset_spec(sc.target)
    if spec.kind == "demo" and spec.name == "printed-digits" and spec.get("n") is None:
        return with_options(sc.target, n=3000)
    return str(spec)


def realised_config(sc: Scenario):
    """The realised outcome's experiment (see the module docstring): its own subsample and split, 10 draws, the
    largest test set, the long schedule of the small CNN."""
    from ..setup import Setup
    from ..training.efficiency import EfficiencyConfig

    s = Setup(model=damaged_checkpoint() if sc.model == DAMAGED else sc.model, source=sc.source,
              target=realised_target(sc), resolution=sc.resolution, limit=sc.limit, seed=REALISED_SEED,
              budget=sc.budget)
    return EfficiencyConfig(model=s.model, target=s.target_spec, source=s.source_spec, resolution=sc.resolution,
                            arms=REALISED_ARMS, budgets=(sc.budget,), budget=sc.budget, include_all=False,
                            repeats=REALISED_DRAWS, profile="full", seed=REALISED_SEED, device="cpu",
                            schedules={"small-cnn": REALISED_EFFORT}, test_per_class=REALISED_TEST_PER_CLASS,
                            test_max=REALISED_TEST_MAX)


def outcome_of(gain: float, low: float, high: float, margin: float | None = None) -> str:
    """A realised gain read as the verdict reads a measured one (:func:`tldiag.decision.verdict.read_gain`, the
    ``[baseline]`` margin by default)."""
    from .verdict import MarginRules, read_gain

    m = MarginRules().margin if margin is None else margin
    return read_gain("realised", "realised", "realised", gain, low, high, m, n_test=0, draws=0)[0].status


def realise(sc: Scenario, progress: Callable[[float, int, str], None] | None = None) -> dict[str, Any]:
    """The realised outcome of one scenario (see the module docstring), as stored."""
    from ..models import parse_model_id
    from ..training.efficiency import ARM_TITLES, curves, readouts, run_experiment
    from .verdict import MarginRules

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
    margin = MarginRules().margin
    return {"scenario": asdict(sc), "outcome": outcome_of(g.gain, g.low, g.high, margin), "margin": margin,
            "by_definition": False, "gain": round(g.gain, 4), "low": round(g.low, 4), "high": round(g.high, 4),
            "transfer_arm": g.transfer_arm, "scratch_arm": g.scratch_arm, "per_class": g.per_class,
            "n_test": result.n_test, "draws": g.n, "target": config.target, "arms": arms,
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
            f"{row.get('n_test', 0)} test images, {row['seconds']} s)")
        ordered = [stored[s.name] for s in SCENARIOS if s.name in stored]
        atomic_write_text(path, json.dumps({"version": PANEL_VERSION, "command":
                                            "python -m tldiag.bench verdict --realise",
                                            "outcomes": ordered}, indent=1))
    return stored


# ----------------------------------------------------------------------------- the verdicts
@dataclass(frozen=True)
class Row:
    """One scenario: its realised outcome, the two verdicts, and the simple rules beside them.

    Attributes:
        simple: The decision of each simple rule (:data:`SIMPLE_RULES`) on the same evidence.
        fast_led, full_led: The signal that led each verdict.
    """

    scenario: Scenario
    realised: str
    fast: str
    full: str
    fast_reason: str
    full_reason: str
    fast_seconds: float
    full_seconds: float
    realised_gain: float | None = None
    simple: Mapping[str, str] = field(default_factory=dict)
    fast_led: str | None = None
    full_led: str | None = None


def evidence(sc: Scenario, *, limit: int | None = None, full: bool = True) -> tuple[Any, Any, float, float]:
    """What the fast and the full verdict of a scenario read (computed from empty caches, or read from warm ones),
    and the seconds each took: ``(fast_evidence, full_evidence, fast_s, full_s)``. ``limit`` replaces the
    scenario's per-class limit; without ``full`` the full evidence is the fast one."""
    from ..training.configs import efficiency_config
    from ..training.efficiency import curves, readouts, run_experiment
    from .report import FAST, gather
    from .verdict import EfficiencyEvidence

    setup = setup_of(sc if limit is None else replace(sc, limit=limit))
    t0 = time.perf_counter()
    fast = gather(setup, compute=FAST).evidence
    t_fast = time.perf_counter() - t0
    full_ev = fast
    if fast.pretrained and full:
        config = efficiency_config(setup, arms=("small-cnn", "pixel-linear", "pixel-knn", "linear-probe",
                                                "fine-tuned"), budgets=(sc.budget,), include_all=False,
                                   profile="cpu")
        result = run_experiment(config)
        ro = readouts(result, arm_curves=curves(result))
        full_ev = replace(fast, efficiency=EfficiencyEvidence.from_readouts(ro, result))
    return fast, full_ev, t_fast, time.perf_counter() - t0


def _reason(v) -> str:
    voting = [s for s in v.signals if s.status in (GO, CAUTION, NO_GO) and s.kind == "measured"]
    return "; ".join(f"{s.key} {s.status} {s.value}" for s in voting) or "no measured signal"


def _alone(ev: Any, key: str, rules) -> str:
    """The decision of one predicted signal on its own (INFO, or absent, reads as CAUTION: it cannot tell)."""
    from dataclasses import fields as dc_fields

    from .verdict import Evidence, decide

    kept = {f.name: getattr(ev, f.name) for f in dc_fields(ev)
            if f.name in (key, "pretrained", "model", "budget", "n_stages")}
    v = decide(Evidence(**kept), rules)
    return v.decision if v.decision in (GO, NO_GO) else CAUTION


SIMPLE_RULES: dict[str, Callable[[Any, Any], str]] = {
    "always NO-GO": lambda ev, rules: NO_GO,
    "always GO": lambda ev, rules: GO,
    "MMD alone": lambda ev, rules: _alone(ev, "divergence", rules),
    "LogME alone": lambda ev, rules: _alone(ev, "transferability", rules),
}
"""Lazy verdicts the panel must tell the real one from: a constant, or one predictor read by its own rule."""


def run_panel(outcomes: Mapping[str, Mapping[str, Any]], names: Sequence[str] | None = None, rules=None,
              log: Callable[[str], None] | None = None, evidences: dict | None = None, *,
              full: bool = True) -> list[Row]:
    """The fast and the full verdict of every scenario with a realised outcome (``names``: only those), next to it;
    ``evidences`` (a dict) receives what each verdict read, for :func:`sweep`."""
    rows = []
    for sc in SCENARIOS:
        if (names and sc.name not in names) or sc.name not in outcomes:
            continue
        fe, fu, tf, tfull = evidence(sc, full=full)
        if evidences is not None:
            evidences[sc.name] = (fe, fu)
        row = decided_row(sc, outcomes[sc.name], fe, fu, rules, tf, tfull)
        rows.append(row)
        if log:
            log(f"  {sc.name}: realised {row.realised}, fast {row.fast}, full {row.full} ({tf:.0f} s, {tfull:.0f} s)")
    return rows


def decided_row(sc: Scenario, outcome: Mapping[str, Any], fast_ev: Any, full_ev: Any, rules=None,
                fast_seconds: float = 0.0, full_seconds: float = 0.0) -> Row:
    """One scenario's row: both verdicts and the simple rules decided on the evidence given (nothing computed)."""
    from .verdict import decide

    fast, full = decide(fast_ev, rules), decide(full_ev, rules)
    return Row(sc, outcome["outcome"], fast.decision or "none", full.decision or "none", _reason(fast), _reason(full),
               fast_seconds, full_seconds, outcome.get("gain"),
               {name: rule(fast_ev, rules) for name, rule in SIMPLE_RULES.items()}, fast.led_by, full.led_by)


def reread(outcome: Mapping[str, Any], margin: float) -> dict[str, Any]:
    """A stored realised outcome read at another margin (one by definition stays as it is)."""
    if outcome.get("by_definition") or outcome.get("gain") is None:
        return dict(outcome)
    return {**outcome, "outcome": outcome_of(outcome["gain"], outcome["low"], outcome["high"], margin)}


SWEEP_MARGINS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08)
"""The margins :func:`sweep` tries for ``[baseline]`` and ``[efficiency]`` together."""


@dataclass(frozen=True)
class SweepRow:
    """The panel's agreement under one margin of the measured signals."""

    margin: float
    agreement: "Agreement"


def sweep(evidences: Mapping[str, tuple[Any, Any]], outcomes: Mapping[str, Mapping[str, Any]], rules=None,
          margins: Sequence[float] = SWEEP_MARGINS) -> list[SweepRow]:
    """The agreement of the fast and full verdicts under every margin (the same for ``[baseline]`` and
    ``[efficiency]``, the two readings of transfer against scratch at the budget), decided again on the same evidence
    (``name -> (fast_evidence, full_evidence)``, see :func:`evidence`) and against the stored outcomes read again at
    the same margin (:func:`reread`: the margin is what the team calls worthwhile, for the truth too); nothing is
    recomputed. The rows come sorted best first: the targets met, then the fewest GO/NO-GO confusions, then the
    full and the fast kappa, then the margin closest to the default."""
    from .verdict import MarginRules, Rules

    base = rules or Rules()
    scenarios = [sc for sc in SCENARIOS if sc.name in evidences and sc.name in outcomes]
    out = []
    for m in margins:
        r = replace(base, baseline=MarginRules(m), efficiency=MarginRules(m))
        rows = [decided_row(sc, reread(outcomes[sc.name], m), *evidences[sc.name], r) for sc in scenarios]
        out.append(SweepRow(m, agreement(rows)))
    default = MarginRules().margin
    return sorted(out, key=lambda x: (not x.agreement.ok, x.agreement.confusions, -x.agreement.full_kappa,
                                      -x.agreement.fast_kappa, abs(x.margin - default)))


def cohen_kappa(pairs: Sequence[tuple[str, str]], labels: Sequence[str] = DECISIONS) -> float:
    """Cohen's kappa of ``(decided, realised)`` pairs: agreement beyond what the two marginals give by chance (1:
    perfect, 0: chance; NaN when both always say the same one thing)."""
    n = len(pairs)
    if not n:
        return math.nan
    observed = sum(a == b for a, b in pairs) / n
    expected = sum((sum(a == k for a, _ in pairs) / n) * (sum(b == k for _, b in pairs) / n) for k in labels)
    return math.nan if expected >= 1 else (observed - expected) / (1 - expected)


def confusion(pairs: Sequence[tuple[str, str]], labels: Sequence[str] = DECISIONS) -> dict[str, dict[str, int]]:
    """``table[decided][realised]`` counts of ``(decided, realised)`` pairs."""
    return {d: {r: sum(a == d and b == r for a, b in pairs) for r in labels} for d in labels}


@dataclass(frozen=True)
class Score:
    """How one verdict (or simple rule) did on the panel."""

    name: str
    agreement: float
    kappa: float
    table: Mapping[str, Mapping[str, int]]
    go_on_no_go: int
    no_go_on_go: int


def score(name: str, pairs: Sequence[tuple[str, str]]) -> Score:
    n = len(pairs)
    return Score(name, sum(a == b for a, b in pairs) / n if n else math.nan, cohen_kappa(pairs),
                 confusion(pairs), sum(a == GO and b == NO_GO for a, b in pairs),
                 sum(a == NO_GO and b == GO for a, b in pairs))


TARGETS = {"full": (0.9, 0.7), "fast": (0.8, 0.6)}
"""(agreement, kappa) each verdict must reach; neither may ever say GO where the outcome is NO-GO, or back."""


@dataclass(frozen=True)
class Agreement:
    """The panel's scores: both verdicts and the simple rules, and the scenarios where GO and NO-GO were confused."""

    n: int
    fast: float
    full: float
    fast_go_on_no_go: int
    full_go_on_no_go: int
    fast_kappa: float = math.nan
    full_kappa: float = math.nan
    scores: tuple[Score, ...] = ()
    confused: tuple[str, ...] = ()
    realised: Mapping[str, int] = field(default_factory=dict)

    @property
    def confusions(self) -> int:
        """GO where the outcome is NO-GO, or NO-GO where it is GO, by either verdict."""
        return sum(s.go_on_no_go + s.no_go_on_go for s in self.scores if s.name in ("fast", "full"))

    @property
    def ok(self) -> bool:
        """The targets (:data:`TARGETS`): full >= 90% with kappa >= 0.7, fast >= 80% with kappa >= 0.6, and no
        GO/NO-GO confusion in either."""
        def meets(value: float, target: float) -> bool:
            return not math.isnan(value) and value >= target

        return (meets(self.full, TARGETS["full"][0]) and meets(self.full_kappa, TARGETS["full"][1])
                and meets(self.fast, TARGETS["fast"][0]) and meets(self.fast_kappa, TARGETS["fast"][1])
                and self.confusions == 0)


def agreement(rows: Sequence[Row]) -> Agreement:
    n = len(rows)
    if not n:
        return Agreement(0, math.nan, math.nan, 0, 0)
    fast = score("fast", [(r.fast, r.realised) for r in rows])
    full = score("full", [(r.full, r.realised) for r in rows])
    simple = [score(name, [(r.simple.get(name, CAUTION), r.realised) for r in rows])
              for name in SIMPLE_RULES if all(name in r.simple for r in rows)]
    confused = tuple(f"{r.scenario.name}: realised {r.realised}, {which} {v}" for r in rows
                     for which, v in (("fast", r.fast), ("full", r.full)) if {v, r.realised} == {GO, NO_GO})
    realised = {k: sum(r.realised == k for r in rows) for k in DECISIONS}
    return Agreement(n, fast.agreement, full.agreement, fast.go_on_no_go, full.go_on_no_go, fast.kappa, full.kappa,
                     (fast, full, *simple), confused, realised)


# ----------------------------------------------------------------------------- stability across sample sizes
@dataclass(frozen=True)
class StabilityRow:
    """One scenario's fast verdict at each per-class limit; ``flips`` says whether it went from GO to NO-GO or back
    (moving between CAUTION and a firm answer as data grows is allowed)."""

    scenario: Scenario
    decisions: Mapping[int, str]
    n_test: Mapping[int, int]
    gains: Mapping[int, str]

    @property
    def flips(self) -> bool:
        return {GO, NO_GO} <= set(self.decisions.values())


def stability(limits: Sequence[int], names: Sequence[str] | None = None, rules=None,
              log: Callable[[str], None] | None = None) -> list[StabilityRow]:
    """The fast verdict of every scenario (``names``: only those) at each per-class ``limit``."""
    from .verdict import decide

    rows = []
    for sc in SCENARIOS:
        if names and sc.name not in names:
            continue
        decisions, n_test, gains = {}, {}, {}
        for limit in limits:
            ev = evidence(sc, limit=limit, full=False)[0]
            v = decide(ev, rules)
            decisions[limit] = v.decision or "none"
            b = ev.baseline
            n_test[limit] = b.n_test if b else 0
            gains[limit] = "—" if b is None else \
                f"{100 * b.comparison.gain:+.1f} ({100 * b.comparison.low:+.1f} to {100 * b.comparison.high:+.1f})"
            if log:
                log(f"  {sc.name} at limit {limit}: {decisions[limit]} {gains[limit]}, {n_test[limit]} test images")
        rows.append(StabilityRow(sc, decisions, n_test, gains))
    return rows


__all__ = ["DAMAGED", "OUTCOMES_FILE", "REALISED_SEED", "SCENARIOS", "Agreement", "Row", "Scenario", "Score",
           "SIMPLE_RULES", "StabilityRow", "TARGETS", "agreement", "cohen_kappa", "confusion", "damaged_checkpoint",
           "decided_row", "evidence", "load_outcomes", "outcome_of", "realise", "realise_all", "realised_config",
           "realised_target", "reread", "run_panel", "score", "setup_of", "stability", "SweepRow", "sweep", "SWEEP_MARGINS"]
