"""The dashboard refuses to serve other machines without sign-in, and says so on every page when opted in."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from tldiag.access import OPEN_SERVER_ENV

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("at_repo_root")


@pytest.fixture
def public_address():
    old = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    yield
    st_config.set_option("server.address", old)


def _app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update(model="random:timm:test_resnet", resolution="48", limit="2")
    return at


def test_a_public_address_without_sign_in_shows_only_the_refusal(public_address, monkeypatch):
    monkeypatch.delenv(OPEN_SERVER_ENV, raising=False)
    at = _app().run()
    assert not at.exception
    assert [e.value for e in at.error] and "Refusing to serve on '0.0.0.0' without sign-in" in at.error[0].value
    assert OPEN_SERVER_ENV in at.error[0].value
    assert not at.title and not at.sidebar.markdown  # no page, no setup: nothing of the app


def test_an_opted_in_open_server_warns_above_the_page(public_address, monkeypatch):
    """The banner comes from app.py, the router every page of a real server runs through (AppTest's switch_page
    runs a page file alone, so the entry page is where it can be seen here)."""
    monkeypatch.setenv(OPEN_SERVER_ENV, "1")
    at = _app().run()
    assert not at.exception
    assert [type(x).__name__ for x in at.main][:3] == ["SpecialBlock", "Warning", "Title"]  # above the page
    assert "without sign-in" in at.warning[0].value and at.title[0].value == "Setup"


def test_the_loopback_default_is_a_single_user_tool(monkeypatch):
    monkeypatch.delenv(OPEN_SERVER_ENV, raising=False)
    at = _app().run()
    assert not at.exception and at.title[0].value == "Setup"
    assert not any("without sign-in" in w.value for w in at.warning)


def test_with_sign_in_configured_nothing_renders_before_it(public_address, monkeypatch):
    """[auth] configured (a real provider signs in in the browser tests): before sign-in the page holds a
    Sign-in button and nothing of the app: no page, no setup, no permalink."""
    from tldiag import access

    monkeypatch.setattr(access, "auth_configured", lambda secrets: True)
    at = _app().run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert [t.value for t in at.title] == ["tldiag"]
    assert not at.sidebar.markdown and not at.warning and not at.error
