"""The scale on which the background text's MMD rule of thumb is applied, and its traffic light.

The rule ("MMD below 0.1 in the embedding space is a strong positive sign; above 0.5 you are firmly
in negative-transfer territory") only means something on a fixed scale. tldiag's **seed scale**:

1. every embedding is L2-normalised (so a layer's overall activation magnitude does not matter,
   only the direction: the geometry cosine similarity sees);
2. Gaussian kernel with σ from the median heuristic on the pooled normalised sample (so the
   kernel adapts to the spread of the points and the number is comparable across layers and
   models of any width);
3. the statistic is ``MMD = sqrt(max(MMD²_u, 0))``, between 0 and about 1.4 (sqrt 2: the largest
   possible gap between two distributions under a kernel bounded by 1).

On this scale, two samples of one distribution give MMD ≈ 0 (up to sampling noise of order
1/sqrt(n)), and domains that form well-separated clusters give MMD of about 0.7 to 1.2 (the
larger, the tighter each cluster is relative to the gap). The p-value says whether a shift
is detectable at all, which with thousands of images it nearly always is; MMD with its bootstrap
interval and the domain classifier's AUC say how *large* it is. Read them together.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import TldiagError
from ..validation import check_int, check_pair, rng_from, take_rows
from .mmd import MMDResult, mmd_test

SEED_SCALE = ("MMD between L2-normalised embeddings, Gaussian kernel with the median-heuristic σ on the "
              "pooled sample, reported as sqrt(max(unbiased MMD², 0))")


@dataclass(frozen=True)
class Thresholds:
    """Traffic-light thresholds on the seed scale (defaults from the background text's rule of thumb)."""

    mmd_green: float = 0.1
    mmd_red: float = 0.5

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mmd_green) and np.isfinite(self.mmd_red) and 0 <= self.mmd_green < self.mmd_red):
            raise TldiagError(f"MMD thresholds must satisfy 0 <= green < red, got green={self.mmd_green!r} and "
                              f"red={self.mmd_red!r}; the defaults are 0.1 and 0.5.")

    @classmethod
    def parse(cls, text: str) -> "Thresholds":
        """From 'GREEN,RED', e.g. '0.1,0.5' (the CLI's --thresholds)."""
        try:
            green, red = (float(v) for v in text.split(","))
        except ValueError:
            raise TldiagError(f"thresholds must be two numbers 'GREEN,RED' such as '0.1,0.5', got {text!r}.") from None
        return cls(green, red)


@dataclass(frozen=True)
class Light:
    """A traffic light: ``colour`` is green, amber or red; ``text`` says what it means."""

    colour: str
    text: str


def traffic_light(mmd: float, thresholds: Thresholds = Thresholds()) -> Light:
    """Green below ``mmd_green``, red at or above ``mmd_red``, amber between (MMD on the seed scale)."""
    if mmd < thresholds.mmd_green:
        return Light("green", f"MMD {mmd:.3f} < {thresholds.mmd_green:g}: the target sits inside the source "
                              "distribution at this layer, a strong positive sign for transfer.")
    if mmd >= thresholds.mmd_red:
        return Light("red", f"MMD {mmd:.3f} ≥ {thresholds.mmd_red:g}: the domains are far apart at this layer. "
                            "Features frozen here risk negative transfer; fine-tune deeper, transfer fewer "
                            "layers, or look for a closer source model.")
    return Light("amber", f"{thresholds.mmd_green:g} ≤ MMD {mmd:.3f} < {thresholds.mmd_red:g}: a real but moderate "
                          "shift. Transfer should still help; plan to fine-tune rather than only train a head on "
                          "frozen features.")


def l2_normalise(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def seed_scale_mmd(X_source: np.ndarray, X_target: np.ndarray, **kwargs) -> MMDResult:
    """:func:`mmd_test` on the seed scale: L2-normalised rows, median-heuristic σ on the pooled sample.

    Args:
        X_source: Source embeddings, shape (n_source, n_features).
        X_target: Target embeddings, shape (n_target, n_features).
        **kwargs: Passed on to :func:`mmd_test` (n_permutations, random_state, max_samples...);
            ``bandwidth`` is not allowed, the scale fixes it.
    """
    if "bandwidth" in kwargs:
        raise TldiagError("seed_scale_mmd fixes the bandwidth (median heuristic); call mmd_test to choose σ.")
    # the sample is drawn first, as mmd_test would draw it (same generator, same order), so that only its rows are
    # read and converted: memory follows max_samples, not the dataset
    rng = rng_from(kwargs.pop("random_state", None))
    max_samples = kwargs.pop("max_samples", None)
    check_int(max_samples, "max_samples", minimum=2, allow_none=True)
    X_source, n_total = take_rows(X_source, max_samples, rng)
    X_target, m_total = take_rows(X_target, max_samples, rng)
    X_source, X_target = check_pair(X_source, X_target)
    result = mmd_test(l2_normalise(X_source), l2_normalise(X_target), random_state=rng, **kwargs)
    return replace(result, n_source_total=n_total, n_target_total=m_total)


__all__ = ["SEED_SCALE", "Thresholds", "Light", "traffic_light", "l2_normalise", "seed_scale_mmd"]
