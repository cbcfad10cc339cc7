"""The embedding engine: (model, dataset, taps) -> per-tap embedding matrices, computed once.

One forward pass per batch returns every requested tap (pooled to vectors) plus the logits.
Decoding and resizing run in DataLoader worker processes and hand over uint8 tensors; the main
process normalises on the compute device (channels_last; bf16/fp16 autocast on GPU). Results go to
the content-addressed :class:`~tldiag.cache.EmbeddingStore`, one entry per tap, keyed by model id,
weights hash, tap, preprocessing and dataset fingerprint.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import _config
from .audit import ANONYMOUS
from .cache import EmbeddingStore, EntryWriter, atomic_write_text, make_key
from .data import ImageDataset
from .errors import DatasetError, UndecodableImage
from .models import LOGITS, Model, Preprocessing

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, message)``: images done out of total, and a short status line."""

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


@dataclass(frozen=True)
class Embeddings:
    """Per-tap embeddings of one dataset.

    Attributes:
        features: Tap name -> ``(n_samples, n_features)`` float32 array (memory-mapped when cached).
        labels: ``(n_samples,)`` class indices, -1 when unlabelled.
        classes: Class names for the labels.
        sample_ids: Identifier of each row (file path or ``name[index]``).
        cache_hits: Tap name -> whether it came from the cache.
        seconds: Wall time of this call.
        images_per_second: Throughput of the forward passes, when something was computed.
        skipped: Images of the dataset left out because they did not decode (sample id -> reason), found by this
            call or an earlier one.
        engine: What computed them: ``local``, ``ray`` (or ``cache`` when everything was read).
    """

    model_id: str
    dataset: str
    fingerprint: str
    features: Mapping[str, np.ndarray]
    labels: np.ndarray
    classes: tuple[str, ...]
    sample_ids: tuple[str, ...]
    cache_hits: Mapping[str, bool]
    seconds: float
    images_per_second: float | None = None
    skipped: Mapping[str, str] = field(default_factory=dict)
    engine: str = "cache"

    @property
    def taps(self) -> list[str]:
        return list(self.features)

    def __getitem__(self, tap: str) -> np.ndarray:
        return self.features[tap]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class EmbeddingPair:
    """Source and target embeddings of the same model and taps."""

    source: Embeddings
    target: Embeddings
    taps: tuple[str, ...]


def entry_key(model: Model, tap: str, dataset: ImageDataset) -> str:
    return make_key(model=model.id, weights=model.weights_hash, tap=tap,
                    preprocessing=model.preprocessing.key(), dataset=dataset.fingerprint)


def stored_taps(model: Model, taps: Sequence[str]) -> list[str]:
    """The taps an embedding call computes and stores: ``taps``, plus the logits when the model has a head."""
    return list(dict.fromkeys([*taps, *([LOGITS] if model.num_classes else [])]))


def is_cached(model: Model, dataset: ImageDataset, taps: Sequence[str] | None = None,
              store: EmbeddingStore | None = None) -> bool:
    """Whether :func:`embed_dataset` would read everything from the cache (no forward pass)."""
    store = store or EmbeddingStore()
    taps = list(taps) if taps is not None else model.default_taps()
    return all(entry_key(model, t, dataset) in store for t in stored_taps(model, taps))


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


def embed_dataset(model: Model, dataset: ImageDataset, taps: Sequence[str] | None = None, *,
                  batch_size: int = 64, device: str | None = None, num_workers: int | None = None,
                  progress: ProgressFn | None = None, use_cache: bool = True,
                  store: EmbeddingStore | None = None, requested_by: str | None = None,
                  _progress_offset: int = 0, _progress_total: int | None = None) -> Embeddings:
    """Embeddings of every image of ``dataset`` at ``taps`` (default: the model's default taps).

    Taps already in the cache are read (memory-mapped); the others are computed in one pass over
    the data and stored. The logits are always computed alongside when the model has a classifier.

    Args:
        model: A model from :func:`tldiag.models.load_model`.
        dataset: A dataset from :func:`tldiag.data.load_dataset`.
        taps: Tap names (see ``model.tap_names``).
        batch_size: Images per forward pass (halved automatically after a CUDA OOM).
        device: Torch device string; ``TLDIAG_DEVICE`` or the best available when None.
        num_workers: DataLoader worker processes; see :func:`default_num_workers`.
        progress: Called as ``progress(done, total, message)`` after each batch.
        use_cache: Read from and write to the store.
        requested_by: Who asked for them (the signed-in user; "local user" when None), kept in the manifests.

    Writers of the same dataset and model serialise on a lock of the store: one computes, and the others wait,
    their ``progress`` following the one who computes (its message starts with "another session is computing"),
    then read its entries.
    """
    t0 = time.perf_counter()
    taps = list(taps) if taps is not None else model.default_taps()
    if not taps:
        raise ValueError(f"No taps requested; choose from {', '.join(model.tap_names)}.")
    for t in taps:
        model.tap(t)  # validates
    wanted = stored_taps(model, taps)
    store = store or EmbeddingStore()
    keys = {t: entry_key(model, t, dataset) for t in wanted}
    n = len(dataset)
    total = _progress_total if _progress_total is not None else n

    def read_cached() -> dict[str, np.ndarray]:
        found = {}
        for t in wanted:
            entry = store.get(keys[t]) if use_cache else None
            if entry is not None and entry.features.shape[0] == n:
                found[t] = entry.features
        return found

    features = read_cached()
    hits = {t: t in features for t in wanted}
    ips, engine = None, "cache"
    if len(features) < len(wanted):
        lock_name = make_key(model=model.id, weights=model.weights_hash, prep=model.preprocessing.key(),
                             dataset=dataset.fingerprint)
        user = requested_by or ANONYMOUS
        with store.lock(lock_name, waiting=_follow(progress, _progress_offset, total)):
            if dataset.refresh():  # another process found undecodable images meanwhile: fewer rows, new keys
                keys, n = {t: entry_key(model, t, dataset) for t in wanted}, len(dataset)
            features = read_cached()  # another process may have finished them meanwhile
            hits = {t: t in features for t in wanted}
            missing = [t for t in wanted if t not in features]
            if missing:
                writers: dict[str, EntryWriter] = {}

                def allocate(tap: str, rows: int, dim: int) -> np.ndarray:
                    if not use_cache:
                        return np.empty((rows, dim), dtype=np.float32)
                    writers[tap] = store.writer(keys[tap])
                    return writers[tap].allocate(rows, dim)

                try:
                    engine = engine_name()
                    done = _ENGINES[engine](model, dataset, missing, allocate=allocate, batch_size=batch_size,
                                            device=device, num_workers=num_workers,
                                            progress=_shared(progress, store, lock_name, user, _progress_offset, n),
                                            offset=_progress_offset, total=total)
                    ips = done.images_per_second

                    def manifest(t: str, arr: np.ndarray) -> dict:
                        return {**_manifest(model, t, dataset, arr, time.perf_counter() - t0, ips, engine),
                                "requested_by": user}

                    if done.failures:
                        features = _without_failures(model, dataset, store, wanted, {**features, **done.features},
                                                     done.failures, manifest, use_cache=use_cache)
                        hits = {t: False for t in wanted}
                    else:
                        for t in missing:
                            features[t] = _commit(store, writers.get(t), keys[t], done.features[t], dataset.labels,
                                                  manifest(t, done.features[t]))
                finally:
                    for w in writers.values():
                        w.abort()
                dataset.mark_verified()  # every image was decoded once: training will not meet a damaged file
    if progress:
        progress(_progress_offset + len(dataset), total, "cached" if all(hits.values()) else "done")
    ordered = {t: features[t] for t in wanted}
    return Embeddings(model_id=model.id, dataset=dataset.spec, fingerprint=dataset.fingerprint,
                      features=ordered, labels=np.asarray(dataset.labels), classes=tuple(dataset.classes),
                      sample_ids=tuple(dataset.sample_ids), cache_hits=hits,
                      seconds=time.perf_counter() - t0, images_per_second=ips, skipped=dataset.undecodable,
                      engine=engine)


def _commit(store: EmbeddingStore, writer: EntryWriter | None, key: str, arr: np.ndarray, labels: np.ndarray,
            manifest: dict) -> np.ndarray:
    """Put a written entry in place and return its features read back memory-mapped (``arr`` itself without a
    writer, or when the size limit evicted the entry at once)."""
    if writer is None:
        return arr
    # mapped before the rename, not read: it stays valid even if a tiny size limit evicts the entry at once
    mapped = np.load(writer.tmp / "features.npy", mmap_mode="r")
    writer.commit(labels, manifest)
    entry = store.get(key)
    return entry.features if entry is not None else mapped


def _without_failures(model: Model, dataset: ImageDataset, store: EmbeddingStore, taps: Sequence[str],
                      arrays: Mapping[str, np.ndarray], failures: Mapping[int, str], manifest: Callable,
                      *, use_cache: bool, chunk: int = 4096) -> dict[str, np.ndarray]:
    """After a pass that met images that do not decode: drop them from the dataset (its fingerprint changes), and
    store each tap's rows of the others under the new keys, copied a chunk at a time."""
    keep = np.ones(len(dataset), dtype=bool)
    keep[np.fromiter(failures, dtype=np.int64)] = False
    kept = np.flatnonzero(keep)
    if len(kept) == 0:
        first = next(iter(failures.items()))
        raise DatasetError(f"None of the {len(dataset)} images of '{dataset.spec}' could be decoded (first: "
                           f"{dataset.sample_ids[first[0]]}: {first[1]}). Check that the files are images.")
    dataset.drop_undecodable(dict(failures))
    out: dict[str, np.ndarray] = {}
    for t in taps:
        src = arrays[t]
        if not use_cache:
            out[t] = np.asarray(src)[kept]
            continue
        writer = store.writer(entry_key(model, t, dataset))
        try:
            dst = writer.allocate(len(kept), src.shape[1])
            for s in range(0, len(kept), chunk):
                dst[np.arange(s, min(s + chunk, len(kept)))] = src[kept[s:s + chunk]]
            out[t] = _commit(store, writer, writer.key, dst, dataset.labels, manifest(t, dst))
        finally:
            writer.abort()
    return out


def _shared(progress: ProgressFn | None, store: EmbeddingStore, lock_name: str, user: str, offset: int,
            n: int) -> ProgressFn:
    """``progress``, also written for the writers waiting on the lock (at most about twice a second)."""
    last = [0.0]

    def report(done: int, total: int, message: str) -> None:
        if progress:
            progress(done, total, message)
        now = time.monotonic()
        if now - last[0] >= 0.5 or done - offset >= n:
            last[0] = now
            store.report_progress(lock_name, done - offset, n, message, by=user)
    return report


def _follow(progress: ProgressFn | None, offset: int, total: int):
    """The lock's ``waiting`` callback: ``progress`` follows the writer this caller waits for."""
    if progress is None:
        return None

    def waiting(other: dict | None) -> None:
        done = int(other["done"]) if other else 0
        by = f" ({other['by']})" if other and other.get("by") else ""
        status = f"{other['message']}" if other else "starting"
        progress(offset + done, total, f"another session is computing these embeddings{by}: {status}")
    return waiting


def embed_pair(model: Model, source: ImageDataset, target: ImageDataset, taps: Sequence[str] | None = None,
               *, progress: ProgressFn | None = None, **kwargs) -> EmbeddingPair:
    """Embeddings of a source and a target dataset with one progress scale over both."""
    total = len(source) + len(target)
    src = embed_dataset(model, source, taps, progress=progress, _progress_total=total, **kwargs)
    tgt = embed_dataset(model, target, taps, progress=progress, _progress_offset=len(source),
                        _progress_total=total, **kwargs)
    return EmbeddingPair(src, tgt, tuple(taps or model.default_taps()))


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


def engine_name() -> str:
    """The embedding engine: ``ray`` when a Ray cluster is configured (``TLDIAG_RAY_ADDRESS``), else ``local``."""
    return "ray" if _config.ray_address() else "local"


def _ray_pass(*args, **kwargs) -> Pass:
    from .scale import ray_embedding_pass

    return ray_embedding_pass(*args, **kwargs)


_ENGINES: dict[str, Callable[..., Pass]] = {"local": local_pass, "ray": _ray_pass}


def _yield_to_compute(worker_id: int) -> None:
    """On CPU the forward pass is the critical path and decoding is prefetch: lower the workers'
    priority so they fill gaps instead of pre-empting torch's compute threads (a few % on 2 cores).
    Not on GPU, where the main process mostly waits and the workers are the critical path."""
    try:
        os.nice(5)
    except OSError:
        pass


def _manifest(model: Model, tap: str, dataset: ImageDataset, arr: np.ndarray, seconds: float,
              ips: float | None, engine: str = "local") -> dict:
    import platform

    import torchvision

    from . import __version__

    return {
        "model": model.id, "weights_hash": model.weights_hash, "tap": tap,
        "preprocessing": json.loads(model.preprocessing.key()),
        "dataset": dataset.spec, "fingerprint": dataset.fingerprint, "shape": list(arr.shape),
        "classes": list(dataset.classes), "sample_ids": list(dataset.sample_ids),
        "seconds": round(seconds, 3), "images_per_second": round(ips, 1) if ips else None, "engine": engine,
        "skipped": [{"path": f.path, "reason": f.reason} for f in dataset.skipped],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"tldiag": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }


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


__all__ = ["ProgressFn", "ResizeCrop", "normalise", "Embeddings", "EmbeddingPair", "entry_key", "stored_taps",
           "is_cached", "autocast", "default_num_workers", "embed_dataset", "embed_pair", "compute_taps",
           "Forward", "Pass", "Allocate", "local_pass", "write_batch", "collate_images", "engine_name",
           "estimate_seconds", "measure_throughput"]
