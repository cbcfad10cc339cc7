"""What the shift costs a model trained on the source: its accuracy on held-out source images against its accuracy
on the target with no adaptation at all, overall and per class.

When the candidate was trained on the source (a ``finetuned:`` model, whose registry entry names its classes, or a
checkpoint whose head has as many outputs as the source has classes, read in the source's class order) and the
two datasets share classes (matched by name), this is the most direct measurement of the shift: the same classifier,
the same classes, two domains. Accuracies come with Wilson score intervals; the drop with a normal interval of the
difference of two independent proportions.

The held-out source images are the test part of the source's first stratified split (:func:`tldiag.probes.
stratified_splits` with the setup's seed), the part a model trained by tldiag on the same split never saw; for other
models it is the best available stand-in, and the result says which rows it used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import TldiagError
from .stats import Z95, at_chance, wilson

@dataclass(frozen=True)
class ClassAccuracy:
    """One shared class: the source head's accuracy on its held-out source and on its target images."""

    name: str
    n_source: int
    source: float
    source_ci: tuple[float, float]
    n_target: int
    target: float
    target_ci: tuple[float, float]

    @property
    def drop(self) -> float:
        return self.source - self.target


@dataclass(frozen=True)
class SourceHeadResult:
    """The source model on held-out source images and on the target, no adaptation.

    Attributes:
        classes: The classes both datasets and the head share (the only ones scored).
        source_accuracy, source_ci: On ``n_source`` held-out source images of those classes.
        target_accuracy, target_ci: On ``n_target`` target images of those classes.
        drop, drop_ci: source − target, with a 95% interval.
        per_class: One :class:`ClassAccuracy` per shared class, largest drop first.
        head: Where the head's class names came from ("registry" or "source order").
        notes: Target classes left out, and anything else to know.
    """

    classes: tuple[str, ...]
    n_source: int
    source_accuracy: float
    source_ci: tuple[float, float]
    n_target: int
    target_accuracy: float
    target_ci: tuple[float, float]
    drop: float
    drop_ci: tuple[float, float]
    per_class: tuple[ClassAccuracy, ...] = field(default=())
    head: str = "registry"
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SourceHeadResult":
        d = dict(d)
        for key in ("source_ci", "target_ci", "drop_ci"):
            d[key] = tuple(d[key])
        d["classes"], d["notes"] = tuple(d["classes"]), tuple(d.get("notes", ()))
        d["per_class"] = tuple(ClassAccuracy(**{**c, "source_ci": tuple(c["source_ci"]),
                                                "target_ci": tuple(c["target_ci"])}) for c in d.get("per_class", ()))
        return cls(**d)


def source_head_accuracy(logits_source: np.ndarray, names_source: Sequence[str], logits_target: np.ndarray,
                         names_target: Sequence[str], head_classes: Sequence[str], *,
                         heldout: np.ndarray | None = None, head: str = "registry") -> SourceHeadResult:
    """The source head's accuracy on held-out source rows and on the target (see the module docstring).

    Args:
        logits_source, logits_target: The head's outputs, ``(n, n_outputs)``.
        names_source, names_target: Each image's class name ("" = unlabelled).
        head_classes: The class name of each head output, in order.
        heldout: Source rows to score (default: all labelled ones).
        head: Where ``head_classes`` came from, for the record.

    Raises:
        TldiagError: The head's outputs do not match its classes, or the target has no class the head knows.
    """
    ls, lt = np.asarray(logits_source), np.asarray(logits_target)
    if ls.shape[1] != len(head_classes) or lt.shape[1] != len(head_classes):
        raise TldiagError(f"The model's head has {lt.shape[1]} outputs but {len(head_classes)} class names; it was "
                          "not trained on this source's classes.")
    index = {c: i for i, c in enumerate(head_classes)}
    ns, nt = np.asarray(names_source, dtype=object), np.asarray(names_target, dtype=object)
    target_known = [c for c in dict.fromkeys(nt) if c and c in index]
    unseen = sorted({c for c in nt if c and c not in index})
    if not target_known:
        raise TldiagError(f"None of the target's classes ({', '.join(sorted({c for c in nt if c})[:8])}) is a class "
                          f"the source model was trained on ({', '.join(list(head_classes)[:8])}); the source-model "
                          "check needs shared class names. Rename the target's class folders to the source's, or use "
                          "a pretrained model without this check.")
    rows = np.arange(len(ns)) if heldout is None else np.asarray(heldout)
    rows = rows[[bool(ns[r]) and ns[r] in index for r in rows]]
    shared = [c for c in head_classes if c in set(target_known) and np.any(ns[rows] == c)]
    if not shared:
        raise TldiagError("The held-out source images share no class with the target; the source-model check "
                          "needs labelled source images of the target's classes.")
    keep_s = rows[np.isin(ns[rows], shared)]
    keep_t = np.flatnonzero(np.isin(nt, shared))
    truth_s = np.array([index[c] for c in ns[keep_s]])
    truth_t = np.array([index[c] for c in nt[keep_t]])
    ok_s = ls[keep_s].argmax(1) == truth_s
    ok_t = lt[keep_t].argmax(1) == truth_t
    per_class = []
    for c in shared:
        ms, mt = ns[keep_s] == c, nt[keep_t] == c
        ks, kt = int(ok_s[ms].sum()), int(ok_t[mt].sum())
        n_s, n_t = int(ms.sum()), int(mt.sum())
        per_class.append(ClassAccuracy(c, n_s, ks / max(n_s, 1), wilson(ks, n_s), n_t, kt / max(n_t, 1),
                                       wilson(kt, n_t)))
    a_s, a_t = float(ok_s.mean()), float(ok_t.mean())
    se = math.sqrt(a_s * (1 - a_s) / len(ok_s) + a_t * (1 - a_t) / len(ok_t))
    notes = []
    k = len(shared)
    if at_chance(a_s, 1 / k, len(ok_s)):
        notes.append(f"The model is at chance on its own held-out source images ({a_s:.3f} for {k} classes): was it "
                     "trained at another input size or with other preprocessing? The head only reads the features it "
                     "was trained on.")
    if unseen:
        notes.append(f"Target classes the source model was never trained on are left out: {', '.join(unseen[:10])}.")
    return SourceHeadResult(tuple(shared), len(ok_s), a_s, wilson(int(ok_s.sum()), len(ok_s)), len(ok_t), a_t,
                            wilson(int(ok_t.sum()), len(ok_t)), a_s - a_t, (a_s - a_t - Z95 * se, a_s - a_t + Z95 * se),
                            tuple(sorted(per_class, key=lambda c: -c.drop)), head, tuple(notes))


def head_classes(model, source_classes: Sequence[str]) -> tuple[tuple[str, ...], str] | None:
    """The class names of ``model``'s head and where they come from, when it was trained on the source: the
    registry's record for a ``finetuned:`` model, else the source's classes in order for a checkpoint whose head has
    exactly that many outputs; None otherwise (an ImageNet head, no head)."""
    from .models import parse_model_id, registered_models

    if not model.num_classes:
        return None
    spec = parse_model_id(model.id)
    if spec.kind == "finetuned":
        names = registered_models().get(spec.name, {}).get("classes")
        if names and len(names) == model.num_classes:
            return tuple(names), "registry"
    if spec.kind in ("finetuned", "checkpoint") and model.num_classes == len(source_classes):
        return tuple(source_classes), "source order"
    return None


def measure(pair, model, *, seed: int = 0) -> SourceHeadResult | None:
    """:func:`source_head_accuracy` of a setup's embeddings (their logits), None when the model was not trained on
    the source's classes."""
    from .models import LOGITS
    from .splits import stratified_splits

    src, tgt = pair.source, pair.target
    got = head_classes(model, src.classes)
    if got is None or LOGITS not in src.features or LOGITS not in tgt.features:
        return None
    names, origin = got

    def class_names(emb) -> np.ndarray:
        return np.array([emb.classes[i] if i >= 0 else "" for i in np.asarray(emb.labels)], dtype=object)

    ns = class_names(src)
    labelled = np.flatnonzero(np.asarray(src.labels) >= 0)
    heldout = labelled
    if len(labelled) >= 3 * len(set(ns[labelled])):
        _, y = np.unique(ns[labelled], return_inverse=True)
        heldout = labelled[stratified_splits(y, 1, random_state=seed)[0][2]]
    return source_head_accuracy(np.asarray(src[LOGITS]), ns, np.asarray(tgt[LOGITS]), class_names(tgt), names,
                                heldout=heldout, head=origin)


__all__ = ["ClassAccuracy", "SourceHeadResult", "head_classes", "measure", "source_head_accuracy", "wilson"]
