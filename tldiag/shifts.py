"""Graded, deterministic image corruptions (ImageNet-C style) used to simulate domain shift.

Each corruption takes a PIL RGB image, a severity 1..5 and a ``numpy.random.Generator``; the
dataset seeds that generator with ``(seed, index)`` so the same image always gets the same
corruption. Constants follow Hendrycks & Dietterich 2019 where they apply; sizes are relative to
the image so that 8x8 digits and 224 px photos shift alike.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps

Corruption = Callable[[Image.Image, int, np.random.Generator], Image.Image]


def _from_float(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), mode="RGB")


def _background(img: Image.Image) -> tuple[int, int, int]:
    """The most common corner colour: what a rotation should fill the corners with."""
    w, h = img.size
    corners = [img.getpixel((x, y)) for x in (0, w - 1) for y in (0, h - 1)]
    return max(set(corners), key=corners.count)


def rotate(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    degrees = (10, 20, 30, 45, 60)[severity - 1]
    angle = float(rng.uniform(0.5, 1.0) * degrees * rng.choice([-1, 1]))
    return img.rotate(angle, resample=Image.BILINEAR, fillcolor=_background(img))


def blur(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    radius = (0.4, 0.6, 0.8, 1.1, 1.5)[severity - 1] * max(min(img.size) / 32, 0.25)
    return img.filter(ImageFilter.GaussianBlur(radius))


def noise(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1] * 255
    arr = np.asarray(img, dtype=np.float32)
    return _from_float(arr + rng.normal(0.0, sigma, size=arr.shape))


def contrast(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    arr = np.asarray(img, dtype=np.float32)
    mean = arr.mean(axis=(0, 1), keepdims=True)
    return _from_float((arr - mean) * c + mean)


def brightness(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1] * 255
    return _from_float(np.asarray(img, dtype=np.float32) + c)


def invert(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Inverts a share severity/5 of the images (all of them at severity 5)."""
    return ImageOps.invert(img) if rng.random() < severity / 5 else img


def pixelate(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    c = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
    w, h = img.size
    small = img.resize((max(1, round(w * c)), max(1, round(h * c))), Image.BOX)
    return small.resize((w, h), Image.NEAREST)


def jpeg(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    import io

    quality = (25, 18, 15, 10, 7)[severity - 1]
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


CORRUPTIONS: dict[str, Corruption] = {
    "rotate": rotate,
    "blur": blur,
    "noise": noise,
    "contrast": contrast,
    "brightness": brightness,
    "invert": invert,
    "pixelate": pixelate,
    "jpeg": jpeg,
}


def apply_shift(img: Image.Image, shift: str, severity: int, *, seed: int, index: int) -> Image.Image:
    """Apply corruption ``shift`` at ``severity`` to image number ``index``, deterministically."""
    rng = np.random.default_rng([seed, index, sorted(CORRUPTIONS).index(shift)])
    return CORRUPTIONS[shift](img, severity, rng)


__all__ = ["Corruption", "rotate", "blur", "noise", "contrast", "brightness", "invert", "pixelate", "jpeg",
           "CORRUPTIONS", "apply_shift"]
