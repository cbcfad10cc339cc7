"""The audit trail: who did what and when, append-only, in the job store's SQLite file.

Every sign-in and sign-out, job launch and cancel, export and change of the verdict rules is one row: time, user,
action (:data:`ACTIONS`), what it was about (a job id, a file, a setup's permalink) and a small JSON detail. The
table refuses UPDATE and DELETE (SQLite triggers), so a row, once written, stays as written. ``tldiag audit``
prints it.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from . import _config
from .errors import TldiagError

ACTIONS = ("sign-in", "sign-out", "compute", "launch", "cancel", "export", "rules-change", "refused")
"""What the log records: ``compute`` is a session computing embeddings (not reading them from the cache),
``refused`` an action the server turned down (the role did not allow it)."""
ANONYMOUS = "local user"
"""The user of a single-user server (no sign-in), and of the command line."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_user ON audit (user, seq);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log."""

    seq: int
    time: float
    user: str
    action: str
    subject: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "when": _when(self.time), "user": self.user,
                "action": self.action, "subject": self.subject, "detail": dict(self.detail)}


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the job store's SQLite file (autocommit, rows by name, a 30 s wait for a writer), closed
    after the block: the job store and the audit log share it."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()


def open_store(root: str | os.PathLike[str] | None, schema: str) -> tuple[Path, Path]:
    """The job store's folder (default ``$TLDIAG_HOME/jobs``, created) and SQLite file, with ``schema`` applied
    (``CREATE ... IF NOT EXISTS``) in WAL mode, so that readers never wait for a writer."""
    folder = Path(root) if root is not None else _config.home() / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "jobs.sqlite3"
    with connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
    return folder, path


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


class AuditLog:
    """The audit table of the job store under ``root`` (default ``$TLDIAG_HOME/jobs``, the file ``jobs.sqlite3``
    that :class:`tldiag.training.jobs.JobStore` uses)."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root, self.path = open_store(root, _SCHEMA)

    def _connect(self):
        return connect(self.path)

    def record(self, action: str, user: str | None, subject: str = "", **detail: Any) -> AuditEntry:
        """Append one row; ``detail`` must be JSON-serialisable."""
        if action not in ACTIONS:
            raise TldiagError(f"Unknown audit action {action!r}; the log records {', '.join(ACTIONS)}.")
        try:
            payload = json.dumps(detail, sort_keys=True)
        except TypeError as exc:
            raise TldiagError(f"The audit detail must be JSON-serialisable ({exc}).") from None
        now = time.time()
        who = user or ANONYMOUS
        with self._connect() as db:
            cur = db.execute("INSERT INTO audit (time, user, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
                             (now, who, action, str(subject), payload))
            seq = int(cur.lastrowid)
        return AuditEntry(seq, now, who, action, str(subject), detail)

    def entries(self, *, user: str | None = None, action: str | None = None, last: int | None = None
                ) -> list[AuditEntry]:
        """The rows (of ``user``, of ``action``), oldest first; ``last``: only the newest N of them."""
        if action is not None and action not in ACTIONS:
            raise TldiagError(f"Unknown audit action {action!r}; the log records {', '.join(ACTIONS)}.")
        if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
            raise TldiagError(f"last={last!r} must be a whole number of rows, at least 1.")
        where, args = [], []
        if user is not None:
            where.append("user = ?")
            args.append(user)
        if action is not None:
            where.append("action = ?")
            args.append(action)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC"
        if last is not None:
            sql += f" LIMIT {int(last)}"
        with self._connect() as db:
            rows = db.execute(sql, args).fetchall()
        return [AuditEntry(r["seq"], r["time"], r["user"], r["action"], r["subject"], json.loads(r["detail"]))
                for r in reversed(rows)]


__all__ = ["ACTIONS", "ANONYMOUS", "AuditEntry", "AuditLog", "connect", "open_store"]
