"""Every shift metric for every computed tap, and the per-class breakdown at the headline tap."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import TldiagError
from ..validation import rng_from, rows_of, subsample_indices
from .divergence import coral_distance, frechet_distance
from .domain import DomainClassifierResult, domain_classifier
from .mmd import MMDResult
from .scale import Light, Thresholds, l2_normalise, seed_scale_mmd, traffic_light

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class LayerShift:
    """Shift metrics of one tap. ``mmd`` is on the seed scale (see :mod:`tldiag.metrics.scale`);
    ``coral`` and ``frechet`` are computed on the L2-normalised embeddings too, so that layers of
    different magnitude compare."""

    layer: str
    n_features: int
    mmd: MMDResult
    domain: DomainClassifierResult
    coral: float
    frechet: float
    light: Light

    def row(self) -> dict:
        lo, hi = self.mmd.mmd_ci
        return {"layer": self.layer, "features": self.n_features, "mmd": self.mmd.mmd, "mmd_ci_low": lo,
                "mmd_ci_high": hi, "mmd2": self.mmd.mmd2, "p_value": self.mmd.p_value,
                "balanced_accuracy": self.domain.balanced_accuracy, "roc_auc": self.domain.roc_auc,
                "pad": self.domain.pad, "ess_fraction": self.domain.ess_fraction, "coral": self.coral,
                "frechet": self.frechet, "light": self.light.colour}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LayerShift":
        """From one of :meth:`ShiftReport.to_dict`'s ``layers``."""
        return cls(layer=d["layer"], n_features=int(d["features"]), mmd=MMDResult.from_dict(d["mmd_test"]),
                   domain=DomainClassifierResult.from_dict(d["domain_classifier"]), coral=float(d["coral"]),
                   frechet=float(d["frechet"]), light=Light(d["light"], d.get("light_text", "")))


@dataclass(frozen=True)
class ClassShift:
    """Shift of one class shared by both domains: MMD on the seed scale between its source and
    target images, σ from that class's pooled images (a change of p(x | y), which a domain-level
    number can hide). ``p_value`` is this class's own test, not corrected for multiple classes."""

    name: str
    n_source: int
    n_target: int
    mmd: float
    p_value: float
    light: Light

    def row(self) -> dict:
        return {"class": self.name, "n_source": self.n_source, "n_target": self.n_target, "mmd": self.mmd,
                "p_value": self.p_value, "light": self.light.colour}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], thresholds: Thresholds) -> "ClassShift":
        """From one of :meth:`ShiftReport.to_dict`'s ``classes`` (the light's text re-read at ``thresholds``)."""
        mmd = float(d["mmd"])
        return cls(name=d["class"], n_source=int(d["n_source"]), n_target=int(d["n_target"]), mmd=mmd,
                   p_value=float(d["p_value"]), light=traffic_light(mmd, thresholds))


@dataclass(frozen=True)
class ShiftReport:
    """Per-layer shift metrics of one source/target pair; ``headline`` is the tap the verdict reads."""

    layers: tuple[LayerShift, ...]
    headline: str
    classes: tuple[ClassShift, ...]
    thresholds: Thresholds
    n_permutations: int
    random_state: int | None
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def layer(self, name: str) -> LayerShift:
        for item in self.layers:
            if item.layer == name:
                return item
        raise TldiagError(f"layer {name!r} is not in this report; it has {[x.layer for x in self.layers]}.")

    @property
    def head(self) -> LayerShift:
        return self.layer(self.headline)

    def with_thresholds(self, thresholds: Thresholds) -> "ShiftReport":
        """The same report with its traffic lights re-read at other thresholds (nothing is recomputed)."""
        return replace(self, thresholds=thresholds,
                       layers=tuple(replace(x, light=traffic_light(x.mmd.mmd, thresholds)) for x in self.layers),
                       classes=tuple(replace(c, light=traffic_light(c.mmd, thresholds)) for c in self.classes))

    def table(self) -> list[dict]:
        return [x.row() for x in self.layers]

    def to_dict(self) -> dict:
        return {"headline_layer": self.headline, "thresholds": vars(self.thresholds),
                "n_permutations": self.n_permutations, "random_state": self.random_state,
                "seconds": self.seconds, "notes": list(self.notes),
                "layers": [dict(x.row(), mmd_test=x.mmd.to_dict(), domain_classifier=x.domain.to_dict(),
                                light_text=x.light.text) for x in self.layers],
                "classes": [c.row() for c in self.classes]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ShiftReport":
        """From :meth:`to_dict` (a stored summary; the domain classifiers' per-image arrays come back empty)."""
        thresholds = Thresholds(**d["thresholds"])
        return cls(layers=tuple(LayerShift.from_dict(x) for x in d["layers"]), headline=d["headline_layer"],
                   classes=tuple(ClassShift.from_dict(c, thresholds) for c in d.get("classes", ())),
                   thresholds=thresholds, n_permutations=int(d["n_permutations"]), random_state=d.get("random_state"),
                   seconds=float(d.get("seconds", 0.0)), notes=tuple(d.get("notes", ())))


def headline_layer(layers: Sequence[str]) -> str:
    """The tap a verdict reads: the penultimate representation (pre_logits) when computed, else the
    deepest tap before the logits."""
    if "pre_logits" in layers:
        return "pre_logits"
    features = [t for t in layers if t != "logits"]
    return features[-1] if features else layers[-1]


def shift_by_layer(X_source: dict[str, np.ndarray], X_target: dict[str, np.ndarray], *,
                   layers: Sequence[str] | None = None, y_source: np.ndarray | None = None,
                   y_target: np.ndarray | None = None, classes_source: Sequence[str] = (),
                   classes_target: Sequence[str] = (), n_permutations: int = 1000, n_bootstrap: int = 200,
                   class_permutations: int = 200, max_samples: int | None = 5000, cv: int = 5,
                   thresholds: Thresholds = Thresholds(), random_state: int | None = 0,
                   progress: Progress | None = None) -> ShiftReport:
    """MMD (seed scale), domain classifier, CORAL and Fréchet for each tap, plus a per-class MMD.

    Args:
        X_source: Tap name -> source embeddings (n_source, n_features), e.g. ``pair.source.features``.
        X_target: Tap name -> target embeddings, same taps.
        layers: Taps to analyse, shallow to deep (default: all taps of X_source, in order).
        y_source, y_target: Class indices (-1 = unlabelled) for the per-class breakdown.
        classes_source, classes_target: Class names of those indices; classes are matched by name.
        n_permutations: Permutations of each layer's MMD test.
        n_bootstrap: Bootstrap resamples of each layer's MMD interval.
        class_permutations: Permutations of each per-class MMD test.
        max_samples: At most this many samples per domain in each test (None: all).
        cv: Folds of the domain classifier.
        thresholds: Traffic-light thresholds on the seed scale.
        random_state: One seed for every test (each layer uses the same subsample and splits).
        progress: Called as ``progress(done, total, message)`` after each step.
    """
    t0 = time.perf_counter()
    layers = list(layers) if layers is not None else list(X_source)
    missing = [t for t in layers if t not in X_source or t not in X_target]
    if missing:
        raise TldiagError(f"layers {missing} are not in both embeddings (source has {list(X_source)}, target has "
                          f"{list(X_target)}); compute them first or pick from those.")
    if not layers:
        raise TldiagError("no layers to analyse; pass at least one tap name.")
    shared = _shared_classes(y_source, y_target, classes_source, classes_target)
    total = len(layers) + (1 if shared else 0)
    results = []
    # CORAL and Fréchet read one subsample of each domain, the same at every layer (memory follows max_samples)
    moments = random_state if isinstance(random_state, np.random.Generator) else \
        np.random.default_rng(None if random_state is None else [int(random_state), 17])
    rows_s = subsample_indices(len(X_source[layers[0]]), max_samples, moments)
    rows_t = subsample_indices(len(X_target[layers[0]]), max_samples, moments)
    for k, layer in enumerate(layers):
        Xs, Xt = X_source[layer], X_target[layer]
        mmd = seed_scale_mmd(Xs, Xt, n_permutations=n_permutations, n_bootstrap=n_bootstrap,
                             max_samples=max_samples, random_state=random_state)
        dom = domain_classifier(Xs, Xt, cv=cv, max_samples=max_samples, random_state=random_state)
        Ns = l2_normalise(np.asarray(rows_of(Xs, rows_s), dtype=np.float64))
        Nt = l2_normalise(np.asarray(rows_of(Xt, rows_t), dtype=np.float64))
        results.append(LayerShift(layer=layer, n_features=int(Xs.shape[1]), mmd=mmd, domain=dom,
                                  coral=coral_distance(Ns, Nt), frechet=frechet_distance(Ns, Nt),
                                  light=traffic_light(mmd.mmd, thresholds)))
        if progress:
            progress(k + 1, total, f"{layer}: MMD {mmd.mmd:.3f}, domain accuracy {dom.balanced_accuracy:.2f}")
    head = headline_layer(layers)
    notes = []
    per_class: list[ClassShift] = []
    if shared:
        rng = rng_from(random_state)
        for name, (i_s, i_t) in shared.items():
            if min(len(i_s), len(i_t)) < 2:
                notes.append(f"class {name!r}: fewer than 2 images in a domain, left out of the breakdown")
                continue
            # each class's rows drawn first, then read: a large class costs max_samples rows, not all of them
            n_s, n_t = len(i_s), len(i_t)
            i_s, i_t = i_s[subsample_indices(n_s, max_samples, rng)], i_t[subsample_indices(n_t, max_samples, rng)]
            r = seed_scale_mmd(X_source[head][i_s], X_target[head][i_t], n_permutations=class_permutations,
                               n_bootstrap=0, max_samples=None, random_state=rng)
            per_class.append(ClassShift(name, n_s, n_t, r.mmd, r.p_value, traffic_light(r.mmd, thresholds)))
        per_class.sort(key=lambda c: -c.mmd)
        if progress:
            progress(total, total, f"per-class MMD at {head}")
    elif y_source is not None and y_target is not None:
        notes.append("no class is labelled in both domains, so there is no per-class breakdown")
    return ShiftReport(layers=tuple(results), headline=head, classes=tuple(per_class), thresholds=thresholds,
                       n_permutations=n_permutations, random_state=random_state,
                       seconds=time.perf_counter() - t0, notes=tuple(notes))


def _shared_classes(y_source, y_target, classes_source, classes_target) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if y_source is None or y_target is None or not len(classes_source) or not len(classes_target):
        return {}
    y_source, y_target = np.asarray(y_source), np.asarray(y_target)
    target_index = {name: k for k, name in enumerate(classes_target)}
    out = {}
    for k, name in enumerate(classes_source):
        if name in target_index:
            out[name] = (np.flatnonzero(y_source == k), np.flatnonzero(y_target == target_index[name]))
    return {name: v for name, v in out.items() if len(v[0]) or len(v[1])}


def shift_report(pair, *, layers: Sequence[str] | None = None, **kwargs) -> ShiftReport:
    """:func:`shift_by_layer` on an :class:`~tldiag.embed.EmbeddingPair` (labels and class names included).

    Args:
        pair: Source and target embeddings from :func:`tldiag.embed_pair`.
        layers: Taps to analyse (default: every computed tap, shallow to deep, logits last).
        **kwargs: Options of :func:`shift_by_layer`.
    """
    return shift_by_layer(pair.source.features, pair.target.features, layers=layers,
                          y_source=pair.source.labels, y_target=pair.target.labels,
                          classes_source=pair.source.classes, classes_target=pair.target.classes, **kwargs)


__all__ = ["Progress", "LayerShift", "ClassShift", "ShiftReport", "headline_layer", "shift_by_layer", "shift_report"]
