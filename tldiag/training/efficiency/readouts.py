"""What an experiment says: each arm's curve (accuracy per budget with its interval), the labels an arm needs to
reach an accuracy, the gain of transfer at a budget, the break-even budget and the negative-transfer flag."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import TldiagError
from .config import ARM_NAMES, ARM_TITLES, SCRATCH_ARMS, TRANSFER_ARMS
from .intervals import correct_matrix, crossed_interval, mean_interval, t_interval
from .runs import EfficiencyResult, budget_order, labels_per_class


@dataclass(frozen=True)
class ArmCurve:
    """Test accuracy against labels for one arm.

    Attributes:
        arm: One of :data:`ARMS`.
        budgets: Budgets run (0 = all), smallest first.
        per_class: Mean labels per class of each budget (the x axis).
        mean, low, high: Mean accuracy over repeats and its 95% interval (:func:`crossed_interval` over draws
            and test images; a t-interval over repeats for runs without per-image results).
        accuracies: Each budget's accuracies, one per repeat (repeat order).
    """

    arm: str
    budgets: tuple[int, ...]
    per_class: tuple[float, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    accuracies: tuple[tuple[float, ...], ...]
    correct: tuple[np.ndarray | None, ...] = field(default=(), repr=False, compare=False)

    @property
    def area(self) -> float:
        """Mean accuracy over budgets (how good an arm is across the range)."""
        return float(np.mean(self.mean))


def curves(result: EfficiencyResult) -> dict[str, ArmCurve]:
    """One :class:`ArmCurve` per arm that ran, budgets in increasing order ("all" last). A budget where a scratch
    arm did not converge in some repeat is left out of its curve: it does not vote (see :attr:`Run.converged`; a
    stunted scratch run would only flatter transfer). A transfer arm at chance stays: that is what transfer gave."""
    out = {}
    for arm in result.arms:
        runs = [r for r in result.runs if r.arm == arm]
        stuck = {r.budget for r in runs if not r.converged} if arm in SCRATCH_ARMS else set()
        budgets = sorted({r.budget for r in runs} - stuck, key=budget_order)
        if not budgets:
            continue
        per_class, mean, low, high, accs, correct = [], [], [], [], [], []
        for b in budgets:
            at = sorted((r for r in runs if r.budget == b), key=lambda r: r.repeat)
            m, lo, hi = mean_interval([r.accuracy for r in at], correct_matrix(at))
            per_class.append(float(np.mean([r.per_class for r in at])))
            mean.append(m), low.append(max(lo, 0.0)), high.append(min(hi, 1.0))
            accs.append(tuple(r.accuracy for r in at))
            correct.append(correct_matrix(at))
        out[arm] = ArmCurve(arm, tuple(budgets), tuple(per_class), tuple(mean), tuple(low), tuple(high), tuple(accs),
                            tuple(correct))
    return out


def _log_interp(x0: float, x1: float, f: float) -> float:
    """The point a fraction ``f`` of the way from ``x0`` to ``x1`` on a log scale."""
    return float(math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))))


@dataclass(frozen=True)
class Reach:
    """How many labels an arm needs to reach an accuracy.

    Attributes:
        arm: The arm.
        per_class: Labels per class, interpolated on a log scale between the budgets around the first crossing of
            the mean curve; the smallest budget when it is already reached there (``bound`` "≤"), the largest
            when never reached (``bound`` ">").
        bound: "" (interpolated), "≤" (at most) or ">" (more than: never reached).
    """

    arm: str
    per_class: float
    bound: str = ""

    @property
    def reached(self) -> bool:
        return self.bound != ">"


def labels_to_reach(curve: ArmCurve, accuracy: float) -> Reach:
    """Labels per class at which ``curve``'s mean first reaches ``accuracy`` (see :class:`Reach`)."""
    xs, ys = curve.per_class, curve.mean
    for k, (x, y) in enumerate(zip(xs, ys)):
        if y >= accuracy:
            if k == 0:
                return Reach(curve.arm, x, "≤")
            f = (accuracy - ys[k - 1]) / (y - ys[k - 1])
            return Reach(curve.arm, _log_interp(xs[k - 1], x, f))
    return Reach(curve.arm, xs[-1], ">")


@dataclass(frozen=True)
class Comparison:
    """The best transfer arm against the best scratch arm at one budget, paired over repeats (same subsets).

    Attributes:
        budget: The budget (0 = all); per_class: its mean labels per class.
        transfer_arm, scratch_arm: The arms with the higher mean accuracy in each family at this budget.
        transfer, scratch: Their mean accuracies.
        gain, low, high: Mean of (transfer - scratch) over repeats and its 95% interval (:func:`crossed_interval`
            of the paired per-image differences; a t-interval over repeats without per-image results).
        n: Repeats paired.
        s_draws, s_images, n_test: The interval's two spreads (between draws of the labelled images, over test
            images) and the test images it was measured on; None and 0 without per-image results. What a larger test
            set or more draws would make of the interval follows from them (:class:`CrossedInterval`).
    """

    budget: int
    per_class: float
    transfer_arm: str
    scratch_arm: str
    transfer: float
    scratch: float
    gain: float
    low: float
    high: float
    n: int
    s_draws: float | None = None
    s_images: float | None = None
    n_test: int = 0

    @property
    def verdict(self) -> str:
        """``transfer better``, ``scratch better`` (the interval excludes 0) or ``tie``."""
        degenerate = self.low == self.high  # one repeat and no per-image results: the sign is all there is
        if self.low > 0 or (degenerate and self.gain > 0):
            return "transfer better"
        if self.high < 0 or (degenerate and self.gain < 0):
            return "scratch better"
        return "tie"

    def describe(self) -> str:
        ci = f" (95% CI {self.low:+.3f} to {self.high:+.3f}, {self.n} repeat{'' if self.n == 1 else 's'})" \
            if self.high > self.low else ""
        return (f"at {labels_per_class(self.budget, self.per_class)}: {ARM_TITLES[self.scratch_arm]} "
                f"{self.scratch:.3f} vs {ARM_TITLES[self.transfer_arm]} {self.transfer:.3f}, transfer − scratch "
                f"{self.gain:+.3f}{ci}: {self.verdict}")


@dataclass(frozen=True)
class Readouts:
    """What the chart says, in numbers.

    Attributes:
        target_accuracy: The accuracy the "labels needed" readouts aim at.
        reach: Per arm, the labels per class it needs to reach ``target_accuracy``.
        labels_saved: Labels the best scratch arm needs / labels the best transfer arm needs, at the target
            accuracy; None when no transfer arm reaches it.
        labels_saved_bound: "≥" when scratch never reaches it (or transfer reaches it at the smallest budget) and
            the ratio is a lower bound; "" otherwise.
        budget: The budget of ``gain``; gain: the comparison there.
        comparisons: One :class:`Comparison` per budget.
        break_even: Labels per class where scratch catches up with transfer (interpolated on a log scale), None
            when it never does within the budgets; break_even_bound: "≤" when it already has at the smallest.
        negative_transfer: Scratch is at or above transfer at some budget.
        evidence: The comparisons where it is.
        summary: The readouts as sentences.
    """

    target_accuracy: float
    reach: Mapping[str, Reach]
    labels_saved: float | None
    labels_saved_bound: str
    budget: int
    gain: Comparison
    comparisons: tuple[Comparison, ...]
    break_even: float | None
    break_even_bound: str
    negative_transfer: bool
    evidence: tuple[Comparison, ...]
    summary: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _compare(cs: Mapping[str, ArmCurve], budget: int) -> Comparison:
    def best(family: Sequence[str]) -> ArmCurve:
        return max((cs[a] for a in family if a in cs and budget in cs[a].budgets),
                   key=lambda c: c.mean[c.budgets.index(budget)])

    t, s = best(TRANSFER_ARMS), best(SCRATCH_ARMS)
    i, j = t.budgets.index(budget), s.budgets.index(budget)
    n = min(len(t.accuracies[i]), len(s.accuracies[j]))
    diff = np.asarray(t.accuracies[i][:n]) - np.asarray(s.accuracies[j][:n])
    Mt = t.correct[i] if t.correct else None
    Ms = s.correct[j] if s.correct else None
    paired = Mt[:n] - Ms[:n] if Mt is not None and Ms is not None and Mt.shape[1] == Ms.shape[1] else None
    if paired is None:
        gain, low, high = t_interval(diff)
        return Comparison(budget, t.per_class[i], t.arm, s.arm, t.mean[i], s.mean[j], gain, low, high, n)
    c = crossed_interval(paired)
    return Comparison(budget, t.per_class[i], t.arm, s.arm, t.mean[i], s.mean[j], float(np.mean(diff)), c.low,
                      c.high, n, c.s_draws, c.s_images, c.n_images)


def readouts(result: EfficiencyResult, *, target_accuracy: float | None = None, budget: int | None = None,
             arm_curves: Mapping[str, ArmCurve] | None = None) -> Readouts:
    """The chart's readouts (see :class:`Readouts`).

    Args:
        result: A finished experiment with at least one transfer and one scratch arm.
        target_accuracy: Accuracy for "labels needed"; default: the best mean accuracy that both the best transfer
            arm and the best scratch arm reach (scratch's best, when transfer is better).
        budget: Budget of the gain readout; default the experiment's reference budget (the team's budget), else 10
            labels per class when run, else the middle budget.
        arm_curves: ``curves(result)`` when the caller has it already (its bootstrap intervals are the slow part).
    """
    cs = arm_curves if arm_curves is not None else curves(result)
    transfer = [a for a in TRANSFER_ARMS if a in cs]
    scratch = [a for a in SCRATCH_ARMS if a in cs]
    starved = [a for a in SCRATCH_ARMS if a not in cs and any(r.arm == a for r in result.runs)]
    if transfer and not scratch and starved:
        raise TldiagError(
            f"No scratch arm converged: every run of {', '.join(ARM_TITLES[a] for a in starved)} ended with its "
            "validation accuracy at chance, so it says nothing about training from scratch. Train it longer (more "
            "epochs or images per epoch) or add the pixel baselines (pixel-linear, pixel-knn), which always fit.")
    if not transfer or not scratch:
        raise TldiagError(f"The experiment has arms {list(cs)}; the readouts need a transfer arm "
                          f"({', '.join(TRANSFER_ARMS)}) and a scratch arm ({', '.join(SCRATCH_ARMS)}).")
    shared = [b for b in result.budgets if any(b in cs[a].budgets for a in transfer)
              and any(b in cs[a].budgets for a in scratch)]
    if not shared:
        raise TldiagError("No budget has runs of a transfer arm and of a scratch arm that converged (was the "
                          "experiment cancelled early?); run it again to complete it (finished runs are reused).")
    # an arm run at some budgets only (fine-tuning at the team's budget on a CPU) has no area to compare
    spans = lambda arms: [a for a in arms if set(shared) <= set(cs[a].budgets)] or arms  # noqa: E731
    best_t = max((cs[a] for a in spans(transfer)), key=lambda c: c.area)
    best_s = max((cs[a] for a in spans(scratch)), key=lambda c: c.area)
    if target_accuracy is None:
        target_accuracy = math.floor(1000 * min(max(best_t.mean), max(best_s.mean)) + 1e-9) / 1000
    elif not 0.0 < target_accuracy <= 1.0:
        raise TldiagError(f"target_accuracy={target_accuracy!r} must be an accuracy in (0, 1], e.g. 0.9.")
    if budget is None:
        budget = result.reference if result.reference in shared and (result.reference or result.config.budget) \
            else 10 if 10 in shared else shared[len(shared) // 2]
    elif budget not in shared:
        raise TldiagError(f"budget={budget!r} was not run for every arm; choose one of {shared} (0 = all).")
    reach = {a: labels_to_reach(c, target_accuracy) for a, c in cs.items()}
    rt = min((reach[a] for a in spans(transfer)), key=lambda r: (not r.reached, r.per_class))
    rs = min((reach[a] for a in spans(scratch)), key=lambda r: (not r.reached, r.per_class))
    saved, saved_bound = None, ""
    if rt.reached:
        saved = rs.per_class / rt.per_class
        saved_bound = "≥" if (not rs.reached or rt.bound == "≤") and rs.bound != "≤" else ""
    comparisons = tuple(_compare(cs, b) for b in shared)
    evidence = tuple(c for c in comparisons if c.scratch >= c.transfer)
    break_even, be_bound = None, ""
    for k, c in enumerate(comparisons):
        if c.scratch >= c.transfer:
            if k == 0:
                break_even, be_bound = c.per_class, "≤"
            else:
                p = comparisons[k - 1]
                d0, d1 = p.transfer - p.scratch, c.transfer - c.scratch
                break_even = _log_interp(p.per_class, c.per_class, d0 / (d0 - d1) if d0 != d1 else 1.0)
            break
    gain = next(c for c in comparisons if c.budget == budget)
    k = len(result.classes)
    lines = []
    if rt.reached:
        how = "at most" if rt.bound == "≤" else "about"
        s_how = ("more than" if not rs.reached else "at most" if rs.bound == "≤" else "about")
        lines.append(f"To reach {target_accuracy:.1%} test accuracy, {ARM_NAMES[rt.arm]} needs {how} "
                     f"{rt.per_class:.3g} labels per class ({rt.per_class * k:,.0f} in all); "
                     f"{ARM_NAMES[rs.arm]} needs {s_how} {rs.per_class:.3g} ({rs.per_class * k:,.0f})"
                     + (f": {saved_bound}{saved:.3g}x the labels." if saved else "."))
    else:
        lines.append(f"No transfer arm reaches {target_accuracy:.1%} within the budgets tried.")
    lines.append(f"At {labels_per_class(gain.budget, gain.per_class)}, transfer − scratch = "
                 f"{gain.gain:+.3f}" + (f" (95% CI {gain.low:+.3f} to {gain.high:+.3f})" if gain.high > gain.low else "")
                 + f": {gain.verdict}.")
    if break_even is None:
        top = comparisons[-1]
        lines.append(f"Scratch does not catch up with transfer within the budgets tried (up to "
                     f"{labels_per_class(top.budget, top.per_class)}): transfer pays everywhere here.")
    else:
        lines.append(f"Break-even: scratch catches up with transfer at {be_bound or 'about '}{break_even:.3g} labels "
                     "per class; beyond that transfer stops paying.")
    if evidence:
        worse = [c for c in evidence if c.verdict == "scratch better"]
        head = "Negative transfer: scratch beats transfer" if worse else \
            "Negative-transfer flag: scratch is at or above transfer (within noise)"
        lines.append(f"{head} {evidence[0].describe()}" + (f", and at {len(evidence) - 1} more budget(s)."
                                                           if len(evidence) > 1 else "."))
    return Readouts(float(target_accuracy), reach, saved, saved_bound, int(budget), gain, comparisons, break_even,
                    be_bound, bool(evidence), evidence, tuple(lines))


__all__ = ["ArmCurve", "Comparison", "Reach", "Readouts", "curves", "labels_to_reach", "readouts"]
