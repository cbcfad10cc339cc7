"""Raw pixels as features: what the scratch baselines learn from and what the pixel reference of the
transferability scores reads (no pretraining)."""
from __future__ import annotations

import numpy as np

from .data import ImageDataset


PIXEL_SIZE = 16
"""The pixel baselines read each image downsampled to this many pixels a side (RGB, area-averaged)."""


def pixel_features(dataset: ImageDataset, rows: np.ndarray, size: int = PIXEL_SIZE) -> np.ndarray:
    """The raw pixels of some images as features: RGB, area-averaged down to ``size`` x ``size``, in [0, 1];
    shape ``(len(rows), 3 * size * size)``. What the pixel baselines learn from."""
    from PIL import Image

    out = np.empty((len(rows), 3 * size * size), dtype=np.float32)
    for i, r in enumerate(rows):
        img = dataset[int(r)].convert("RGB").resize((size, size), Image.BOX)
        out[i] = np.asarray(img, dtype=np.float32).reshape(-1) / 255.0
    return out


__all__ = ["PIXEL_SIZE", "pixel_features"]
