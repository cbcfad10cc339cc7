"""Label-keeping augmentations applied to a whole batch at once, on the training device.

Every trained arm (fine-tuning, the small CNN, the from-scratch twin) reads its images at the model's input size
(the evaluation transform, :class:`tldiag.forward.ResizeCrop`) and draws its augmentation here, per image but in one
tensor operation per batch: a random resized crop, a small rotation and, by policy, mirror images and right-angle
turns folded into one affine warp (``affine_grid`` + ``grid_sample``, the way GPU pipelines such as Kornia or DALI
do it), then brightness and contrast jitter. Per-image Python transforms (torchvision's on PIL images) cost about
0.7 ms an image on a CPU, as much as the small CNN's own training step; this costs a few milliseconds a batch.

The random numbers come from a ``torch.Generator`` the caller seeds, drawn on the CPU, so a run is the same on any
device and with any number of data-loading workers.

Policies (:data:`POLICIES`): ``none``; ``light``: crop of 80-100% of the area with aspect 0.9-1.1, rotation up to
10 degrees, brightness and contrast within 20%; ``flip``: ``light`` and a horizontal mirror half of the time;
``aerial``: ``flip``, a vertical mirror half of the time and a turn by a random multiple of 90 degrees.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POLICIES = ("none", "light", "flip", "aerial")
CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (0.9, 1.1)
MAX_ROTATION_DEG = 10.0
JITTER = 0.2  # brightness and contrast factors in [1 - JITTER, 1 + JITTER]
_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"Unknown augmentation policy {policy!r}; valid: {', '.join(POLICIES)}.")


def affine_params(n: int, policy: str, generator: torch.Generator) -> torch.Tensor:
    """``(n, 2, 3)`` sampling matrices (output to input coordinates in ``[-1, 1]``) of the policy's geometry."""
    _check_policy(policy)
    if policy == "none":  # the identity
        return torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64).expand(n, 2, 3).clone()
    u = torch.rand(n, 6, generator=generator, dtype=torch.float64)
    area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u[:, 0]
    log_ratio = math.log(CROP_RATIO[0]) + (math.log(CROP_RATIO[1]) - math.log(CROP_RATIO[0])) * u[:, 1]
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)  # crop width and height as fractions of the image
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (1 - w) * (2 * u[:, 2] - 1)  # crop centre, anywhere the crop stays inside the image
    cy = (1 - h) * (2 * u[:, 3] - 1)
    angle = math.radians(MAX_ROTATION_DEG) * (2 * u[:, 4] - 1)
    fx = torch.ones(n, dtype=torch.float64)
    fy = torch.ones(n, dtype=torch.float64)
    if policy in ("flip", "aerial"):
        fx = torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < 0.5, -fx, fx)
    if policy == "aerial":
        fy = torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < 0.5, -fy, fy)
        angle = angle + (math.pi / 2) * torch.randint(0, 4, (n,), generator=generator).to(torch.float64)
    # output pixel -> mirror -> undo the rotation -> into the crop box:  p_in = S R(-angle) F p_out + c
    cos, sin = angle.cos(), angle.sin()
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = w * cos * fx
    theta[:, 0, 1] = w * sin * fy
    theta[:, 1, 0] = -h * sin * fx
    theta[:, 1, 1] = h * cos * fy
    theta[:, 0, 2] = cx
    theta[:, 1, 2] = cy
    return theta


def augment_batch(x: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """Augment a ``(B, 3, H, W)`` uint8 (or 0-255 float) batch: each image gets its own draw of the policy.

    Returns a float32 batch in 0-255 on ``x``'s device (what :func:`tldiag.forward.normalise` takes); ``none``
    returns the images unchanged. Areas the rotation brings in from outside the image are black, as with
    torchvision's ``RandomRotation``."""
    _check_policy(policy)
    x = x.to(torch.float32)
    if policy == "none" or len(x) == 0:
        return x
    n = len(x)
    theta = affine_params(n, policy, generator).to(device=x.device, dtype=torch.float32)
    jitter = (1 - JITTER + 2 * JITTER * torch.rand(n, 2, generator=generator)).to(device=x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = (x * jitter[:, 0, None, None, None]).clamp_(0, 255)  # brightness
    gray = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    mean = (x * gray).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    c = jitter[:, 1, None, None, None]
    return (c * x + (1 - c) * mean).clamp_(0, 255)  # contrast


__all__ = ["CROP_RATIO", "CROP_SCALE", "JITTER", "MAX_ROTATION_DEG", "POLICIES", "affine_params", "augment_batch"]
