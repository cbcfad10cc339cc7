"""The server refuses what a role may not do, whatever the browser shows or sends.

The pages hide a widget a role may not use (``app_state.allowed``); these tests make the pages show them anyway, as a
forged or stale browser would send their events, and check that the server still refuses (``app_state.require``),
changes nothing and logs the refusal.
"""
from __future__ import annotations

import pytest

from tldiag.audit import AuditLog
from tldiag.training.finetune import FinetuneConfig
from tldiag.training.jobs import JobStore, launch

QUERY = dict(model="random:timm:test_resnet", resolution="32", limit="3", target="demo:digits")
PAGE = "pages/5_finetune.py"
CONFIG = FinetuneConfig(model="random:timm:test_resnet", target="demo:digits?limit=3", resolution=32, epochs=50)


@pytest.fixture
def forged_viewer(monkeypatch):
    """A signed-in viewer whose browser shows every widget (the UI check lifted, the server check kept)."""
    import app_state

    monkeypatch.setattr(app_state, "_signed_in_mode", lambda: True)
    monkeypatch.setattr(app_state, "user_email", lambda: "ann@example.com")
    monkeypatch.setattr(app_state, "user_role", lambda: "viewer")
    monkeypatch.setattr(app_state, "allowed", lambda action: True)
    return "ann@example.com"


def test_a_viewer_cannot_launch_even_when_the_button_is_there(open_page, forged_viewer):
    at = open_page(PAGE, QUERY)
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="launch_ft").click().run()
    assert any("ann@example.com" in e.value and "launch" in e.value for e in at.error), [e.value for e in at.error]
    assert JobStore().list() == []  # nothing queued, nothing started
    refused = AuditLog().entries(action="refused")
    assert [(e.user, e.subject) for e in refused] == [("ann@example.com", "launch")]
    assert AuditLog().entries(action="launch") == []


def test_a_viewer_cannot_cancel_a_runners_job(open_page, forged_viewer):
    store = JobStore()
    job = launch("finetune", CONFIG, store=store, user="run@example.com")
    try:
        at = open_page(PAGE, QUERY)
        at.selectbox(key="w_ft_job").set_value(job.id).run()
        at.button(key=f"cancel_{job.id}").click().run()
        assert store.get(job.id).active  # still queued or running
        assert [(e.user, e.subject) for e in AuditLog().entries(action="refused")] == [("ann@example.com",
                                                                                         "cancel_any")]
        assert AuditLog().entries(action="cancel") == []
    finally:
        store.cancel(job.id)
