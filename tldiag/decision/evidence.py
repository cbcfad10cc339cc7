"""What the verdict reads: typed summaries of the analyses that ran elsewhere (shift, transferability, probes, the
fast baselines, the data-efficiency experiment, a fine-tune, the source model), each read back from its
``to_dict()`` with :meth:`Evidence.from_dict`."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from ..sourcehead import SourceHeadResult


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


__all__ = ["ArmScore", "BaselineEvidence", "Comparison", "DivergenceEvidence", "EfficiencyEvidence", "Evidence",
           "FinetuneEvidence", "PIXELS_REFERENCE", "ProbeEvidence", "TransferabilityEvidence"]
