"""A Streamlit server on a free port and Playwright driving Debian's Chromium (see README)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def at_repo_root(monkeypatch):
    """AppTest runs app.py, whose pages import app_state and open pages/ from the repository root."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))


@pytest.fixture
def open_page(at_repo_root):
    """``open_page("pages/7_verdict.py", QUERY, limit="4")``: app.py under AppTest with a setup in the URL (``QUERY``
    updated by the keywords), switched to one page and run."""
    from streamlit.testing.v1 import AppTest

    def _open(page: str, query: dict, *, timeout: float = 180, **overrides: str) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
        for k, v in {**query, **overrides}.items():
            at.query_params[k] = v
        at.run()
        return at.switch_page(page).run()
    return _open


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("The browser tests need Chromium: install it (Debian/Ubuntu: sudo apt-get install chromium; "
                    "`make test` does this when run as root) or set CHROMIUM=/path/to/chrome.")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(tmp: Path, *, port: int | None = None, args: tuple[str, ...] = (), env: dict | None = None):
    """A Streamlit server of app.py on a free port (or ``port``), with its own TLDIAG_HOME under ``tmp``; ``args``
    and ``env`` add Streamlit options and environment variables."""
    port = port or _free_port()
    env = {**os.environ, "TLDIAG_HOME": str(tmp / "home"), "TLDIAG_DATA_ROOTS": str(tmp), **(env or {})}
    log = open(tmp / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless=true",
         f"--server.port={port}", "--server.address=127.0.0.1", "--browser.gatherUsageStats=false",
         "--server.fileWatcherType=none", *args],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 120
    try:
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start, see {log.name}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def streamlit_url(tmp_path_factory):
    """One server for the session (embeddings computed by one test are cached for the next)."""
    with _serve(tmp_path_factory.mktemp("st")) as url:
        yield url


@pytest.fixture
def fresh_streamlit_url(tmp_path):
    """A server that no browser has opened yet (its first request decides Streamlit's page routing)."""
    with _serve(tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": chromium_path(), "args": CHROMIUM_ARGS}


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
