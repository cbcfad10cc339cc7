"""A size limit on what can be recomputed: embeddings and 2-D projections, least recently used first out.

``TLDIAG_CACHE_MAX_GB`` bounds the embedding cache (``$TLDIAG_HOME/embeddings``) and the projection cache
(``$TLDIAG_HOME/projections``) together. Every write of an entry checks the limit and evicts the entries used
longest ago (an entry's last use is the modification time of its marker file: ``manifest.json`` of an embedding,
the ``.npz`` of a projection, touched on every read). Jobs, their results and fine-tuned models are never
evicted: they are not in these caches. An entry is removed by renaming it out of place first, so a reader sees a
whole entry or none; a reader that loses the race recomputes it.

``tldiag cache ls`` lists the entries, ``tldiag cache prune`` evicts down to the limit (or ``--max-gb``).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import _config
from .errors import TldiagError

MAX_GB_ENV = "TLDIAG_CACHE_MAX_GB"
KINDS = ("embedding", "projection")


@dataclass(frozen=True)
class CacheEntry:
    """One evictable entry: an embedding tap of a dataset, or a projection of a layer."""

    kind: str
    key: str
    path: Path
    size_bytes: int
    last_used: float
    """Seconds since the epoch of its last read or write."""
    what: str
    """What it holds, for people: dataset spec and tap of an embedding, layer and method of a projection."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "key": self.key, "path": str(self.path), "size_bytes": self.size_bytes,
                "last_used": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.last_used)),
                "what": self.what}


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[CacheEntry, ...]
    kept_bytes: int
    limit_bytes: int

    @property
    def freed_bytes(self) -> int:
        return sum(e.size_bytes for e in self.removed)


def max_cache_bytes() -> int | None:
    """The limit from ``TLDIAG_CACHE_MAX_GB`` (GB of 10^9 bytes; fractions allowed), or None when unset."""
    raw = os.environ.get(MAX_GB_ENV, "").strip()
    if not raw:
        return None
    return gb_to_bytes(raw, f"{MAX_GB_ENV}={raw!r}")


def gb_to_bytes(raw: object, named: str) -> int:
    try:
        gb = float(raw)
    except (TypeError, ValueError):
        gb = math.nan
    if not math.isfinite(gb) or gb < 0:
        raise TldiagError(f"{named} must be a number of gigabytes, 0 or more (e.g. {MAX_GB_ENV}=50); unset it "
                          "for no limit.")
    return int(gb * 1e9)


def touch(marker: Path) -> None:
    """Mark an entry as used now (its marker file's modification time); a vanished entry is left alone."""
    try:
        os.utime(marker)
    except OSError:
        pass


def _embedding_entries(root: Path) -> list[CacheEntry]:
    out = []
    for folder in root.glob("*/*"):
        manifest = folder / "manifest.json"
        if folder.name.startswith(".") or not manifest.is_file():
            continue
        try:
            size = sum(f.stat().st_size for f in folder.iterdir())
            used = manifest.stat().st_mtime
            meta = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # removed or being replaced meanwhile
            continue
        out.append(CacheEntry("embedding", folder.name, folder, size, used,
                              f"{meta.get('model', '?')} · {meta.get('tap', '?')} · {meta.get('dataset', '?')}"))
    return out


def _projection_entries(root: Path) -> list[CacheEntry]:
    out = []
    for path in root.glob("*.npz"):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append(CacheEntry("projection", path.stem, path, st.st_size, st.st_mtime, "2-D map"))
    return out


def entries(home: Path | None = None) -> list[CacheEntry]:
    """Every evictable entry under ``home`` (default ``$TLDIAG_HOME``), most recently used first."""
    home = home or _config.home()
    found = _embedding_entries(home / "embeddings") + _projection_entries(home / "projections")
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def _remove(entry: CacheEntry) -> bool:
    """Take an entry out of place in one rename, then delete it; False when it was gone already."""
    grave = entry.path.with_name(f".tmp-evict-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(entry.path, grave)
    except FileNotFoundError:
        return False
    if grave.is_dir():
        shutil.rmtree(grave, ignore_errors=True)
    else:
        grave.unlink(missing_ok=True)
    return True


def prune(max_bytes: int | None = None, *, keep: tuple[Path, ...] = (), home: Path | None = None) -> PruneResult:
    """Evict the least recently used entries until the rest fit in ``max_bytes`` (default: the
    ``TLDIAG_CACHE_MAX_GB`` limit; nothing is removed without one). ``keep``: entries never evicted by this call
    (the one just written)."""
    limit = max_cache_bytes() if max_bytes is None else int(max_bytes)
    found = entries(home)
    total = sum(e.size_bytes for e in found)
    if limit is None:
        return PruneResult((), total, -1)
    kept = {Path(k) for k in keep}
    removed = []
    for entry in reversed(found):  # oldest first
        if total <= limit:
            break
        if entry.path in kept:
            continue
        if _remove(entry):
            removed.append(entry)
        total -= entry.size_bytes
    return PruneResult(tuple(removed), total, limit)


def after_write(path: Path) -> None:
    """Called by the caches after writing the entry at ``path``: evict down to the limit, when there is one."""
    if max_cache_bytes() is not None:
        prune(keep=(path,))


def format_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


__all__ = ["MAX_GB_ENV", "KINDS", "CacheEntry", "PruneResult", "max_cache_bytes", "gb_to_bytes", "touch", "entries", "prune",
           "after_write", "format_bytes"]
