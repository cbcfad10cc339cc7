"""Transferability scores: how well a model's frozen features (or its source head) fit the target labels,
without training. Higher is better for every score; each returns a float.

Conventions (checked against the canonical formulas in ``tests/test_transferability.py``):

``logme(features, labels)``
    LogME (You et al. 2021): for each class, the log marginal likelihood of its one-hot column under Bayesian
    linear regression on the raw features (prior precision alpha, noise precision beta), maximised over
    (alpha, beta), divided by n and averaged over classes, as in thuml/LogME. The maximum is exact: beta has a
    closed form given lambda = alpha / beta, leaving a one-dimensional maximisation over log lambda (a grid,
    then a bounded Brent search). log|A| runs over all d eigenvalues of F'F, the zero ones included, so the
    value is right when n < d (the official fixed-point code sums over the n non-zero ones only:
    thuml/LogME issue 23). No centring or scaling of the features, as in the official code.
``leep(source_probs, labels)``
    LEEP (Nguyen et al. 2020): the mean log of the expected empirical prediction
    sum_z P(y_i | z) theta(x_i)_z, with theta the source head's softmax and P(y | z) from the joint of the
    target labels and theta. In (-inf, 0].
``nce(source_pred_labels, labels)``
    NCE (Tran et al. 2019): minus the conditional entropy H(Y | Z) of the target labels given the source
    head's predicted (argmax) labels, in nats. In [-log K, 0].
``h_score(features, labels)``
    H-score (Bao et al. 2019): tr(cov(f)^+ cov(E[f | y])), both covariances with ddof = 1 over all rows. The
    pseudo-inverse cuts eigenvalues below ``max(n, d) * eps * largest`` (numpy's rank tolerance); the common
    reference code uses ``pinv(rcond=1e-15)``, which agrees when cov(f) has full rank and otherwise inverts
    rounding noise (n < d). In [0, K - 1].
``knn_accuracy(features, labels, k=10)``
    Leave-one-out accuracy of a k-nearest-neighbour vote (cosine distance; ties go to the nearest tied class).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
from scipy import special
from scipy.optimize import minimize_scalar

from .errors import TldiagError
from .validation import check_features, check_int

SCORES = ("logme", "leep", "nce", "h_score", "knn_accuracy")
EXPLANATIONS = {
    "logme": "LogME: evidence of a Bayesian linear model from the features to each class (per image, in nats; "
             "higher = the classes are a simpler linear function of the features).",
    "leep": "LEEP: how well the source classifier's outputs, re-mapped to target classes, predict the labels "
            "(mean log-likelihood; 0 is perfect).",
    "nce": "NCE: minus the entropy of the target label given the source classifier's top class (0 = the source "
           "class determines the target class).",
    "h_score": "H-score: the between-class share of the feature variance, whitened (0 = no class signal, "
               "up to K - 1).",
    "knn_accuracy": "kNN accuracy: leave-one-out vote of the 10 nearest images (cosine), a non-linear check "
                    "that needs no training.",
}


def _check_labels(labels: object, n: int, name: str = "labels") -> np.ndarray:
    """Class indices 0..K-1 (remapped from any integer labels) of ``n`` rows, or a clear error."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise TldiagError(f"{name} must have one class per row, but it has shape {y.shape} for {n} rows.")
    if not np.issubdtype(y.dtype, np.integer):
        raise TldiagError(f"{name} must be integer class indices, got dtype {y.dtype}; map names to indices first, "
                          "e.g. np.unique(names, return_inverse=True)[1].")
    missing = int(np.sum(y < 0))
    if missing:
        raise TldiagError(f"{missing} of {n} rows have no label (-1); drop them first, e.g. "
                          "features[labels >= 0], labels[labels >= 0].")
    classes, y = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise TldiagError(f"{name} has a single class ({classes[0]}); transferability needs at least two classes.")
    return y


# ----------------------------------------------------------------------------- LogME
def _logme_curve(s: np.ndarray, z2: np.ndarray, y2: np.ndarray, n: int, log_lam: np.ndarray) -> np.ndarray:
    """Evidence / n at lambda = exp(log_lam) for every class: shape (len(log_lam), K)."""
    lam = np.exp(log_lam)[:, None]  # (G, 1)
    w = lam / (s[None, :] + lam)  # (G, r)
    E = w @ z2 + (y2 - z2.sum(0))[None, :]  # ||y - F m||² + lambda ||m||², (G, K)
    E = np.maximum(E, 1e-300)
    logdet = 0.5 * np.log(w).sum(1, keepdims=True)  # 1/2 sum_i log(lambda / (lambda + s_i))
    return (0.5 * n * np.log(n / E) - 0.5 * n - 0.5 * n * np.log(2 * np.pi) + logdet) / n


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of ``features`` (n, d) for class ``labels`` (n,); see the module docstring."""
    F = check_features(features, "features")
    y = _check_labels(labels, len(F))
    n, d = F.shape
    Y = np.eye(y.max() + 1)[y]  # one-hot (n, K)
    if n > d:
        s, V = np.linalg.eigh(F.T @ F)
        FtY = V.T @ (F.T @ Y)  # sigma_i * z_i
    else:
        s, U = np.linalg.eigh(F @ F.T)
        FtY = np.sqrt(np.clip(s, 0, None))[:, None] * (U.T @ Y)
    s = np.clip(s, 0, None)
    keep = s > s.max() * max(n, d) * np.finfo(float).eps
    y2 = (Y ** 2).sum(0)
    if not keep.any():  # all-zero features (a dead or damaged model): only the noise precision β is left, at n/‖y‖²
        return float(np.mean(0.5 * (np.log(n / y2) - 1 - np.log(2 * np.pi))))
    s = s[keep]
    z2 = FtY[keep] ** 2 / s[:, None]  # (U'y)_i², (r, K)
    lo, hi = np.log(s.min()) - 12, np.log(s.max()) + 12
    grid = np.linspace(lo, hi, 241)
    curve = _logme_curve(s, z2, y2, n, grid)
    scores = []
    for k in range(Y.shape[1]):
        i = int(np.argmax(curve[:, k]))
        a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        res = minimize_scalar(lambda x: -_logme_curve(s, z2[:, k:k + 1], y2[k:k + 1], n, np.array([x]))[0, 0],
                              bounds=(a, b), method="bounded", options={"xatol": 1e-10})
        scores.append(max(-float(res.fun), float(curve[i, k])))
    return float(np.mean(scores))


# ----------------------------------------------------------------------------- LEEP, NCE
def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP of the source head's class probabilities ``source_probs`` (n, Z) for target ``labels`` (n,)."""
    P = check_features(source_probs, "source_probs")
    y = _check_labels(labels, len(P))
    if (P < 0).any() or not np.allclose(P.sum(1), 1, atol=1e-3):
        raise TldiagError("source_probs must be probabilities (non-negative rows summing to 1); these look like "
                          "logits: apply a softmax first, e.g. scipy.special.softmax(logits, axis=1).")
    n = len(P)
    joint = np.zeros((y.max() + 1, P.shape[1]))
    np.add.at(joint, y, P / n)  # P(y, z)
    p_z = joint.sum(0, keepdims=True)
    cond = np.divide(joint, p_z, out=np.zeros_like(joint), where=p_z > 0)  # P(y | z)
    expected = (P * cond[y]).sum(1)  # sum_z P(y_i | z) theta(x_i)_z
    return float(np.mean(np.log(np.maximum(expected, 1e-300))))


def nce(source_pred_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE of the source head's predicted classes ``source_pred_labels`` (n,) for target ``labels`` (n,)."""
    z = np.asarray(source_pred_labels)
    if z.ndim != 1 or not np.issubdtype(z.dtype, np.integer) or (z < 0).any():
        raise TldiagError("source_pred_labels must be the source head's predicted class per image (non-negative "
                          f"integers, shape (n,)), got dtype {z.dtype} and shape {z.shape}; use logits.argmax(1).")
    y = _check_labels(labels, len(z))
    _, z = np.unique(z, return_inverse=True)
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0 / len(z))
    p_z = joint.sum(0)
    cond = joint / p_z  # every z occurs, so p_z > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(cond > 0, cond * np.log(cond), 0.0).sum(0)  # H(Y | Z = z)
    return float(-(p_z * h).sum())


# ----------------------------------------------------------------------------- H-score, kNN
def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score of ``features`` (n, d) for ``labels`` (n,); see the module docstring for the pseudo-inverse."""
    F = check_features(features, "features")
    y = _check_labels(labels, len(F))
    n, d = F.shape
    Fc = F - F.mean(0)
    means = np.zeros((y.max() + 1, d))
    np.add.at(means, y, Fc)
    means /= np.bincount(y)[:, None]
    G = means[y]  # E[f | y] per row (already centred: the class means of centred features)
    # tr(cov_f^+ cov_g) in the span of the centred features: cov_f = Q diag(ev) Q'
    if n > d:
        ev, Q = np.linalg.eigh(Fc.T @ Fc / (n - 1))
        GQ = G @ Q
    else:  # the n x n Gram matrix has the same non-zero eigenvalues; Q = Fc' U / sqrt((n - 1) ev)
        ev, U = np.linalg.eigh(Fc @ Fc.T / (n - 1))
        GQ = G @ (Fc.T @ U) / np.sqrt(np.clip(ev, 1e-300, None) * (n - 1))
    keep = ev > ev.max() * max(n, d) * np.finfo(float).eps
    return float(((GQ[:, keep] ** 2).sum(0) / (n - 1) / ev[keep]).sum())


def knn_accuracy(features: np.ndarray, labels: np.ndarray, *, k: int = 10, metric: str = "cosine",
                 device: str | None = None) -> float:
    """Leave-one-out k-NN accuracy of ``features`` for ``labels`` (majority vote, ties to the nearest)."""
    from .metrics.neighbours import nearest_neighbours

    F = check_features(features, "features")
    y = _check_labels(labels, len(F))
    check_int(k, "k", minimum=1, hint="(10 is usual)")
    k = min(k, len(F) - 1)
    idx, _ = nearest_neighbours(F, k, metric=metric, device=device)
    votes = np.zeros((len(F), y.max() + 1))
    # weight 1 per neighbour plus a tiny bonus for nearness, so ties go to the nearest tied class
    np.add.at(votes, (np.repeat(np.arange(len(F)), k), y[idx].ravel()),
              np.tile(1 + 1e-6 * (k - np.arange(k)) / k, len(F)))
    return float(np.mean(votes.argmax(1) == y))


# ----------------------------------------------------------------------------- per tap
@dataclass(frozen=True)
class TapScores:
    """The feature-based scores of one tap (LEEP and NCE belong to the model's head, not to a tap)."""

    tap: str
    logme: float
    h_score: float
    knn_accuracy: float

    def to_dict(self) -> dict:
        return asdict(self)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(n, Z)`` logits, in float64."""
    return special.softmax(np.asarray(logits, dtype=np.float64), axis=1)


def head_scores(logits: np.ndarray | None, labels: np.ndarray) -> dict[str, float | None]:
    """LEEP and NCE from the source head's logits on the labelled rows (-1 = unlabelled is left out); None for
    both when the model has no head."""
    if logits is None:
        return {"leep": None, "nce": None}
    y = np.asarray(labels)
    rows = y >= 0
    Z = np.asarray(logits)[rows]
    return {"leep": leep(softmax(Z), y[rows]), "nce": nce(Z.argmax(1), y[rows])}


def tap_scores(features: Mapping[str, np.ndarray], labels: np.ndarray, *, k: int = 10,
               device: str | None = None) -> list[TapScores]:
    """LogME, H-score and kNN accuracy of every tap, on the labelled rows (-1 = unlabelled is left out)."""
    y = np.asarray(labels)
    rows = y >= 0
    out = []
    for tap, X in features.items():
        X = np.asarray(X)[rows]
        out.append(TapScores(tap, logme(X, y[rows]), h_score(X, y[rows]),
                             knn_accuracy(X, y[rows], k=k, device=device)))
    return out


def pixel_reference(dataset) -> tuple[float, float]:
    """LogME and leave-one-out kNN accuracy of a labelled dataset's raw pixels (area-averaged to the pixel
    baselines' 16x16, :func:`tldiag.pixels.pixel_features`): the reference that needs no pretraining,
    against which a model's scores say whether its features add anything."""
    from .pixels import pixel_features

    y = np.asarray(dataset.labels)
    rows = np.flatnonzero(y >= 0)
    X = pixel_features(dataset, rows)
    return float(logme(X, y[rows])), float(knn_accuracy(X, y[rows]))


__all__ = ["h_score", "head_scores", "knn_accuracy", "leep", "logme", "nce", "pixel_reference", "softmax",
           "tap_scores"]
