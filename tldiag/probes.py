"""Layer-wise linear probes: how linearly decodable the target classes are at every depth.

The protocol follows Kornblith, Shlens & Le (2019, "Do Better ImageNet Models Transfer Better?"): an
L2-regularised multinomial logistic regression on frozen features, a stratified train / validation /
test split, the regularisation chosen on validation from a log-spaced grid, a refit on train +
validation, and accuracy and macro-F1 on the test part. Repeating it over ``n_splits`` random splits
gives a band; the recommended cut is the shallowest tap within one standard error of the best.

The solver (:mod:`tldiag.metrics.logistic`) is a batched L-BFGS in torch (GPU when present) that fits every
split and every grid value of one tap at once. It minimises exactly scikit-learn's objective::

    mean_i cross_entropy(x_i W + b, y_i) + ||W||² / (2 C n)        (b is not penalised)

with the same stopping rule (largest absolute gradient entry <= ``tol``), so it agrees with
``LogisticRegression(C=C, solver="lbfgs")`` on the same standardised features. When a tap has more
features than training images (n < d), the problem is solved in the row space of the training
features (an exact reparametrisation: the L2 solution lies in that span), which makes wide layers
cheap on small datasets.

Public API::

    curve = probe_curve({"blocks.2": X2, "pre_logits": X5}, labels, depths={...}, random_state=0)
    curve.best, curve.recommended, curve.table()
    fit_logistic(X, y, C=1.0)           # one probe, for checks against scikit-learn
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from sklearn.metrics import f1_score

from .errors import TldiagError
from .metrics.logistic import LogisticFit, apply_transform, fit_logistic, lbfgs_logistic, solver_dtype, \
    standardize_and_reduce
from .progress import ProgressFn
from .splits import MIN_PER_CLASS, check_class_sizes, check_labels, stratified_splits
from .validation import check_features, metric_device, rows_of, stratified_indices

DEFAULT_C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 13))


# ----------------------------------------------------------------------------- settings and results
@dataclass(frozen=True)
class ProbeConfig:
    """How probes are fitted and evaluated.

    Attributes:
        C_grid: Inverse regularisation strengths (scikit-learn's C) tried on validation.
        n_splits: Random stratified train / validation / test splits (>= 3 for a band).
        val_size: Share of each class used for validation.
        test_size: Share of each class used for test.
        max_iter: L-BFGS iterations per fit.
        tol: Stop when the largest absolute gradient entry is at most this (scikit-learn's ``tol``).
        standardize: Scale features to zero mean and unit variance on the fitting part first.
        max_samples: At most this many labelled images, a seeded sample stratified by class (None: all): memory
            and time follow it, not the dataset (the accuracies of a large target are estimated on the sample).
    """

    C_grid: tuple[float, ...] = DEFAULT_C_GRID
    n_splits: int = 3
    val_size: float = 0.2
    test_size: float = 0.2
    max_iter: int = 1000
    tol: float = 1e-5
    standardize: bool = True
    max_samples: int | None = 10_000

    def validate(self) -> "ProbeConfig":
        if not self.C_grid or any(not (math.isfinite(c) and c > 0) for c in self.C_grid):
            raise TldiagError(f"C_grid must be a non-empty list of positive numbers, got {list(self.C_grid)!r}.")
        if isinstance(self.n_splits, bool) or not isinstance(self.n_splits, (int, np.integer)) or self.n_splits < 1:
            raise TldiagError(f"n_splits must be a whole number >= 1 (3 or more gives a band), got {self.n_splits!r}.")
        for name in ("val_size", "test_size"):
            v = getattr(self, name)
            if not 0 < v < 0.5:
                raise TldiagError(f"{name} must be a share between 0 and 0.5 (0.2 is usual), got {v!r}.")
        if self.max_samples is not None and (isinstance(self.max_samples, bool) or
                                             not isinstance(self.max_samples, (int, np.integer)) or self.max_samples < 10):
            raise TldiagError(f"max_samples must be a whole number >= 10 or None (all images), got {self.max_samples!r}.")
        if self.max_iter < 1 or not self.tol > 0:
            raise TldiagError(f"max_iter must be >= 1 and tol > 0, got max_iter={self.max_iter}, tol={self.tol}.")
        return self


@dataclass(frozen=True)
class TapProbe:
    """The probe of one tap over all splits.

    Attributes:
        tap: Tap name.
        depth: Relative depth in [0, 1] (see :class:`tldiag.models.Tap`); NaN when unknown.
        dim: Number of features.
        accuracy: Test accuracy of each split (after the refit on train + validation).
        macro_f1: Test macro-F1 of each split.
        C: The C chosen on validation in each split.
        val_accuracy: Validation accuracy of every C of the grid, one row per split.
        converged: Whether every fit met ``tol`` within ``max_iter``.
    """

    tap: str
    depth: float
    dim: int
    accuracy: tuple[float, ...]
    macro_f1: tuple[float, ...]
    C: tuple[float, ...]
    val_accuracy: tuple[tuple[float, ...], ...]
    converged: bool

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracy))

    @property
    def se(self) -> float:
        """Standard error of the mean accuracy over splits (0 with a single split)."""
        k = len(self.accuracy)
        return float(np.std(self.accuracy, ddof=1) / math.sqrt(k)) if k > 1 else 0.0

    @property
    def f1_mean(self) -> float:
        return float(np.mean(self.macro_f1))


@dataclass(frozen=True)
class ProbeCurve:
    """Probe accuracy against depth for one set of features (a model on a dataset).

    Attributes:
        name: What was probed, e.g. ``"target"``, ``"source"``, ``"random init"``.
        model_id: The model whose features these are.
        taps: One :class:`TapProbe` per tap, shallow to deep.
        classes: Class names probed.
        n_samples: Labelled images used.
        n_train / n_val / n_test: Images in each part of a split.
        chance: Accuracy of always predicting the most frequent class.
        config: The settings used.
        random_state: Seed of the splits.
        notes: Things the reader should know (unlabelled rows dropped, fits that did not converge).
        device: Where the fits ran.
        seconds: Wall time.
    """

    name: str
    model_id: str
    taps: tuple[TapProbe, ...]
    classes: tuple[str, ...]
    n_samples: int
    n_train: int
    n_val: int
    n_test: int
    chance: float
    config: ProbeConfig
    random_state: int | None
    notes: tuple[str, ...] = ()
    device: str = "cpu"
    seconds: float = 0.0

    def tap(self, name: str) -> TapProbe:
        for t in self.taps:
            if t.tap == name:
                return t
        raise TldiagError(f"'{name}' was not probed; probed taps: {', '.join(t.tap for t in self.taps)}.")

    @property
    def best(self) -> TapProbe:
        """The tap with the highest mean test accuracy (the shallowest one on a tie)."""
        return max(self.taps, key=lambda t: t.mean)

    @property
    def best_on_validation(self) -> TapProbe:
        """The tap with the highest mean validation accuracy (each split's best C), the choice a practitioner can
        make without the test set; ties go to the deeper tap."""
        return max(reversed(self.taps), key=lambda t: float(np.mean([max(r) for r in t.val_accuracy])))

    @property
    def recommended(self) -> TapProbe:
        """The shallowest tap whose mean accuracy is within one standard error of the best."""
        best = self.best
        return next(t for t in self.taps if t.mean >= best.mean - best.se - 1e-12)

    def table(self) -> list[dict]:
        rec, best = self.recommended.tap, self.best.tap
        return [{"tap": t.tap, "depth": round(t.depth, 3), "dim": t.dim, "accuracy": round(t.mean, 4),
                 "± se": round(t.se, 4), "macro-F1": round(t.f1_mean, 4),
                 "C": "/".join(f"{c:g}" for c in t.C),
                 "note": "recommended cut" if t.tap == rec else ("best" if t.tap == best else "")}
                for t in self.taps]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["best"], d["recommended"] = self.best.tap, self.recommended.tap
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "ProbeCurve":
        d = dict(d)
        d.pop("best", None), d.pop("recommended", None)
        taps = tuple(TapProbe(**{**t, "accuracy": tuple(t["accuracy"]), "macro_f1": tuple(t["macro_f1"]),
                                 "C": tuple(t["C"]), "val_accuracy": tuple(tuple(r) for r in t["val_accuracy"])})
                     for t in d.pop("taps"))
        raw = dict(d.pop("config"))
        config = ProbeConfig(**{**raw, "C_grid": tuple(raw["C_grid"])})
        return cls(**{**d, "taps": taps, "classes": tuple(d["classes"]), "notes": tuple(d.get("notes", ())),
                      "config": config})


def probe_tap(X: np.ndarray, y: np.ndarray, splits, n_classes: int, config: ProbeConfig, dev: torch.device, *,
               refit: bool = True) -> tuple[list[float], list[float], list[float], list[list[float]], bool, np.ndarray]:
    """Probe one tap over equally sized ``splits`` at once: each C of the grid fitted on train and scored on
    validation, then the chosen C refitted on train + validation (``refit=False``: the train-only fit is kept, for
    label budgets where validation labels must not train) and scored on test.

    Returns per split the test accuracy, macro-F1 and chosen C, the validation accuracy of every C, whether every
    fit converged, and the test predictions (one row per split)."""
    dtype = solver_dtype(dev)
    Xt = torch.as_tensor(X, dtype=dtype, device=dev)
    yt = torch.as_tensor(y, dtype=torch.long, device=dev)

    def stack(part: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(np.stack([s[part] for s in splits]), device=dev)
        return Xt[idx], yt[idx]

    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = stack(0), stack(1), stack(2)
    grid = torch.as_tensor(config.C_grid, dtype=dtype, device=dev)
    # 1. every C of the grid on train, scored on validation
    A, B, transform = standardize_and_reduce(X_tr, X_va, config.standardize)
    basis = transform[2]
    lam = (1.0 / (grid * X_tr.shape[1]))[None].expand(len(splits), -1).contiguous()
    theta, conv1, _ = lbfgs_logistic(A, y_tr, lam, n_classes, max_iter=config.max_iter, tol=config.tol,
                             precondition=basis is None)
    Z = torch.einsum("smd,sgdk->sgmk", B, theta)
    val_acc = (Z.argmax(3) == y_va[:, None]).to(dtype).mean(2)  # (S, G)
    val_nll = (torch.logsumexp(Z, 3) - Z.gather(3, y_va[:, None, :, None].expand(-1, len(grid), -1, 1))[..., 0]).mean(2)
    # the best validation accuracy; among ties, the lowest validation log-loss
    key = val_acc - 1e-6 * val_nll / (1 + val_nll.abs().amax(1, keepdim=True))
    pick = key.argmax(1)
    chosen = grid[pick]
    if refit:  # 2. refit on train + validation with the chosen C, scored on test
        X_tv, y_tv = torch.cat([X_tr, X_va], 1), torch.cat([y_tr, y_va], 1)
        A, B, (_, _, basis) = standardize_and_reduce(X_tv, X_te, config.standardize)
        theta, conv2, _ = lbfgs_logistic(A, y_tv, (1.0 / (chosen * X_tv.shape[1]))[:, None], n_classes,
                                 max_iter=config.max_iter, tol=config.tol, precondition=basis is None)
        pred = torch.einsum("smd,sdk->smk", B, theta[:, 0]).argmax(2).cpu().numpy()
    else:  # 2. the chosen C's train-only fit, scored on test
        B = apply_transform(X_te, transform)
        theta_c = theta[torch.arange(len(splits), device=dev), pick]
        pred = torch.einsum("smd,sdk->smk", B, theta_c).argmax(2).cpu().numpy()
        conv2 = conv1
    truth = y_te.cpu().numpy()
    acc = [float(np.mean(p == t)) for p, t in zip(pred, truth)]
    # over the classes of the test part; a class never predicted scores 0
    f1 = [float(f1_score(t, p, labels=np.unique(t), average="macro", zero_division=0)) for p, t in zip(pred, truth)]
    return (acc, f1, chosen.tolist(), val_acc.cpu().numpy().round(6).tolist(), bool(conv1.all() and conv2.all()),
            pred)


def probe_curve(features: Mapping[str, np.ndarray], labels: np.ndarray, *, classes: Sequence[str] = (),
                depths: Mapping[str, float] | None = None, name: str = "target", model_id: str = "",
                config: ProbeConfig = ProbeConfig(), random_state: int | None = 0, device: str | None = None,
                progress: ProgressFn | None = None) -> ProbeCurve:
    """Linear-probe accuracy of every tap of ``features`` (see the module docstring).

    Args:
        features: Tap name -> ``(n_samples, n_features)`` array, shallow to deep (the order of the curve).
        labels: ``(n_samples,)`` class indices, -1 for unlabelled images (dropped, with a note).
        classes: Class names of the indices, for messages and the report.
        depths: Tap name -> relative depth in [0, 1] (:class:`tldiag.models.Tap`), for the x axis.
        name: What is probed ("target", "source", "random init").
        model_id: The model the features come from.
        config: Grid, splits and solver settings.
        random_state: Seed of the splits (the fits themselves are deterministic).
        device: Torch device; tldiag's default (the GPU when present) when None.
        progress: Called as ``progress(done, total, message)`` after each tap.
    """
    t0 = time.perf_counter()
    config = config.validate()
    if not features:
        raise TldiagError("No taps to probe; pass at least one tap's features.")
    n = len(next(iter(features.values())))
    rows, y = check_labels(labels, n, what=name)
    notes = []
    if config.max_samples is not None and len(rows) > config.max_samples:
        keep = stratified_indices(y, config.max_samples,
                                 np.random.default_rng([0 if random_state is None else int(random_state), 29]))
        notes.append(f"Probed on a sample of {len(keep):,} of the {len(rows):,} labelled {name} images, stratified by "
                     f"class (max_samples={config.max_samples:,}).")
        rows, y = rows[keep], y[keep]
    check_class_sizes(y, classes, name)
    present, y = np.unique(y, return_inverse=True)
    if int(np.sum(np.asarray(labels) >= 0)) < n:
        notes.append(f"{n - int(np.sum(np.asarray(labels) >= 0))} of {n} {name} images have no label and were left "
                     "out of the probes.")
    splits = stratified_splits(y, config.n_splits, val_size=config.val_size, test_size=config.test_size,
                               random_state=random_state)
    dev = metric_device(device)
    taps = []
    for i, (tap, X) in enumerate(features.items()):
        if len(X) != n:
            raise TldiagError(f"Tap {tap!r} has {len(X)} rows but the first tap has {n}; all taps must embed the "
                              "same images.")
        X = check_features(rows_of(X, rows), f"{name} features of {tap!r}")
        acc, f1, chosen, val_acc, converged, _ = probe_tap(X, y, splits, len(present), config, dev)
        taps.append(TapProbe(tap, float((depths or {}).get(tap, float("nan"))), X.shape[1], tuple(acc), tuple(f1),
                             tuple(chosen), tuple(tuple(r) for r in val_acc), converged))
        if progress:
            progress(i + 1, len(features), f"{name} · {tap}")
    slow = [t.tap for t in taps if not t.converged]
    if slow:
        notes.append(f"Some fits at {', '.join(slow)} stopped at max_iter={config.max_iter} before reaching "
                     f"tol={config.tol:g} (usually the weakest regularisation on separable classes; its accuracy "
                     "is still valid, but raise max_iter to be sure).")
    names = tuple(classes[c] if c < len(classes) else str(c) for c in present)
    counts = np.bincount(y)
    s0 = splits[0]
    return ProbeCurve(name=name, model_id=model_id, taps=tuple(taps), classes=names, n_samples=len(rows),
                      n_train=len(s0[0]), n_val=len(s0[1]), n_test=len(s0[2]), chance=float(counts.max() / counts.sum()),
                      config=config, random_state=random_state, notes=tuple(notes), device=str(dev),
                      seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- the report of a setup
@dataclass(frozen=True)
class ProbeReport:
    """Everything the Probes page shows for one model and one source / target pair.

    Attributes:
        target: Probe curve on the target labels (the question: where to cut).
        source: Probe curve on the source labels (how much the features know about the source task);
            None when the source is not labelled enough.
        random_init: Probe curve of the same architecture with random weights on the target (the
            no-pretraining floor); None when not computed.
        scores: LogME, H-score and kNN accuracy of every target tap (:class:`TapScores` as dicts).
        leep / nce: From the source head's logits on the target; None without a head.
        notes: What was left out and why.
    """

    target: ProbeCurve
    source: ProbeCurve | None
    random_init: ProbeCurve | None
    scores: tuple[dict, ...]
    leep: float | None
    nce: float | None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def curves(self) -> list[ProbeCurve]:
        return [c for c in (self.target, self.source, self.random_init) if c is not None]

    def gain_over_random(self, tap: str | None = None) -> float | None:
        """Target accuracy of the pretrained features minus the random-init floor at ``tap`` (the best)."""
        if self.random_init is None:
            return None
        tap = tap or self.target.best.tap
        try:
            return self.target.tap(tap).mean - self.random_init.tap(tap).mean
        except TldiagError:
            return None

    def table(self) -> list[dict]:
        """One row per tap: the three curves and the scores."""
        scores = {s["tap"]: s for s in self.scores}
        rows = []
        for t in self.target.taps:
            row = {"tap": t.tap, "depth": round(t.depth, 3), "dim": t.dim, "target acc": round(t.mean, 4),
                   "± se": round(t.se, 4), "macro-F1": round(t.f1_mean, 4)}
            for label, curve in (("source acc", self.source), ("random-init acc", self.random_init)):
                try:
                    row[label] = round(curve.tap(t.tap).mean, 4) if curve else None
                except TldiagError:
                    row[label] = None
            s = scores.get(t.tap, {})
            row.update({"LogME": _round(s.get("logme")), "H-score": _round(s.get("h_score")),
                        "kNN acc": _round(s.get("knn_accuracy"))})
            rows.append(row)
        return rows

    @classmethod
    def from_dict(cls, d: Mapping) -> "ProbeReport":
        """The inverse of :meth:`to_dict` (a stored summary back into a report, e.g. for its figure)."""
        def curve(raw):
            return ProbeCurve.from_dict(raw) if raw else None

        return cls(target=ProbeCurve.from_dict(d["target"]), source=curve(d.get("source")),
                   random_init=curve(d.get("random_init")), scores=tuple(d.get("scores", ())), leep=d.get("leep"),
                   nce=d.get("nce"), notes=tuple(d.get("notes", ())), seconds=d.get("seconds", 0.0))

    def to_dict(self) -> dict:
        return {"target": self.target.to_dict(), "source": self.source.to_dict() if self.source else None,
                "random_init": self.random_init.to_dict() if self.random_init else None,
                "scores": list(self.scores), "leep": self.leep, "nce": self.nce, "notes": list(self.notes),
                "seconds": self.seconds, "recommended_cut": self.target.recommended.tap,
                "best_tap": self.target.best.tap}


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def probe_report(pair, random_target=None, *, depths: Mapping[str, float] | None = None,
                 config: ProbeConfig = ProbeConfig(), random_state: int | None = 0, device: str | None = None,
                 progress: ProgressFn | None = None, include_source: bool = True,
                 taps: Sequence[str] | None = None) -> ProbeReport:
    """Probe curves (target, source, random init) and transferability scores of a model's embeddings.

    Args:
        pair: :class:`tldiag.embed.EmbeddingPair` of the model on source and target; every tap it holds is
            probed (the logits included when the model has a head).
        random_target: :class:`tldiag.embed.Embeddings` of the same architecture with random weights on the
            target (see :func:`random_init_id`), for the no-pretraining floor; None skips it.
        depths: Tap name -> relative depth, for the curves' x axis.
        config, random_state, device: See :func:`probe_curve`.
        progress: ``progress(done, total, message)`` over all steps.
        include_source: Also probe the source (the Probes page's second curve; the verdict does not read it, so
            the fast verdict leaves it out: a third of the probes' time).
        taps: The taps to probe, of those the pair holds (default: all). The transferability scores and LEEP / NCE
            (from the logits) are computed whatever this says.
    """
    from .models import LOGITS
    from .transferability import head_scores, tap_scores

    t0 = time.perf_counter()
    tgt, src = pair.target, pair.source
    unknown = [t for t in (taps or ()) if t not in tgt.features]
    if unknown:
        raise TldiagError(f"taps {unknown} are not in these embeddings; choose from {', '.join(tgt.features)}.")
    chosen = [t for t in tgt.features if taps is None or t in taps]
    curve_of = lambda feats: {t: feats[t] for t in chosen if t in feats}  # noqa: E731
    notes: list[str] = []
    steps = len(chosen) * (1 + include_source + (random_target is not None)) + 1
    done = [0]

    def step(_done: int = 0, _total: int = 0, message: str = "") -> None:
        done[0] += 1
        if progress:
            progress(done[0], steps, message)

    common = dict(depths=depths, config=config, random_state=random_state, device=device, progress=step)
    target = probe_curve(curve_of(tgt.features), tgt.labels, classes=tgt.classes, name="target",
                         model_id=tgt.model_id, **common)
    source = None
    try:
        if include_source:
            source = probe_curve(curve_of(src.features), src.labels, classes=src.classes, name="source",
                                 model_id=src.model_id, **common)
    except TldiagError as exc:
        notes.append(f"No source curve: {exc}")
        done[0] += len(chosen)
    floor = None
    if random_target is not None:
        feats = curve_of(random_target.features)
        floor = probe_curve(feats, random_target.labels, classes=random_target.classes, name="random init",
                            model_id=random_target.model_id, **common)
    scores = tuple(s.to_dict() for s in tap_scores(tgt.features, tgt.labels, device=device))
    head = head_scores(tgt.features.get(LOGITS), tgt.labels)
    if LOGITS not in tgt.features:
        notes.append("LEEP and NCE need the source classifier's logits; this model has no classification head.")
    step(message="transferability scores")
    return ProbeReport(target=target, source=source, random_init=floor, scores=scores, leep=head["leep"],
                       nce=head["nce"], notes=tuple(notes), seconds=time.perf_counter() - t0)


__all__ = ["ProgressFn", "DEFAULT_C_GRID", "MIN_PER_CLASS", "ProbeConfig", "TapProbe", "ProbeCurve", "check_labels",
           "check_class_sizes", "stratified_splits", "probe_tap", "probe_curve", "ProbeReport", "probe_report"]
