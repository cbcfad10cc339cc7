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

The decision package, by what each file holds (lowest first): :mod:`.rules` (the thresholds and margins, the team's
copy), :mod:`.evidence` (the typed summaries the verdict reads), :mod:`.signals` (each signal read against its rule,
the table of signals, what would settle a CAUTION), :mod:`.recipe` (the recipe that goes with a decision), this module
(the signals combined into the verdict), :mod:`.report` (a setup's analyses gathered, the record, the HTML report) and
:mod:`.panel` (the scenario panel).
"""
from __future__ import annotations

from itertools import combinations
from typing import Sequence

from .evidence import (  # the evidence types are public here too
    ArmScore, BaselineEvidence, Comparison, DivergenceEvidence, EfficiencyEvidence, Evidence, FinetuneEvidence,
    PIXELS_REFERENCE, ProbeEvidence, TransferabilityEvidence,
)
from .recipe import recommend_recipe
from .rules import (
    CAUTION, DECISIONS, GO, INFO, MEASURED, NO_GO, PREDICTED, RULES_FILE, MarginRules, Rules, load_rules,
    rules_changes, save_team_rules, team_rules_path,
)
from .signals import (
    SIGNALS, GainReading, Missing, Recipe, Settle, Signal, SignalKind, Verdict, break_even_text, budget_text, ci_text,
    finetune_interval, lower_first, pts, read_gain, register_signal, what_would_settle,
)


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
    """What each registered signal still needs, in the order the analyses run."""
    found = [m for kind in SIGNALS.values() for m in kind.missing(ev)]
    return tuple(sorted(found, key=lambda m: m.step))


def decide(evidence: Evidence, rules: Rules | None = None) -> Verdict:
    """The verdict on ``evidence`` (see the module docstring for the rules and how they combine)."""
    rules = (rules or Rules()).validate()
    candidates = [kind.read(evidence, rules) for kind in SIGNALS.values()]
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
        return ", ".join(f"{lower_first(s.title)} {s.status} ({s.value})" for s in items)

    reasons = []
    provisional = not measured
    leader = None
    if measured:
        leader, decision, opposed = _lead(measured)
        if leader is None:
            reasons.append(f"Measured on held-out target images, these decide: {listing(measured)} → {decision}.")
        else:
            others = [s for s in measured if s is not leader and s.key in LEAD_ORDER]
            reasons.append(f"Led by {lower_first(leader.title)}: {leader.status} ({leader.value}), the most precise, "
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
        headline = (f"Cannot tell at this sample size: {lower_first(leader.title)} {leader.value}, 95% interval "
                    f"{ci_text(leader.reading.low, leader.reading.high)} against a {pts(leader.reading.margin)} margin."
                    if leader.reading is not None else "Cannot tell at this sample size: " + listing(against) + ".")
    else:
        headline = "Transfer is not a clear win here: " + listing(against) + "."
    if provisional:
        headline += " (Provisional: no measured signal yet.)"
    headline = f"{'At' if evidence.budget is not None else 'With'} {budget}: {headline}"
    change = break_even_text(evidence)
    recipe = recommend_recipe(evidence, {s.key: s for s in signals}, decision, rules)
    return Verdict(decision, headline, tuple(reasons), signals, disagreements, missing, recipe, provisional, rules,
                   budget, change, led_by=None if nothing is not None or leader is None else leader.key)


__all__ = [
    "GainReading", "LEAD_ORDER", "MarginRules", "Settle", "finetune_interval", "read_gain", "what_would_settle",
    "ArmScore", "BaselineEvidence", "budget_text", "break_even_text", "CAUTION", "GO", "INFO", "NO_GO", "DECISIONS",
    "Comparison", "DivergenceEvidence", "EfficiencyEvidence", "Evidence", "FinetuneEvidence", "Missing",
    "ProbeEvidence", "Recipe", "Rules", "Signal", "PIXELS_REFERENCE", "TransferabilityEvidence", "Verdict",
    "decide", "SIGNALS", "SignalKind", "register_signal", "load_rules", "RULES_FILE", "rules_changes", "save_team_rules", "team_rules_path",
]
