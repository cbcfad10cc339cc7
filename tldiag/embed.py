"""The embedding engine: (model, dataset, taps) -> per-tap embedding matrices, computed once.

One forward pass per batch returns every requested tap (pooled to vectors) plus the logits.
Decoding and resizing run in DataLoader worker processes and hand over uint8 tensors; the main
process normalises on the compute device (channels_last; bf16/fp16 autocast on GPU). Results go to
the content-addressed :class:`~tldiag.cache.EmbeddingStore`, one entry per tap, keyed by model id,
weights hash, tap, preprocessing and dataset fingerprint.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from . import _config
from .audit import ANONYMOUS
from .cache import EmbeddingStore, EntryWriter, make_key
from .data import ImageDataset
from .errors import DatasetError
from .forward import Pass, local_pass
from .models import LOGITS, Model
from .progress import ProgressFn


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


def engine_name() -> str:
    """The embedding engine: ``ray`` when a Ray cluster is configured (``TLDIAG_RAY_ADDRESS``), else ``local``."""
    return "ray" if _config.ray_address() else "local"


def _ray_pass(*args, **kwargs) -> Pass:
    from .distributed import ray_embedding_pass

    return ray_embedding_pass(*args, **kwargs)


_ENGINES: dict[str, Callable[..., Pass]] = {"local": local_pass, "ray": _ray_pass}


def _manifest(model: Model, tap: str, dataset: ImageDataset, arr: np.ndarray, seconds: float,
              ips: float | None, engine: str = "local") -> dict:
    import platform

    import torchvision

    from ._version import __version__

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


__all__ = ["Embeddings", "EmbeddingPair", "entry_key", "stored_taps", "is_cached", "embed_dataset", "embed_pair",
           "engine_name"]
