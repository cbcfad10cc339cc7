"""The audit log: append-only, filtered reads, and the jobs' owners and launches / cancels recorded in it."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tldiag.audit import ANONYMOUS, AuditLog
from tldiag.cli import main
from tldiag.errors import TldiagError
from tldiag.training.jobs import JobStore


def test_entries_are_appended_and_read_back_in_order(tmp_path):
    log = AuditLog(tmp_path)
    log.record("sign-in", "ann@example.com", role="runner")
    log.record("export", "bob@example.com", "/verdict?model=x", file="r.html")
    log.record("sign-out", None)
    rows = log.entries()
    assert [(e.user, e.action) for e in rows] == [("ann@example.com", "sign-in"), ("bob@example.com", "export"),
                                                   (ANONYMOUS, "sign-out")]
    assert rows[1].detail == {"file": "r.html"} and rows[1].subject == "/verdict?model=x"
    assert [e.action for e in log.entries(user="ann@example.com")] == ["sign-in"]
    assert [e.action for e in log.entries(action="export")] == ["export"]
    assert [e.action for e in log.entries(last=1)] == ["sign-out"]


def test_the_log_refuses_updates_and_deletes(tmp_path):
    log = AuditLog(tmp_path)
    log.record("sign-in", "ann@example.com")
    db = sqlite3.connect(log.path)
    for sql in ("UPDATE audit SET user = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(sql)
    db.close()
    assert [e.user for e in log.entries()] == ["ann@example.com"]


def test_bad_input_names_the_value(tmp_path):
    log = AuditLog(tmp_path)
    with pytest.raises(TldiagError, match="Unknown audit action 'delete'"):
        log.record("delete", "ann@example.com")
    with pytest.raises(TldiagError, match="JSON-serialisable"):
        log.record("export", "ann@example.com", thing=object())
    with pytest.raises(TldiagError, match="last=0 must be a whole number"):
        log.entries(last=0)


def test_jobs_carry_their_owner_and_launches_and_cancels_are_logged(tmp_path, monkeypatch):
    here = str(Path(__file__).resolve().parent)  # the job processes import tests/job_helpers.py
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    store = JobStore(tmp_path)
    job = store.submit("test", {"seconds": 30, "steps": 1}, entry="job_helpers:sleepy", user="ann@example.com")
    assert store.get(job.id).owner == "ann@example.com"
    store.cancel(job.id, user="lead@example.com")
    rows = AuditLog(tmp_path).entries()
    assert [(e.action, e.user, e.subject) for e in rows] == [("launch", "ann@example.com", job.id),
                                                             ("cancel", "lead@example.com", job.id)]
    assert rows[1].detail["owner"] == "ann@example.com"
    local = store.submit("test", {"seconds": 0, "steps": 1}, entry="job_helpers:sleepy")
    assert store.get(local.id).owner == ANONYMOUS
    assert store.wait(local.id, timeout=60).status == "done"


def test_a_store_from_before_owners_gets_the_column(tmp_path):
    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    db.executescript("CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
                     "kind TEXT NOT NULL, entry TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL, "
                     "pool TEXT NOT NULL, status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, "
                     "message TEXT NOT NULL DEFAULT '', pid INTEGER, pid_start TEXT, created REAL NOT NULL, "
                     "started REAL, finished REAL, updated REAL, error TEXT, result TEXT, "
                     "cancel_requested INTEGER NOT NULL DEFAULT 0);"
                     "INSERT INTO jobs (id, kind, entry, name, config, pool, status, created) "
                     "VALUES ('old-1', 'finetune', 'x:y', 'old', '{}', 'cpu', 'done', 0);")
    db.close()
    assert JobStore(tmp_path).get("old-1").owner == ""


def test_tldiag_audit_prints_and_exports_the_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TLDIAG_HOME", str(tmp_path))
    AuditLog().record("rules-change", "lead@example.com", "verdict_rules.toml", section="baseline")
    assert main(["audit", "--json", str(tmp_path / "audit.json")]) == 0
    out = capsys.readouterr().out
    assert "lead@example.com" in out and "rules-change" in out
    assert json.loads((tmp_path / "audit.json").read_text())[0]["detail"] == {"section": "baseline"}
    assert main(["audit", "--user", "nobody@example.com"]) == 0
    assert "no audit entries matching" in capsys.readouterr().out
