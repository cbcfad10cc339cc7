"""Labels checked for a task and split into train, validation and test, stratified by class: what probes, the
source model, training and the demo share (low in the layer order, so none of them imports another for it)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import DatasetError, TldiagError
from .validation import RandomState, rng_from


MIN_PER_CLASS = 3  # one image each for train, validation and test


# ----------------------------------------------------------------------------- the sweep
def check_labels(labels: object, n: int, *, what: str = "target", task: str = "a probe"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Class indices of ``n`` rows (-1 = unlabelled) checked for ``task``: the labelled rows and their labels.

    Raises a clear error when no row, or only one class, is labelled.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise TldiagError(f"The {what} labels must be one class index per image, but there are {y.shape} labels "
                          f"for {n} images.")
    if not np.issubdtype(y.dtype, np.integer):
        raise TldiagError(f"The {what} labels must be class indices (integers, -1 = unlabelled), got dtype {y.dtype}; "
                          "map class names to indices first, e.g. np.unique(names, return_inverse=True)[1].")
    rows = np.flatnonzero(y >= 0)
    if len(rows) == 0:
        raise DatasetError(f"None of the {n} {what} images has a label, and {task} needs labels. Use a labelled "
                           "dataset (a folder with one sub-folder per class, or a torchvision dataset).")
    return rows, y[rows]


def check_class_sizes(y: np.ndarray, classes: Sequence[str], what: str, task: str = "a probe") -> None:
    """Refuse labels that ``task`` cannot split into train, validation and test: a single class, or a class with
    fewer than :data:`MIN_PER_CLASS` images."""
    present, counts = np.unique(y, return_counts=True)
    name = {i: (classes[i] if i < len(classes) else str(i)) for i in present}
    if len(present) < 2:
        raise DatasetError(f"The {what} has a single labelled class ({name[present[0]]!r}); {task} needs at least two "
                           "classes. Choose a dataset with more classes.")
    small = [(name[c], k) for c, k in zip(present, counts) if k < MIN_PER_CLASS]
    if small:
        listed = ", ".join(f"{c!r} ({k})" for c, k in small[:10])
        raise DatasetError(f"Some {what} classes have fewer than {MIN_PER_CLASS} labelled images: {listed}. "
                           f"{task[0].upper() + task[1:]} needs at least {MIN_PER_CLASS} per class (one each for train, "
                           "validation and test); add images, raise the per-class limit, or drop those classes.")


def stratified_splits(y: np.ndarray, n_splits: int, *, val_size: float = 0.2, test_size: float = 0.2,
                      random_state: RandomState = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``n_splits`` random (train, validation, test) index triples, stratified by class.

    Each class gives ``round(test_size * n_c)`` test and ``round(val_size * n_c)`` validation images (at least
    one each) and the rest to train, so every split has the same sizes.
    """
    rng = rng_from(random_state)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    out = []
    for _ in range(n_splits):
        parts: list[list[np.ndarray]] = [[], [], []]
        for idx in by_class:
            perm = rng.permutation(idx)
            n_test = max(1, int(round(test_size * len(idx))))
            n_val = max(1, int(round(val_size * len(idx))))
            parts[2].append(perm[:n_test])
            parts[1].append(perm[n_test:n_test + n_val])
            parts[0].append(perm[n_test + n_val:])
        out.append(tuple(np.sort(np.concatenate(p)) for p in parts))
    return out


__all__ = ["MIN_PER_CLASS", "check_labels", "check_class_sizes", "stratified_splits"]
