"""Argument checks shared by every module: each error names the bad value and the fix.

Numbers and integers (:func:`check_int`, :func:`check_number`), feature matrices (:func:`check_features`,
:func:`check_pair`), labels (:func:`label_names`), seeds (:func:`rng_from`), dataset specs and devices of a job
configuration (:func:`check_specs`, :func:`check_device`). Checks of one module's own vocabulary (a strategy name,
a metric name) stay in that module.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import SpecError, TldiagError

__all__ = ["RandomState", "check_device", "check_features", "check_int", "check_number", "check_pair", "check_specs",
           "label_names", "metric_device", "rng_from", "subsample", "subsample_indices", "unit_rows", "take_rows", "rows_of", "stratified_indices"]

RandomState = int | np.random.Generator | None


def check_features(X: Any, name: str, *, min_samples: int = 2) -> np.ndarray:
    """``X`` as a finite float64 array of shape (n_samples, n_features), or a clear error."""
    if hasattr(X, "detach"):  # a torch tensor
        X = X.detach().cpu().numpy()
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TldiagError(f"{name} must be a numeric array of shape (n_samples, n_features); "
                          f"converting it failed: {exc}") from None
    if X.ndim != 2:
        fix = ("use X.reshape(-1, 1) for a single feature" if X.ndim == 1
               else "flatten or pool the other axes, e.g. X.reshape(len(X), -1)")
        raise TldiagError(f"{name} must have shape (n_samples, n_features), got shape {X.shape}; {fix}.")
    if X.shape[1] == 0:
        raise TldiagError(f"{name} has no features (shape {X.shape}); pass at least one feature column.")
    if len(X) < min_samples:
        raise TldiagError(f"{name} has {len(X)} sample(s); this needs at least {min_samples} per domain. "
                          "Use more images (raise the per-class limit) or another dataset.")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise TldiagError(f"{name} contains {int(bad.sum())} NaN/inf value(s) in {len(rows)} row(s) "
                          f"(first at row {int(rows[0])}); drop or impute those rows first.")
    return X


def check_pair(X_source: Any, X_target: Any, *, min_samples: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Both domains checked, with the same number of features."""
    X_source = check_features(X_source, "X_source", min_samples=min_samples)
    X_target = check_features(X_target, "X_target", min_samples=min_samples)
    if X_source.shape[1] != X_target.shape[1]:
        raise TldiagError(f"X_source and X_target must have the same number of features, got "
                          f"{X_source.shape[1]} and {X_target.shape[1]}. Did you extract them from different layers?")
    return X_source, X_target


def check_int(value: Any, name: str, *, minimum: int, maximum: int | None = None, allow_none: bool = False,
              hint: str = "") -> None:
    """A clear error unless ``value`` is an integer from ``minimum`` (to ``maximum`` when given), or None when
    allowed; ``hint`` is appended to the message, e.g. "(1000 is usual)". A bounded setting of a job
    configuration raises :class:`SpecError` ("epochs=0 must be a whole number from 1 to 10000.")."""
    if value is None and allow_none:
        return
    is_int = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if maximum is not None:
        if not is_int or not minimum <= value <= maximum:
            raise SpecError(f"{name}={value!r} must be a whole number from {minimum} to {maximum}"
                            + (f" {hint}." if hint else "."))
        return
    if not is_int or value < minimum:
        bound = f">= {minimum}" + (" or None" if allow_none else "")
        raise TldiagError(f"{name} must be an integer {bound}, got {value!r}" + (f" {hint}." if hint else "."))


def check_number(value: object, name: str, *, low: float, high: float, low_open: bool = False,
                 high_open: bool = False, fix: str = "") -> None:
    """A clear error unless ``value`` is a finite number in the interval from ``low`` to ``high`` (open at an end
    when ``low_open`` / ``high_open``); ``fix`` says what to use instead."""
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
        and math.isfinite(float(value))
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise SpecError(f"{name}={value!r} must be a number in {span}" + (f"; {fix}." if fix else "."))


def check_specs(target: str, source: str | None, device: str | None) -> None:
    """A job configuration's dataset specs and device, checked without opening anything."""
    from .data import parse_dataset_spec

    parse_dataset_spec(target)
    if source:
        parse_dataset_spec(source)
    if device is not None:
        check_device(device)


def check_device(device: str) -> None:
    """A clear error unless ``device`` names a torch device that exists here (cpu, cuda, cuda:N, mps)."""
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise SpecError(f"device={device!r} is not a device; use cpu, cuda, cuda:N or mps.")
    import torch

    if kind == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"device={device!r} but no CUDA GPU is visible to torch; use cpu.")


def label_names(y: Any, n: int, name: str) -> np.ndarray:
    """Class names of ``n`` rows as strings ("" = unlabelled, also for None), or a clear error when the length
    is wrong; ``y=None`` means no row is labelled."""
    if y is None:
        return np.full(n, "", dtype=str)
    if len(y) != n:
        raise TldiagError(f"{name} must have one label per row, but it has {len(y)} labels for {n} rows.")
    return np.asarray(["" if v is None else str(v) for v in y], dtype=str)


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, for the cosine metric; an all-zero row has no direction, so it is an error
    naming the row (not a silent zero, as in the seed scale's ``l2_normalise``)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if (norms == 0).any():
        raise TldiagError(f"Row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros, which has no cosine distance; "
                          "use metric='euclidean' or drop the all-zero rows.")
    return X / norms


def rng_from(random_state: RandomState) -> np.random.Generator:
    """A numpy Generator from a seed, an existing Generator, or None (fresh entropy)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is not None and not isinstance(random_state, (int, np.integer)):
        raise TldiagError(f"random_state must be an int, a numpy Generator or None, got {random_state!r}.")
    return np.random.default_rng(random_state)


def subsample_indices(n: int, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``max_samples`` of n rows, drawn without replacement (all rows otherwise)."""
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_samples, replace=False))


def subsample(X: np.ndarray, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_samples`` rows of X drawn without replacement (all rows, in order, otherwise)."""
    return X[subsample_indices(len(X), max_samples, rng)]


def rows_of(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array-like, read before anything is converted: of a memory-mapped embedding of any size
    only those rows are read into memory."""
    if not hasattr(X, "shape") or not hasattr(X, "__getitem__"):
        X = np.asarray(X)
    return X if len(idx) == len(X) and not isinstance(X, np.memmap) else X[idx]


def take_rows(X: Any, max_samples: int | None, rng: np.random.Generator) -> tuple[Any, int]:
    """At most ``max_samples`` rows of ``X`` (drawn as :func:`subsample` draws them, see :func:`rows_of`) and how
    many rows it had."""
    n = len(X)
    return rows_of(X, subsample_indices(n, max_samples, rng)), n


def stratified_indices(labels: Any, max_samples: int | None, random_state: Any = None) -> np.ndarray:
    """Sorted indices of at most ``max_samples`` rows, each class (and the unlabelled) kept in proportion
    (largest-remainder rounding), drawn without replacement; all rows when there are not more."""
    labels = np.asarray(labels)
    n = len(labels)
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    rng = rng_from(random_state)
    groups, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(groups))
    exact = counts * max_samples / n
    quota = np.floor(exact).astype(int)
    order = np.lexsort((np.arange(len(groups)), -(exact - quota)))  # largest remainder, ties by class order
    quota[order[:max_samples - quota.sum()]] += 1
    picked = [rng.choice(np.flatnonzero(inverse == g), size=q, replace=False) for g, q in enumerate(quota) if q]
    return np.sort(np.concatenate(picked))


def metric_device(device: str | None):
    """The torch device for a metric: the given one, else tldiag's default; MPS has no float64, so CPU."""
    import torch

    from ._config import device_name

    dev = torch.device(device or device_name())
    return torch.device("cpu") if dev.type == "mps" else dev
