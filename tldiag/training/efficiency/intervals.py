"""The 95% intervals of the readouts: a t interval over draws, the paired bootstrap over draws and test images, and
the crossed interval (:func:`crossed_interval`: draws x test images, each spread with its own degrees of freedom)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...errors import TldiagError
from .runs import Run


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of the mean (the mean itself for one value)."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, mean, mean
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


N_BOOTSTRAP = 2000


def correct_matrix(runs: Sequence[Run]) -> np.ndarray | None:
    """The runs' test-image correctness as a (runs, test images) 0/1 matrix; None when a run lacks it."""
    if not runs or any(not r.correct for r in runs) or len({len(r.correct) for r in runs}) != 1:
        return None
    return np.stack([np.frombuffer(r.correct.encode(), dtype=np.uint8) - ord("0") for r in runs]).astype(float)


def bootstrap_interval(M: np.ndarray, *, confidence: float = 0.95, n_draws: int = N_BOOTSTRAP,
                       random_state: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``M`` (repeats x test images) from a two-level bootstrap: each draw
    resamples the repeats and, independently, the test images. Both sources of noise count: which labels were
    drawn (and how training went), and which images happen to be in the test set."""
    M = np.atleast_2d(np.asarray(M, dtype=float))
    R, n = M.shape
    rng = np.random.default_rng(random_state)
    means = []
    for start in range(0, n_draws, 256):
        b = min(256, n_draws - start)
        wr = rng.multinomial(R, np.full(R, 1.0 / R), size=b)
        wi = rng.multinomial(n, np.full(n, 1.0 / n), size=b)
        means.append(((wr @ M) * wi).sum(1) / (R * n))
    draws = np.concatenate(means)
    alpha = (1 - confidence) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


@dataclass(frozen=True)
class CrossedInterval:
    """The mean of a (draws x test images) table of per-image results and its confidence interval.

    The two sources of noise are crossed: every draw of the labelled images (a repeat) is scored on the same test
    images. The variance of the mean is estimated as ``s_draws**2 / n_draws + s_images**2 / n_images``, where
    ``s_draws`` is the spread of the per-draw means (which images got labelled, and how training went) and
    ``s_images`` the spread of the per-image means over the draws (which images happen to be in the test set);
    each term carries its own degrees of freedom (Welch-Satterthwaite), so three draws give a wide interval where
    the draws disagree. (The residual counts in both terms, which errs on the wide side by ``s_e**2 / (R n)``.)

    Attributes:
        mean, low, high: The mean and its interval.
        s_draws, s_images: The two spreads (0 when there is one draw, or one image).
        n_draws, n_images: The table's shape.
        df: Degrees of freedom of the t quantile (inf when the mean has no spread).
        confidence: Its level.
    """

    mean: float
    low: float
    high: float
    s_draws: float
    s_images: float
    n_draws: int
    n_images: int
    df: float
    confidence: float = 0.95

    @property
    def se(self) -> float:
        return se_of(self.s_draws, self.n_draws, self.s_images, self.n_images)

    def half_width(self, n_draws: int | None = None, n_images: int | None = None) -> float:
        """The interval's half-width with other numbers of draws or test images, the spreads as measured."""
        R, n = n_draws or self.n_draws, n_images or self.n_images
        return t_quantile(self.confidence, welch_df(self.s_draws, R, self.s_images, n)) * \
            se_of(self.s_draws, R, self.s_images, n)


def se_of(s_draws: float, n_draws: int, s_images: float, n_images: int) -> float:
    """Standard error of a crossed mean (see :class:`CrossedInterval`)."""
    return math.sqrt(s_draws ** 2 / max(n_draws, 1) + s_images ** 2 / max(n_images, 1))


def welch_df(s_draws: float, n_draws: int, s_images: float, n_images: int) -> float:
    """Welch-Satterthwaite degrees of freedom of the two-term variance (inf when it is 0)."""
    terms = [(s ** 2 / k, k - 1) for s, k in ((s_draws, n_draws), (s_images, n_images)) if k > 1 and s > 0]
    if not terms:
        return math.inf
    return sum(v for v, _ in terms) ** 2 / sum(v ** 2 / d for v, d in terms)


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided Student-t quantile (the normal one for infinite df)."""
    from scipy.stats import norm, t

    q = 0.5 + confidence / 2
    return float(norm.ppf(q) if not math.isfinite(df) else t.ppf(q, df))


def crossed_interval(M: np.ndarray, *, confidence: float = 0.95) -> CrossedInterval:
    """The mean of ``M`` (draws x test images: 0/1 correctness, or paired differences of two arms) and its interval
    (see :class:`CrossedInterval`)."""
    M = np.atleast_2d(np.asarray(M, dtype=float))
    R, n = M.shape
    if R == 0 or n == 0:
        raise TldiagError(f"crossed_interval needs at least one draw and one test image, got a {R}x{n} table.")
    s_draws = float(M.mean(1).std(ddof=1)) if R > 1 else 0.0
    s_images = float(M.mean(0).std(ddof=1)) if n > 1 else 0.0
    mean = float(M.mean())
    df = welch_df(s_draws, R, s_images, n)
    half = t_quantile(confidence, df) * se_of(s_draws, R, s_images, n)
    return CrossedInterval(mean, mean - half, mean + half, s_draws, s_images, R, n, df, confidence)


def mean_interval(values: Sequence[float], M: np.ndarray | None) -> tuple[float, float, float]:
    """Mean of ``values`` and its 95% interval: :func:`crossed_interval` when per-image results exist, else a
    t-interval over repeats."""
    if M is None:
        return t_interval(values)
    c = crossed_interval(M)
    return float(np.mean(values)), c.low, c.high


__all__ = ["CrossedInterval", "N_BOOTSTRAP", "bootstrap_interval", "correct_matrix", "crossed_interval",
           "mean_interval", "se_of", "t_interval", "t_quantile", "welch_df"]
