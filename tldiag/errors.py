"""Error types of tldiag: every message names the bad value and says how to fix it.

The app and the CLI show ``str(error)`` as is (one line, no traceback), so messages are written
for the person who typed the value.
"""
from __future__ import annotations


class TldiagError(ValueError):
    """Base class of errors caused by user input or the environment, never by a tldiag bug."""


class SpecError(TldiagError):
    """A model or dataset spec string that cannot be parsed or names something unknown."""


class DatasetError(TldiagError):
    """A dataset that exists but cannot be used as asked (empty, one class, outside the roots...)."""


class ModelUnavailableError(TldiagError):
    """Weights that are neither installed nor cached, and cannot be downloaded (offline)."""


__all__ = ["TldiagError", "SpecError", "DatasetError", "ModelUnavailableError"]
