"""The go/no-go verdict: every computed signal read against a written rule, and the recommended recipe.

This module only reads: it takes the summaries of analyses that ran elsewhere (:class:`Evidence`, built from the
results' ``to_dict()``), applies :class:`Rules` (defaults and their sources in ``verdict_rules.toml``) and returns a
:class:`Verdict`. It imports nothing heavy and computes nothing slow, so a verdict can be re-read under other
thresholds from a saved manifest (``decide(Evidence.from_dict(manifest["evidence"]), load_rules(path))``).

Signals (each states its evidence and the rule that fired):

=================  =========  ===============================================================================
key                kind       rule (default thresholds)
=================  =========  ===============================================================================
candidate          measured   NO-GO by definition for random weights, or when the best frozen probe is at chance
                              (an all-constant or damaged checkpoint): nothing to transfer.
baseline           measured   at the team's budget, the frozen probe minus the best cheap scratch baseline (linear
                              model and k-NN on pixels, small CNN) with its 95% interval over draws and test images,
                              read against a worthwhile-gain margin (+3 points): GO when the gain reaches it with the
                              interval above 0, NO-GO when the interval's upper end is below it, CAUTION ("cannot
                              tell at this sample size", with what would settle it) otherwise.
source_head        measured   a model trained on the source's classes: held-out source accuracy against target
                              accuracy with no adaptation; GO when it already beats the scratch baselines, else INFO.
divergence         predicted  seed-scale MMD at the headline tap: GO below 0.1 or when p > 0.05 (no detectable
                              shift), NO-GO from 0.5, CAUTION between. PAD and the domain classifier are shown.
transferability    predicted  LogME at the headline tap, pretrained features minus the raw pixels: GO from +0.1,
                              NO-GO below 0, CAUTION between. kNN accuracy is shown beside it.
probe              context    the probe at its best tap minus the random-init floor at its own best tap (INFO).
efficiency         measured   the data-efficiency experiment at the budget, read like ``baseline``; a GO becomes
                              CAUTION when scratch is better (interval below 0) at a smaller budget.
finetune           measured   fine-tuned minus from-scratch test accuracy on the same split, read like ``baseline``
                              (the interval of two accuracies on the same test images). Without a scratch run it
                              only informs the recipe (INFO).
=================  =========  ===============================================================================

**The decision.** Measured signals decide and predicted ones temper: held-out accuracy on the user's own target
outranks a proxy for it. Of the measured signals the most precise, fairest one leads (:data:`LEAD_ORDER`: a fine-tune
against its scratch twin, then the data-efficiency experiment, then the fast baselines, then the source model as it
is); a firm GO or NO-GO of another one that opposes it turns the decision into CAUTION (and the disagreement is
stated), but nothing overturns the leader, and a CAUTION of a noisier signal adds nothing. A GO becomes CAUTION when
a predicted signal says NO-GO, unless the leading GO is decisive (its whole interval above the margin). A candidate
with nothing to transfer is NO-GO whatever the rest says. With no measured signal yet, the predicted ones decide
(all GO gives GO, all NO-GO NO-GO, a mix CAUTION) and the verdict is marked provisional. Nothing is averaged: every
signal keeps its own status and evidence, and the record says which signal led (:attr:`Verdict.led_by`).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import TldiagError
from ..sourcehead import SourceHeadResult
from ..stats import at_chance

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib

GO, CAUTION, NO_GO, INFO = "GO", "CAUTION", "NO-GO", "INFO"
DECISIONS = (GO, CAUTION, NO_GO)
MEASURED, PREDICTED = "measured", "predicted"
RULES_FILE = Path(__file__).with_name("verdict_rules.toml")
RULES_ENV = "TLDIAG_VERDICT_RULES"


# ----------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class DivergenceRules:
    mmd_green: float = 0.1
    mmd_red: float = 0.5
    alpha: float = 0.05


@dataclass(frozen=True)
class TransferabilityRules:
    logme_gap_go: float = 0.1
    logme_gap_no_go: float = 0.0


@dataclass(frozen=True)
class GainRules:
    """The probe against the random-init floor (context: it does not vote; kept for the Probes page's note)."""

    gain_go: float = 0.05
    gain_no_go: float = 0.0


@dataclass(frozen=True)
class MarginRules:
    """A measured gain of transfer over scratch, read with its 95% interval against one worthwhile-gain ``margin``:

    * GO when the gain reaches the margin and its interval lies above 0;
    * NO-GO when the interval's upper end is below the margin (transfer cannot be worth it at this budget), or
      scratch is ahead with its interval clear of 0;
    * otherwise CAUTION: the interval reaches both sides, so the sample cannot tell (it never reads as a NO-GO).

    Set from the scenario panel (``python -m tldiag.bench verdict --sweep``)."""

    margin: float = 0.03


LEGACY_GAIN_KEYS = ("gain_go", "gain_no_go")
"""Keys of the measured sections before the verdict read intervals (issue 28): refused with the new key named."""


@dataclass(frozen=True)
class RecipeRules:
    headroom: float = 0.02
    finetune_over_probe: float = 0.01


@dataclass(frozen=True)
class PageRules:
    """The notes the analysis pages show beside their numbers (they do not vote): the Shift page's "the two signals
    measure different things" from ``shift_separable_pad`` (PAD, with an MMD that is not red), the Explorer's
    "the target forms its own islands" below ``explorer_islands_mixing`` (k-NN mixing), the Probes page's "barely
    better than random weights" below ``probes_floor_gain`` (probe minus the random-init floor)."""

    shift_separable_pad: float = 1.5
    explorer_islands_mixing: float = 0.3
    probes_floor_gain: float = 0.02


@dataclass(frozen=True)
class Rules:
    """The thresholds of every signal (see ``verdict_rules.toml`` for what each means and where it comes from).

    Attributes:
        origin: Where they were read from ("defaults" or a file path), for the record.
    """

    divergence: DivergenceRules = DivergenceRules()
    transferability: TransferabilityRules = TransferabilityRules()
    probe: GainRules = GainRules()
    baseline: MarginRules = MarginRules()
    efficiency: MarginRules = MarginRules()
    finetune: MarginRules = MarginRules()
    recipe: RecipeRules = RecipeRules()
    pages: PageRules = PageRules()
    origin: str = "defaults"

    def validate(self) -> "Rules":
        d, t, p, e, f, r = (self.divergence, self.transferability, self.probe, self.efficiency, self.finetune,
                            self.recipe)
        b = self.baseline
        checks = [
            (0 <= d.mmd_green < d.mmd_red, f"divergence.mmd_green={d.mmd_green!r} must be >= 0 and below "
                                           f"divergence.mmd_red={d.mmd_red!r} (defaults 0.1 and 0.5)"),
            (0 < d.alpha < 1, f"divergence.alpha={d.alpha!r} must be a significance level in (0, 1), e.g. 0.05"),
            (t.logme_gap_no_go <= t.logme_gap_go, f"transferability.logme_gap_no_go={t.logme_gap_no_go!r} must not "
                                                  f"exceed transferability.logme_gap_go={t.logme_gap_go!r}"),
            (p.gain_no_go <= p.gain_go, f"probe.gain_no_go={p.gain_no_go!r} must not exceed probe.gain_go={p.gain_go!r}"),
            *((0 <= m.margin < 1, f"{name}.margin={m.margin!r} must be a worthwhile accuracy gain in [0, 1), e.g. "
                                  "0.03 (3 points)") for name, m in (("baseline", b), ("efficiency", e),
                                                                      ("finetune", f))),
            (0 <= r.headroom < 1, f"recipe.headroom={r.headroom!r} must be an accuracy gap in [0, 1), e.g. 0.02"),
            (-1 < r.finetune_over_probe < 1, f"recipe.finetune_over_probe={r.finetune_over_probe!r} must be an "
                                             "accuracy difference in (-1, 1), e.g. 0.01"),
            (0 <= self.pages.shift_separable_pad <= 2, f"pages.shift_separable_pad={self.pages.shift_separable_pad!r} "
                                                       "must be a proxy A-distance in [0, 2], e.g. 1.5"),
            (0 <= self.pages.explorer_islands_mixing <= 1, "pages.explorer_islands_mixing="
                                                           f"{self.pages.explorer_islands_mixing!r} must be a mixing "
                                                           "score in [0, 1], e.g. 0.3"),
            (-1 < self.pages.probes_floor_gain < 1, f"pages.probes_floor_gain={self.pages.probes_floor_gain!r} must "
                                                    "be an accuracy difference in (-1, 1), e.g. 0.02"),
        ]
        for ok, message in checks:
            if not ok:
                raise TldiagError(f"Verdict rules ({self.origin}): {message}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], origin: str = "defaults") -> "Rules":
        """Rules from a mapping of sections (a subset is enough; the rest keep their defaults); unknown sections or
        keys and values that are not numbers are refused with their name and the valid ones."""
        sections = {f.name: f.type for f in fields(cls) if f.name != "origin"}
        defaults = cls()
        values: dict[str, Any] = {}
        for section, content in d.items():
            if section == "origin":
                continue
            if section not in sections:
                raise TldiagError(f"Verdict rules ({origin}): unknown section [{section}]; the sections are "
                                  f"{', '.join(f'[{s}]' for s in sections)}.")
            current = getattr(defaults, section)
            known = {f.name for f in fields(current)}
            if not isinstance(content, Mapping):
                raise TldiagError(f"Verdict rules ({origin}): [{section}] must be a table of numbers, got {content!r}.")
            for key, value in content.items():
                if key in LEGACY_GAIN_KEYS and isinstance(current, MarginRules):
                    raise TldiagError(f"Verdict rules ({origin}): {section}.{key} is no longer read: the measured "
                                      f"signals read their 95% interval against one worthwhile-gain margin. Replace "
                                      f"[{section}] gain_go and gain_no_go with margin = {current.margin:g} (GO when "
                                      "the gain reaches it with the interval above 0, NO-GO when the interval's upper "
                                      "end is below it, CAUTION between; see verdict_rules.toml).")
                if key not in known:
                    raise TldiagError(f"Verdict rules ({origin}): unknown key {section}.{key}; [{section}] has "
                                      f"{', '.join(sorted(known))}.")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise TldiagError(f"Verdict rules ({origin}): {section}.{key} = {value!r} must be a finite "
                                      f"number (the default is {getattr(current, key)!r}).")
            values[section] = replace(current, **{k: float(v) for k, v in content.items()})
        return replace(defaults, **values, origin=origin).validate()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise TldiagError(f"Verdict rules file {str(path)!r} does not exist; copy {RULES_FILE} and edit it, or leave "
                          f"{RULES_ENV} unset for the defaults.") from None
    except tomllib.TOMLDecodeError as exc:
        raise TldiagError(f"Verdict rules file {str(path)!r} is not valid TOML ({exc}); see {RULES_FILE} for the "
                          "format.") from None


def team_rules_path() -> Path:
    """The team's rules, which an admin edits on the Verdict page: ``$TLDIAG_HOME/verdict_rules.toml``."""
    from .. import _config

    return _config.home() / "verdict_rules.toml"


def load_rules(path: str | os.PathLike[str] | None = None) -> Rules:
    """The verdict's rules: from ``path``, else from the file ``TLDIAG_VERDICT_RULES`` names, else the team's
    (:func:`team_rules_path`, when an admin saved some), else the defaults. A file needs only the values it
    changes."""
    chosen = path or os.environ.get(RULES_ENV, "").strip() or None
    if chosen is None:
        team = team_rules_path()
        if not team.is_file():
            return Rules()
        chosen = team
    p = Path(chosen).expanduser()
    return Rules.from_dict(_read_toml(p), origin=str(p))


def save_team_rules(text: str) -> Rules:
    """Check ``text`` (TOML: the values to change, as in ``verdict_rules.toml``) and make it the team's rules
    (written atomically; nothing is written when a value is refused). Returns the rules it gives."""
    from ..cache import atomic_write_text

    path = team_rules_path()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TldiagError(f"The rules are not valid TOML ({exc}); write sections and values as in {RULES_FILE}, "
                          "e.g. [baseline] then gain_go = 0.03.") from None
    rules = Rules.from_dict(data, origin=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    return rules


def rules_changes(before: Rules, after: Rules) -> dict[str, list[float]]:
    """``section.key -> [before, after]`` of every threshold that differs (for the audit log)."""
    a, b = before.to_dict(), after.to_dict()
    return {f"{s}.{k}": [a[s][k], b[s][k]] for s in a if isinstance(a[s], dict) for k in a[s] if a[s][k] != b[s][k]}


# ----------------------------------------------------------------------------- evidence
def _tuple2(v: Sequence[float]) -> tuple[float, float]:
    return float(v[0]), float(v[1])


@dataclass(frozen=True)
class DivergenceEvidence:
    """The shift at the headline tap (and the MMD at every tap, shallow to deep)."""

    tap: str
    mmd: float
    mmd_ci: tuple[float, float]
    p_value: float
    n_permutations: int
    balanced_accuracy: float
    roc_auc: float
    pad: float
    n_source: int
    n_target: int
    layers: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_report(cls, report: Any) -> "DivergenceEvidence":
        """From a :class:`tldiag.metrics.ShiftReport` (``ShiftReport.from_dict`` for a stored one): its headline
        tap."""
        head = report.head
        return cls(tap=head.layer, mmd=head.mmd.mmd, mmd_ci=head.mmd.mmd_ci, p_value=head.mmd.p_value,
                   n_permutations=int(report.n_permutations), balanced_accuracy=head.domain.balanced_accuracy,
                   roc_auc=head.domain.roc_auc, pad=head.domain.pad, n_source=head.mmd.n_source,
                   n_target=head.mmd.n_target, layers=tuple((x.layer, x.mmd.mmd) for x in report.layers))


@dataclass(frozen=True)
class ProbeEvidence:
    """The probe curves: the best tap (chosen on validation) and the recommended cut of the target curve, and the
    random-init floor at its own best tap."""

    best_tap: str
    best_accuracy: float
    best_se: float
    recommended_tap: str
    recommended_accuracy: float
    floor_accuracy: float | None
    floor_se: float | None
    chance: float
    n_train: int
    n_val: int
    n_test: int
    n_splits: int
    taps: tuple[str, ...]
    floor_tap: str | None = None

    @classmethod
    def from_report(cls, report: Any) -> "ProbeEvidence":
        """From a :class:`tldiag.probes.ProbeReport`. The floor is the random-init curve's own best tap: best
        against best, each side choosing its tap (comparing at the pretrained model's best tap flatters it)."""
        target, floor = report.target, report.random_init
        best, rec = target.best_on_validation, target.recommended
        fbest = floor.best_on_validation if floor is not None else None
        return cls(best_tap=best.tap, best_accuracy=best.mean, best_se=best.se, recommended_tap=rec.tap,
                   recommended_accuracy=rec.mean, floor_accuracy=None if fbest is None else fbest.mean,
                   floor_se=None if fbest is None else fbest.se, chance=float(target.chance),
                   n_train=int(target.n_train), n_val=int(target.n_val), n_test=int(target.n_test),
                   n_splits=len(best.accuracy), taps=tuple(t.tap for t in target.taps),
                   floor_tap=None if fbest is None else fbest.tap)


PIXELS_REFERENCE = "raw pixels"


@dataclass(frozen=True)
class TransferabilityEvidence:
    """LogME and leave-one-out kNN accuracy at one tap of the pretrained features, and the same of a reference
    that needs no pretraining: the raw pixels (area-averaged to 16x16, the pixel baselines' features). Records
    before 2026-12 compared with the random-init twin's features (``reference = "random init"``)."""

    tap: str
    logme: float
    logme_reference: float | None
    knn_accuracy: float
    knn_reference: float | None
    reference: str = PIXELS_REFERENCE

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TransferabilityEvidence":
        d = dict(d)
        if "logme_random" in d:  # an older record: the reference was the random-init twin
            d["logme_reference"], d["knn_reference"] = d.pop("logme_random"), d.pop("knn_random", None)
            d["reference"] = "random init"
        for key in ("logme", "knn_accuracy"):
            d[key] = float(d[key])
        return cls(**d)


@dataclass(frozen=True)
class Comparison:
    """Best transfer arm against best scratch arm at one budget (from :class:`tldiag.training.efficiency.Comparison`).

    Attributes:
        n: Draws of the labelled images paired; n_test: test images; s_draws, s_images: the interval's two spreads
            (None in records written before they were stored: then nothing says what would settle a CAUTION).
    """

    per_class: float
    transfer_arm: str
    scratch_arm: str
    transfer: float
    scratch: float
    gain: float
    low: float
    high: float
    verdict: str
    text: str
    n: int = 0
    n_test: int = 0
    s_draws: float | None = None
    s_images: float | None = None


@dataclass(frozen=True)
class ArmScore:
    """One arm of the budget comparison: its mean test accuracy over the repeats, 95% interval, settings."""

    arm: str
    title: str
    mean: float
    low: float
    high: float
    settings: str
    converged: bool = True


@dataclass(frozen=True)
class BaselineEvidence:
    """The fast verdict's measurement: the frozen-feature probe against the best cheap scratch baseline (a linear
    model and k-NN on the raw pixels, the small CNN with a short tuned schedule) at the team's budget, on the same
    split and the same label subsets.

    Attributes:
        budget: Labels per class asked for (None: all of the pool); per_class: the mean the runs really had.
        comparison: Transfer against the best scratch arm that converged, paired over repeats and test images.
        arms: Every arm at the budget, those that did not converge included (they do not vote).
        n_classes: Target classes (0 in records written before it was stored).
    """

    budget: int | None
    per_class: float
    repeats: int
    n_test: int
    chance: float
    comparison: Comparison
    arms: tuple[ArmScore, ...]
    notes: tuple[str, ...] = ()
    n_classes: int = 0

    @classmethod
    def from_result(cls, result: Any, readouts: Any) -> "BaselineEvidence":
        """From the fast experiment's :class:`tldiag.training.efficiency.EfficiencyResult` and its readouts."""
        from ..training.efficiency import ARM_TITLES, curves

        g = readouts.gain
        cs = curves(result)
        arms = []
        for arm in result.arms:
            runs = [r for r in result.runs if r.arm == arm and r.budget == g.budget]
            if not runs:
                continue
            c = cs.get(arm)
            converged = c is not None and g.budget in c.budgets
            if converged:
                i = c.budgets.index(g.budget)
                mean, low, high = c.mean[i], c.low[i], c.high[i]
            else:
                mean = low = high = sum(r.accuracy for r in runs) / len(runs)
            sched = result.schedules.get(arm)
            settings = sched.summary if sched is not None else "; ".join(sorted({r.detail for r in runs}))[:200]
            arms.append(ArmScore(arm, ARM_TITLES[arm], float(mean), float(low), float(high), settings, converged))
        return cls(budget=result.config.budget, per_class=float(g.per_class), repeats=int(result.config.repeats),
                   n_test=int(result.n_test), chance=float(result.chance), comparison=_comparison(g),
                   arms=tuple(arms), notes=tuple(result.notes), n_classes=len(result.classes))


def _comparison(c: Any) -> Comparison:
    return Comparison(per_class=float(c.per_class), transfer_arm=c.transfer_arm, scratch_arm=c.scratch_arm,
                      transfer=float(c.transfer), scratch=float(c.scratch), gain=float(c.gain), low=float(c.low),
                      high=float(c.high), verdict=c.verdict, text=c.describe(), n=int(c.n), n_test=int(c.n_test),
                      s_draws=c.s_draws, s_images=c.s_images)


@dataclass(frozen=True)
class EfficiencyEvidence:
    """The data-efficiency readouts of a finished experiment."""

    job: str | None
    profile: str
    repeats: int
    arms: tuple[str, ...]
    target_accuracy: float
    labels_saved: float | None
    labels_saved_bound: str
    transfer_labels: float | None
    scratch_labels: float | None
    gain: Comparison
    comparisons: tuple[Comparison, ...]
    break_even: float | None
    break_even_bound: str
    summary: tuple[str, ...] = ()

    @classmethod
    def from_readouts(cls, readouts: Any, result: Any, job: str | None = None) -> "EfficiencyEvidence":
        """From a :class:`tldiag.training.efficiency.Readouts` and its :class:`~tldiag.training.efficiency.EfficiencyResult`."""
        from ..training.efficiency import SCRATCH_ARMS, TRANSFER_ARMS  # loaded already: readouts come from it

        comp = _comparison

        reach = readouts.reach
        transfer = [r for a, r in reach.items() if a in TRANSFER_ARMS and r.reached]
        scratch = [r for a, r in reach.items() if a in SCRATCH_ARMS]
        rt = min((r.per_class for r in transfer), default=None)
        rs = min((r.per_class for r in scratch if r.reached), default=None)
        return cls(job=job, profile=result.config.profile, repeats=int(result.config.repeats),
                   arms=tuple(result.arms), target_accuracy=float(readouts.target_accuracy),
                   labels_saved=None if readouts.labels_saved is None else float(readouts.labels_saved),
                   labels_saved_bound=readouts.labels_saved_bound, transfer_labels=rt, scratch_labels=rs,
                   gain=comp(readouts.gain), comparisons=tuple(comp(c) for c in readouts.comparisons),
                   break_even=None if readouts.break_even is None else float(readouts.break_even),
                   break_even_bound=readouts.break_even_bound, summary=tuple(readouts.summary))


@dataclass(frozen=True)
class FinetuneEvidence:
    """A finished fine-tuning run, its linear probe on the same split, and the from-scratch run when there is one."""

    job: str | None
    strategy: str
    lr: float
    backbone_lr_mult: float
    epochs: int
    test_accuracy: float
    probe_accuracy: float | None
    probe_tap: str | None
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    n_train: int
    n_test: int
    scratch_accuracy: float | None = None
    scratch_job: str | None = None

    @property
    def converged(self) -> bool:
        """False when the best epoch was the last one and early stopping never fired: validation was still improving,
        so the run says what this schedule reached, not what fine-tuning can reach."""
        return not (self.best_epoch >= self.epochs_run and not self.stopped_early)

    @classmethod
    def from_results(cls, result: Mapping[str, Any], scratch: Mapping[str, Any] | None = None, *,
                     job: str | None = None, scratch_job: str | None = None) -> "FinetuneEvidence":
        """From :meth:`tldiag.training.finetune.FinetuneResult.to_dict` (a finished job's result) and its scratch twin's."""
        c, probe = result["config"], result.get("linear_probe") or {}
        return cls(job=job, strategy=c["strategy"], lr=float(c["lr"]), backbone_lr_mult=float(c["backbone_lr_mult"]),
                   epochs=int(c["epochs"]), test_accuracy=float(result["test_accuracy"]),
                   probe_accuracy=None if "accuracy" not in probe else float(probe["accuracy"]),
                   probe_tap=probe.get("tap"), best_epoch=int(result["best_epoch"]),
                   epochs_run=int(result["epochs_run"]), stopped_early=bool(result["stopped_early"]),
                   n_train=int(result["n_train"]), n_test=int(result["n_test"]),
                   scratch_accuracy=None if scratch is None else float(scratch["test_accuracy"]),
                   scratch_job=scratch_job)


@dataclass(frozen=True)
class Evidence:
    """What has been computed for one setup (None: not yet).

    Attributes:
        baseline: The fast verdict's budget comparison (frozen features against cheap scratch baselines).
        n_stages: Stages of the model that fine-tuning can freeze (for the strategy by amount of data).
        pretrained: False for a model with random weights (nothing to transfer, by definition).
        budget: The team's label budget in labels per class (None: every labelled target image).
        model: The candidate model's id, for the reasons.
    """

    divergence: DivergenceEvidence | None = None
    transferability: TransferabilityEvidence | None = None
    probe: ProbeEvidence | None = None
    efficiency: EfficiencyEvidence | None = None
    finetune: FinetuneEvidence | None = None
    n_stages: int | None = None
    pretrained: bool = True
    baseline: BaselineEvidence | None = None
    budget: int | None = None
    model: str = ""
    source_head: SourceHeadResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Evidence":
        def build(kind, raw):
            if raw is None:
                return None
            raw = dict(raw)
            if kind is DivergenceEvidence:
                raw["mmd_ci"] = _tuple2(raw["mmd_ci"])
                raw["layers"] = tuple((name, float(v)) for name, v in raw.get("layers", ()))
            if kind is ProbeEvidence:
                raw["taps"] = tuple(raw["taps"])
            if kind is EfficiencyEvidence:
                raw["gain"] = Comparison(**raw["gain"])
                raw["comparisons"] = tuple(Comparison(**c) for c in raw["comparisons"])
                raw["arms"], raw["summary"] = tuple(raw["arms"]), tuple(raw.get("summary", ()))
            if kind is SourceHeadResult:
                return SourceHeadResult.from_dict(raw)
            if kind is TransferabilityEvidence:
                return TransferabilityEvidence.from_dict(raw)
            if kind is BaselineEvidence:
                raw["comparison"] = Comparison(**raw["comparison"])
                raw["arms"] = tuple(ArmScore(**a) for a in raw["arms"])
                raw["notes"] = tuple(raw.get("notes", ()))
            return kind(**raw)

        return cls(divergence=build(DivergenceEvidence, d.get("divergence")),
                   transferability=build(TransferabilityEvidence, d.get("transferability")),
                   probe=build(ProbeEvidence, d.get("probe")), efficiency=build(EfficiencyEvidence, d.get("efficiency")),
                   finetune=build(FinetuneEvidence, d.get("finetune")), n_stages=d.get("n_stages"),
                   pretrained=d.get("pretrained", True), baseline=build(BaselineEvidence, d.get("baseline")),
                   budget=d.get("budget"), model=d.get("model", ""),
                   source_head=build(SourceHeadResult, d.get("source_head")))


# ----------------------------------------------------------------------------- signals
@dataclass(frozen=True)
class Signal:
    """One line of the verdict.

    Attributes:
        key: ``divergence``, ``transferability``, ``probe``, ``efficiency`` or ``finetune``.
        kind: ``measured`` (held-out accuracy on the target) or ``predicted`` (a proxy computed before training).
        status: GO, CAUTION, NO-GO, or INFO (shown, but it does not vote).
        value: The headline number.
        evidence: The numbers behind it, with their settings.
        rule: The rule that fired, with its thresholds.
        decisive: A measured GO whose whole 95% interval lies above the margin: a predicted NO-GO does not
            turn it into CAUTION (the scenario panel showed such vetoes to be wrong, e.g. handwritten to printed
            digits at one label per class: MMD 0.54, realised +26 points).
        reading: For a measured gain of transfer over scratch: the gain, its interval, the margin it was read
            against and, for a CAUTION, what would settle it (the Verdict page's forest plot draws it).
    """

    key: str
    title: str
    kind: str
    status: str
    value: str
    evidence: str
    rule: str
    decisive: bool = False
    reading: "GainReading | None" = None


@dataclass(frozen=True)
class Missing:
    """An analysis that has not run yet: what it would add to the verdict."""

    key: str
    title: str
    adds: str


@dataclass(frozen=True)
class Recipe:
    """How to transfer, following the background texts.

    Attributes:
        approach: ``linear-probe``, ``partial``, ``freeze-unfreeze``, ``full`` (fine-tuning strategies of
            :mod:`tldiag.training.finetune`) or ``another-source``.
        freeze_up_to: The tap up to which the backbone stays frozen (the probe's recommended cut), when known.
        steps: What to do, each with its reason and the learning rates.
        another_source: Whether to look for another source model; another_source_reason says why (or why not).
        label_savings: What the data-efficiency experiment expects transfer to save.
    """

    approach: str
    title: str
    freeze_up_to: str | None
    steps: tuple[str, ...]
    another_source: bool
    another_source_reason: str
    label_savings: str


@dataclass(frozen=True)
class Verdict:
    """GO / CAUTION / NO-GO with its reasons (``decision`` is None while nothing that votes has been computed).

    Attributes:
        led_by: The key of the measured signal that led the decision (the most precise, fairest measurement: see
            :data:`LEAD_ORDER`); None when only predictors voted or the candidate has nothing to transfer.
    """

    decision: str | None
    headline: str
    reasons: tuple[str, ...]
    signals: tuple[Signal, ...]
    disagreements: tuple[str, ...]
    missing: tuple[Missing, ...]
    recipe: Recipe | None
    provisional: bool
    rules: Rules = field(default_factory=Rules)
    budget: str = ""
    break_even: str | None = None
    led_by: str | None = None

    def signal(self, key: str) -> Signal | None:
        return next((s for s in self.signals if s.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lower_first(text: str) -> str:
    """'Divergence at ...' -> 'divergence at ...' for a title inside a sentence (acronyms like LogME stay)."""
    return text[:1].lower() + text[1:]


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def _p(p: float, n_permutations: int) -> str:
    return f"≤ {p:.2g}" if p <= 1 / (1 + n_permutations) + 1e-12 else f"{p:.3g}"


def _by_gain(gain: float, go: float, no_go: float) -> str:
    return GO if gain >= go else NO_GO if gain < no_go else CAUTION


@dataclass(frozen=True)
class Settle:
    """What would settle a CAUTION that lacks precision, if the gain stays where it was measured.

    Attributes:
        half_width: The interval half-width that would decide (the gain's distance to 0 when it reaches the
            margin, to the margin otherwise).
        n_test: Labelled test images that would give it at the current draws; None when test images alone cannot
            (the spread between draws is too large).
        draws: Draws of the labelled images (repeats) that would give it with the current test set; None when
            draws alone cannot.
        scale: When neither alone can, the factor to multiply both by; None otherwise.
        text: The estimate in a sentence.
    """

    half_width: float
    n_test: int | None
    draws: int | None
    scale: float | None
    text: str


@dataclass(frozen=True)
class GainReading:
    """A measured gain of transfer over scratch read against its section's margin (one row of the forest plot).

    Attributes:
        gain, low, high: The gain and its 95% interval; margin: the worthwhile gain it was read against.
        n_test, draws: Test images and draws of the labelled images behind it.
        s_draws, s_images: The interval's spreads between draws and over test images (None when unknown).
        settle: For a CAUTION, what would settle it (None otherwise, or when the spreads are unknown).
    """

    key: str
    title: str
    status: str
    gain: float
    low: float
    high: float
    margin: float
    n_test: int
    draws: int
    s_draws: float | None = None
    s_images: float | None = None
    settle: Settle | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GainReading":
        d = dict(d)
        if d.get("settle") is not None:
            d["settle"] = Settle(**d["settle"])
        return cls(**d)


_GRID = tuple(sorted({int(round(1.15 ** k)) for k in range(0, 120)}))
"""Multipliers the settle estimate tries (1 to about 2e7, 15% apart)."""


def what_would_settle(gain: float, margin: float, *, n_test: int, draws: int, s_draws: float | None,
                      s_images: float | None, confidence: float = 0.95) -> Settle | None:
    """How many labelled test images, or draws of the labelled images, would make the interval of ``gain`` narrow
    enough to decide against ``margin``, if the gain and the two measured spreads stay as they are (the interval of
    :func:`tldiag.training.efficiency.crossed_interval`: ``t * sqrt(s_draws**2 / draws + s_images**2 / n_test)``).
    None when a spread is unknown."""
    from ..training.efficiency import se_of, t_quantile, welch_df

    if s_draws is None or s_images is None or not (math.isfinite(s_draws) and math.isfinite(s_images)) \
            or n_test < 1 or draws < 1:
        return None
    h = gain if gain >= margin else margin - gain
    side = GO if gain >= margin else NO_GO
    if h <= 1e-9:
        return Settle(0.0, None, None, None, f"the gain sits on the {_pts(margin)} margin: no sample size settles it "
                                             "(decide on cost, or lower or raise the margin knowingly)")

    def width(R: float, n: float) -> float:
        return t_quantile(confidence, welch_df(s_draws, int(R), s_images, int(n))) * se_of(s_draws, R, s_images, n)

    def first(try_: Callable[[int], bool]) -> int | None:
        return next((k for k in _GRID if try_(k)), None)

    k_n = first(lambda k: width(draws, n_test * k) < h)
    k_r = first(lambda k: width(draws * k, n_test) < h)
    k_both = None if (k_n or k_r) else first(lambda k: width(draws * k, n_test * k) < h)
    n_needed = None if k_n is None else int(n_test * k_n)
    r_needed = None if k_r is None else int(draws * k_r)
    options = []
    if n_needed is not None:
        options.append(f"about {n_needed:,} labelled test images (now {n_test:,}) at {draws} draws")
    if r_needed is not None:
        options.append(f"about {r_needed:,} draws of the labelled images (now {draws}) with these {n_test:,} test images")
    if not options:
        options.append("no size reachable here" if k_both is None else
                       f"test images or draws alone cannot: about {k_both}x both ({n_test * k_both:,} test images, "
                       f"{draws * k_both} draws)")
    text = (f"if the gain stays at {_pts(gain)}, an interval of ±{100 * h:.1f} pts would read {side}: "
            + "; or ".join(options))
    return Settle(float(h), n_needed, r_needed, None if k_both is None else float(k_both), text)


def _ci(low: float, high: float) -> str:
    return f"{100 * low:+.1f} to {100 * high:+.1f} pts"


def read_gain(key: str, title: str, what: str, gain: float, low: float, high: float, margin: float, *,
              n_test: int, draws: int, s_draws: float | None = None, s_images: float | None = None
              ) -> tuple[GainReading, str]:
    """Read a measured gain of transfer over scratch with its interval (see :class:`MarginRules`); returns the
    reading and the rule that fired, in words."""
    ci, size = _ci(low, high), f"{n_test:,} test images, {draws} draw{'' if draws == 1 else 's'}"
    settle = None
    if gain >= margin and low > 0:
        status, rule = GO, (f"{what} {_pts(gain)} (95% CI {ci}; {size}) reaches the {_pts(margin)} margin with its "
                            "interval above 0: GO")
    elif high < 0:
        status, rule = NO_GO, (f"scratch is ahead: {what} {_pts(gain)} with its 95% interval ({ci}; {size}) clear of "
                               "0: NO-GO")
    elif high < margin:
        status, rule = NO_GO, (f"{what} {_pts(gain)}, 95% CI {ci} ({size}): even its upper end is below the "
                               f"{_pts(margin)} margin, so transfer cannot be worth it at this budget: NO-GO")
    else:
        status = CAUTION
        reach = "below 0" if low <= 0 else f"below the {_pts(margin)} margin"
        rule = (f"cannot tell at this sample size: {what} {_pts(gain)} with a 95% interval of {ci} ({size}) reaches "
                f"both {reach} and above the {_pts(margin)} margin: CAUTION, not a NO-GO")
        settle = what_would_settle(gain, margin, n_test=n_test, draws=draws, s_draws=s_draws, s_images=s_images)
        if settle is not None:
            rule += f"; what would settle it: {settle.text}"
    return GainReading(key, title, status, float(gain), float(low), float(high), float(margin), int(n_test),
                       int(draws), s_draws, s_images, settle), rule


def _divergence(ev: DivergenceEvidence, r: DivergenceRules) -> Signal:
    lo, hi = ev.mmd_ci
    if ev.p_value > r.alpha:
        status, rule = GO, (f"permutation p {ev.p_value:.3g} > α = {r.alpha:g}: no detectable shift at {ev.tap} "
                            "(GO whatever the MMD)")
    elif ev.mmd < r.mmd_green:
        status, rule = GO, f"MMD {ev.mmd:.4g} < {r.mmd_green:g}: the target sits inside the source distribution: GO"
    elif ev.mmd >= r.mmd_red:
        status, rule = NO_GO, (f"MMD {ev.mmd:.4g} ≥ {r.mmd_red:g}: negative-transfer territory for features frozen "
                               f"at {ev.tap}: NO-GO")
    else:
        status, rule = CAUTION, (f"{r.mmd_green:g} ≤ MMD {ev.mmd:.4g} < {r.mmd_red:g}: a real but moderate shift: "
                                 "CAUTION (fine-tune rather than only train a head)")
    crossed = [t for t in (r.mmd_green, r.mmd_red) if lo < t <= hi]
    if crossed and ev.p_value <= r.alpha:
        rule += f"; its 95% interval crosses {crossed[0]:g}, so the light is borderline"
    evidence = (f"MMD {ev.mmd:.3f} (95% CI {lo:.3f}–{hi:.3f}) on the seed scale at {ev.tap}, permutation p "
                f"{_p(ev.p_value, ev.n_permutations)} ({ev.n_permutations} permutations); domain classifier balanced "
                f"accuracy {ev.balanced_accuracy:.3f}, ROC-AUC {ev.roc_auc:.3f}, proxy A-distance {ev.pad:.2f}; "
                f"{ev.n_source} source and {ev.n_target} target images")
    return Signal("divergence", "Divergence at the penultimate layer", PREDICTED, status, f"MMD {ev.mmd:.3f}",
                  evidence, rule)


def _transferability(ev: TransferabilityEvidence, r: TransferabilityRules) -> Signal:
    ref = ev.reference
    knn = f"kNN accuracy {ev.knn_accuracy:.3f}" + ("" if ev.knn_reference is None else f" ({ref} {ev.knn_reference:.3f})")
    if ev.logme_reference is None:
        return Signal("transferability", "Transferability score (LogME)", PREDICTED, INFO, f"LogME {ev.logme:.3f}",
                      f"LogME {ev.logme:.3f} at {ev.tap}; {knn}",
                      f"LogME has no absolute scale; without the {ref} to compare with, it does not vote")
    gap = ev.logme - ev.logme_reference
    status = _by_gain(gap, r.logme_gap_go, r.logme_gap_no_go)
    rule = {GO: f"LogME gap {gap:+.3f} ≥ {r.logme_gap_go:+g}: GO",
            NO_GO: f"LogME gap {gap:+.3f} < {r.logme_gap_no_go:+g}: the {ref} explain the labels better: NO-GO",
            CAUTION: f"{r.logme_gap_no_go:+g} ≤ LogME gap {gap:+.3f} < {r.logme_gap_go:+g}: CAUTION"}[status]
    return Signal("transferability", "Transferability score (LogME)", PREDICTED, status, f"LogME gap {gap:+.3f}",
                  f"LogME {ev.logme:.3f} with the pretrained features against {ev.logme_reference:.3f} with the {ref} "
                  f"at {ev.tap} (nats per image, higher is better); {knn}", rule)


def _probe(ev: ProbeEvidence, r: GainRules) -> Signal | None:
    """The random-init floor, as context: a probe on random features is no alternative a team would ship, so it
    never votes (the baseline signal compares transfer with the real alternatives)."""
    if ev.floor_accuracy is None:
        return None
    gain = ev.best_accuracy - ev.floor_accuracy
    return Signal("probe", "Linear probe vs random-init floor", MEASURED, INFO, _pts(gain),
                  f"linear probe at {ev.best_tap} {ev.best_accuracy:.3f} ± {ev.best_se:.3f} against the same architecture "
                  f"with random weights at its own best tap {ev.floor_tap or ev.best_tap} {ev.floor_accuracy:.3f} ± "
                  f"{ev.floor_se or 0:.3f} (each tap chosen on validation; test accuracy, mean ± se over "
                  f"{ev.n_splits} splits of {ev.n_train}/{ev.n_val}/{ev.n_test} images; chance {ev.chance:.3f})",
                  "context only: how much pretraining adds over the same architecture untrained; it does not vote "
                  "(random features are no alternative anyone would ship)")


def _candidate(ev: Evidence) -> Signal | None:
    """NO-GO by definition when the candidate has nothing to transfer: random weights, or features that carry no
    information about the target (a frozen probe at chance, as an all-constant or damaged checkpoint gives)."""
    name = ev.model or "this model"
    if not ev.pretrained:
        return Signal("candidate", "Something to transfer", MEASURED, NO_GO, "random weights",
                      f"{name} has random weights: it was never trained, so there is no knowledge to transfer",
                      "a candidate with random weights is NO-GO by definition: train from scratch instead")
    p = ev.probe
    if p is not None and at_chance(p.best_accuracy, p.chance, p.n_test):
        return Signal("candidate", "Something to transfer", MEASURED, NO_GO, "features carry no information",
                      f"the best linear probe of {name}'s frozen features reaches {p.best_accuracy:.3f} at {p.best_tap}, "
                      f"at chance ({p.chance:.3f}, {p.n_test} test images): the features carry nothing about the target "
                      "(an all-constant or damaged checkpoint looks like this)",
                      "frozen features whose best probe stays within two standard errors of chance: NO-GO")
    return None


def _source_head(ev: SourceHeadResult, baseline: BaselineEvidence | None, r: MarginRules) -> Signal:
    """What the shift costs the source model, measured: its held-out source accuracy against its target accuracy
    with no adaptation. It votes GO when the model as it is already beats the best scratch baseline at the budget
    (zero target labels against the budget's); otherwise it is shown, and the recipe reads it."""
    lo, hi = ev.drop_ci
    worst = ", ".join(f"'{c.name}' {c.source:.2f} → {c.target:.2f}" for c in ev.per_class[:3])
    evidence = (f"the source model scores {ev.source_accuracy:.3f} ({ev.source_ci[0]:.3f}–{ev.source_ci[1]:.3f}) on "
                f"{ev.n_source} held-out source images and {ev.target_accuracy:.3f} ({ev.target_ci[0]:.3f}–"
                f"{ev.target_ci[1]:.3f}) on {ev.n_target} target images of the {len(ev.classes)} shared classes, with no "
                f"adaptation: the shift costs {_pts(ev.drop)} (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}); largest "
                f"drops {worst}")
    value = f"{ev.source_accuracy:.2f} → {ev.target_accuracy:.2f}"
    if baseline is not None:
        best = max((a for a in baseline.arms if a.converged and a.arm != "linear-probe"), key=lambda a: a.mean,
                   default=None)
        if best is not None and ev.target_ci[0] > best.high and ev.target_accuracy - best.mean >= r.margin:
            return Signal("source_head", "Source model on the target, no adaptation", MEASURED, GO, value, evidence,
                          f"with no target label at all it beats the best scratch baseline at the budget ({best.title} "
                          f"{best.mean:.3f}, interval to {best.high:.3f}): GO")
    return Signal("source_head", "Source model on the target, no adaptation", MEASURED, INFO, value, evidence,
                  "shown, not voting unless the model as it is beats the scratch baselines: a drop says adaptation "
                  "is needed, not whether it pays (the baseline signal measures that)")


def _comparison_reading(key: str, title: str, what: str, c: Comparison, margin: float, n_test: int,
                        draws: int) -> tuple[GainReading, str]:
    return read_gain(key, title, what, c.gain, c.low, c.high, margin, n_test=c.n_test or n_test,
                     draws=c.n or draws, s_draws=c.s_draws, s_images=c.s_images)


BASELINE_TITLE = "Transfer vs the best scratch baseline at your budget"
EFFICIENCY_TITLE = "Data efficiency at your budget (scratch vs transfer)"


def _baseline(ev: BaselineEvidence, r: MarginRules) -> Signal:
    c = ev.comparison
    at = "all" if ev.budget is None else f"{ev.budget}"
    reading, rule = _comparison_reading("baseline", BASELINE_TITLE, "transfer − best scratch baseline", c, r.margin,
                                        ev.n_test, ev.repeats)
    stuck = [a.title for a in ev.arms if not a.converged]
    scores = "; ".join(f"{a.title} {a.mean:.3f} ({a.low:.3f}–{a.high:.3f}){'' if a.converged else ', did not converge'}"
                       for a in ev.arms)
    evidence = (f"at {at} labels per class (mean {ev.per_class:.3g} per class in each of {reading.draws} draws of the "
                f"labelled images, the same label subsets and the same {reading.n_test:,} test images for every arm; "
                f"chance {ev.chance:.3f}): {scores}. {c.text}"
                + (f". Not voting (did not converge): {', '.join(stuck)}" if stuck else ""))
    return Signal("baseline", BASELINE_TITLE, MEASURED, reading.status, _pts(c.gain), evidence, rule,
                  decisive=reading.status == GO and c.low >= r.margin, reading=reading)


def _efficiency(ev: EfficiencyEvidence, r: MarginRules) -> Signal:
    g = ev.gain
    worse = [c for c in ev.comparisons if c.verdict == "scratch better" and c.per_class <= g.per_class + 1e-9]
    top = ev.comparisons[-1]
    saved = "—" if ev.labels_saved is None else f"{ev.labels_saved_bound}{ev.labels_saved:.3g}×"
    at = f"{g.per_class:.3g} labels/class"
    reading, rule = _comparison_reading("efficiency", EFFICIENCY_TITLE,
                                        f"transfer − best scratch arm at your budget ({at})", g,
                                        r.margin, 0, ev.repeats)
    status = reading.status
    if worse and status == GO:
        status = CAUTION
        reading = replace(reading, status=CAUTION)
        rule += (f"; but scratch is ahead at a smaller budget ({worse[0].text}), a sign of negative transfer: "
                 "CAUTION")
    elif worse:
        rule += f"; scratch is also ahead at a smaller budget ({worse[0].text})"
    if ev.break_even is not None and ev.break_even <= top.per_class + 1e-9:
        rule += (f"; scratch catches up at {ev.break_even_bound or '~'}{ev.break_even:.3g} labels/class, within the "
                 f"{top.per_class:.3g} tried")
    evidence = (f"{g.text}; {saved} fewer labels to reach {ev.target_accuracy:.1%}; break-even "
                + ("not reached" if ev.break_even is None else f"{ev.break_even_bound or '~'}{ev.break_even:.3g} labels/class")
                + f"; {ev.repeats} repeats, {ev.profile} settings, arms {', '.join(ev.arms)}")
    return Signal("efficiency", EFFICIENCY_TITLE, MEASURED, status, _pts(g.gain), evidence, rule,
                  decisive=status == GO and g.low >= r.margin, reading=reading)


def finetune_interval(ev: FinetuneEvidence, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Fine-tuned minus scratch test accuracy and its interval: the normal interval of two accuracies on the same
    ``n_test`` images, treated as independent (pairing would narrow it; one run each, so the spread between training
    runs is not in it). Returns ``(gain, low, high, s_images)``, ``s_images`` the per-image spread it implies."""
    from ..training.efficiency import t_quantile

    p1, p2, n = ev.test_accuracy, float(ev.scratch_accuracy), max(ev.n_test, 1)
    s_images = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    half = t_quantile(confidence, math.inf) * s_images / math.sqrt(n)
    gain = p1 - p2
    return gain, gain - half, gain + half, s_images


def _finetune(ev: FinetuneEvidence, r: MarginRules) -> Signal:
    probe = "" if ev.probe_accuracy is None else (f"; linear probe of the frozen features on the same split "
                                                  f"{ev.probe_accuracy:.3f} at {ev.probe_tap}")
    base = (f"fine-tuned ({ev.strategy}, lr {ev.lr:g}, backbone ×{ev.backbone_lr_mult:g}) {ev.test_accuracy:.3f} on "
            f"{ev.n_test} test images, best epoch {ev.best_epoch} of {ev.epochs_run}{probe}")
    if ev.scratch_accuracy is None:
        return Signal("finetune", "Fine-tuning result", MEASURED, INFO, f"{ev.test_accuracy:.3f}", base,
                      "no from-scratch run on the same split yet: it informs the recipe but does not vote")
    gain, low, high, s_images = finetune_interval(ev)
    reading, rule = read_gain("finetune", "Fine-tuned vs from scratch", "fine-tuned − scratch", gain, low, high,
                              r.margin, n_test=ev.n_test, draws=1, s_draws=0.0, s_images=s_images)
    return Signal("finetune", "Fine-tuned vs from scratch", MEASURED, reading.status, _pts(gain),
                  base + f"; from scratch {ev.scratch_accuracy:.3f} (interval: two accuracies on the same "
                         f"{ev.n_test} test images, one run each)", rule,
                  decisive=reading.status == GO and low >= r.margin, reading=reading)


LEAD_ORDER = ("finetune", "efficiency", "baseline", "source_head")
"""Which measured signal leads when several exist: the more precise, fairer measurement first (a fine-tune against its
scratch twin on the same split, then the data-efficiency experiment's long schedules at the budget, then the fast
baselines, then the source model as it is). The others can only add caution, never overturn it."""


def _lead(measured: Sequence[Signal]) -> tuple[Signal | None, str, list[Signal]]:
    """The leading signal, the decision it gives, and the firm signals that oppose it (each turns a firm decision
    into CAUTION: a noisier measurement adds caution, it never overturns the leader; a CAUTION of its own adds
    nothing, since it only says that its sample cannot tell)."""
    ranked = sorted((s for s in measured if s.key in LEAD_ORDER), key=lambda s: LEAD_ORDER.index(s.key))
    if not ranked:
        return None, _combine([s.status for s in measured]), []
    leader = ranked[0]
    opposed = [s for s in ranked[1:] if leader.status in (GO, NO_GO) and s.status in (GO, NO_GO)
               and s.status != leader.status]
    return leader, CAUTION if opposed else leader.status, opposed


def _combine(statuses: Sequence[str]) -> str:
    s = set(statuses)
    if s == {GO}:
        return GO
    if s == {NO_GO}:
        return NO_GO
    if GO in s and NO_GO in s:
        return CAUTION
    return NO_GO if NO_GO in s else CAUTION


def _missing(ev: Evidence) -> tuple[Missing, ...]:
    out = []
    if ev.divergence is None:
        out.append(Missing("shift", "Shift tests", "the divergence signal: MMD with its permutation test and the "
                                                  "domain classifier at the penultimate layer"))
    if ev.probe is None:
        out.append(Missing("probes", "Linear probes", "the transferability score, the check that the features carry "
                                                      "information, the random-init context and the layer to freeze "
                                                      "up to"))
    if ev.baseline is None and ev.pretrained:
        out.append(Missing("baselines", "Scratch baselines at your budget",
                           "the fast verdict's measured signal: the frozen-feature probe against a linear model and "
                           "k-NN on the raw pixels and a small CNN, at your label budget, in seconds"))
    if ev.efficiency is None:
        out.append(Missing("efficiency", "Data-efficiency experiment",
                           "the strongest measured signal: labels saved, the gain at a budget, the break-even point "
                           "and the negative-transfer check"))
    if ev.finetune is None:
        out.append(Missing("finetune", "Fine-tuning run", "whether fine-tuning beats the frozen linear probe (which "
                                                          "recipe), and with a scratch run, a measured signal"))
    elif ev.finetune.scratch_accuracy is None:
        out.append(Missing("scratch", "From-scratch baseline", "the fine-tuned-vs-scratch signal on the same split"))
    return tuple(out)


def decide(evidence: Evidence, rules: Rules | None = None) -> Verdict:
    """The verdict on ``evidence`` (see the module docstring for the rules and how they combine)."""
    rules = (rules or Rules()).validate()
    candidates = [
        _candidate(evidence),
        _baseline(evidence.baseline, rules.baseline) if evidence.baseline else None,
        _source_head(evidence.source_head, evidence.baseline, rules.baseline) if evidence.source_head else None,
        _divergence(evidence.divergence, rules.divergence) if evidence.divergence else None,
        _transferability(evidence.transferability, rules.transferability) if evidence.transferability else None,
        _probe(evidence.probe, rules.probe) if evidence.probe else None,
        _efficiency(evidence.efficiency, rules.efficiency) if evidence.efficiency else None,
        _finetune(evidence.finetune, rules.finetune) if evidence.finetune else None,
    ]
    signals = tuple(s for s in candidates if s is not None)
    voting = [s for s in signals if s.status != INFO]
    measured = [s for s in voting if s.kind == MEASURED]
    predicted = [s for s in voting if s.kind == PREDICTED]
    missing = _missing(evidence)
    disagreements = tuple(
        f"{a.title} says {a.status} ({a.value}) but {b.title} says {b.status} ({b.value})."
        for a, b in combinations(voting, 2) if {a.status, b.status} == {GO, NO_GO})
    budget = budget_text(evidence)
    if not voting:
        return Verdict(None, "No verdict yet: nothing that votes has been computed for this setup.",
                       (), signals, disagreements, missing, None, True, rules, budget, None)

    def listing(items: Sequence[Signal]) -> str:
        return ", ".join(f"{_lower_first(s.title)} {s.status} ({s.value})" for s in items)

    reasons = []
    provisional = not measured
    leader = None
    if measured:
        leader, decision, opposed = _lead(measured)
        if leader is None:
            reasons.append(f"Measured on held-out target images, these decide: {listing(measured)} → {decision}.")
        else:
            others = [s for s in measured if s is not leader and s.key in LEAD_ORDER]
            reasons.append(f"Led by {_lower_first(leader.title)}: {leader.status} ({leader.value}), the most precise, "
                           "fairest measurement computed"
                           + (f"; the others ({listing(others)}) can add caution, never overturn it" if others else "")
                           + ".")
            if opposed:
                reasons.append(f"A noisier measurement disagrees firmly: {listing(opposed)}; {leader.status} becomes "
                               "CAUTION until it is understood.")
            if leader.status == CAUTION and leader.reading is not None and leader.reading.settle is not None:
                reasons.append(f"Cannot tell at this sample size. What would settle it: {leader.reading.settle.text}.")
        vetoes = [s for s in predicted if s.status == NO_GO]
        decisive = [s for s in measured if s.decisive]
        if decision == GO and vetoes and decisive:
            reasons.append(f"A predicted signal disagrees: {listing(vetoes)}; the measurement is decisive (the whole "
                           f"interval of {listing(decisive)} lies above its margin), so GO stands: a predictor "
                           "does not outvote a clear measurement on your own target images.")
        elif decision == GO and vetoes:
            decision = CAUTION
            reasons.append(f"A predicted signal disagrees: {listing(vetoes)}; GO becomes CAUTION until it is "
                           "understood (is the labelled test sample representative of production data?).")
        elif predicted:
            reasons.append(f"Predicted before training, these temper: {listing(predicted)}.")
    else:
        decision = _combine([s.status for s in predicted])
        reasons.append(f"Only predictors so far: {listing(predicted)} → {decision}, provisional until a measured "
                       "signal (probes, data efficiency, fine-tuning) confirms it.")
    nothing = next((s for s in signals if s.key == "candidate"), None)
    if nothing is not None:
        decision = NO_GO
        reasons.insert(0, f"Nothing to transfer: {nothing.evidence}. That is NO-GO whatever the other signals say.")
    if disagreements:
        reasons.append("Signals disagree; they are shown side by side, not averaged.")
    against = [s for s in voting if s.status != GO]
    if nothing is not None:
        headline = f"Nothing to transfer: {nothing.value}. Train from scratch."
    elif decision == GO:
        headline = "Transfer pays here. " + ("Every signal computed agrees." if not against else
                                                 "Caveats: " + listing(against) + ".")
    elif decision == NO_GO:
        headline = "Transfer from this model does not pay here: " + listing([s for s in voting
                                                                                     if s.status == NO_GO]) + "."
    elif leader is not None and leader.status == CAUTION:
        headline = (f"Cannot tell at this sample size: {_lower_first(leader.title)} {leader.value}, 95% interval "
                    f"{_ci(leader.reading.low, leader.reading.high)} against a {_pts(leader.reading.margin)} margin."
                    if leader.reading is not None else "Cannot tell at this sample size: " + listing(against) + ".")
    else:
        headline = "Transfer is not a clear win here: " + listing(against) + "."
    if provisional:
        headline += " (Provisional: no measured signal yet.)"
    headline = f"{'At' if evidence.budget is not None else 'With'} {budget}: {headline}"
    change = break_even_text(evidence)
    recipe = _recipe(evidence, {s.key: s for s in signals}, decision, rules)
    return Verdict(decision, headline, tuple(reasons), signals, disagreements, missing, recipe, provisional, rules,
                   budget, change, led_by=None if nothing is not None or leader is None else leader.key)


def budget_text(ev: Evidence) -> str:
    """The budget the verdict answers for, in words: ``20 labels per class`` or ``all labelled images (30 per class
    to train on)``."""
    if ev.budget is not None:
        return f"{ev.budget} label{'' if ev.budget == 1 else 's'} per class"
    per_class = ev.baseline.per_class if ev.baseline else None
    return "all labelled images" + (f" ({per_class:.3g} per class to train on)" if per_class else "")


def break_even_text(ev: Evidence) -> str | None:
    """Where the answer would change with the budget (the data-efficiency experiment's break-even), or None when
    nothing measured it."""
    eff = ev.efficiency
    if eff is None:
        if ev.baseline is not None and ev.pretrained:
            return ("Where the answer would change with more labels is unknown until the data-efficiency experiment "
                    "runs (it measures the break-even budget).")
        return None
    top = eff.comparisons[-1] if eff.comparisons else eff.gain
    if eff.break_even is None:
        return (f"Break-even: scratch does not catch up with transfer within the budgets tried (up to "
                f"{top.per_class:.3g} labels per class), so the answer holds for larger budgets up to there.")
    here = eff.gain.per_class
    side = "below" if here < eff.break_even else "at or above"
    return (f"Break-even: from about {eff.break_even_bound or ''}{eff.break_even:.3g} labels per class scratch catches "
            f"up with transfer; your budget ({here:.3g} per class) is {side} it"
            + (", so transfer pays less the more you label." if side == "below" else
               ", where transfer no longer pays over training from scratch."))


# ----------------------------------------------------------------------------- recipe
def _strategy_steps(strategy: str, frozen: int | None, n_stages: int | None, cut: str | None, mult: float,
                    defaults: Any) -> list[str]:
    """The steps of a fine-tuning ``strategy`` with ``defaults`` (a :class:`tldiag.training.finetune.FinetuneConfig`: the
    Fine-tune page's settings)."""
    lr = defaults.lr
    common = (f"AdamW, a {defaults.warmup_epochs:g}-epoch linear warm-up then cosine decay, label smoothing "
              f"{defaults.label_smoothing:g}, early stopping on a validation split (patience {defaults.patience}); "
              "keep the pretrained BatchNorm statistics fixed (small target batches would overwrite them)")
    if strategy == "partial":
        frozen_text = (f"the stem and the bottom {frozen} of {n_stages} stages" if frozen is not None and n_stages
                       else "every stage but the last")
        return [f"Freeze {frozen_text}" + (f" (up to {cut}, the probe's recommended cut)" if cut else "")
                + f"; train the last stage and a new head: head lr {lr:g}, backbone ×{mult:g} = {lr * mult:g}.",
                common + "."]
    if strategy == "freeze-unfreeze":
        return [f"Train a new head alone for {defaults.head_epochs} epochs at lr {lr:g} (its random first gradients would damage the "
                f"pretrained features), then unfreeze every layer at ×{mult:g} = {lr * mult:g}."
                + (f" If validation overfits, keep the layers up to {cut} frozen." if cut else ""),
                common + "."]
    return [f"Train every layer with discriminative rates: head lr {lr:g}, backbone ×{mult:g} = {lr * mult:g} (the "
            "general early features move least).", common + "."]


def _scratch_recipe(ev: Evidence, signal: Signal) -> Recipe:
    """The recipe when the candidate has nothing to transfer: train from scratch, and look for a real source."""
    steps = []
    b = ev.baseline
    if b is not None:
        best = max((a for a in b.arms if a.converged and a.arm != "linear-probe"), key=lambda a: a.mean, default=None)
        if best is not None:
            steps.append(f"Start from the best scratch baseline measured at {budget_text(ev)}: {best.title} at "
                         f"{best.mean:.3f} test accuracy ({best.settings}).")
    steps.append("Train a model from random weights with every layer at one learning rate (AdamW, a short warm-up "
                 "then cosine decay, early stopping on a validation split); its BatchNorm statistics train with it, "
                 "since random ones mean nothing.")
    steps.append("Give it the schedule it needs: a from-scratch model needs many more epochs than a fine-tune, so "
                 "stop on validation, not on a fixed epoch count.")
    return Recipe("scratch", "Train from scratch: this model has nothing to transfer", None, tuple(steps), True,
                  f"Look for a pretrained source model: {signal.evidence}. Compare pretrained candidates on the Probes "
                  "page's leaderboard.", "None: without pretrained knowledge there are no labels to save.")


def _source_step(ev: Evidence, rules: Rules) -> list[str]:
    sh = ev.source_head
    if sh is None:
        return []
    if sh.drop <= rules.recipe.headroom:
        return [f"The source model already works on the target as it is ({sh.source_accuracy:.3f} on held-out source "
                f"images, {sh.target_accuracy:.3f} on the target): the shift costs nothing measurable, so keep its head "
                "or retrain only the head."]
    return [f"The shift costs the source model {_pts(sh.drop)} with no adaptation ({sh.source_accuracy:.3f} → "
            f"{sh.target_accuracy:.3f}): its source head cannot be used as it is; retrain the head on target labels "
            "at least, and check the classes that drop most."]


def _arm_name(arm: str) -> str:
    from ..training.efficiency import ARM_NAMES  # loaded already when an arm was measured

    return ARM_NAMES.get(arm, arm)


def _probe_at_budget(ev: Evidence) -> tuple[float, float, int] | None:
    """The frozen-feature probe's test accuracy at the team's budget, the labels per class it had and its training
    labels in all, from the fast comparison; None when that did not run (or ran on the whole pool)."""
    b = ev.baseline
    if b is None or b.budget is None:
        return None
    arm = next((a for a in b.arms if a.arm == "linear-probe"), None)
    if arm is None:
        return None
    n_classes = b.n_classes or (round(1 / b.chance) if b.chance > 0 else 0)  # records from before n_classes
    return arm.mean, b.per_class, int(round(b.per_class * n_classes))


def _recipe(ev: Evidence, by: Mapping[str, Signal], decision: str, rules: Rules) -> Recipe | None:
    if "candidate" in by:
        return _scratch_recipe(ev, by["candidate"])
    if ev.probe is None and ev.divergence is None:
        return None
    div = ev.divergence
    shifted = div is not None and div.mmd >= rules.divergence.mmd_green and div.p_value <= rules.divergence.alpha
    red = shifted and div.mmd >= rules.divergence.mmd_red
    another, other_reason = _another_source(ev, by, red, rules)
    savings = _label_savings(ev.efficiency)
    if decision == NO_GO:
        return _no_go_recipe(ev, another, other_reason, savings)
    at_budget = _probe_at_budget(ev)
    steps = _linear_steps(ev, at_budget, shifted, red, rules)
    if steps:
        cut = ev.probe.recommended_tap
        return Recipe("linear-probe", f"Linear probe on frozen features at {cut}", cut, steps, another,
                      other_reason, savings)
    return _finetune_recipe(ev, at_budget, shifted, rules, another, other_reason, savings)


def _another_source(ev: Evidence, by: Mapping[str, Signal], red: bool, rules: Rules) -> tuple[bool, str]:
    """Whether to look for another source model, and why (or why not)."""
    div = ev.divergence
    other = []
    if red:
        other.append(f"the MMD at {div.tap} is {div.mmd:.3f} (≥ {rules.divergence.mmd_red:g}): the background's bound "
                     "says to pick a closer source rather than force the adaptation")
    for key in ("baseline", "transferability", "efficiency", "finetune"):
        s = by.get(key)
        if s is not None and s.status == NO_GO:
            other.append(f"{_lower_first(s.title)} is NO-GO ({s.value})")
    if other:
        return True, ("Look for another source model: " + "; ".join(other) + ". Compare candidates on the Probes "
                      "page's leaderboard (probe accuracy, LogME) before labelling more.")
    return False, ("No need to look for another source model: no signal says this one is far from the target"
                   + (f" (MMD {div.mmd:.3f} at {div.tap})" if div else "") + ".")


def _label_savings(eff: EfficiencyEvidence | None) -> str:
    """The recipe's label-savings line, from the data-efficiency experiment."""
    if eff is None:
        return "Unknown until the data-efficiency experiment runs (it measures labels saved and the break-even)."
    saved = ("an unknown factor" if eff.labels_saved is None else f"{eff.labels_saved_bound}{eff.labels_saved:.3g}×")
    return (f"About {saved} fewer labels to reach {eff.target_accuracy:.1%}"
            + (f" ({eff.transfer_labels:.3g} instead of {eff.scratch_labels:.3g} per class)"
               if eff.transfer_labels and eff.scratch_labels else "")
            + f"; {_pts(eff.gain.gain)} at {eff.gain.per_class:.3g} labels per class; "
            + ("scratch does not catch up within the budgets tried."
               if eff.break_even is None else f"beyond ~{eff.break_even:.3g} labels per class scratch catches "
                                              "up, so labelling more than that buys transfer nothing."))


def _no_go_recipe(ev: Evidence, another: bool, other_reason: str, savings: str) -> Recipe:
    eff, cut = ev.efficiency, ev.probe.recommended_tap if ev.probe else None
    measured = eff.gain if eff is not None else ev.baseline.comparison if ev.baseline is not None else None
    beat = (f"at {measured.per_class:.3g} labels per class, {_arm_name(measured.scratch_arm)} scored "
            f"{measured.scratch:.3f} against {measured.transfer:.3f} for {_arm_name(measured.transfer_arm)}"
            if measured is not None and measured.scratch_arm else "")
    return Recipe("another-source", "Do not transfer this model as it is", cut, (
        "Keep the from-scratch baseline as the model to beat (the Data efficiency page's small CNN, or the "
        "same architecture from random weights)" + (f": {beat}." if beat else "."),
        "If you must transfer from this model, transfer fewer layers: keep only the shallow, general stages and "
        "fine-tune everything above them, and check against the scratch baseline on the same split.",
    ), True, other_reason if another else "Look for another source model: the measured signals say NO-GO.",
        savings)


def _probe_reading(ev: Evidence, at_budget) -> tuple[float | None, str]:
    """The frozen probe's accuracy the recipe reads (at the team's budget when the fast comparison ran) and where."""
    probe = ev.probe
    probe_acc = at_budget[0] if at_budget else (probe.best_accuracy if probe else None)
    where = (f"at {at_budget[1]:.3g} labels per class" if at_budget else
             f"at {probe.best_tap}, with {probe.n_train} training labels" if probe else "")
    return probe_acc, where


def _finetune_gain(ft: FinetuneEvidence | None) -> float | None:
    """Fine-tuned minus frozen probe on the same split; None without a converged run (a run still improving at
    its last epoch says what its schedule reached, not what fine-tuning can)."""
    return None if ft is None or ft.probe_accuracy is None or not ft.converged else ft.test_accuracy - ft.probe_accuracy


def _linear_steps(ev: Evidence, at_budget, shifted: bool, red: bool, rules: Rules) -> tuple[str, ...]:
    """The steps of the linear-probe recipe when it is the one (empty otherwise): a fine-tune that added less than
    ``finetune_over_probe``, or no fine-tune and a probe within ``headroom`` of 100%."""
    probe, div = ev.probe, ev.divergence
    cut = probe.recommended_tap if probe else None
    # the probe at the team's budget (the fast comparison) decides, not the probe on the whole labelled pool
    probe_acc, where = _probe_reading(ev, at_budget)
    headroom = probe_acc is not None and probe_acc >= 1 - rules.recipe.headroom
    ft_gain = _finetune_gain(ev.finetune)
    linear = (ft_gain is not None and ft_gain < rules.recipe.finetune_over_probe) or (ft_gain is None and headroom)
    if not (linear and not red and cut):
        return ()
    why = (f"fine-tuning added {_pts(ft_gain)} over it on the same split (< {_pts(rules.recipe.finetune_over_probe)})"
           if ft_gain is not None else
           f"it already reaches {probe_acc:.3f} {where} (within {rules.recipe.headroom:.0%} of 100%), leaving "
           "fine-tuning nothing to win")
    steps = [f"Train a linear classifier on the frozen features at {cut} (standardised, L2 logistic "
             f"regression with C chosen on validation, as the Probes page does): {why}."]
    if shifted:
        steps.append(f"The shift at {div.tap} (MMD {div.mmd:.3f}) would usually call for fine-tuning, but the probe "
                     "measured on held-out target images leaves it nothing to win; the measurement decides.")
    steps.append(f"Freezing the whole backbone makes training and serving cheap; re-check with a fine-tune if the "
                 f"target grows or drifts (the probe's accuracy at {cut} is {probe.recommended_accuracy:.3f}).")
    steps.extend(_source_step(ev, rules))
    return tuple(steps)


def _finetune_recipe(ev: Evidence, at_budget, shifted: bool, rules: Rules, another: bool, other_reason: str,
                     savings: str) -> Recipe:
    from ..training.finetune import STRATEGY_TITLES, FinetuneConfig, recommend  # the Fine-tune page's defaults

    probe, div, ft = ev.probe, ev.divergence, ev.finetune
    cut = probe.recommended_tap if probe else None
    probe_acc, where = _probe_reading(ev, at_budget)
    ft_gain = _finetune_gain(ft)
    n_train = at_budget[2] if at_budget else probe.n_train if probe else (ft.n_train if ft else 0)
    rec = recommend(n_train, ev.n_stages or 1, pretrained=ev.pretrained)
    steps: list[str] = list(rec.reasons)
    steps.extend(_strategy_steps(rec.strategy, rec.frozen_stages, ev.n_stages, cut, rec.backbone_lr_mult,
                                 FinetuneConfig()))
    if shifted:
        steps.append(f"The target is shifted at {div.tap} (MMD {div.mmd:.3f}): do not stop at a head on frozen "
                     "features; let the deep, specific layers adapt, and pull them toward the pretrained weights "
                     "(L2-SP) if validation accuracy is unstable with few labels.")
    if ft is not None:
        steps.append(f"Your run: {ft.strategy} at lr {ft.lr:g} (backbone ×{ft.backbone_lr_mult:g}) reached "
                     f"{ft.test_accuracy:.3f}" + ("" if ft_gain is None else f" ({_pts(ft_gain)} against the frozen probe)")
                     + f"; best epoch {ft.best_epoch} of {ft.epochs_run}.")
        if not ft.converged:
            steps.append(f"It had not converged: its best epoch was its last ({ft.best_epoch} of {ft.epochs_run}), so "
                         "it does not decide between fine-tuning and the frozen probe; train it until validation stops "
                         f"improving (more than {ft.epochs} epochs).")
        elif ft.best_epoch <= 2 and ft.epochs_run >= ft.best_epoch + 2:
            steps.append("It peaked in its first epochs and then got worse on validation: lower the learning rate "
                         "(or the backbone multiplier) or freeze more stages.")
    else:
        steps.append("Launch the fine-tune to check it beats the linear probe"
                     + (f" ({probe_acc:.3f} {where})" if probe_acc is not None else "")
                     + " on the same split; if it does not, the frozen probe is the cheaper recipe.")
    steps.extend(_source_step(ev, rules))
    title = STRATEGY_TITLES.get(rec.strategy, rec.strategy)
    return Recipe(rec.strategy, f"Fine-tune: {title}", cut, tuple(steps), another, other_reason, savings)


__all__ = ["GainReading", "LEAD_ORDER", "MarginRules", "Settle", "finetune_interval", "read_gain",
           "what_would_settle", "ArmScore", "BaselineEvidence", "budget_text", "break_even_text",
           "CAUTION", "GO", "INFO", "NO_GO", "DECISIONS", "Comparison", "DivergenceEvidence", "EfficiencyEvidence",
           "Evidence", "FinetuneEvidence", "Missing", "ProbeEvidence", "Recipe", "Rules", "Signal",
           "PIXELS_REFERENCE", "TransferabilityEvidence", "Verdict", "decide", "load_rules", "RULES_FILE",
           "rules_changes", "save_team_rules", "team_rules_path"]
