"""The small CNN: a from-scratch baseline sized for CPUs, trained by the data-efficiency experiment beside the
transfer arms (through the same loop, :func:`tldiag.training.loop.fit`)."""
from __future__ import annotations

import threading

import torch
from torch import nn

from ..models import LOGITS, PRE_LOGITS, Model, Preprocessing, Tap

__all__ = ["SmallCNN", "small_cnn"]


class SmallCNN(nn.Module):
    """Three blocks of two 3x3 convolutions (BatchNorm, ReLU) and a 2x2 max-pool, 16-32-64 channels, global average
    pooling and a linear classifier: about 73k parameters, a from-scratch baseline that trains at ~750 images per
    second on two CPU cores at 32x32 pixels."""

    def __init__(self, n_classes: int, width: int = 16):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                                 nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def _small_cnn_extract(module: nn.Module, x: torch.Tensor, wanted: frozenset[str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    h = x
    for i, block in enumerate(module.features):
        h = block(h)
        if f"features.{i}" in wanted:
            out[f"features.{i}"] = h.mean((2, 3))
    pooled = module.pool(h).flatten(1)
    if PRE_LOGITS in wanted:
        out[PRE_LOGITS] = pooled
    if LOGITS in wanted:
        out[LOGITS] = module.classifier(pooled)
    return out


def small_cnn(n_classes: int, *, resolution: int = 32, seed: int = 0) -> Model:
    """The small CNN baseline as a :class:`tldiag.models.Model` (random init from ``seed``; inputs scaled to
    [-1, 1] at ``resolution`` pixels)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = SmallCNN(n_classes).eval()
    width = module.classifier.in_features // 4
    blocks = tuple(Tap(f"features.{i}", f"block {i + 1} · {width * 2 ** i} channels", (i + 1) / 4, width * 2 ** i,
                       2 ** (i + 1)) for i in range(3))
    taps = blocks + (Tap(PRE_LOGITS, f"pre-logits · {4 * width}-d", 0.99, 4 * width),
                     Tap(LOGITS, f"logits · {n_classes} classes", 1.0, n_classes))
    prep = Preprocessing(resolution, resolution, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return Model(id="small-cnn", module=module, preprocessing=prep, taps=taps, weights_hash=f"random-init-seed{seed}",
                 num_classes=n_classes, backend="torchvision", pretrained=False, _extract=_small_cnn_extract,
                 lock=threading.RLock())
