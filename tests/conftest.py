"""Shared fixtures: an isolated TLDIAG_HOME and data root per test, RNG hygiene, tiny image folders."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # unit tests never touch the network

_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:  # parallel workers (make test): the cores are shared out, else torch's threads fight (20x slower)
    _THREADS = max(1, len(os.sched_getaffinity(0)) // _WORKERS)
    torch.set_num_threads(_THREADS)
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # job processes, servers and CLI runs the tests start
        os.environ.setdefault(_var, str(_THREADS))

# the longest files first, so that the parallel workers end together (the rest follow in their usual order)
_FIRST = ("tests/app/test_walkthrough.py", "tests/app/test_sign_in.py", "tests/app/test_browser.py",
          "tests/app/test_verdict_page.py", "tests/app/test_efficiency_page.py", "tests/test_efficiency.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return _FIRST.index(path) if path in _FIRST else len(_FIRST)

    items.sort(key=rank)
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def tldiag_env(tmp_path, monkeypatch):
    """Every test gets its own cache and may read only below its tmp_path."""
    home = tmp_path / "tldiag_home"
    monkeypatch.setenv("TLDIAG_HOME", str(home))
    monkeypatch.setenv("TLDIAG_DATA_ROOTS", str(tmp_path))
    monkeypatch.delenv("TLDIAG_DEVICE", raising=False)
    # the spare-labels test set stays small in tests that are not about it (tests of it set their own caps)
    monkeypatch.setenv("TLDIAG_TEST_PER_CLASS", "20")
    return home


@pytest.fixture(autouse=True)
def _keep_rng_state():
    """Tests must not leak global RNG state into each other (torchvision's habit)."""
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    yield
    torch.random.set_rng_state(torch_state)
    np.random.set_state(np_state)


def _digit_image(cls: int, i: int, size: int = 24, mode: str = "RGB") -> Image.Image:
    """A small synthetic image whose content depends on its class (a bar at a class position)."""
    rng = np.random.default_rng([cls, i])
    arr = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    arr[:, (cls * 5) % size: (cls * 5) % size + 4, :] = 230
    img = Image.fromarray(arr, "RGB")
    return img.convert(mode) if mode != "RGB" else img


@pytest.fixture
def make_folder(tmp_path):
    """make_folder({"cat": 4, "dog": 3}, ext=".png") -> a labelled ImageFolder under tmp_path."""
    def make(classes: dict[str, int] | None = None, *, name: str = "data", ext: str = ".png",
             flat: int = 0, size: int = 24) -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        for c, (cls, n) in enumerate((classes or {}).items()):
            (root / cls).mkdir(exist_ok=True)
            for i in range(n):
                _digit_image(c, i, size).save(root / cls / f"{i:03d}{ext}")
        for i in range(flat):
            _digit_image(i % 3, i, size).save(root / f"img{i:03d}{ext}")
        return root
    return make


@pytest.fixture(scope="session")
def tiny_model_id() -> str:
    """A real timm architecture (its tiny test model), randomly initialised: fast and offline."""
    return "random:timm:test_resnet"


@pytest.fixture(autouse=True)
def _no_orphan_jobs(tmp_path):
    """Job processes live in their own sessions and outlive a failed test: cancel whatever a test left running."""
    yield
    from tldiag.training.jobs import JobStore

    for db in tmp_path.glob("**/jobs.sqlite3"):
        store = JobStore(db.parent)
        for job in store.list():
            if job.active:
                store.cancel(job.id, grace_s=2)
