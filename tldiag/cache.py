"""Content-addressed on-disk store of embedding arrays, safe against killed and concurrent writers.

An entry is a folder ``$TLDIAG_HOME/embeddings/<key[:2]>/<key>/`` holding ``features.npy``
(float32, opened memory-mapped), ``labels.npy`` and ``manifest.json``. Entries are written into a
temporary folder and renamed into place in one step, so a reader sees a whole entry or none; a
writer killed half-way leaves only a temporary folder, removed by the next writer. Writers of the
same entries serialise on a file lock and re-check the store after taking it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np
from filelock import FileLock, Timeout

from . import _config, cache_limit
from ._proc import process_alive

CACHE_VERSION = 1


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(binary_file)`` so that readers see the old or the new content, never a
    part: a temporary file beside it, renamed into place; a failed or killed write leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def make_key(**parts: Any) -> str:
    """A hex key from JSON-serialisable parts (order-independent)."""
    payload = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    key: str
    features: np.ndarray
    labels: np.ndarray
    manifest: dict[str, Any]


class EmbeddingStore:
    """The embedding cache under ``root`` (default ``$TLDIAG_HOME/embeddings``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root) if root is not None else _config.home() / "embeddings"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def __contains__(self, key: str) -> bool:
        return (self.path(key) / "manifest.json").is_file()

    def get(self, key: str) -> Entry | None:
        """The entry for ``key``, arrays memory-mapped, or None."""
        folder = self.path(key)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            features = np.load(folder / "features.npy", mmap_mode="r")
            labels = np.load(folder / "labels.npy")
        except (FileNotFoundError, NotADirectoryError):
            return None
        cache_limit.touch(folder / "manifest.json")  # its last use, for the size limit's eviction order
        return Entry(key, features, labels, manifest)

    def put(self, key: str, features: np.ndarray, labels: np.ndarray, manifest: dict[str, Any]) -> None:
        """Write an entry atomically; a no-op when another writer got there first."""
        writer = self.writer(key)
        try:
            writer.allocate(*np.shape(features))[np.arange(len(features))] = np.asarray(features)
            writer.commit(labels, manifest)
        finally:
            writer.abort()

    def writer(self, key: str) -> "EntryWriter":
        """A new entry for ``key`` written piece by piece (see :class:`EntryWriter`)."""
        return EntryWriter(self, key)

    @contextmanager
    def lock(self, name: str, timeout: float = 3600,
             waiting: Callable[[dict[str, Any] | None], None] | None = None) -> Iterator[None]:
        """Serialise writers of one group of entries; stale temporary folders are removed inside.

        While another process holds the lock, ``waiting(progress)`` is called about twice a second with what that
        writer last reported through :meth:`report_progress` (``{"done", "total", "message", "by"}``, or None
        before its first report), so the one who waits can show how far the other one is.
        """
        lock = FileLock(str(self._lock_path(name)), timeout=timeout)
        if waiting is None:
            lock.acquire()
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    lock.acquire(timeout=0.5)
                    break
                except Timeout:
                    if time.monotonic() > deadline:
                        raise
                    waiting(self.progress_of(name))
        try:
            self._remove_stale_tmp()
            yield
        finally:
            self._progress_path(name).unlink(missing_ok=True)
            lock.release()

    def _lock_path(self, name: str) -> Path:
        locks = self.root / "locks"
        locks.mkdir(exist_ok=True)
        return locks / f"{name}.lock"

    def _progress_path(self, name: str) -> Path:
        return self._lock_path(name).with_suffix(".progress.json")

    def report_progress(self, name: str, done: int, total: int, message: str, *, by: str | None = None) -> None:
        """Tell the writers waiting on lock ``name`` how far its holder is (call it while holding the lock)."""
        atomic_write_text(self._progress_path(name), json.dumps(
            {"done": int(done), "total": int(total), "message": str(message), "by": by}))

    def progress_of(self, name: str) -> dict[str, Any] | None:
        """What the holder of lock ``name`` last reported, or None."""
        try:
            return json.loads(self._progress_path(name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _remove_stale_tmp(self, max_age_s: float = 6 * 3600) -> None:
        now = time.time()
        for tmp in self.root.glob("*/.tmp-*"):
            try:
                pid = int(tmp.name.split("-")[2])
            except (IndexError, ValueError):
                pid = -1
            if not process_alive(pid) or now - tmp.stat().st_mtime > max_age_s:
                shutil.rmtree(tmp, ignore_errors=True)

    def entries(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*/*") if (p / "manifest.json").is_file())

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for p in self.entries() for f in p.iterdir())


class RowFile:
    """A float32 ``(n_samples, n_features)`` ``.npy`` file written and read by rows with positioned I/O, never
    memory-mapped: filling one of any size holds one batch in memory (a map would count every page written against
    the process's memory, and a pass over a large dataset would grow with it). ``rows[positions] = values`` writes,
    ``rows[positions]`` reads; ``np.load`` reads the file as any ``.npy``."""

    dtype = np.dtype(np.float32)

    def __init__(self, path: Path, n_samples: int, n_features: int):
        self.path, self.shape = Path(path), (int(n_samples), int(n_features))
        with open(self.path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": self.dtype.str, "fortran_order": False,
                                                     "shape": self.shape})
            self.offset = f.tell()
            f.truncate(self.offset + self.shape[0] * self.shape[1] * self.dtype.itemsize)
        self._fd: int | None = os.open(self.path, os.O_RDWR)

    def __len__(self) -> int:
        return self.shape[0]

    def _runs(self, positions: np.ndarray) -> Iterator[tuple[int, int, int]]:
        """(start position, first index into ``positions``, length) of each run of consecutive positions."""
        positions = np.asarray(positions, dtype=np.int64).ravel()
        if len(positions) == 0:
            return
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(positions)]])
        for a, b in zip(starts, ends):
            yield int(positions[a]), int(a), int(b - a)

    def __setitem__(self, positions: np.ndarray, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1, self.shape[1])
        row = self.shape[1] * self.dtype.itemsize
        for start, first, length in self._runs(positions):
            os.pwrite(self._fd, values[first:first + length].tobytes(), self.offset + start * row)

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64).ravel()
        out = np.empty((len(positions), self.shape[1]), dtype=self.dtype)
        row = self.shape[1] * self.dtype.itemsize
        for start, first, length in self._runs(positions):
            out[first:first + length] = np.frombuffer(
                os.pread(self._fd, length * row, self.offset + start * row), dtype=self.dtype).reshape(length, -1)
        return out

    def close(self, *, sync: bool = False) -> None:
        if self._fd is not None:
            if sync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


class EntryWriter:
    """One entry being written: its features go straight to disk (a :class:`RowFile` in a temporary folder), so
    that a pass over a dataset of any size holds one batch in memory, not the matrix; :meth:`commit` renames the
    folder into place (readers see a whole entry or none), :meth:`abort` removes it (a no-op after a commit)."""

    def __init__(self, store: EmbeddingStore, key: str):
        self.store, self.key = store, key
        self.final = store.path(key)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        self.features: RowFile | None = None

    def allocate(self, n_samples: int, n_features: int) -> RowFile:
        """The ``(n_samples, n_features)`` float32 rows to fill."""
        self.features = RowFile(self.tmp / "features.npy", n_samples, n_features)
        return self.features

    def commit(self, labels: np.ndarray, manifest: dict[str, Any]) -> None:
        """Write the labels and the manifest, flush everything, and rename the entry into place; a no-op when
        another writer got there first (its entry holds the same values)."""
        if self.features is None:
            raise RuntimeError("EntryWriter.commit before allocate")
        self.features.close(sync=True)
        np.save(self.tmp / "labels.npy", np.asarray(labels, dtype=np.int64))
        (self.tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        for name in ("labels.npy", "manifest.json"):
            with open(self.tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            if not self.final.exists():
                raise
        cache_limit.after_write(self.final)

    def abort(self) -> None:
        if self.features is not None:
            self.features.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class JsonStore:
    """Small JSON results (leaderboard rows) under ``$TLDIAG_HOME/<kind>/<key>.json``.

    Written atomically; an entry that cannot be read (corrupt, or from an older format) counts as absent and
    is removed, so it is recomputed rather than half-read.
    """

    def __init__(self, kind: str, root: str | os.PathLike[str] | None = None):
        self.root = Path(root) if root is not None else _config.home() / kind

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, payload: dict[str, Any]) -> None:
        atomic_write_text(self.path(key), json.dumps(payload, indent=1, default=json_default))

    def discard(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


def json_default(value: Any) -> Any:
    """``json.dumps(default=)`` for results: numpy scalars and arrays as numbers and lists; anything else refused."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a JSON result")


__all__ = ["CACHE_VERSION", "atomic_write", "atomic_write_text", "make_key", "Entry", "EmbeddingStore", "RowFile", "EntryWriter",
           "JsonStore",
           "json_default"]
