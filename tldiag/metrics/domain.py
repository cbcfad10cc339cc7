"""Domain classifier: how well a linear model tells target from source (proxy A-distance).

Conventions:

* label 1 = target, 0 = source; features standardised inside each training fold (no leakage);
  L2-regularised logistic regression (scikit-learn, lbfgs), its inverse strength ``C`` chosen from
  a log-spaced grid by the out-of-fold log-loss (calibrated probabilities), or fixed;
* stratified k-fold (by domain, shuffled with ``random_state``); every sample gets an
  out-of-fold probability p(target | x) from the model that did not see it;
* balanced accuracy per fold (mean and std reported), so unequal domain sizes do not inflate it,
  predicting "target" when p(target | x) exceeds the target's share m / (n + m) (0.5 for equal
  sizes; the Bayes rule for the balanced error); ε = 1 - mean balanced accuracy;
* proxy A-distance ``PAD = 2 (1 - 2ε)`` (Ben-David et al. 2007/2010): 0 when the domains are
  indistinguishable, 2 when perfectly separable; it can dip slightly below 0 by chance;
* ROC-AUC of the out-of-fold probabilities over all samples;
* importance weights of the source samples ``w(x) = p(t|x) / p(s|x) · n_s / n_t`` (the density
  ratio p_t(x)/p_s(x) under covariate shift, probabilities clipped to [1e-6, 1 - 1e-6]) and their
  effective sample size ``ESS = (Σw)² / Σw²``: how many source samples are effectively usable
  when re-weighted toward the target.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from ..errors import TldiagError
from ..validation import RandomState, check_int, check_pair, rng_from, rows_of, subsample_indices


@dataclass(frozen=True)
class DomainClassifierResult:
    """Outcome of :func:`domain_classifier`.

    Attributes:
        balanced_accuracy: Mean out-of-fold balanced accuracy over the folds.
        balanced_accuracy_std: Its standard deviation over the folds.
        fold_balanced_accuracy: Per fold.
        roc_auc: ROC-AUC of the out-of-fold p(target | x).
        error: ε = 1 - balanced_accuracy.
        pad: Proxy A-distance 2 (1 - 2ε).
        proba_target: Out-of-fold p(target | x), shape (n_source + n_target,), source rows first.
        importance_weights: w(x) of each source sample, shape (n_source,).
        ess: Effective sample size of those weights.
        source_indices, target_indices: Rows of the given X_source / X_target that were used (all
            of them unless ``max_samples`` subsampled); ``proba_target`` follows this order.
        C: The regularisation used (chosen from the grid when "auto").
        converged: False when lbfgs hit max_iter in some fit (results are still out-of-fold).
    """

    balanced_accuracy: float
    balanced_accuracy_std: float
    fold_balanced_accuracy: tuple[float, ...]
    roc_auc: float
    error: float
    pad: float
    proba_target: np.ndarray = field(repr=False)
    importance_weights: np.ndarray = field(repr=False)
    ess: float
    source_indices: np.ndarray = field(repr=False)
    target_indices: np.ndarray = field(repr=False)
    n_source: int
    n_target: int
    n_source_total: int
    n_target_total: int
    cv: int
    C: float
    converged: bool
    seconds: float = 0.0

    @property
    def source_proba(self) -> np.ndarray:
        """p(target | x) of each source sample: high = the source images that look like the target."""
        return self.proba_target[:self.n_source]

    @property
    def target_proba(self) -> np.ndarray:
        """p(target | x) of each target sample: high = the target images least like the source."""
        return self.proba_target[self.n_source:]

    @property
    def ess_fraction(self) -> float:
        """ESS / n_source: the share of the source usable for the target after re-weighting."""
        return self.ess / self.n_source

    def to_dict(self) -> dict:
        return {"balanced_accuracy": self.balanced_accuracy, "balanced_accuracy_std": self.balanced_accuracy_std,
                "fold_balanced_accuracy": list(self.fold_balanced_accuracy), "roc_auc": self.roc_auc,
                "error": self.error, "pad": self.pad, "ess": self.ess, "ess_fraction": self.ess_fraction,
                "n_source": self.n_source, "n_target": self.n_target, "n_source_total": self.n_source_total,
                "n_target_total": self.n_target_total, "cv": self.cv, "C": self.C, "converged": self.converged,
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DomainClassifierResult":
        """From :meth:`to_dict` (a stored summary). The per-image arrays (probabilities, weights, rows) are not
        stored: they come back empty."""
        empty = np.zeros(0)
        return cls(balanced_accuracy=float(d["balanced_accuracy"]),
                   balanced_accuracy_std=float(d["balanced_accuracy_std"]),
                   fold_balanced_accuracy=tuple(float(v) for v in d["fold_balanced_accuracy"]),
                   roc_auc=float(d["roc_auc"]), error=float(d["error"]), pad=float(d["pad"]), proba_target=empty,
                   importance_weights=empty, ess=float(d["ess"]), source_indices=empty.astype(np.int64),
                   target_indices=empty.astype(np.int64), n_source=int(d["n_source"]), n_target=int(d["n_target"]),
                   n_source_total=int(d["n_source_total"]), n_target_total=int(d["n_target_total"]), cv=int(d["cv"]),
                   C=float(d["C"]), converged=bool(d["converged"]), seconds=float(d.get("seconds", 0.0)))


DEFAULT_C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 7))


def domain_classifier(X_source: np.ndarray, X_target: np.ndarray, *, cv: int = 5, C: float | str = "auto",
                      C_grid: Sequence[float] = DEFAULT_C_GRID, max_iter: int = 1000,
                      max_samples: int | None = None, random_state: RandomState = None) -> DomainClassifierResult:
    """Cross-validated logistic-regression domain classifier, proxy A-distance and importance weights.

    Args:
        X_source: Source embeddings, shape (n_source, n_features).
        X_target: Target embeddings, shape (n_target, n_features).
        cv: Number of stratified folds (each domain needs at least ``cv`` samples).
        C: Inverse L2 regularisation strength (scikit-learn's C). "auto" picks it from ``C_grid`` by
            the out-of-fold log-loss on the same folds, so that p(target | x), the importance weights
            and their ESS are calibrated: a fixed weak regularisation on a wide layer overfits and
            gives extreme probabilities even when the domains are indistinguishable. The selection
            among a handful of values makes the accuracy very slightly optimistic.
        C_grid: Candidate values for "auto", fitted from strongest to weakest with warm starts, stopping once the
            out-of-fold log-loss has been above its best at two values in a row.
        max_iter: lbfgs iterations per fit.
        max_samples: At most this many samples per domain, drawn without replacement; None uses all.
        random_state: Seed for subsampling and the fold assignment.
    """
    t0 = time.perf_counter()
    check_int(cv, "cv", minimum=2, hint="(the number of folds)")
    check_int(max_samples, "max_samples", minimum=2, allow_none=True)
    if C == "auto":
        grid = sorted(float(c) for c in C_grid)
    elif isinstance(C, (int, float, np.number)) and not isinstance(C, bool) and np.isfinite(C) and C > 0:
        grid = [float(C)]
    else:
        raise TldiagError(f"C must be 'auto' or a positive number, the inverse regularisation strength; got {C!r}.")
    if not grid or any(not (np.isfinite(c) and c > 0) for c in grid):
        raise TldiagError(f"C_grid must be a non-empty list of positive numbers, got {list(C_grid)!r}.")
    rng = rng_from(random_state)
    # the rows are drawn before anything is converted: memory follows max_samples, not the dataset
    n_total, m_total = len(X_source), len(X_target)
    idx_s, idx_t = subsample_indices(n_total, max_samples, rng), subsample_indices(m_total, max_samples, rng)
    X_source, X_target = check_pair(rows_of(X_source, idx_s), rows_of(X_target, idx_t))
    n, m = len(X_source), len(X_target)
    if min(n, m) < cv:
        raise TldiagError(f"cv={cv} folds need at least {cv} samples in each domain, got {n} source and {m} "
                          f"target; lower cv to {max(2, min(n, m))} or use more images.")
    X = np.concatenate([X_source, X_target])
    y = np.r_[np.zeros(n, dtype=int), np.ones(m, dtype=int)]
    proba = np.empty((len(grid), n + m))
    splits = list(StratifiedKFold(n_splits=cv, shuffle=True, random_state=int(rng.integers(2**31 - 1))).split(X, y))
    converged = True
    fitted = []
    for train, test in splits:
        scaler = StandardScaler().fit(X[train])
        fitted.append((scaler.transform(X[train]), scaler.transform(X[test]),
                      LogisticRegression(max_iter=max_iter, warm_start=True)))
    # From the strongest penalty to the weakest, each fold warm-started from its previous solution; "auto" stops
    # once the out-of-fold log-loss has been above its best at two values in a row (it is unimodal in C). Where
    # the domains overlap the weak penalties take lbfgs thousands of iterations (minutes on a 1,280-d layer) and
    # never win; where they separate they are fast, and fitted.
    losses = []
    for k, c in enumerate(grid):
        for (train, test), (X_train, X_test, clf) in zip(splits, fitted):
            clf.set_params(C=c)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                clf.fit(X_train, y[train])
            converged &= not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            proba[k, test] = clf.predict_proba(X_test)[:, 1]
        losses.append(log_loss(y, proba[k], labels=[0, 1]))
        if len(losses) - 1 - int(np.argmin(losses)) >= 2:
            break
    best = int(np.argmin(losses))
    proba = proba[best]
    threshold = m / (n + m)  # Bayes-optimal for the balanced error when p is calibrated to the domain sizes
    folds = [balanced_accuracy_score(y[test], proba[test] >= threshold) for _, test in splits]
    bacc = float(np.mean(folds))
    p = np.clip(proba[:n], 1e-6, 1 - 1e-6)
    w = p / (1 - p) * (n / m)
    return DomainClassifierResult(
        balanced_accuracy=bacc, balanced_accuracy_std=float(np.std(folds)),
        fold_balanced_accuracy=tuple(float(f) for f in folds), roc_auc=float(roc_auc_score(y, proba)),
        error=1 - bacc, pad=2 * (1 - 2 * (1 - bacc)), proba_target=proba, importance_weights=w,
        ess=float(w.sum() ** 2 / (w ** 2).sum()), source_indices=idx_s, target_indices=idx_t, n_source=n, n_target=m, n_source_total=n_total,
        n_target_total=m_total, cv=int(cv), C=grid[best], converged=bool(converged),
        seconds=time.perf_counter() - t0)


__all__ = ["DomainClassifierResult", "DEFAULT_C_GRID", "domain_classifier"]
