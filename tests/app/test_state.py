"""The dashboard's server-wide result cache (app_cache.SharedResults): one computation per key, however many
sessions ask at once."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def results(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from app_cache import SharedResults

    return SharedResults()


def test_concurrent_requests_compute_once(results):
    calls, waited = [], []

    def compute():
        calls.append(1)
        time.sleep(0.5)
        return len(calls)

    class Waiting:
        def __enter__(self):
            waited.append(1)

        def __exit__(self, *exc):
            return False

    got = []
    threads = [threading.Thread(target=lambda: got.append(results.get("k", compute, waiting=Waiting)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and got == [1, 1, 1, 1]
    assert len(waited) == 3  # the three that came while the first computed were told to wait
    assert results.get("k", compute) == 1 and calls == [1]


def test_different_keys_compute_side_by_side(results):
    b_ran = threading.Event()

    def compute_a():  # finishes only once "b" has computed: "b" must not wait for "a"'s lock
        return b_ran.wait(timeout=30)

    def compute_b():
        b_ran.set()
        return True

    got = {}
    t = threading.Thread(target=lambda: got.setdefault("a", results.get("a", compute_a)))
    t.start()
    got["b"] = results.get("b", compute_b)
    t.join()
    assert got == {"a": True, "b": True}


def test_a_failed_computation_is_not_cached(results):
    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        results.get("k", boom)
    assert results.get("k", lambda: 7) == 7


def test_peek_reads_without_computing(results):
    assert results.peek("k") is None
    results.get("k", lambda: 3)
    assert results.peek("k") == 3


def test_the_oldest_result_is_dropped_past_max_entries(results):
    for k in range(3):
        results.get(k, lambda k=k: k, max_entries=2)
    assert results.get(0, lambda: "again", max_entries=2) == "again"
    assert results.get(2, lambda: "again", max_entries=2) == 2
