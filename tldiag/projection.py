"""2-D projections of source + target embeddings (UMAP, PCA, t-SNE), with the numbers that keep them honest.

The UMAP pipeline, and why it is fast without losing faithfulness:

1. Up to ``max_samples`` images per domain, drawn per class in proportion (stratified), seeded.
2. Cosine metric: rows scaled to unit length (Euclidean distance between unit vectors orders neighbours
   exactly as cosine distance does). PCA to ``pca_components`` dimensions (default 50), fitted on the
   pooled sample: it removes noise dimensions and makes step 3 cheap.
3. Exact k-nearest neighbours in the PCA space with one matrix product per block of rows
   (:func:`tldiag.metrics.nearest_neighbours`), handed to UMAP as ``precomputed_knn``. This replaces
   umap-learn's approximate NN-descent on the raw features, and with it most of umap-learn's one-off
   numba compilation (about a minute per process at 4,096 points or more).
4. umap-learn's fuzzy graph and layout, seeded (hence single-threaded and reproducible), started from the
   first two principal components (``init="pca"``: like the spectral default it keeps the global layout,
   Kobak & Linderman 2021, and it stays cheap when the graph falls into many components), for
   ``n_epochs``; "auto" spends about a million point-epochs (between 50 and 200), since an informative
   start needs few epochs to settle. The trustworthiness printed next to every picture, and
   ``python -m tldiag.bench umap``, show what that costs in faithfulness.

Then, in the *original* embedding space (not the picture): :func:`~tldiag.metrics.trustworthiness` of the
2-D coordinates and the k-NN domain-mixing score (:func:`~tldiag.metrics.knn_mixing`).

Results are cached on disk under ``$TLDIAG_HOME/projections`` keyed by a hash of the sampled features,
labels, options and library versions, written atomically (a killed run leaves no partial entry).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import _config, cache_limit
from .cache import atomic_write, make_key
from .errors import TldiagError
from .validation import check_int, check_pair, label_names, stratified_indices, unit_rows
from .metrics.neighbours import MixingResult, check_metric, knn_mixing, nearest_neighbours, trustworthiness
from .progress import ProgressFn

METHODS = ("umap", "pca", "tsne")
METHOD_NAMES = {"umap": "UMAP", "pca": "PCA", "tsne": "t-SNE"}
SOURCE, TARGET = 0, 1
DOMAINS = ("source", "target")
_FORMAT = 1  # bump when the stored layout changes


def auto_epochs(n_samples: int) -> int:
    """UMAP epochs for ``n_epochs=None``: about a million point-epochs, between 50 and 200 (umap-learn's own
    default is 200 above 10,000 points and 500 below; from a PCA start the layout settles well before,
    see the module docstring)."""
    return int(min(200, max(50, round(1_000_000 / max(n_samples, 1)))))


@dataclass(frozen=True)
class ProjectionParams:
    """Options of :func:`project` (hashable: it is part of cache keys).

    Attributes:
        method: ``"umap"``, ``"pca"`` or ``"tsne"``.
        n_neighbors: UMAP's neighbourhood size (t-SNE uses ``perplexity = n_neighbors * 2`` capped by n).
        min_dist: UMAP's minimum distance between points in the picture.
        metric: ``"euclidean"`` or ``"cosine"``, in the original space.
        pca_components: PCA dimensions before UMAP / t-SNE (None: no reduction).
        max_samples: Images per domain at most, stratified by class (None: all).
        n_epochs: UMAP epochs; None for :func:`auto_epochs`.
        random_state: Seed of the sample, UMAP, t-SNE and the bootstrap.
    """

    method: str = "umap"
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "euclidean"
    pca_components: int | None = 50
    max_samples: int | None = 5000
    n_epochs: int | None = None
    random_state: int = 0

    def validate(self) -> "ProjectionParams":
        if self.method not in METHODS:
            raise TldiagError(f"Unknown projection method {self.method!r}; choose one of {', '.join(METHODS)}.")
        check_metric(self.metric)
        check_int(self.n_neighbors, "n_neighbors", minimum=2, hint="(15 is UMAP's default)")
        if not (isinstance(self.min_dist, (int, float)) and 0.0 <= self.min_dist <= 1.0):
            raise TldiagError(f"min_dist must be a number in [0, 1], got {self.min_dist!r} (0.1 is UMAP's default).")
        check_int(self.pca_components, "pca_components", minimum=2, allow_none=True, hint="(50 is usual)")
        check_int(self.max_samples, "max_samples", minimum=2, allow_none=True)
        check_int(self.n_epochs, "n_epochs", minimum=1, allow_none=True, hint="(None picks it from the size)")
        check_int(self.random_state, "random_state", minimum=0)
        return self


@dataclass(frozen=True)
class Projection:
    """2-D coordinates of a sample of source and target images, and how far to trust them.

    Attributes:
        coords: (n, 2) float32 coordinates, source rows first.
        domain: (n,) 0 = source, 1 = target.
        rows: (n,) index of each point in its domain's embeddings (= dataset index).
        labels: (n,) class names ("" when unlabelled).
        trustworthiness: Of ``coords`` with respect to the original features (``trust_neighbors`` neighbours).
        mixing: k-NN domain-mixing score in the original space (``mixing.target_shares`` follows the target
            rows of this projection).
        pca_variance: Share of the pooled variance kept by the PCA step (None without PCA).
        n_epochs: UMAP epochs used (None for other methods).
        seconds: Wall time per stage of the computation that produced this result.
        from_cache: Whether this object was read from the disk cache.
    """

    layer: str
    params: ProjectionParams
    coords: np.ndarray = field(repr=False, compare=False)
    domain: np.ndarray = field(repr=False, compare=False)
    rows: np.ndarray = field(repr=False, compare=False)
    labels: np.ndarray = field(repr=False, compare=False)
    trustworthiness: float
    trust_neighbors: int
    mixing: MixingResult
    n_source_total: int
    n_target_total: int
    pca_variance: float | None
    n_epochs: int | None
    seconds: Mapping[str, float]
    from_cache: bool = False

    @property
    def n_source(self) -> int:
        return int((self.domain == SOURCE).sum())

    @property
    def n_target(self) -> int:
        return int((self.domain == TARGET).sum())

    @property
    def subsampled(self) -> bool:
        return self.n_source < self.n_source_total or self.n_target < self.n_target_total

    def describe(self) -> str:
        """One line: method, options that matter, and the sample."""
        p = self.params
        bits = [METHOD_NAMES[p.method], p.metric]
        if p.method != "pca" and p.pca_components:
            bits.append(f"PCA {p.pca_components}")
        if p.method == "umap":
            bits += [f"{p.n_neighbors} neighbours", f"min_dist {p.min_dist:g}", f"{self.n_epochs} epochs"]
        elif p.method == "tsne":
            bits.append(f"perplexity {_perplexity(p, len(self.coords)):g}")
        bits.append(f"seed {p.random_state}")
        return " · ".join(bits)

    def frame(self, target_proba: np.ndarray | None = None,
              sample_ids: tuple[Sequence[str], Sequence[str]] | None = None):
        """One row per point: x, y, domain, row, the point's sample id when ``sample_ids`` (the source's and the
        target's, e.g. ``Embeddings.sample_ids``) are given, label, source_neighbour_share (target rows) and,
        when given, p(target | x) aligned with the points."""
        import pandas as pd

        share = np.full(len(self.coords), np.nan)
        if len(self.mixing.target_shares) == self.n_target:
            share[self.domain == TARGET] = self.mixing.target_shares
        columns = {"x": self.coords[:, 0], "y": self.coords[:, 1], "domain": np.asarray(DOMAINS)[self.domain],
                   "row": self.rows}
        if sample_ids is not None:
            columns["sample_id"] = [sample_ids[d][r] for d, r in zip(self.domain, self.rows)]
        df = pd.DataFrame({**columns, "label": self.labels, "source_neighbour_share": share})
        if target_proba is not None:
            df["p_target"] = target_proba
        return df

    def to_csv(self, target_proba: np.ndarray | None = None,
               sample_ids: tuple[Sequence[str], Sequence[str]] | None = None) -> str:
        return self.frame(target_proba, sample_ids).to_csv(index=False)

    def summary(self) -> dict[str, Any]:
        return {"layer": self.layer, "params": asdict(self.params), "n_source": self.n_source,
                "n_target": self.n_target, "n_source_total": self.n_source_total,
                "n_target_total": self.n_target_total, "trustworthiness": self.trustworthiness,
                "trust_neighbors": self.trust_neighbors, "mixing": self.mixing.to_dict(),
                "pca_variance": self.pca_variance, "n_epochs": self.n_epochs, "seconds": dict(self.seconds)}


# ---------------------------------------------------------------- sampling and preparation
def _names(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Class-index labels (-1 = unlabelled) -> names ("" when unlabelled)."""
    names = np.asarray(list(classes) + [""], dtype=object)
    return names[np.where(np.asarray(labels) >= 0, labels, len(classes))].astype(str)


def _prepare(X: np.ndarray, metric: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return unit_rows(X) if metric == "cosine" else X


def _pca(X: np.ndarray, n_components: int | None) -> tuple[np.ndarray, float | None]:
    """PCA scores of X (rows = points) and the share of variance kept; X itself when no reduction applies.

    Exact, from the covariance matrix (features x features: cheap when points outnumber features), in
    torch; component signs follow scikit-learn's ``svd_flip`` (largest loading positive), so results are
    reproducible across runs and machines' BLAS threading.
    """
    n, d = X.shape
    if n_components is None or n_components >= min(n, d):
        return X, None
    import torch

    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    Xc = Xt - Xt.mean(0)
    if d <= n:
        cov = (Xc.T @ Xc).double() / max(n - 1, 1)
        evals, evecs = torch.linalg.eigh(cov)
        evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)[:, :n_components]
    else:  # more features than points: the Gram matrix is the small one
        gram = (Xc @ Xc.T).double() / max(n - 1, 1)
        evals, u = torch.linalg.eigh(gram)
        evals, u = evals.flip(0).clamp_min(0), u.flip(1)[:, :n_components]
        evecs = Xc.double().T @ u / (evals[:n_components] * max(n - 1, 1)).sqrt().clamp_min(1e-12)
    signs = torch.sign(evecs[evecs.abs().argmax(0), torch.arange(n_components)])
    evecs = (evecs * torch.where(signs == 0, 1.0, signs)).float()
    total = float(evals.sum())
    return (Xc @ evecs).numpy(), (float(evals[:n_components].sum()) / total if total > 0 else 1.0)


def _perplexity(params: ProjectionParams, n: int) -> float:
    return float(min(2 * params.n_neighbors, max(2.0, (n - 1) / 3.0)))


class _EpochReader:
    """A file for umap-learn's tqdm bar (``bar_format="{n}/{total}"``) that forwards the epoch count."""

    def __init__(self, report: Callable[[int, int], None]):
        self.report = report

    def write(self, text: str) -> None:
        found = re.findall(r"(\d+)/(\d+)", text)
        if found:
            self.report(int(found[-1][0]), int(found[-1][1]))

    def flush(self) -> None:
        pass


def _umap(Z: np.ndarray, params: ProjectionParams, n_epochs: int, epoch: Callable[[int, int], None]) -> np.ndarray:
    import umap

    idx, dist = nearest_neighbours(Z, params.n_neighbors, include_self=True)
    reducer = umap.UMAP(n_neighbors=params.n_neighbors, min_dist=params.min_dist, metric="euclidean",
                        n_epochs=n_epochs, random_state=params.random_state, n_jobs=1, init="pca",
                        precomputed_knn=(idx, dist), verbose=False,
                        tqdm_kwds={"disable": False, "file": _EpochReader(epoch), "bar_format": "{n}/{total}",
                                   "mininterval": 0.2, "ascii": True})
    with warnings.catch_warnings():
        # "no search index: transform unavailable" (we never transform) and the single-thread notice
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        warnings.filterwarnings("ignore", message=".*not fully connected.*")
        return np.asarray(reducer.fit_transform(Z), dtype=np.float32)


def _tsne(Z: np.ndarray, params: ProjectionParams) -> np.ndarray:
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=_perplexity(params, len(Z)), init="pca", learning_rate="auto",
                random_state=params.random_state)
    return tsne.fit_transform(Z.astype(np.float32)).astype(np.float32)


# ---------------------------------------------------------------- the cache
def _store_dir() -> Path:
    return _config.home() / "projections"


def _umap_version() -> str:
    """umap-learn's version from its package metadata: importing umap (numba) takes seconds, and a cache lookup
    (the fast verdict's, a permalink's) should not pay them."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("umap-learn")
    except PackageNotFoundError:
        return "?"


def _cache_key(layer: str, params: ProjectionParams, Xs: np.ndarray, Xt: np.ndarray, ys: np.ndarray,
               yt: np.ndarray, rows_s: np.ndarray, rows_t: np.ndarray) -> str:
    import sklearn

    h = hashlib.blake2b(digest_size=20)
    for a in (Xs, Xt, rows_s, rows_t):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update("\x00".join(ys.tolist() + ["|"] + yt.tolist()).encode())
    return make_key(kind="projection", format=_FORMAT, layer=layer, params=asdict(params), data=h.hexdigest(),
                    umap=_umap_version(), sklearn=sklearn.__version__)


def _save(path: Path, p: Projection) -> None:
    atomic_write(path, lambda f: np.savez(f, coords=p.coords, domain=p.domain, rows=p.rows,
                                          labels=p.labels.astype(str), target_shares=p.mixing.target_shares,
                                          meta=np.array(json.dumps(p.summary()))))
    cache_limit.after_write(path)


def _load(path: Path) -> Projection | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return Projection(
                layer=meta["layer"], params=ProjectionParams(**meta["params"]), coords=z["coords"],
                domain=z["domain"], rows=z["rows"], labels=z["labels"],
                trustworthiness=meta["trustworthiness"], trust_neighbors=meta["trust_neighbors"],
                mixing=MixingResult.from_dict(meta["mixing"], z["target_shares"]),
                n_source_total=meta["n_source_total"], n_target_total=meta["n_target_total"],
                pca_variance=meta["pca_variance"], n_epochs=meta["n_epochs"], seconds=meta["seconds"],
                from_cache=True)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # unreadable entry: recompute and overwrite it
        return None
    finally:
        cache_limit.touch(path)  # its last use, for the cache's size limit


# ---------------------------------------------------------------- the public functions
def project(X_source: Any, X_target: Any, *, y_source: Sequence[str] | None = None,
            y_target: Sequence[str] | None = None, layer: str = "features",
            params: ProjectionParams = ProjectionParams(), mixing_neighbors: int = 10,
            trust_neighbors: int = 5, use_cache: bool = True, compute: bool = True,
            progress: ProgressFn | None = None) -> Projection | None:
    """A 2-D projection of pooled source and target embeddings, with trustworthiness and domain mixing.

    Args:
        X_source, X_target: Embeddings of one layer, (n_source, n_features) and (n_target, n_features).
        y_source, y_target: Class names per row ("" or None when unlabelled); used for the stratified
            sample, the per-class mixing and the colours.
        layer: The tap's name (recorded, and part of the cache key).
        params: See :class:`ProjectionParams`.
        mixing_neighbors: k of the k-NN mixing score.
        trust_neighbors: k of the trustworthiness (scikit-learn's default, 5).
        use_cache: Read from and write to ``$TLDIAG_HOME/projections``.
        compute: False: only read the cache, and return None when the projection is not in it.
        progress: ``progress(done, total, message)`` in percent.
    """
    params = params.validate()
    t_start = time.perf_counter()
    report = progress or (lambda done, total, message: None)
    # memory-mapped embeddings stay on disk: only the sampled rows are read (and checked)
    X_source = X_source if hasattr(X_source, "shape") else np.asarray(X_source)
    X_target = X_target if hasattr(X_target, "shape") else np.asarray(X_target)
    n_s_total, n_t_total = len(X_source), len(X_target)
    ys, yt = label_names(y_source, n_s_total, "y_source"), label_names(y_target, n_t_total, "y_target")
    rng = np.random.default_rng(params.random_state)
    rows_s = stratified_indices(ys, params.max_samples, rng)
    rows_t = stratified_indices(yt, params.max_samples, rng)
    Xs, Xt = check_pair(np.asarray(X_source[rows_s]), np.asarray(X_target[rows_t]), min_samples=1)
    n = len(Xs) + len(Xt)
    if n <= params.n_neighbors:
        raise TldiagError(f"n_neighbors={params.n_neighbors} needs more than {params.n_neighbors} images, but the "
                          f"sample has {n}; lower n_neighbors or use more images.")
    ys, yt = ys[rows_s], yt[rows_t]
    path = _store_dir() / f"{_cache_key(layer, params, Xs, Xt, ys, yt, rows_s, rows_t)}.npz"
    if use_cache:
        cached = _load(path)
        if cached is not None:
            report(100, 100, "from the cache")
            return cached
    if not compute:
        return None

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    X = _prepare(np.vstack([Xs, Xt]), params.metric)
    report(2, 100, "PCA")
    Z, pca_variance = _pca(X, 2 if params.method == "pca" else params.pca_components)
    seconds["pca"] = time.perf_counter() - t
    t = time.perf_counter()
    n_epochs = None
    if params.method == "umap":
        n_epochs = params.n_epochs or auto_epochs(n)
        report(5, 100, "nearest neighbours")

        def epoch(done: int, total: int) -> None:
            report(10 + int(75 * done / max(total, 1)), 100, f"UMAP layout, epoch {done}/{total}")
        coords = _umap(Z, params, n_epochs, epoch)
    elif params.method == "tsne":
        report(10, 100, f"t-SNE of {n:,} points (no progress reports until it finishes)")
        coords = _tsne(Z, params)
    else:
        coords = np.ascontiguousarray(Z[:, :2], dtype=np.float32)
    seconds["projection"] = time.perf_counter() - t

    t = time.perf_counter()
    report(86, 100, "trustworthiness")
    k_trust = int(min(trust_neighbors, max(1, (n - 1) // 2 - 1)))
    trust = trustworthiness(X, coords, n_neighbors=k_trust, metric="euclidean")  # X is unit-length for cosine
    seconds["trustworthiness"] = time.perf_counter() - t
    t = time.perf_counter()
    report(93, 100, "domain mixing")
    mixing = knn_mixing(Xs, Xt, y_source=ys, y_target=yt, n_neighbors=min(mixing_neighbors, n - 1),
                        metric=params.metric, random_state=params.random_state)
    seconds["mixing"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_start
    result = Projection(
        layer=layer, params=params, coords=coords, domain=np.repeat(np.array([SOURCE, TARGET], dtype=np.int8),
                                                                    [len(Xs), len(Xt)]),
        rows=np.concatenate([rows_s, rows_t]).astype(np.int64), labels=np.concatenate([ys, yt]),
        trustworthiness=float(trust), trust_neighbors=k_trust, mixing=mixing, n_source_total=n_s_total,
        n_target_total=n_t_total, pca_variance=pca_variance, n_epochs=n_epochs,
        seconds={k: round(v, 3) for k, v in seconds.items()})
    if use_cache:
        _save(path, result)
    report(100, 100, "done")
    return result


def project_pair(pair, layer: str, params: ProjectionParams = ProjectionParams(), **kwargs) -> Projection | None:
    """:func:`project` of one tap of an :class:`~tldiag.embed.EmbeddingPair`, labelled with class names."""
    if layer not in pair.source.features:
        raise TldiagError(f"Layer {layer!r} is not in these embeddings; choose one of "
                          f"{', '.join(pair.source.features)}.")
    return project(pair.source[layer], pair.target[layer],
                   y_source=_names(pair.source.labels, pair.source.classes),
                   y_target=_names(pair.target.labels, pair.target.classes), layer=layer, params=params, **kwargs)


def warm_up() -> float:
    """Compile umap-learn's numba code for this process on a tiny input (no cache, no scores); seconds taken.

    The first UMAP of a process otherwise pays this (about 15-30 s here) in front of a user; the dashboard
    calls it in a background thread when the server starts.
    """
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 8)).astype(np.float32)
    _umap(_prepare(X, "euclidean"), replace(ProjectionParams(), n_neighbors=5), 5, lambda done, total: None)
    return time.perf_counter() - t


def point_images(source, target, projection: Projection, points: Sequence[int] | None = None) -> list:
    """The images (PIL) of ``points`` of ``projection`` (all, in order, when None), from the source and target
    :class:`~tldiag.data.ImageDataset`."""
    points = range(len(projection.rows)) if points is None else points
    return [(source if projection.domain[k] == SOURCE else target)[int(projection.rows[k])] for k in points]


def thumbnail_images(source, target, projection: Projection, *, size: int = 40) -> list:
    """Small RGB thumbnails (PIL, longest side ``size``) of every point of ``projection``, in its order."""
    out = []
    for img in point_images(source, target, projection):
        img = img.convert("RGB")
        img.thumbnail((size, size))
        out.append(img)
    return out


__all__ = ["ProgressFn", "METHODS", "METHOD_NAMES", "DOMAINS", "auto_epochs", "ProjectionParams", "Projection",
           "stratified_indices", "project", "project_pair", "warm_up", "point_images", "thumbnail_images"]
