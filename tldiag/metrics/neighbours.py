"""Exact nearest neighbours in blocks, and the two neighbourhood numbers of the embedding explorer.

* :func:`nearest_neighbours`: exact k-nearest neighbours (Euclidean or cosine), computed in row blocks
  with one matrix product each (GPU when there is one), so 20,000 points never need an n x n matrix.
* :func:`trustworthiness`: how faithful a 2-D picture is to the original space (Venna & Kaski 2001);
  the same number as ``sklearn.manifold.trustworthiness``, without its n x n integer rank matrix.
* :func:`knn_mixing`: how well source and target interleave in the original space: the share of each
  target image's nearest neighbours that are source images, against the share expected under perfect
  mixing (1 = indistinguishable, 0 = separate islands), overall and per class.

Distances are computed in float32 on centred (Euclidean) or unit-length (cosine) rows; ranks can differ
from a float64 computation only between neighbours whose distances agree to about 1e-6.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..errors import TldiagError
from ..validation import (RandomState, check_features, check_int, check_pair, label_names, metric_device, rng_from,
                      unit_rows)

METRICS = ("euclidean", "cosine")
_BLOCK_BYTES = 16 << 20  # one block of distance rows: small enough to stay in cache


def check_metric(metric: str) -> str:
    """``metric`` when it is one of :data:`METRICS`, else a clear error."""
    if metric not in METRICS:
        raise TldiagError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    return metric


def _prepare(X: np.ndarray, metric: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows as float32 on ``device`` (centred, or unit length for cosine) and their squared norms."""
    X = np.asarray(X, dtype=np.float64)
    t = torch.as_tensor(unit_rows(X) if metric == "cosine" else X - X.mean(0))  # centring keeps float32 precise
    t = t.to(device=device, dtype=torch.float32)
    return t, (t * t).sum(1)


def _distance_blocks(X: torch.Tensor, sq: torch.Tensor, queries: torch.Tensor,
                     exclude_self: bool) -> Iterator[tuple[slice, torch.Tensor]]:
    """(slice of ``queries``, ``||x_j||² - 2 <x_q, x_j>`` for those rows and every row j of X), in blocks of
    at most ``_BLOCK_BYTES``: the squared Euclidean distance less the query's own ``||x_q||²``, a constant
    per row that no ranking needs (add ``sq[q]`` back for distances). A query's own column is +inf when
    ``exclude_self``."""
    n = X.shape[0]
    rows = max(1, min(len(queries), _BLOCK_BYTES // (4 * max(n, 1))))
    for start in range(0, len(queries), rows):
        q = queries[start:start + rows]
        D = torch.addmm(sq[None, :], X[q], X.T, beta=1.0, alpha=-2.0)
        if exclude_self:
            D[torch.arange(len(q), device=D.device), q] = float("inf")
        yield slice(start, start + len(q)), D


def _as_distance(sq_dist: torch.Tensor, metric: str) -> torch.Tensor:
    """Squared chord length -> the metric's distance (Euclidean, or 1 - cos for unit rows)."""
    return sq_dist.sqrt() if metric == "euclidean" else sq_dist / 2.0


def nearest_neighbours(X: Any, n_neighbors: int, *, metric: str = "euclidean", include_self: bool = False,
                       device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest neighbours of every row of ``X`` among the rows of ``X``.

    Args:
        X: Points, shape (n_samples, n_features).
        n_neighbors: Neighbours per point.
        metric: ``"euclidean"``, or ``"cosine"`` (distance 1 - cos, as scikit-learn and UMAP define it).
        include_self: Put each point first in its own list at distance 0 (the convention of UMAP's
            ``precomputed_knn``); otherwise a point is never its own neighbour.
        device: Torch device; tldiag's default (the GPU when there is one) when None.

    Returns:
        ``(indices, distances)``, both (n_samples, n_neighbors), nearest first.
    """
    X = check_features(X, "X")
    check_metric(metric)
    k = n_neighbors - 1 if include_self else n_neighbors
    check_int(n_neighbors, "n_neighbors", minimum=2 if include_self else 1)
    if k >= len(X):
        raise TldiagError(f"n_neighbors={n_neighbors} needs more than {k} other points, but X has {len(X)} rows; "
                          "lower n_neighbors or use more samples.")
    dev = metric_device(device)
    Xt, sq = _prepare(X, metric, dev)
    idx = torch.empty((len(X), k), dtype=torch.int64)
    dist = torch.empty((len(X), k), dtype=torch.float32)
    queries = torch.arange(len(X), device=dev)
    for rows, D in _distance_blocks(Xt, sq, queries, exclude_self=True):
        d, i = torch.topk(D, k, dim=1, largest=False, sorted=True)
        d = (d + sq[queries[rows], None]).clamp_min_(0.0)
        idx[rows], dist[rows] = i.cpu(), _as_distance(d, metric).cpu()
    if include_self:
        own = torch.arange(len(X))[:, None]
        idx, dist = torch.cat([own, idx], 1), torch.cat([torch.zeros(len(X), 1), dist], 1)
    return idx.numpy(), dist.numpy()


def trustworthiness(X: Any, X_embedded: Any, *, n_neighbors: int = 5, metric: str = "euclidean",
                    device: str | None = None) -> float:
    """Trustworthiness of a low-dimensional embedding (Venna & Kaski 2001), as scikit-learn defines it.

    ``T(k) = 1 - 2 / (n k (2n - 3k - 1)) * sum_i sum_{j in U_i(k)} (r(i, j) - k)``, where ``U_i(k)`` are the
    k nearest neighbours of point i in the embedding that are not among its k nearest in ``X``, and
    ``r(i, j)`` is j's rank as a neighbour of i in ``X``. 1 means every neighbour in the picture is a real
    neighbour; points that look close but are not pull it down. Matches
    ``sklearn.manifold.trustworthiness`` (up to ties), in O(n k) memory instead of O(n²).

    Args:
        X: Original points, shape (n_samples, n_features).
        X_embedded: The same points in the projection, shape (n_samples, n_components).
        n_neighbors: k (scikit-learn's default, 5).
        metric: Distance in the original space, ``"euclidean"`` or ``"cosine"``.
    """
    X = check_features(X, "X")
    X_embedded = check_features(X_embedded, "X_embedded")
    if len(X) != len(X_embedded):
        raise TldiagError(f"X and X_embedded must have the same number of rows, got {len(X)} and "
                          f"{len(X_embedded)}.")
    n = len(X)
    check_int(n_neighbors, "n_neighbors", minimum=1)
    if n_neighbors >= n / 2:
        raise TldiagError(f"n_neighbors ({n_neighbors}) must be less than n_samples / 2 ({n / 2}); lower it.")
    check_metric(metric)
    dev = metric_device(device)
    near_embedded, _ = nearest_neighbours(X_embedded, n_neighbors, device=device)
    near = torch.as_tensor(near_embedded, device=dev)
    Xt, sq = _prepare(X, metric, dev)
    penalty = 0.0
    for rows, D in _distance_blocks(Xt, sq, torch.arange(n, device=dev), exclude_self=True):
        thresholds = torch.gather(D, 1, near[rows])
        # rank of j among i's neighbours in X (1 = nearest): one plus the points strictly closer
        ranks = torch.stack([(D < thresholds[:, j:j + 1]).sum(1) for j in range(n_neighbors)], 1) + 1
        penalty += float((ranks - n_neighbors).clamp_min(0).sum())
    return 1.0 - penalty * 2.0 / (n * n_neighbors * (2.0 * n - 3.0 * n_neighbors - 1.0))


@dataclass(frozen=True)
class ClassMixing:
    """Domain mixing among the images of one class (neighbours searched within that class only)."""

    name: str
    score: float
    observed_share: float
    expected_share: float
    n_source: int
    n_target: int

    def row(self) -> dict[str, Any]:
        return {"class": self.name, "mixing": round(self.score, 3), "source share": round(self.observed_share, 3),
                "expected share": round(self.expected_share, 3), "n source": self.n_source,
                "n target": self.n_target}


@dataclass(frozen=True)
class MixingResult:
    """Outcome of :func:`knn_mixing`.

    Attributes:
        score: ``observed_share / expected_share``: 1 = the domains are indistinguishable to a k-NN, 0 =
            separate islands (values a little above 1 are sampling noise).
        ci: Percentile bootstrap interval of the score over target images (95%).
        observed_share: Mean share of source images among a target image's k nearest neighbours.
        expected_share: The share under perfect mixing, ``n_source / (n_source + n_target - 1)``.
        per_class: The same within each class labelled in both domains, lowest score first.
        target_shares: Each target image's share of source neighbours, shape (n_target,).
    """

    score: float
    ci: tuple[float, float]
    observed_share: float
    expected_share: float
    n_neighbors: int
    metric: str
    n_source: int
    n_target: int
    per_class: tuple[ClassMixing, ...] = ()
    target_shares: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "ci": list(self.ci), "observed_share": self.observed_share,
                "expected_share": self.expected_share, "n_neighbors": self.n_neighbors, "metric": self.metric,
                "n_source": self.n_source, "n_target": self.n_target,
                "per_class": [vars(c).copy() for c in self.per_class]}

    @classmethod
    def from_dict(cls, d: dict[str, Any], target_shares: np.ndarray | None = None) -> "MixingResult":
        d = dict(d)
        d["ci"] = tuple(d["ci"])
        d["per_class"] = tuple(ClassMixing(**c) for c in d.get("per_class", ()))
        return cls(**d, target_shares=np.zeros(0) if target_shares is None else target_shares)


def _label_codes(y_source: Sequence | None, y_target: Sequence | None, n_source: int,
                 n_target: int) -> tuple[np.ndarray, list[str]]:
    """One integer code per pooled row (-1 = unlabelled) and the class names, matched by name."""
    names: dict[str, int] = {}
    pooled = np.concatenate([label_names(y_source, n_source, "y_source"), label_names(y_target, n_target, "y_target")])
    codes = np.array([names.setdefault(label, len(names)) if label else -1 for label in pooled], dtype=np.int64)
    return codes, list(names)


def knn_mixing(X_source: Any, X_target: Any, *, y_source: Sequence | None = None,
               y_target: Sequence | None = None, n_neighbors: int = 10, metric: str = "euclidean",
               n_bootstrap: int = 1000, random_state: RandomState = None,
               device: str | None = None) -> MixingResult:
    """k-NN domain-mixing score of the target among the source, in the original embedding space.

    For each target image, the share of its ``n_neighbors`` nearest neighbours in the pooled sample (itself
    excluded) that are source images, averaged over the target and divided by the share expected when the
    two domains are one distribution, ``n_source / (n_source + n_target - 1)``. So 1.0 = indistinguishable
    and 0 = separate islands. The score depends on the ratio of the sample sizes only through that
    expectation. With labels, the same is computed within each class labelled in both domains (neighbours
    searched among that class's images only), which separates a shift of p(x | y) from a change of the
    class mix, and shows which classes sit apart.

    Args:
        X_source, X_target: Embeddings, shapes (n_source, n_features) and (n_target, n_features).
        y_source, y_target: Optional class names per row (None or "" = unlabelled); classes are matched by
            name between the domains.
        n_neighbors: k.
        metric: ``"euclidean"`` or ``"cosine"``.
        n_bootstrap: Resamples of the target images for the interval (0 for none).
        random_state: Seed for the bootstrap.
    """
    X_source, X_target = check_pair(X_source, X_target, min_samples=1)
    check_metric(metric)
    check_int(n_neighbors, "n_neighbors", minimum=1)
    check_int(n_bootstrap, "n_bootstrap", minimum=0)
    n_s, n_t = len(X_source), len(X_target)
    if n_neighbors > n_s + n_t - 1:
        raise TldiagError(f"n_neighbors={n_neighbors} is more than the {n_s + n_t - 1} other images; lower it.")
    codes, names = _label_codes(y_source, y_target, n_s, n_t)
    rng = rng_from(random_state)
    dev = metric_device(device)
    Xt, sq = _prepare(np.vstack([X_source, X_target]), metric, dev)
    is_source = torch.zeros(n_s + n_t, dtype=torch.bool, device=dev)
    is_source[:n_s] = True
    codes_t = torch.as_tensor(codes, device=dev)
    queries = torch.arange(n_s, n_s + n_t, device=dev)
    shares = np.empty(n_t)
    class_shares = np.full(n_t, np.nan)
    # per class: the number of source and target images of each class, to size k and the expectation
    n_cls = len(names)
    counts_s = np.bincount(codes[:n_s][codes[:n_s] >= 0], minlength=n_cls)
    counts_t = np.bincount(codes[n_s:][codes[n_s:] >= 0], minlength=n_cls)
    # within-class k: at most the class's other images
    pool = torch.as_tensor(counts_s + counts_t, device=dev)
    k_cls = int(min(n_neighbors, max(1, int(pool.max()) - 1))) if n_cls else 0
    for rows, D in _distance_blocks(Xt, sq, queries, exclude_self=True):
        _, nbr = torch.topk(D, n_neighbors, dim=1, largest=False)
        shares[rows] = is_source[nbr].float().mean(1).cpu().numpy()
        if n_cls:
            q_codes = codes_t[queries[rows]]
            D = D.masked_fill_(codes_t[None, :] != q_codes[:, None], float("inf"))
            d, nbr = torch.topk(D, k_cls, dim=1, largest=False)
            k_row = torch.where(q_codes >= 0, (pool[q_codes.clamp_min(0)] - 1).clamp(max=n_neighbors), 0)
            valid = torch.isfinite(d) & (torch.arange(k_cls, device=dev)[None, :] < k_row[:, None])
            src = (is_source[nbr] & valid).sum(1).float()
            cnt = valid.sum(1).float()
            block = torch.where(cnt > 0, src / cnt.clamp_min(1), torch.nan)
            class_shares[rows] = block.cpu().numpy()
    expected = n_s / (n_s + n_t - 1)
    observed = float(shares.mean())
    if n_bootstrap:
        boots = shares[rng.integers(0, n_t, size=(n_bootstrap, n_t))].mean(1) / expected
        ci = (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)))
    else:
        ci = (float("nan"), float("nan"))
    per_class = []
    tgt_codes = codes[n_s:]
    for c, name in enumerate(names):
        if counts_s[c] == 0 or counts_t[c] == 0:
            continue
        exp_c = counts_s[c] / (counts_s[c] + counts_t[c] - 1)
        obs_c = float(np.nanmean(class_shares[tgt_codes == c]))
        per_class.append(ClassMixing(name, obs_c / exp_c, obs_c, float(exp_c), int(counts_s[c]), int(counts_t[c])))
    per_class.sort(key=lambda c: c.score)
    return MixingResult(score=observed / expected, ci=ci, observed_share=observed, expected_share=expected,
                        n_neighbors=n_neighbors, metric=metric, n_source=n_s, n_target=n_t,
                        per_class=tuple(per_class), target_shares=shares)


__all__ = ["METRICS", "check_metric", "nearest_neighbours", "trustworthiness", "ClassMixing", "MixingResult",
           "knn_mixing"]
