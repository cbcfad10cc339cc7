"""Environment-driven settings: where caches live, which folders may be read, which device runs.

``TLDIAG_HOME``        cache root (default ``~/.cache/tldiag``).
``TLDIAG_DATA_ROOTS``  folders that ``folder:`` and ``torchvision:`` specs may read, separated by
                       ``os.pathsep``; default: the current directory and ``$TLDIAG_HOME/datasets``.
``TLDIAG_DEVICE``      ``cpu``, ``cuda``, ``cuda:1`` or ``mps``; default: cuda > mps > cpu.
``TLDIAG_RAY_ADDRESS`` a Ray cluster to run embedding passes, data-efficiency runs and leaderboard rows on
                       (``auto``, ``host:port`` or ``ray://host:10001``); unset: everything runs here, Ray unused.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetError, TldiagError


def home() -> Path:
    """The cache root, created on first use."""
    path = Path(os.environ.get("TLDIAG_HOME") or Path.home() / ".cache" / "tldiag").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    path = home() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_roots() -> list[Path]:
    """The resolved folders that dataset specs may read from."""
    raw = os.environ.get("TLDIAG_DATA_ROOTS")
    if raw:
        roots = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
    else:
        roots = [Path.cwd(), datasets_dir()]
    return [r.resolve() for r in roots]


def _within(resolved: Path, roots: list[Path]) -> bool:
    return any(resolved == r or r in resolved.parents for r in roots)


def inside_data_roots(path: str | os.PathLike[str]) -> bool:
    """Whether ``path``, symlinks resolved, lies inside a data root."""
    return _within(Path(path).resolve(), data_roots())


def roots_test():
    """:func:`inside_data_roots` for many paths: the roots read once, each folder's real path resolved once (a
    manifest of 100,000 rows would otherwise resolve every component of every path)."""
    roots = [str(r) for r in data_roots()]
    folders: dict[str, str] = {}

    def inside(path: str | os.PathLike[str]) -> bool:
        folder, name = os.path.split(os.path.abspath(os.fspath(path)))
        real = folders.get(folder)
        if real is None:
            real = folders[folder] = os.path.realpath(folder)
        full = os.path.join(real, name)
        if os.path.islink(full):
            full = os.path.realpath(full)
        return any(full == r or full.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
    return inside


def check_data_path(path: str | os.PathLike[str], *, what: str = "path") -> Path:
    """Resolve ``path`` (symlinks included) and refuse it unless it lies inside a data root."""
    resolved = Path(path).expanduser().resolve()
    roots = data_roots()
    if not _within(resolved, roots):
        shown = os.pathsep.join(str(r) for r in roots)
        raise DatasetError(
            f"The {what} '{path}' is outside the allowed data roots ({shown}). "
            f"Move the data under one of them, or allow its folder with "
            f"TLDIAG_DATA_ROOTS={shown}{os.pathsep}{resolved if resolved.is_dir() else resolved.parent}"
        )
    return resolved


def device_name() -> str:
    """The torch device string to compute on: ``TLDIAG_DEVICE`` or the best available."""
    import torch

    wanted = os.environ.get("TLDIAG_DEVICE", "").strip()
    if wanted:
        kind = wanted.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise TldiagError(f"TLDIAG_DEVICE={wanted} but no CUDA GPU is visible to torch. "
                              "Unset TLDIAG_DEVICE or set it to cpu.")
        if kind == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise TldiagError(f"TLDIAG_DEVICE={wanted} but MPS is not available. Use cpu instead.")
        if kind not in {"cpu", "cuda", "mps"}:
            raise TldiagError(f"TLDIAG_DEVICE={wanted!r} is not a device; use cpu, cuda, cuda:N or mps.")
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def ray_address() -> str | None:
    """The Ray cluster tldiag uses (``TLDIAG_RAY_ADDRESS``), or None: then nothing imports Ray."""
    return os.environ.get("TLDIAG_RAY_ADDRESS", "").strip() or None


def cpu_count() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def int_setting(name: str, default: int, what: str) -> int:
    """A whole-number setting from the environment variable ``name`` (``default`` when unset), at least 0; anything
    else is a clear error naming the variable and ``what`` it counts (with an example)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        from .errors import SpecError

        raise SpecError(f"{name}={raw!r} must be a whole number of {what}.")
    return value


TEST_PER_CLASS, TEST_MAX = 100, 2000


def test_cap() -> tuple[int, int]:
    """The test set's cap when it takes the spare labelled images: ``TLDIAG_TEST_PER_CLASS`` (default 100) per class
    and ``TLDIAG_TEST_MAX`` (default 2,000) in all; 0 keeps each split's own test set."""
    return (int_setting("TLDIAG_TEST_PER_CLASS", TEST_PER_CLASS, "images (0 keeps the split's own test set), e.g. 100"),
            int_setting("TLDIAG_TEST_MAX", TEST_MAX, "images (0 keeps the split's own test set), e.g. 2000"))
