"""The one progress callback every long computation takes (embedding passes, probes, training, projections)."""
from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, message)``: units done out of total (images, runs, candidates), and a short status line."""

__all__ = ["ProgressFn"]
