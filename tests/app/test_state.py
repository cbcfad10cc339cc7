"""app_state's server-wide result cache: one computation per key, however many sessions ask at once."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_state(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import app_state

    return app_state


def test_concurrent_requests_compute_once(app_state):
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.5)
        return len(calls)

    key = ("test-once", time.monotonic())
    results = []
    threads = [threading.Thread(target=lambda: results.append(app_state._cached(key, compute))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and results == [1, 1, 1, 1]
    assert app_state._cached(key, compute) == 1 and calls == [1]


def test_a_failed_computation_is_not_cached(app_state):
    key = ("test-fail", time.monotonic())

    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        app_state._cached(key, boom)
    assert app_state._cached(key, lambda: 7) == 7
