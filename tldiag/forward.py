"""The forward pass over a dataset's images, shared by the embedding engine (:mod:`tldiag.embed`), the Ray engine
(:mod:`tldiag.distributed`) and training (:mod:`tldiag.training`): the evaluation transform (resize, centre-crop,
uint8), normalisation on the compute device, autocast, an out-of-memory-safe forward, the local pass over a
dataset, and the measured speed of a model (images per second, kept in ``$TLDIAG_HOME/throughput.json``).
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import _config
from .cache import atomic_write_text
from .data import ImageDataset
from .errors import UndecodableImage
from .models import Model, Preprocessing
from .progress import ProgressFn


_PIL_INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
                      "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


class ResizeCrop:
    """Resize the short side, centre-crop, and return a ``(3, H, W)`` uint8 tensor (picklable)."""

    def __init__(self, prep: Preprocessing):
        self.resize_size = prep.resize_size
        self.input_size = prep.input_size
        self.interpolation = _PIL_INTERPOLATION.get(prep.interpolation, Image.BILINEAR)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        # Same arithmetic as torchvision's Resize(int) + CenterCrop: the long side is truncated,
        # the crop offset rounded, so embeddings match the reference eval transforms.
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(self.resize_size * long / short)
        new = (self.resize_size, new_long) if w <= h else (new_long, self.resize_size)
        new = (max(new[0], self.input_size), max(new[1], self.input_size))
        left = int(round((new[0] - self.input_size) / 2.0))
        top = int(round((new[1] - self.input_size) / 2.0))
        size = self.input_size
        if new == (w, h):
            img = img.crop((left, top, left + size, top + size))
        else:
            # Resize only the pixels the crop keeps: the source box maps output pixel centres
            # exactly as resize-then-crop does (same scale, same filter support), for less work.
            sx, sy = w / new[0], h / new[1]
            img = img.resize((size, size), self.interpolation,
                             box=(left * sx, top * sy, (left + size) * sx, (top + size) * sy))
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


class _Images(torch.utils.data.Dataset):
    """The images of ``dataset`` (or of its rows ``indices``), each with its position in this list; an image that
    does not decode comes as ``(None, position, reason)`` (see :func:`collate_images`)."""

    def __init__(self, dataset: ImageDataset, transform: ResizeCrop, indices: Sequence[int] | None = None):
        self.dataset = dataset
        self.transform = transform
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str | None]:
        try:
            return self.transform(self.dataset[int(self.indices[i])]), i, None
        except UndecodableImage as exc:
            return None, i, exc.reason


def collate_images(items: Sequence[tuple[torch.Tensor | None, int, str | None]]
                   ) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]:
    """A batch of the images that decoded, their positions, and the ``(position, reason)`` of those that did not."""
    good = [(x, i) for x, i, _ in items if x is not None]
    failed = [(i, reason) for x, i, reason in items if x is None]
    batch = torch.stack([x for x, _ in good]) if good else None
    return batch, torch.tensor([i for _, i in good], dtype=torch.int64), failed


def normalise(batch: torch.Tensor, prep: Preprocessing, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 NCHW -> normalised float NCHW in channels_last memory format, on batch's device."""
    mean = torch.tensor(prep.mean, device=batch.device, dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(prep.std, device=batch.device, dtype=dtype).view(1, 3, 1, 1) * 255
    x = (batch.to(dtype) - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


def autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


class Forward:
    """Runs the model on a batch, halving the batch after a CUDA out-of-memory error."""

    def __init__(self, model: Model, taps: frozenset[str], device: torch.device, max_batch: int):
        self.model, self.taps, self.device, self.max_batch = model, taps, device, max_batch

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outs: list[dict[str, torch.Tensor]] = []
        start = 0
        while start < x.shape[0]:
            chunk = x[start:start + self.max_batch]
            try:
                with autocast(self.device):
                    out = self.model.extract(chunk, self.taps)
            except torch.cuda.OutOfMemoryError:
                if self.max_batch == 1:
                    raise
                torch.cuda.empty_cache()
                self.max_batch = max(1, self.max_batch // 2)
                continue
            outs.append({k: v.float() for k, v in out.items()})
            start += chunk.shape[0]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def default_num_workers() -> int:
    """Worker processes for decoding: leave the compute cores to torch, keep at least one."""
    cpus = _config.cpu_count()
    return max(1, min(8, cpus // 2))


@dataclass
class Pass:
    """What one pass of an engine over a dataset's images produced.

    Attributes:
        features: Tap -> ``(n_samples, n_features)`` float32 array, row ``i`` for position ``i`` (the arrays that
            ``allocate`` returned; rows of images that failed are left as they were).
        images_per_second: Images per second of the pass.
        failures: Position -> reason, for the images that did not decode.
    """

    features: dict[str, np.ndarray]
    images_per_second: float
    failures: dict[int, str]


Allocate = Callable[[str, int, int], np.ndarray]
"""``allocate(tap, n_samples, n_features)``: the float32 array an engine fills for one tap."""


def _in_memory(tap: str, rows: int, dim: int) -> np.ndarray:
    return np.empty((rows, dim), dtype=np.float32)


def compute_taps(model: Model, dataset: ImageDataset, taps: Sequence[str], *, batch_size: int,
                 device: str | None, num_workers: int | None, progress: ProgressFn | None,
                 offset: int, total: int, indices: Sequence[int] | None = None) -> tuple[dict[str, np.ndarray], float]:
    """Features of every image of ``dataset`` (or of its rows ``indices``, in that order) at ``taps``, not cached,
    and the images per second. An image that does not decode is an error here (:class:`UndecodableImage`): callers
    that read a verified dataset (:meth:`ImageDataset.verify`) never meet one."""
    done = local_pass(model, dataset, taps, allocate=_in_memory, batch_size=batch_size, device=device,
                      num_workers=num_workers, progress=progress, offset=offset, total=total, indices=indices)
    if done.failures:
        pos, reason = next(iter(done.failures.items()))
        rows = np.arange(len(dataset)) if indices is None else np.asarray(indices)
        raise UndecodableImage(dataset.sample_ids[int(rows[pos])], reason)
    return done.features, done.images_per_second


def local_pass(model: Model, dataset: ImageDataset, taps: Sequence[str], *, allocate: Allocate = _in_memory,
               batch_size: int = 64, device: str | None = None, num_workers: int | None = None,
               progress: ProgressFn | None = None, offset: int = 0, total: int | None = None,
               indices: Sequence[int] | None = None) -> Pass:
    """The local engine: one process, decoding in DataLoader workers, the model on this machine's device."""
    dev = torch.device(device or _config.device_name())
    with _on_device(model, dev):
        return _compute_locked(model, dataset, taps, dev, allocate=allocate, batch_size=batch_size,
                               num_workers=num_workers, progress=progress, offset=offset,
                               total=len(dataset) if total is None else total, indices=indices)


@contextmanager
def _on_device(model: Model, dev: torch.device) -> Iterator[nn.Module]:
    """The model's module on ``dev`` (channels_last, eval mode), under the model's lock; back on the CPU
    afterwards, also after an error."""
    with model.lock:
        try:
            yield model.module.to(dev).to(memory_format=torch.channels_last).eval()
        finally:
            model.module.to("cpu")


def _compute_locked(model: Model, dataset: ImageDataset, taps: Sequence[str], dev: torch.device, *,
                    allocate: Allocate, batch_size: int, num_workers: int | None, progress: ProgressFn | None,
                    offset: int, total: int, indices: Sequence[int] | None = None) -> Pass:
    images = _Images(dataset, ResizeCrop(model.preprocessing), indices)
    n = len(images)
    workers = default_num_workers() if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(
        images, batch_size=batch_size, shuffle=False, collate_fn=collate_images,
        num_workers=workers, pin_memory=dev.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if workers else None,
        worker_init_fn=_yield_to_compute if dev.type == "cpu" else None)
    forward = Forward(model, frozenset(taps), dev, batch_size)
    out: dict[str, np.ndarray] = {}
    failures: dict[int, str] = {}
    done = 0
    t_start = time.perf_counter()
    with torch.inference_mode():
        for batch, idx, failed in loader:
            failures.update(failed)
            if batch is not None:
                x = normalise(batch.to(dev, non_blocking=True), model.preprocessing)
                write_batch(out, forward(x), idx.numpy(), taps, n, allocate)
            done += len(idx) + len(failed)
            if progress:
                rate = done / max(time.perf_counter() - t_start, 1e-9)
                eta = (total - offset - done) / rate if rate else 0.0
                progress(offset + done, total, f"{rate:.0f} images/s, about {eta:.0f} s left")
    for t in taps:  # every image failed: nothing was allocated
        if t not in out:
            out[t] = allocate(t, n, 0)
    ips = n / max(time.perf_counter() - t_start, 1e-9)
    _record_throughput(model, dev.type, ips)
    return Pass(out, ips, failures)


def write_batch(out: dict[str, np.ndarray], result: Mapping[str, torch.Tensor | np.ndarray], positions: np.ndarray,
                taps: Sequence[str], n: int, allocate: Allocate) -> None:
    """Put one batch's features (tap -> ``(batch, n_features)``) at their positions, allocating a tap's array on its
    first batch."""
    for t in taps:
        value = result[t]
        arr = value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if t not in out:
            out[t] = allocate(t, n, arr.shape[1])
        out[t][positions] = arr


def _yield_to_compute(worker_id: int) -> None:
    """On CPU the forward pass is the critical path and decoding is prefetch: lower the workers'
    priority so they fill gaps instead of pre-empting torch's compute threads (a few % on 2 cores).
    Not on GPU, where the main process mostly waits and the workers are the critical path."""
    try:
        os.nice(5)
    except OSError:
        pass


def _throughput_file():
    return _config.home() / "throughput.json"


def _record_throughput(model: Model, device: str, ips: float) -> None:
    path = _throughput_file()
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        data = {}
    data[f"{model.id}|{model.preprocessing.input_size}|{device}"] = round(ips, 2)
    atomic_write_text(path, json.dumps(data, indent=1))


def estimate_seconds(model: Model, n_images: int, device: str | None = None) -> float | None:
    """Expected compute time from the last measured throughput of this model, or None."""
    dev = device or _config.device_name()
    try:
        data = json.loads(_throughput_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    ips = data.get(f"{model.id}|{model.preprocessing.input_size}|{dev.split(':')[0]}")
    return n_images / ips if ips else None


def measure_throughput(model: Model, *, batch_size: int = 32, batches: int = 5, device: str | None = None) -> float:
    """Images per second of a bare forward pass of ``model`` at its input size on ``device``: random input, two
    warm-up batches, then the median of ``batches`` timed ones (the inference speed a leaderboard compares,
    independent of data loading; shared machines make single timings noisy)."""
    dev = torch.device(device or _config.device_name())
    size = model.preprocessing.input_size
    x = torch.randn(batch_size, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    times = []
    with _on_device(model, dev) as module, torch.inference_mode(), autocast(dev):
        for i in range(batches + 2):
            t0 = time.perf_counter()
            module(x)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return batch_size / float(np.median(times))


__all__ = ["ResizeCrop", "collate_images", "normalise", "autocast", "Forward", "default_num_workers", "Pass",
           "Allocate", "compute_taps", "local_pass", "write_batch", "estimate_seconds", "measure_throughput"]
