"""The bounded cache: TLDIAG_CACHE_MAX_GB evicts the least recently used embeddings and projections, never jobs or
models; `tldiag cache ls` and `tldiag cache prune`."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from tldiag import cache_limit
from tldiag._config import home
from tldiag.cache import EmbeddingStore
from tldiag.cli import main
from tldiag.errors import TldiagError

MB = 1_000_000


def _put(store: EmbeddingStore, key: str, mb: float, when: float) -> None:
    """An embedding entry of about ``mb`` megabytes, last used at ``when``."""
    store.put(key, np.zeros((int(mb * MB / 4 / 10), 10), np.float32), np.zeros(1), {"dataset": f"demo:{key[:4]}",
                                                                                    "tap": "pre_logits"})
    os.utime(store.path(key) / "manifest.json", (when, when))


def test_writes_evict_the_least_recently_used_down_to_the_limit(monkeypatch):
    store, now = EmbeddingStore(), time.time()
    _put(store, "a" * 64, 1, now - 300)
    _put(store, "b" * 64, 1, now - 200)
    _put(store, "c" * 64, 1, now - 100)
    (home() / "jobs").mkdir(exist_ok=True)
    (home() / "jobs" / "kept.bin").write_bytes(b"x" * 3 * MB)  # not a cache: never counted, never evicted
    (home() / "models").mkdir(exist_ok=True)
    (home() / "models" / "tuned.pt").write_bytes(b"x" * 3 * MB)
    assert store.get("a" * 64) is not None  # reading "a" makes it the most recently used
    monkeypatch.setenv(cache_limit.MAX_GB_ENV, "0.0025")  # room for two entries of 1 MB
    _put(store, "d" * 64, 1, time.time())  # the write evicts the two used longest ago: b, then c
    assert sorted(e.key[0] for e in cache_limit.entries()) == ["a", "d"]
    assert ("b" * 64) not in store and store.get("c" * 64) is None
    assert (home() / "jobs" / "kept.bin").exists() and (home() / "models" / "tuned.pt").exists()
    assert not list(store.root.glob("*/.tmp-*"))  # evicted entries leave nothing half-removed


def test_projections_count_and_the_entry_just_written_stays(monkeypatch):
    store, now = EmbeddingStore(), time.time()
    _put(store, "e" * 64, 1, now - 100)
    projections = home() / "projections"
    projections.mkdir(exist_ok=True)
    old = projections / f"{'f' * 64}.npz"
    old.write_bytes(b"\0" * MB)
    os.utime(old, (now - 500, now - 500))
    assert {e.kind for e in cache_limit.entries()} == {"embedding", "projection"}
    monkeypatch.setenv(cache_limit.MAX_GB_ENV, "0.0001")  # smaller than any one entry
    _put(store, "g" * 64, 2, time.time())
    assert [e.key[0] for e in cache_limit.entries()] == ["g"]  # everything older went, the new one stays


@pytest.mark.parametrize("value", ["lots", "-1", "nan"])
def test_a_bad_limit_names_the_value_and_the_fix(monkeypatch, value):
    monkeypatch.setenv(cache_limit.MAX_GB_ENV, value)
    with pytest.raises(TldiagError, match=rf"TLDIAG_CACHE_MAX_GB='{value}' must be a number of gigabytes"):
        cache_limit.max_cache_bytes()


def test_cli_lists_and_prunes(capsys, tmp_path, monkeypatch):
    store, now = EmbeddingStore(), time.time()
    _put(store, "h" * 64, 1, now - 50)
    _put(store, "i" * 64, 1, now - 10)
    assert main(["cache", "ls", "--json", str(tmp_path / "ls.json")]) == 0
    out = capsys.readouterr().out
    assert "demo:hhhh" in out and "2 entries, 2.0 MB in all; limit none" in out
    listing = json.loads((tmp_path / "ls.json").read_text())
    assert [e["key"][0] for e in listing["entries"]] == ["i", "h"] and listing["limit_bytes"] is None
    assert main(["cache", "prune"]) == 2
    assert "No limit to prune to: set TLDIAG_CACHE_MAX_GB" in capsys.readouterr().err
    assert main(["cache", "prune", "--max-gb", "0.0015"]) == 0
    assert "removed 1 entries (1.0 MB)" in capsys.readouterr().out
    assert [e.key[0] for e in cache_limit.entries()] == ["i"]
    monkeypatch.setenv(cache_limit.MAX_GB_ENV, "0")
    assert main(["cache", "prune"]) == 0 and cache_limit.entries() == []
