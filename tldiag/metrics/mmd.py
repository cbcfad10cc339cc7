"""Kernel two-sample test: unbiased MMD² with a Gaussian kernel and a batched permutation test.

Conventions (Gretton, Borgwardt, Rasch, Schölkopf & Smola 2012, JMLR 13, "A Kernel Two-Sample
Test"):

* kernel ``k(x, y) = exp(-||x - y||² / (2 σ²))``; a list of σ uses the mean of those kernels (as
  alibi-detect's ``GaussianRBF(sigma=[...])`` does);
* ``MMD²_u = Σ_{i≠j} k(x_i, x_j) / (n(n-1)) + Σ_{i≠j} k(y_i, y_j) / (m(m-1)) - 2 Σ_{i,j} k(x_i, y_j) / (nm)``
  (eq. 3: the within-domain sums leave out the diagonal); it is unbiased, so it can be slightly
  negative when the distributions are equal, and ``MMD = sqrt(max(MMD², 0))``;
* median heuristic: σ is the median Euclidean distance between distinct points of the *pooled*
  sample (source and target together, at most ``bandwidth_samples`` points drawn at random);
* p-value: ``(1 + #{b : T_b >= T}) / (1 + B)`` over B random re-splits of the pooled sample into
  groups of n and m (never exactly 0; the smallest possible value is ``1 / (1 + B)``).

Speed: the kernel is evaluated once, in row blocks that fit ``max_memory``; every permutation and
bootstrap resample is a column of a weight matrix, so the whole null distribution is a few matrix
products with that block (no Python loop per permutation). Float64 throughout, on the GPU when
there is one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import TldiagError
from ..validation import RandomState, check_int, check_pair, metric_device, rng_from, subsample, take_rows

DEFAULT_MAX_MEMORY = 1 << 30  # bytes for one block of kernel rows (and its temporaries)


@dataclass(frozen=True)
class MMDResult:
    """Outcome of :func:`mmd_test`.

    Attributes:
        mmd2: Unbiased MMD² of the two samples.
        p_value: Permutation p-value, ``(1 + #{T_b >= mmd2}) / (1 + n_permutations)``.
        bandwidth: The σ used (a tuple when several kernels were averaged).
        bandwidth_method: How σ was chosen, including which sample it was computed on.
        null: MMD² of each permutation, shape (n_permutations,).
        ci: Percentile bootstrap interval for MMD² at ``confidence`` (NaN when n_bootstrap=0).
        n_source, n_target: Samples used per domain (after subsampling).
        n_source_total, n_target_total: Samples given per domain.
        per_bandwidth: (σ, MMD²) of each kernel when several were averaged; empty otherwise.
    """

    mmd2: float
    p_value: float
    bandwidth: float | tuple[float, ...]
    bandwidth_method: str
    null: np.ndarray = field(repr=False)
    ci: tuple[float, float]
    confidence: float
    n_source: int
    n_target: int
    n_source_total: int
    n_target_total: int
    n_permutations: int
    n_bootstrap: int
    per_bandwidth: tuple[tuple[float, float], ...] = ()
    device: str = "cpu"
    seconds: float = 0.0

    @property
    def mmd(self) -> float:
        """MMD = sqrt(max(MMD², 0)), on the scale of the kernel's feature-space distance."""
        return float(np.sqrt(max(self.mmd2, 0.0)))

    @property
    def mmd_ci(self) -> tuple[float, float]:
        """The bootstrap interval of MMD² mapped through sqrt(max(·, 0))."""
        return tuple(float(np.sqrt(max(v, 0.0))) if np.isfinite(v) else float("nan")
                     for v in self.ci)  # type: ignore[return-value]

    @property
    def subsampled(self) -> bool:
        return self.n_source < self.n_source_total or self.n_target < self.n_target_total

    def to_dict(self) -> dict:
        """JSON-ready summary (the null distribution as a list)."""
        return {"mmd2": self.mmd2, "mmd": self.mmd, "p_value": self.p_value,
                "bandwidth": self.bandwidth, "bandwidth_method": self.bandwidth_method,
                "ci_mmd2": list(self.ci), "confidence": self.confidence,
                "n_source": self.n_source, "n_target": self.n_target,
                "n_source_total": self.n_source_total, "n_target_total": self.n_target_total,
                "subsampled": self.subsampled, "n_permutations": self.n_permutations,
                "n_bootstrap": self.n_bootstrap, "per_bandwidth": [list(p) for p in self.per_bandwidth],
                "device": self.device, "seconds": self.seconds, "null": self.null.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MMDResult":
        """From :meth:`to_dict` (a stored summary)."""
        bandwidth = d["bandwidth"]
        return cls(mmd2=float(d["mmd2"]), p_value=float(d["p_value"]),
                   bandwidth=tuple(bandwidth) if isinstance(bandwidth, (list, tuple)) else float(bandwidth),
                   bandwidth_method=d["bandwidth_method"], null=np.asarray(d.get("null", ()), dtype=np.float64),
                   ci=tuple(float(v) for v in d["ci_mmd2"]), confidence=float(d["confidence"]),
                   n_source=int(d["n_source"]), n_target=int(d["n_target"]),
                   n_source_total=int(d["n_source_total"]), n_target_total=int(d["n_target_total"]),
                   n_permutations=int(d["n_permutations"]), n_bootstrap=int(d["n_bootstrap"]),
                   per_bandwidth=tuple(tuple(p) for p in d.get("per_bandwidth", ())), device=d.get("device", "cpu"),
                   seconds=float(d.get("seconds", 0.0)))


def median_heuristic(X_source: np.ndarray, X_target: np.ndarray, *, bandwidth_samples: int = 2000,
                     random_state: RandomState = None) -> float:
    """σ for the Gaussian kernel: the median distance between distinct points of the pooled sample.

    Args:
        X_source: Source embeddings, shape (n_source, n_features).
        X_target: Target embeddings, shape (n_target, n_features).
        bandwidth_samples: Pooled points used (drawn without replacement when there are more);
            the median of their n(n-1)/2 pairwise distances is σ.
        random_state: Seed for drawing those points.
    """
    X_source, X_target = check_pair(X_source, X_target)
    pooled = subsample(np.concatenate([X_source, X_target]), bandwidth_samples, rng_from(random_state))
    return _median_distance(pooled)


def _median_distance(Z: np.ndarray) -> float:
    t = torch.from_numpy(Z)
    d = torch.cdist(t, t, compute_mode="donot_use_mm_for_euclid_dist")
    iu = torch.triu_indices(len(Z), len(Z), offset=1)
    sigma = float(d[iu[0], iu[1]].median())
    if not sigma > 0:
        raise TldiagError("The median distance between points is 0 (at least half of the pooled points are "
                          "identical), so the median heuristic has no bandwidth to offer. Pass bandwidth=<σ> "
                          "explicitly, or check that the features are not constant.")
    return sigma


def _check_bandwidths(bandwidth: float | Sequence[float]) -> tuple[float, ...]:
    values = (bandwidth,) if np.isscalar(bandwidth) else tuple(bandwidth)
    if not values:
        raise TldiagError("bandwidth is an empty list; pass None (median heuristic), a float or a non-empty list.")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v) or v <= 0:
            raise TldiagError(f"bandwidth must be a positive finite σ (or a list of them), got {v!r}.")
    return tuple(float(v) for v in values)


class _QuadraticForms:
    """Accumulates u'K₀v over row blocks of the kernel matrix K₀ (K with a zero diagonal).

    ``split`` columns are group indicators u (v = 1 - u, so K₀v = rowsum(K₀) - K₀u); ``weights``
    columns are pairs (u, v) of independent non-negative weights (bootstrap resamples).
    """

    def __init__(self, split: torch.Tensor, weights_u: torch.Tensor, weights_v: torch.Tensor):
        self.split, self.wu, self.wv = split, weights_u, weights_v
        self.cols = torch.cat([split, weights_u, weights_v], dim=1)
        zeros = lambda k: torch.zeros(k, dtype=split.dtype, device=split.device)  # noqa: E731
        self.s_uu, self.s_uv, self.s_vv = zeros(split.shape[1]), zeros(split.shape[1]), zeros(split.shape[1])
        self.w_uu, self.w_uv, self.w_vv = zeros(wu_k := weights_u.shape[1]), zeros(wu_k), zeros(wu_k)

    def add(self, K: torch.Tensor, rows: slice) -> None:
        ks, kw = self.split.shape[1], self.wu.shape[1]
        KC = K @ self.cols                      # (block, columns): the one big product
        rowsum = K.sum(dim=1, keepdim=True)
        u = self.split[rows]
        Ku = KC[:, :ks]
        Kv = rowsum - Ku
        self.s_uu += (u * Ku).sum(0)
        self.s_uv += (u * Kv).sum(0)
        self.s_vv += ((1 - u) * Kv).sum(0)
        if kw:
            wu, wv = self.wu[rows], self.wv[rows]
            Kwu, Kwv = KC[:, ks:ks + kw], KC[:, ks + kw:]
            self.w_uu += (wu * Kwu).sum(0)
            self.w_uv += (wu * Kwv).sum(0)
            self.w_vv += (wv * Kwv).sum(0)


def _distance_blocks(Z: torch.Tensor, max_memory: int):
    """Yield (rows, squared distances from Z[rows] to every row of Z), in blocks that fit max_memory."""
    N = len(Z)
    block = int(max(1, min(N, max_memory // max(1, N * 8 * 3))))
    sq = (Z * Z).sum(1)
    for start in range(0, N, block):
        rows = slice(start, min(start + block, N))
        yield rows, (sq[rows, None] + sq[None, :] - 2.0 * (Z[rows] @ Z.T)).clamp_(min=0.0)


def _gauss(d2: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.exp(d2 * (-0.5 / sigma ** 2))


def permutation_statistics(Z_np: np.ndarray, splits: np.ndarray, wu: np.ndarray, wv: np.ndarray,
                           sigmas: Sequence[float], dev: torch.device, max_memory: int
                           ) -> tuple[np.ndarray, np.ndarray, tuple[tuple[float, float], ...]]:
    """MMD²_u of every split (rows of ``splits``: True = source), of every bootstrap weighting (columns of
    wu, wv), and of the first split under each σ on its own, in one blocked pass over the kernel."""
    n = int(splits[0].sum())
    m = len(Z_np) - n
    Z = torch.from_numpy(Z_np).to(dev)
    split = torch.from_numpy(splits.T.astype(np.float64)).to(dev)
    forms = _QuadraticForms(split, torch.from_numpy(wu).to(dev), torch.from_numpy(wv).to(dev))
    per_sigma = [_QuadraticForms(split[:, :1], split[:, :0], split[:, :0]) for _ in sigmas] if len(sigmas) > 1 else []
    for rows, d2 in _distance_blocks(Z, max_memory):
        diag = torch.arange(rows.start, rows.stop, device=dev)
        if len(sigmas) == 1:
            K = _gauss(d2, sigmas[0])
        else:
            K = torch.zeros_like(d2)
            for s, acc in zip(sigmas, per_sigma):
                Ks = _gauss(d2, s)
                Ks[diag - rows.start, diag] = 0.0
                acc.add(Ks, rows)
                K += Ks
            K /= len(sigmas)
        K[diag - rows.start, diag] = 0.0
        forms.add(K, rows)
        del K, d2

    def unbiased(uu, vv, uv):
        return uu / (n * (n - 1)) + vv / (m * (m - 1)) - 2 * uv / (n * m)

    stats = unbiased(forms.s_uu, forms.s_vv, forms.s_uv).cpu().numpy()
    # bootstrap: U-statistic over pairs of distinct original points, weighted by multiplicity
    den_uu = forms.wu.sum(0) ** 2 - (forms.wu ** 2).sum(0)
    den_vv = forms.wv.sum(0) ** 2 - (forms.wv ** 2).sum(0)
    boot = (forms.w_uu / den_uu + forms.w_vv / den_vv - 2 * forms.w_uv / (n * m)).cpu().numpy()
    per_bandwidth = tuple((s, float(unbiased(a.s_uu[0], a.s_vv[0], a.s_uv[0]))) for s, a in zip(sigmas, per_sigma))
    return stats, boot, per_bandwidth


def mmd_test(X_source: np.ndarray, X_target: np.ndarray, *, bandwidth: float | Sequence[float] | None = None,
             n_permutations: int = 1000, n_bootstrap: int = 200, confidence: float = 0.95,
             max_samples: int | None = None, bandwidth_samples: int = 2000,
             random_state: RandomState = None, device: str | None = None,
             max_memory: int = DEFAULT_MAX_MEMORY) -> MMDResult:
    """Kernel two-sample test (Gretton et al. 2012) with the unbiased MMD² and a Gaussian kernel.

    Args:
        X_source: Source embeddings, shape (n_source, n_features).
        X_target: Target embeddings, shape (n_target, n_features).
        bandwidth: σ of ``exp(-||x - y||² / (2 σ²))``. None: the median heuristic on the pooled
            sample (see :func:`median_heuristic`). A float fixes σ, to compare with other tools. A
            list averages the Gaussian kernels of those σ into one characteristic kernel (one
            statistic, one exact permutation test); each σ's own MMD² is in ``per_bandwidth``.
        n_permutations: B, the size of the permutation null (0 skips the test; p-value NaN).
        n_bootstrap: Bootstrap resamples for the interval of MMD² (0 skips it). Each resample
            draws n source and m target points with replacement and evaluates the U-statistic over
            pairs of distinct original points.
        confidence: Level of the percentile bootstrap interval.
        max_samples: At most this many points per domain, drawn without replacement (reported in
            ``n_source`` / ``n_target``); None uses all.
        bandwidth_samples: Pooled points used by the median heuristic.
        random_state: Seed for subsampling, the median heuristic, permutations and bootstrap.
        device: Torch device (default: tldiag's, i.e. ``TLDIAG_DEVICE`` or the GPU when present).
        max_memory: Bytes for one block of kernel rows; bounds memory at any n.
    """
    t0 = time.perf_counter()
    check_int(n_permutations, "n_permutations", minimum=0, hint="(1000 is usual)")
    check_int(n_bootstrap, "n_bootstrap", minimum=0, hint="(200 is usual)")
    if not 0 < confidence < 1:
        raise TldiagError(f"confidence must be between 0 and 1, e.g. 0.95; got {confidence!r}.")
    check_int(max_samples, "max_samples", minimum=2, allow_none=True)
    rng = rng_from(random_state)
    # the rows are drawn before anything is converted: memory follows max_samples, not the dataset
    X_source, n_total = take_rows(X_source, max_samples, rng)
    X_target, m_total = take_rows(X_target, max_samples, rng)
    X_source, X_target = check_pair(X_source, X_target)
    n, m = len(X_source), len(X_target)
    N = n + m
    Z_np = np.concatenate([X_source, X_target])

    if bandwidth is None:
        sigmas = (_median_distance(subsample(Z_np, bandwidth_samples, rng)),)
        used = min(N, bandwidth_samples)
        method = (f"median heuristic: median distance between distinct points of the pooled sample "
                  f"({used:,} of {N:,} points{', drawn at random' if used < N else ''})")
    else:
        sigmas = _check_bandwidths(bandwidth)
        method = "fixed" if len(sigmas) == 1 else f"mean of {len(sigmas)} Gaussian kernels (fixed σ)"

    # split columns: the observed split first, then B random splits of the pooled sample
    splits = np.zeros((1 + n_permutations, N), dtype=bool)
    splits[:, :n] = True
    splits[1:] = rng.permuted(splits[1:], axis=1)
    # bootstrap columns: multinomial counts within each domain
    wu, wv = np.zeros((N, n_bootstrap)), np.zeros((N, n_bootstrap))
    for b in range(n_bootstrap):
        wu[:n, b] = rng.multinomial(n, np.full(n, 1.0 / n))
        wv[n:, b] = rng.multinomial(m, np.full(m, 1.0 / m))
    dev = metric_device(device)
    stats, boot, per_bandwidth = permutation_statistics(Z_np, splits, wu, wv, sigmas, dev, max_memory)
    mmd2, null = float(stats[0]), stats[1:]
    p_value = float((1 + np.sum(null >= mmd2)) / (1 + n_permutations)) if n_permutations else float("nan")
    if n_bootstrap:
        alpha = (1 - confidence) / 2
        ci = (float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha)))
    else:
        ci = (float("nan"), float("nan"))
    return MMDResult(mmd2=mmd2, p_value=p_value, bandwidth=sigmas[0] if len(sigmas) == 1 else sigmas,
                     bandwidth_method=method, null=null, ci=ci, confidence=confidence, n_source=n, n_target=m,
                     n_source_total=n_total, n_target_total=m_total, n_permutations=int(n_permutations),
                     n_bootstrap=int(n_bootstrap), per_bandwidth=per_bandwidth, device=str(dev),
                     seconds=time.perf_counter() - t0)


__all__ = ["DEFAULT_MAX_MEMORY", "MMDResult", "median_heuristic", "mmd_test", "permutation_statistics"]
