"""Server-wide state of the dashboard, without Streamlit: the results every session shares (one computation per
key, the others wait for it) and the background UMAP warm-up. ``app_state`` holds one of each per server process
(``st.cache_resource``) and draws their spinners and progress bars."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, ContextManager, Hashable

__all__ = ["NoWarmUp", "SharedResults", "UmapWarmUp", "start_umap_warm_up"]


class SharedResults:
    """Results computed once per key for the whole server, the most recently used kept (``max_entries``): a
    second caller asking for a key that another one is computing waits for that result instead of computing it
    again. Each key being computed has its own lock, so different keys compute side by side."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._store: OrderedDict[Hashable, Any] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, compute: Callable[[], Any], *, max_entries: int = 32,
            waiting: Callable[[], ContextManager] = contextlib.nullcontext) -> Any:
        """The result of ``key``: stored, or ``compute()`` (once, however many callers ask at the same time);
        ``waiting()`` is entered while this caller waits for another one's computation."""
        with self._lock:
            key_lock = self._computing.setdefault(key, threading.Lock())
        with waiting() if key_lock.locked() else contextlib.nullcontext():
            key_lock.acquire()
        try:
            with self._lock:
                if key in self._store:
                    self._store.move_to_end(key)
                    return self._store[key]
            value = compute()
            with self._lock:
                self._store[key] = value
                while len(self._store) > max_entries:
                    self._store.popitem(last=False)
            return value
        finally:
            key_lock.release()
            with self._lock:
                if self._computing.get(key) is key_lock and not key_lock.locked():
                    self._computing.pop(key, None)


    def peek(self, key: Hashable) -> Any | None:
        """The stored result of ``key``, or None (nothing is computed, and the order of use is kept)."""
        with self._lock:
            return self._store.get(key)


class UmapWarmUp:
    """The background compilation of umap-learn's numba code, started once per server process."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: float | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="tldiag-umap-warm-up", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from tldiag.projection import warm_up

        try:
            self.seconds = warm_up()
        except Exception as exc:  # reported on the Explorer page; the projection then compiles in front
            self.error = f"{type(exc).__name__}: {exc}"


class NoWarmUp:
    """No warm-up (``TLDIAG_UMAP_WARMUP=0``): the first projection compiles in front."""

    started, seconds, error = 0.0, None, None
    thread = threading.Thread()  # never started: is_alive() is False


def start_umap_warm_up() -> UmapWarmUp | NoWarmUp:
    """Start compiling UMAP in the background, unless ``TLDIAG_UMAP_WARMUP=0``."""
    if os.environ.get("TLDIAG_UMAP_WARMUP", "1").strip() == "0":
        return NoWarmUp()
    return UmapWarmUp()
