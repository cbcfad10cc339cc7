"""Transferability scores against slow reference formulas, n < d included, and their input checks."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from tldiag.errors import TldiagError
from tldiag.transferability import h_score, knn_accuracy, leep, logme, nce, softmax, tap_scores


def _data(n: int, d: int, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, d)) + 0.7 * rng.normal(size=(k, d))[y], y


# ----------------------------------------------------------------------------- LogME
def _evidence(F, y, log_alpha, log_beta):
    """The log evidence / n of Bayesian linear regression written out in d x d form (You et al. 2021, eq. 2)."""
    a, b = np.exp(log_alpha), np.exp(log_beta)
    n, d = F.shape
    A = a * np.eye(d) + b * F.T @ F
    m = b * np.linalg.solve(A, F.T @ y)
    return (d / 2 * np.log(a) + n / 2 * np.log(b) - b / 2 * np.sum((F @ m - y) ** 2) - a / 2 * m @ m
            - 0.5 * np.linalg.slogdet(A)[1] - n / 2 * np.log(2 * np.pi)) / n


def _reference_logme(F, labels):
    """Brute force: maximise the evidence over (log alpha, log beta) from a coarse grid, then Nelder-Mead, inside
    a box that keeps the d x d formula accurate."""
    out = []
    for k in np.unique(labels):
        y = (labels == k).astype(float)
        grid = [(la, lb) for la in np.linspace(-8, 8, 17) for lb in np.linspace(-8, 12, 21)]
        start = max(grid, key=lambda p: _evidence(F, y, *p))
        res = minimize(lambda p: -_evidence(F, y, *p), start, method="Nelder-Mead", bounds=[(-12, 12), (-12, 16)],
                       options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000})
        out.append(max(-res.fun, _evidence(F, y, *start)))
    return float(np.mean(out))


def _official_fixed_point(F, labels, truncated=False):
    """thuml/LogME's fixed-point iteration, run to convergence. ``truncated`` sums log(alpha + beta s_i) over the
    min(n, d) singular values only, as its truncated-SVD path does (issue 23)."""
    n, d = F.shape
    s = np.linalg.svd(F, compute_uv=False) ** 2
    if not truncated:
        s = np.r_[s, np.zeros(d - len(s))]
    V = np.linalg.svd(F, full_matrices=True)[2].T
    out = []
    for k in np.unique(labels):
        y = (labels == k).astype(float)
        a = b = 1.0
        proj = V.T @ (F.T @ y)
        for _ in range(10000):
            ss = np.r_[np.linalg.svd(F, compute_uv=False) ** 2, np.zeros(max(0, d - min(n, d)))][:d]
            gamma = (b * ss / (a + b * ss)).sum()
            m = V @ (b * proj / (a + b * ss))
            a_new, b_new = gamma / (m @ m), (n - gamma) / np.sum((F @ m - y) ** 2)
            done = abs(a_new - a) / a < 1e-13 and abs(b_new - b) / b < 1e-13
            a, b = a_new, b_new
            if done:
                break
        out.append((d / 2 * np.log(a) + n / 2 * np.log(b) - 0.5 * np.sum(np.log(a + b * s))
                    - b / 2 * np.sum((F @ m - y) ** 2) - a / 2 * m @ m - n / 2 * np.log(2 * np.pi)) / n)
    return float(np.mean(out))


def test_logme_matches_the_evidence_maximum_when_n_exceeds_d():
    F, y = _data(200, 12)
    assert logme(F, y) == pytest.approx(_reference_logme(F, y), abs=1e-6)
    assert logme(F, y) == pytest.approx(_official_fixed_point(F, y), abs=1e-6)


def test_logme_is_exact_when_n_is_below_d():
    F, y = _data(40, 90)
    exact = logme(F, y)
    assert exact == pytest.approx(_reference_logme(F, y), abs=1e-4)
    # the official code's truncated sum leaves out (d - n) log(alpha) / 2 per class: a different number
    assert abs(_official_fixed_point(F, y, truncated=True) - exact) > 1e-2


def test_logme_prefers_informative_features():
    F, y = _data(300, 16)
    noise = np.random.default_rng(1).normal(size=F.shape)
    assert logme(F, y) > logme(noise, y) + 0.05


# ----------------------------------------------------------------------------- LEEP, NCE
def test_leep_matches_the_paper_formula():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 120)
    probs = softmax(rng.normal(size=(120, 9)) + 2 * np.eye(9)[y * 2])
    n, Z = probs.shape
    joint = np.zeros((4, Z))
    for i in range(n):
        joint[y[i]] += probs[i] / n
    cond = joint / joint.sum(0)
    expected = np.mean([np.log(sum(cond[y[i], z] * probs[i, z] for z in range(Z))) for i in range(n)])
    assert leep(probs, y) == pytest.approx(expected, abs=1e-12)
    assert leep(probs, y) <= 0


def test_nce_matches_the_conditional_entropy():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    z = np.where(rng.random(200) < 0.7, y + 10, rng.integers(0, 20, 200))  # source classes with gaps
    h = 0.0
    for zz in np.unique(z):
        p_z = np.mean(z == zz)
        for yy in np.unique(y):
            p_yz = np.mean((z == zz) & (y == yy))
            if p_yz > 0:
                h -= p_yz * np.log(p_yz / p_z)
    assert nce(z, y) == pytest.approx(-h, abs=1e-12)
    assert nce(y + 5, y) == pytest.approx(0.0, abs=1e-12)  # the source class determines the target class


# ----------------------------------------------------------------------------- H-score, kNN
@pytest.mark.parametrize("n,d", [(300, 10), (30, 80)])
def test_h_score_matches_the_definition(n, d):
    F, y = _data(n, d)
    g = np.zeros_like(F)
    for c in np.unique(y):
        g[y == c] = F[y == c].mean(0)
    cov_f, cov_g = np.cov(F, rowvar=False), np.cov(g, rowvar=False)
    rcond = max(n, d) * np.finfo(float).eps  # numpy's rank tolerance (see the module docstring)
    expected = np.trace(np.linalg.pinv(cov_f, rcond=rcond, hermitian=True) @ cov_g)
    assert h_score(F, y) == pytest.approx(expected, rel=1e-6)
    if n < d:  # any labelling is linearly separable: the score saturates at K - 1
        assert h_score(F, y) == pytest.approx(len(np.unique(y)) - 1, rel=1e-6)


def test_knn_accuracy_matches_leave_one_out_with_scikit_learn():
    F, y = _data(120, 6, k=3)
    ref = cross_val_score(KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute"), F, y,
                          cv=LeaveOneOut()).mean()
    assert knn_accuracy(F, y, k=5) == pytest.approx(ref, abs=0.02)  # tie-breaks may differ on a few images


# ----------------------------------------------------------------------------- inputs
def test_bad_inputs_get_clear_messages():
    F, y = _data(30, 4)
    with pytest.raises(TldiagError, match="single class"):
        logme(F, np.zeros(30, dtype=int))
    missing = y.copy()
    missing[:3] = -1
    with pytest.raises(TldiagError, match="3 of 30 rows have no label.*labels >= 0"):
        h_score(F, missing)
    with pytest.raises(TldiagError, match="look like logits.*softmax"):
        leep(F[:, :3], y)
    with pytest.raises(TldiagError, match="one class per row"):
        logme(F, y[:-1])
    with pytest.raises(TldiagError, match="predicted class per image"):
        nce(np.linspace(0, 1, 30), y)
    with pytest.raises(TldiagError, match="NaN"):
        F2 = F.copy()
        F2[0, 0] = np.nan
        logme(F2, y)


def test_tap_scores_skip_unlabelled_rows():
    F, y = _data(60, 5)
    y = y.copy()
    y[:5] = -1
    (scores,) = tap_scores({"t": F}, y)
    assert scores.logme == pytest.approx(logme(F[5:], y[5:])) and scores.tap == "t"


def test_logme_of_all_zero_features_is_the_noise_only_evidence():
    """A dead or damaged model gives constant features: no eigenvalue is left, and the evidence is its maximum over
    the noise precision alone (the weights drop out)."""
    F, y = _data(120, 8)
    zero = logme(np.zeros_like(F), y)
    Y = np.eye(y.max() + 1)[y]
    n = len(y)
    expected = np.mean([0.5 * (np.log(n / (Y[:, k] ** 2).sum()) - 1 - np.log(2 * np.pi)) for k in range(Y.shape[1])])
    assert zero == pytest.approx(expected) and np.isfinite(zero)
    assert logme(F, y) > zero
