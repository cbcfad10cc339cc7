"""Each computed signal read against its rule: the measured gains with their intervals (GO, CAUTION "cannot tell",
NO-GO) and what would settle a CAUTION, the predicted signals, the context; a :class:`Signal` states its evidence
and the rule that fired."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping

from ..errors import TldiagError
from ..sourcehead import SourceHeadResult
from ..stats import at_chance
from .evidence import BaselineEvidence, Comparison, DivergenceEvidence, EfficiencyEvidence, Evidence, \
    FinetuneEvidence, ProbeEvidence, TransferabilityEvidence
from .rules import CAUTION, DivergenceRules, GO, GainRules, INFO, MEASURED, MarginRules, NO_GO, PREDICTED, Rules, \
    TransferabilityRules


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
    """An analysis that has not run yet: what it would add to the verdict, and how to get it.

    Attributes:
        key: The analysis (``shift``, ``probes``, ``baselines``, ``efficiency``, ``finetune``, ``scratch``).
        title: Its name.
        adds: What it would add, in a phrase.
        action: ``compute`` (seconds to minutes, in the page or command that asks), ``job`` (a background job) or
            ``""`` (nothing to launch).
        button: The label of the button that gets it.
        help: What the button does, in a sentence.
        step: Where it comes in the order a setup's analyses run (the shift tests first, fine-tuning last): the
            missing ones are listed in that order.
    """

    key: str
    title: str
    adds: str
    action: str = ""
    button: str = ""
    help: str = ""
    step: int = 0


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


def lower_first(text: str) -> str:
    """'Divergence at ...' -> 'divergence at ...' for a title inside a sentence (acronyms like LogME stay)."""
    return text[:1].lower() + text[1:]


def pts(x: float) -> str:
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
        return Settle(0.0, None, None, None, f"the gain sits on the {pts(margin)} margin: no sample size settles it "
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
    text = (f"if the gain stays at {pts(gain)}, an interval of ±{100 * h:.1f} pts would read {side}: "
            + "; or ".join(options))
    return Settle(float(h), n_needed, r_needed, None if k_both is None else float(k_both), text)


def ci_text(low: float, high: float) -> str:
    return f"{100 * low:+.1f} to {100 * high:+.1f} pts"


def read_gain(key: str, title: str, what: str, gain: float, low: float, high: float, margin: float, *,
              n_test: int, draws: int, s_draws: float | None = None, s_images: float | None = None
              ) -> tuple[GainReading, str]:
    """Read a measured gain of transfer over scratch with its interval (see :class:`MarginRules`); returns the
    reading and the rule that fired, in words."""
    ci, size = ci_text(low, high), f"{n_test:,} test images, {draws} draw{'' if draws == 1 else 's'}"
    settle = None
    if gain >= margin and low > 0:
        status, rule = GO, (f"{what} {pts(gain)} (95% CI {ci}; {size}) reaches the {pts(margin)} margin with its "
                            "interval above 0: GO")
    elif high < 0:
        status, rule = NO_GO, (f"scratch is ahead: {what} {pts(gain)} with its 95% interval ({ci}; {size}) clear of "
                               "0: NO-GO")
    elif high < margin:
        status, rule = NO_GO, (f"{what} {pts(gain)}, 95% CI {ci} ({size}): even its upper end is below the "
                               f"{pts(margin)} margin, so transfer cannot be worth it at this budget: NO-GO")
    else:
        status = CAUTION
        reach = "below 0" if low <= 0 else f"below the {pts(margin)} margin"
        rule = (f"cannot tell at this sample size: {what} {pts(gain)} with a 95% interval of {ci} ({size}) reaches "
                f"both {reach} and above the {pts(margin)} margin: CAUTION, not a NO-GO")
        settle = what_would_settle(gain, margin, n_test=n_test, draws=draws, s_draws=s_draws, s_images=s_images)
        if settle is not None:
            rule += f"; what would settle it: {settle.text}"
    return GainReading(key, title, status, float(gain), float(low), float(high), float(margin), int(n_test),
                       int(draws), s_draws, s_images, settle), rule


def read_divergence(ev: DivergenceEvidence, r: DivergenceRules) -> Signal:
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


def read_transferability(ev: TransferabilityEvidence, r: TransferabilityRules) -> Signal:
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


def read_probe(ev: ProbeEvidence, r: GainRules) -> Signal | None:
    """The random-init floor, as context: a probe on random features is no alternative a team would ship, so it
    never votes (the baseline signal compares transfer with the real alternatives)."""
    if ev.floor_accuracy is None:
        return None
    gain = ev.best_accuracy - ev.floor_accuracy
    return Signal("probe", "Linear probe vs random-init floor", MEASURED, INFO, pts(gain),
                  f"linear probe at {ev.best_tap} {ev.best_accuracy:.3f} ± {ev.best_se:.3f} against the same architecture "
                  f"with random weights at its own best tap {ev.floor_tap or ev.best_tap} {ev.floor_accuracy:.3f} ± "
                  f"{ev.floor_se or 0:.3f} (each tap chosen on validation; test accuracy, mean ± se over "
                  f"{ev.n_splits} splits of {ev.n_train}/{ev.n_val}/{ev.n_test} images; chance {ev.chance:.3f})",
                  "context only: how much pretraining adds over the same architecture untrained; it does not vote "
                  "(random features are no alternative anyone would ship)")


def read_candidate(ev: Evidence) -> Signal | None:
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


def read_source_head(ev: SourceHeadResult, baseline: BaselineEvidence | None, r: MarginRules) -> Signal:
    """What the shift costs the source model, measured: its held-out source accuracy against its target accuracy
    with no adaptation. It votes GO when the model as it is already beats the best scratch baseline at the budget
    (zero target labels against the budget's); otherwise it is shown, and the recipe reads it."""
    lo, hi = ev.drop_ci
    worst = ", ".join(f"'{c.name}' {c.source:.2f} → {c.target:.2f}" for c in ev.per_class[:3])
    evidence = (f"the source model scores {ev.source_accuracy:.3f} ({ev.source_ci[0]:.3f}–{ev.source_ci[1]:.3f}) on "
                f"{ev.n_source} held-out source images and {ev.target_accuracy:.3f} ({ev.target_ci[0]:.3f}–"
                f"{ev.target_ci[1]:.3f}) on {ev.n_target} target images of the {len(ev.classes)} shared classes, with no "
                f"adaptation: the shift costs {pts(ev.drop)} (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}); largest "
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


def read_baseline(ev: BaselineEvidence, r: MarginRules) -> Signal:
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
    return Signal("baseline", BASELINE_TITLE, MEASURED, reading.status, pts(c.gain), evidence, rule,
                  decisive=reading.status == GO and c.low >= r.margin, reading=reading)


def read_efficiency(ev: EfficiencyEvidence, r: MarginRules) -> Signal:
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
    return Signal("efficiency", EFFICIENCY_TITLE, MEASURED, status, pts(g.gain), evidence, rule,
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


def read_finetune(ev: FinetuneEvidence, r: MarginRules) -> Signal:
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
    return Signal("finetune", "Fine-tuned vs from scratch", MEASURED, reading.status, pts(gain),
                  base + f"; from scratch {ev.scratch_accuracy:.3f} (interval: two accuracies on the same "
                         f"{ev.n_test} test images, one run each)", rule,
                  decisive=reading.status == GO and low >= r.margin, reading=reading)


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


# ----------------------------------------------------------------------------- the table of signals
@dataclass(frozen=True)
class SignalKind:
    """One kind of verdict signal: everything the verdict, the record and the Verdict page need to know of it.

    Attributes:
        key: The :attr:`Signal.key` it gives.
        evidence: The :class:`~tldiag.decision.evidence.Evidence` attribute it reads.
        rules: The :class:`~tldiag.decision.rules.Rules` section it reads (None: none).
        read: ``read(evidence, rules) -> Signal | None``: the signal, or None when its evidence is absent.
        explains: What it is, in a sentence (the Verdict page and the HTML report show it beside the signal).
        missing: ``missing(evidence) -> tuple[Missing, ...]``: what to compute when it cannot be read yet.
    """

    key: str
    evidence: str
    rules: str | None
    read: Callable[[Evidence, Rules], "Signal | None"]
    explains: str
    missing: Callable[[Evidence], tuple[Missing, ...]] = lambda ev: ()


SIGNALS: dict[str, SignalKind] = {}
"""Every signal the verdict reads, in the order the verdict lists them (:func:`register_signal` adds one)."""


def register_signal(kind: SignalKind) -> SignalKind:
    """Add a kind of signal to :data:`SIGNALS` (a new signal is one reader, its evidence and this call; see
    CONTRIBUTING.md). Its ``key`` must be new."""
    if kind.key in SIGNALS:
        raise TldiagError(f"A signal {kind.key!r} is already registered ({SIGNALS[kind.key].explains}); choose "
                          "another key.")
    SIGNALS[kind.key] = kind
    return kind


def _when_absent(*items: Missing, unless: Callable[[Evidence], bool] = lambda ev: False):
    def missing(ev: Evidence, _items=items) -> tuple[Missing, ...]:
        return () if unless(ev) else _items
    return missing


def _finetune_missing(ev: Evidence) -> tuple[Missing, ...]:
    if ev.finetune is None:
        return (Missing("finetune", "Fine-tuning run", "whether fine-tuning beats the frozen linear probe (which "
                                                       "recipe), and with a scratch run, a measured signal",
                        "job", "Launch fine-tuning (recommended strategy)",
                        "The Fine-tune page's defaults, as a background job.", step=5),)
    if ev.finetune.scratch_accuracy is None:
        return (Missing("scratch", "From-scratch baseline", "the fine-tuned-vs-scratch signal on the same split", "job",
                        "Launch the scratch baseline", "The same run from random weights, as a background job.",
                        step=6),)
    return ()


def _register_builtin() -> None:
    def present(attr: str, read):
        return lambda ev, rules: read(ev, rules) if getattr(ev, attr) is not None else None

    register_signal(SignalKind(
        "candidate", "probe", None, lambda ev, rules: read_candidate(ev),
        "Whether the candidate has anything to transfer: random weights, or a best frozen probe at chance."))
    register_signal(SignalKind(
        "baseline", "baseline", "baseline", present("baseline", lambda ev, r: read_baseline(ev.baseline, r.baseline)),
        "The fast verdict's measurement: the frozen-feature probe against cheap scratch baselines at your budget.",
        _when_absent(Missing("baselines", "Scratch baselines at your budget",
                             "the fast verdict's measured signal: the frozen-feature probe against a linear model "
                             "and k-NN on the raw pixels and a small CNN, at your label budget, in seconds",
                             "compute", "Run the scratch baselines",
                             "Seconds to a minute on a CPU: a linear model and k-NN on the pixels and a small CNN at "
                             "your budget.", step=3),
                     unless=lambda ev: ev.baseline is not None or not ev.pretrained)))
    register_signal(SignalKind(
        "source_head", "source_head", "baseline",
        present("source_head", lambda ev, r: read_source_head(ev.source_head, ev.baseline, r.baseline)),
        "A model trained on the source's classes, as it is: held-out source accuracy against target accuracy."))
    register_signal(SignalKind(
        "divergence", "divergence", "divergence",
        present("divergence", lambda ev, r: read_divergence(ev.divergence, r.divergence)),
        "How far the target sits from the source in the model's features (MMD with its permutation test).",
        _when_absent(Missing("shift", "Shift tests", "the divergence signal: MMD with its permutation test and the "
                                                     "domain classifier at the penultimate layer",
                             "compute", "Run the shift tests", "MMD, the domain classifier, CORAL and Fréchet at "
                                                              "every tap, in seconds.", step=1),
                     unless=lambda ev: ev.divergence is not None)))
    register_signal(SignalKind(
        "transferability", "transferability", "transferability",
        present("transferability", lambda ev, r: read_transferability(ev.transferability, r.transferability)),
        "How well the frozen features separate the target's classes (LogME), against the raw pixels."))
    register_signal(SignalKind(
        "probe", "probe", "probe", present("probe", lambda ev, r: read_probe(ev.probe, r.probe)),
        "The linear probe at its best tap against the same architecture with random weights (context).",
        _when_absent(Missing("probes", "Linear probes", "the transferability score, the check that the features "
                                                       "carry information, the random-init context and the layer to "
                                                       "freeze up to",
                             "compute", "Run the probes", "A linear probe at every tap, for the pretrained and the "
                                                          "random-init weights.", step=2),
                     unless=lambda ev: ev.probe is not None)))
    register_signal(SignalKind(
        "efficiency", "efficiency", "efficiency",
        present("efficiency", lambda ev, r: read_efficiency(ev.efficiency, r.efficiency)),
        "The data-efficiency experiment: the best transfer arm against the best scratch arm at your budget.",
        _when_absent(Missing("efficiency", "Data-efficiency experiment",
                             "the strongest measured signal: labels saved, the gain at a budget, the break-even "
                             "point and the negative-transfer check", "job",
                             "Launch the data-efficiency experiment",
                             "The Data efficiency page's defaults, as a background job.", step=4),
                     unless=lambda ev: ev.efficiency is not None)))
    register_signal(SignalKind(
        "finetune", "finetune", "finetune", present("finetune", lambda ev, r: read_finetune(ev.finetune, r.finetune)),
        "A fine-tune against the same run from random weights, on the same split.", _finetune_missing))


_register_builtin()


__all__ = ["SIGNALS", "SignalKind", "register_signal", "BASELINE_TITLE", "EFFICIENCY_TITLE", "GainReading", "Missing", "Recipe", "Settle", "Signal", "Verdict",
           "break_even_text", "budget_text", "ci_text", "finetune_interval", "lower_first", "pts",
           "read_baseline", "read_candidate", "read_divergence", "read_efficiency", "read_finetune",
           "read_gain", "read_probe", "read_source_head", "read_transferability", "what_would_settle"]
