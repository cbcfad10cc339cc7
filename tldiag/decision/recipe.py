"""The recommended recipe that goes with a decision: the frozen probe, a fine-tuning strategy by amount of data and
where to cut, training from scratch, or another source, with the labels it is expected to save."""
from __future__ import annotations

from typing import Any, Mapping

from .evidence import EfficiencyEvidence, Evidence, FinetuneEvidence
from .rules import NO_GO, Rules
from .signals import Recipe, Signal, budget_text, lower_first, pts


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
    return [f"The shift costs the source model {pts(sh.drop)} with no adaptation ({sh.source_accuracy:.3f} → "
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


def recommend_recipe(ev: Evidence, by: Mapping[str, Signal], decision: str, rules: Rules) -> Recipe | None:
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
            other.append(f"{lower_first(s.title)} is NO-GO ({s.value})")
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
            + f"; {pts(eff.gain.gain)} at {eff.gain.per_class:.3g} labels per class; "
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
    why = (f"fine-tuning added {pts(ft_gain)} over it on the same split (< {pts(rules.recipe.finetune_over_probe)})"
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
                     f"{ft.test_accuracy:.3f}" + ("" if ft_gain is None else f" ({pts(ft_gain)} against the frozen probe)")
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


__all__ = ["recommend_recipe"]
