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


class UndecodableImage(DatasetError):
    """An image whose header parses but whose pixels do not decode (a truncated or damaged file).

    Raised by a dataset's loader for one image; the engines that read whole datasets catch it, skip the image and
    record it (:meth:`tldiag.data.ImageDataset.drop_undecodable`)."""

    def __init__(self, sample_id: str, reason: str):
        super().__init__(f"The image '{sample_id}' could not be decoded ({reason}). It is skipped and listed once "
                         "the dataset has been read in full (tldiag datasets SPEC --verify).")
        self.sample_id, self.reason = sample_id, reason

    def __reduce__(self):  # DataLoader workers and Ray pickle exceptions
        return (type(self), (self.sample_id, self.reason))


class ModelUnavailableError(TldiagError):
    """Weights that are neither installed nor cached, and cannot be downloaded (offline)."""


__all__ = ["TldiagError", "SpecError", "DatasetError", "UndecodableImage", "ModelUnavailableError"]
