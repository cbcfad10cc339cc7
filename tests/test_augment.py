"""The batched augmentations: what each policy does to the geometry and the colours, per image, reproducibly."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tldiag.training.augment import CROP_SCALE, JITTER, MAX_ROTATION_DEG, affine_params, augment_batch
from tldiag.data import load_dataset
from tldiag.forward import ResizeCrop
from tldiag.models import Preprocessing


def digits(n: int = 16, size: int = 32) -> torch.Tensor:
    ds = load_dataset("demo:digits?limit=2")
    prep = Preprocessing(size, size, "bilinear", (0.5,) * 3, (0.5,) * 3)
    return torch.stack([ResizeCrop(prep)(ds[i % len(ds)]) for i in range(n)])


def test_none_is_the_identity_and_light_changes_every_image_differently():
    x = digits()
    assert torch.equal(augment_batch(x, "none", torch.Generator().manual_seed(0)), x.float())
    out = augment_batch(x, "light", torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 255
    diff = (out - x.float()).abs().flatten(1).mean(1)
    assert (diff > 0.5).all()  # every image moved
    same = x[:1].expand(8, -1, -1, -1)  # one image eight times: eight different draws
    outs = augment_batch(same, "light", torch.Generator().manual_seed(1))
    assert len({tuple(o.flatten()[::37].round().tolist()) for o in outs}) == 8
    corr = [np.corrcoef(o.flatten(), i.float().flatten())[0, 1] for o, i in zip(out, x)]
    assert min(corr) > 0.6  # still the same digit: a mild warp, not noise


def test_the_same_seed_gives_the_same_batch_on_any_call():
    x = digits(8)
    a = augment_batch(x, "aerial", torch.Generator().manual_seed(3))
    b = augment_batch(x, "aerial", torch.Generator().manual_seed(3))
    c = augment_batch(x, "aerial", torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_geometry_stays_within_the_policy():
    theta = affine_params(4000, "light", torch.Generator().manual_seed(0))
    lin = theta[:, :, :2]
    det = torch.linalg.det(lin)  # the crop's area share (rotation keeps areas)
    assert det.min() >= CROP_SCALE[0] - 1e-9 and det.max() <= CROP_SCALE[1] + 1e-9
    angle = torch.atan2(-lin[:, 1, 0], lin[:, 1, 1])
    assert angle.abs().max() <= math.radians(MAX_ROTATION_DEG) + 1e-9 and angle.abs().max() > math.radians(9)
    assert (det > 0).all()  # light never mirrors
    flips = torch.linalg.det(affine_params(4000, "flip", torch.Generator().manual_seed(0))[:, :, :2]) < 0
    assert 0.45 < flips.double().mean() < 0.55  # a mirror image half of the time
    # the crop never leaves the image: every corner of the output maps inside [-1, 1]
    corners = torch.tensor([[-1.0, -1, 1], [1, -1, 1], [-1, 1, 1], [1, 1, 1]], dtype=torch.float64)
    inside = torch.einsum("nij,cj->nci", affine_params(4000, "light", torch.Generator().manual_seed(2)), corners)
    # a rotated crop may reach past the box by the rotation's corner overhang only
    assert inside.abs().max() <= 1 + math.sin(math.radians(MAX_ROTATION_DEG)) + 1e-9


def test_mirror_policies_mirror_and_light_keeps_handedness():
    x = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    x[..., :, :8] = 255  # a bright band on the left
    left = lambda out: (out[..., :16].mean(dim=(1, 2, 3)) > out[..., 16:].mean(dim=(1, 2, 3)))  # noqa: E731
    batch = x.expand(200, -1, -1, -1)
    assert left(augment_batch(batch, "light", torch.Generator().manual_seed(0))).all()
    share = left(augment_batch(batch, "flip", torch.Generator().manual_seed(0))).double().mean()
    assert 0.35 < share < 0.65


def test_brightness_and_contrast_jitter_stay_in_range():
    x = torch.full((500, 3, 8, 8), 100, dtype=torch.uint8)
    out = augment_batch(x, "light", torch.Generator().manual_seed(0))
    centre = out[..., 3:5, 3:5].mean(dim=(1, 2, 3))  # away from the black borders a rotation brings in
    assert centre.min() >= 100 * (1 - JITTER) - 1 and centre.max() <= 100 * (1 + JITTER) + 1
    assert centre.std() > 5


def test_an_unknown_policy_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown augmentation policy 'mixup'; valid: none, light, flip, aerial"):
        augment_batch(digits(2), "mixup", torch.Generator())
