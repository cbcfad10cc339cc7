"""Background jobs: each one a separate OS process, recorded in SQLite under ``$TLDIAG_HOME/jobs``.

The life of a job:

1. :meth:`JobStore.submit` writes a row (``queued``) and starts ``python -m tldiag.training.jobs run <id>`` in a new
   session (its own process group), with stdout and stderr going to the job's log file. The process does not
   belong to the caller: it keeps running when the browser tab closes or the dashboard server stops.
2. The process waits for a slot of its queue, oldest job first: ``gpu`` (a job on ``cuda`` or ``mps``) has
   ``TLDIAG_GPU_JOBS`` slots (default 1), ``cpu`` has ``TLDIAG_CPU_JOBS`` (default one per 8 cores, at least 1).
   It takes the slot (``running``) in the same transaction that checks it is free.
3. It runs the job's function ``fn(config, context)``; :meth:`JobContext.report` writes progress and metric
   rows that any other process reads (the dashboard polls them).
4. It ends ``done`` (with a JSON result), ``failed`` (with the error and the tail of its log) or
   ``cancelled`` (:meth:`JobStore.cancel` sends SIGTERM to the process group, SIGKILL after a grace period).

A process that dies without saying so (killed, out of memory, machine restarted) is noticed by the next reader
of the store: its row becomes ``failed`` with the tail of its log, never ``running`` forever. Every state
change is one SQLite transaction (WAL mode), so a reader never sees half of one.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .. import _config
from .._proc import process_alive, process_start
from ..audit import ANONYMOUS, AuditLog, connect, open_store
from ..errors import TldiagError

STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
QUEUES = ("cpu", "gpu")
KINDS: dict[str, str] = {"finetune": "tldiag.training.finetune", "efficiency": "tldiag.training.efficiency"}
"""Job kind -> the module that runs it: its ``run_job(config, context) -> result`` runs in the job's process, its
``prepare_job(config, **inputs) -> Launch`` checks a configuration before :func:`launch` records anything, and its
``config_of(job)`` reads a job's configuration back as the typed object."""
SCHEMA_VERSION = 2  # 2: the queue column is named queue (it was pool)
_NEVER_STARTED_S = 120.0
_PROGRESS_EVERY_S = 0.5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    entry TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    pid_start TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    updated REAL,
    error TEXT,
    result TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    time REAL NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (job_id, step)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class JobCancelled(BaseException):
    """Raised inside a job process when it is cancelled (SIGTERM); a BaseException so that a job's own
    ``except Exception`` does not swallow it."""


@dataclass(frozen=True)
class Job:
    """One row of the job store, as of the moment it was read.

    Attributes:
        id: Unique id, e.g. ``finetune-20261122-110501-3fa2``.
        kind: What it runs (a key of :data:`KINDS`).
        entry: The ``module:function`` its process calls.
        name: The name shown to users.
        config: The job's configuration (JSON), as submitted.
        queue: ``cpu`` or ``gpu``: which slots it waits for.
        status: One of :data:`STATUSES`.
        progress: Fraction done in [0, 1], as last reported.
        message: The last status line reported.
        created, started, finished: Unix times (None until they happen).
        error: Why it failed (with the tail of its log), or None.
        result: What its function returned (JSON), when done.
        folder: The job's folder: its log file ``job.log`` and its artefacts.
        owner: Who asked for it (the signed-in user's address, or "local user" on a single-user server).
    """

    id: str
    seq: int
    kind: str
    entry: str
    name: str
    config: Mapping[str, Any]
    queue: str
    status: str
    progress: float
    message: str
    pid: int | None
    created: float
    started: float | None
    finished: float | None
    updated: float | None
    error: str | None
    result: Mapping[str, Any] | None
    cancel_requested: bool
    folder: Path = field(repr=False)
    owner: str = ""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def log_path(self) -> Path:
        return self.folder / "job.log"

    @property
    def seconds(self) -> float | None:
        """Running time so far (or in all, once finished); None while queued."""
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)


@dataclass(frozen=True)
class Launch:
    """A checked job configuration, ready to record: what :func:`launch` submits.

    Attributes:
        config: The resolved configuration (JSON-serialisable: the job's record).
        name: The default name shown to users.
        device: Where it computes (decides the queue).
    """

    config: Mapping[str, Any]
    name: str
    device: str


def _kind_module(kind: str):
    if kind not in KINDS:
        raise TldiagError(f"Unknown job kind '{kind}'; valid: {', '.join(KINDS)}.")
    return import_module(KINDS[kind])


def launch(kind: str, config: Any, *, name: str | None = None, store: "JobStore | None" = None,
           user: str | None = None, **inputs: Any) -> "Job":
    """Check ``config`` (a :class:`~tldiag.training.finetune.FinetuneConfig` for ``finetune``, an
    :class:`~tldiag.training.efficiency.EfficiencyConfig` for ``efficiency``) with its kind's ``prepare_job`` and
    launch it as a background job; nothing is recorded when the check fails.

    Args:
        kind: A key of :data:`KINDS`.
        config: The job's typed configuration.
        name: The name shown to users (default: the kind's, e.g. "model → target · strategy").
        store: The job store (default: ``$TLDIAG_HOME/jobs``).
        user: Who asks for it (the job's owner, and the audit log's); default "local user".
        **inputs: What the check may reuse instead of loading it again: ``model=``, ``dataset=``.
    """
    ready = _kind_module(kind).prepare_job(config, **inputs)
    return (store or JobStore()).submit(kind, ready.config, name=name or ready.name, device=ready.device, user=user)


def config_of(job: "Job") -> Any:
    """A job's configuration as its kind's typed object, or None when it is not one (an unknown kind, or a record
    from an older version that no longer parses)."""
    if job.kind not in KINDS:
        return None
    try:
        return _kind_module(job.kind).config_of(job)
    except TldiagError:
        return None


def log_tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> str:
    """The last ``lines`` lines of a log file (empty when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    # progress bars rewrite their line with carriage returns: keep each line's last state
    rows = [r.rsplit("\r", 1)[-1] for r in text.replace("\r\n", "\n").split("\n")]
    return "\n".join([r for r in rows if r.strip()][-lines:])


def queue_of(device: str) -> str:
    """The queue a job on ``device`` waits in for a slot: ``gpu`` for ``cuda``/``mps``, else ``cpu``."""
    return "gpu" if str(device).split(":")[0] in ("cuda", "mps") else "cpu"


MAX_QUEUED_ENV = "TLDIAG_MAX_QUEUED_PER_USER"


def max_queued_per_user() -> int:
    """How many queued (not yet running) jobs one user may have: ``TLDIAG_MAX_QUEUED_PER_USER`` (default 3; 0 for
    no limit). A fair share of a machine that several people use: everyone's jobs start oldest first."""
    return _config.int_setting(MAX_QUEUED_ENV, 3, "jobs (0 for no limit), e.g. 3")


def queue_capacity(queue: str) -> int:
    """How many jobs of ``queue`` run at once: ``TLDIAG_GPU_JOBS`` (default 1) or ``TLDIAG_CPU_JOBS`` (default one
    per 8 cores, at least 1)."""
    var = {"gpu": "TLDIAG_GPU_JOBS", "cpu": "TLDIAG_CPU_JOBS"}[queue]
    raw = os.environ.get(var, "").strip()
    if not raw:
        return 1 if queue == "gpu" else max(1, _config.cpu_count() // 8)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise TldiagError(f"{var}={raw!r} must be a whole number >= 1 (jobs that may run at once); unset it for "
                          "the default.")
    return value


# ----------------------------------------------------------------------------- the store
class JobStore:
    """The job database and job folders under ``root`` (default ``$TLDIAG_HOME/jobs``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root, self.path = open_store(root, _SCHEMA)
        with self._transaction() as db:  # one process migrates an older store; the others then see it done
            columns = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
            if "pool" in columns:  # schema 1
                db.execute("ALTER TABLE jobs RENAME COLUMN pool TO queue")
            if "owner" not in columns:  # stores from before owners
                db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, queue, seq)")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _connect(self):
        return connect(self.path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once (BEGIN IMMEDIATE): check-then-update steps cannot interleave."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def log_path(self, job_id: str) -> Path:
        return self.folder(job_id) / "job.log"

    # ------------------------------------------------------------------ reading
    def _job(self, row: sqlite3.Row) -> Job:
        return Job(id=row["id"], seq=row["seq"], kind=row["kind"], entry=row["entry"], name=row["name"], config=json.loads(row["config"]),
                   queue=row["queue"], status=row["status"], progress=float(row["progress"]), message=row["message"],
                   pid=row["pid"], created=row["created"], started=row["started"], finished=row["finished"],
                   updated=row["updated"], error=row["error"],
                   result=json.loads(row["result"]) if row["result"] else None,
                   cancel_requested=bool(row["cancel_requested"]), folder=self.folder(row["id"]),
                   owner=row["owner"])

    def get(self, job_id: str) -> Job:
        """The job ``job_id`` (after noticing dead processes)."""
        self.reconcile()
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise TldiagError(f"There is no job '{job_id}' in {self.path}; `tldiag jobs` lists the jobs.")
        return self._job(row)

    def list(self, *, kind: str | None = None, limit: int | None = None) -> list[Job]:
        """Every job (of ``kind``), newest first, after noticing dead processes."""
        self.reconcile()
        sql, args = "SELECT * FROM jobs", []
        if kind is not None:
            sql += " WHERE kind = ?"
            args.append(kind)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._connect() as db:
            return [self._job(r) for r in db.execute(sql, args).fetchall()]

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        """The metric rows the job reported, in order (each a dict with ``time`` added)."""
        with self._connect() as db:
            rows = db.execute("SELECT time, payload FROM metrics WHERE job_id = ? ORDER BY step", (job_id,)).fetchall()
        return [{**json.loads(r["payload"]), "time": r["time"]} for r in rows]

    def reconcile(self) -> list[str]:
        """Mark active jobs whose process is gone as failed (or cancelled, when a cancel was asked); returns
        their ids."""
        with self._connect() as db:
            rows = db.execute("SELECT id, pid, pid_start, created FROM jobs WHERE status IN ('queued', 'running')"
                              ).fetchall()
        dead = [r for r in rows if not process_alive(r["pid"], r["pid_start"])
                and (r["pid"] is not None or time.time() - r["created"] > _NEVER_STARTED_S)]
        if not dead:
            return []
        with self._transaction() as db:
            return [r["id"] for r in dead if self._mark_dead(db, r["id"])]

    def _mark_dead(self, db: sqlite3.Connection, job_id: str) -> bool:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row["status"] not in ACTIVE or process_alive(row["pid"], row["pid_start"]):
            return False  # it finished (or started) between the read and this transaction
        now = time.time()
        if row["cancel_requested"]:
            db.execute("UPDATE jobs SET status = 'cancelled', finished = ?, updated = ? WHERE id = ?",
                       (now, now, job_id))
            return True
        tail = log_tail(self.log_path(job_id))
        what = (f"The job process (pid {row['pid']}) ended without reporting a result: it was killed, ran out of "
                "memory, or the machine restarted." if row["pid"] else
                "The job process never started (the launcher failed).")
        error = what + (f" Last lines of its log:\n{tail}" if tail else " It wrote no log.")
        db.execute("UPDATE jobs SET status = 'failed', error = ?, finished = ?, updated = ? WHERE id = ?",
                   (error, now, now, job_id))
        return True

    # ------------------------------------------------------------------ writing
    def submit(self, kind: str, config: Mapping[str, Any], *, name: str | None = None, device: str = "cpu",
               entry: str | None = None, user: str | None = None) -> Job:
        """Record a job and start its process.

        Args:
            kind: What it runs: a key of :data:`KINDS`, or any label when ``entry`` is given.
            config: The job's configuration; must be JSON-serialisable. Validate it before submitting: a job
                that fails on bad input wastes the slot it waited for.
            name: The name shown to users (default: the id).
            device: Where it computes; decides the queue (``cuda``/``mps`` -> ``gpu``).
            entry: ``module:function`` to run instead of ``KINDS[kind]``'s ``run_job``.
            user: Who asks for it (recorded as the job's owner and in the audit log; default "local user").
        """
        entry = entry or (f"{KINDS[kind]}:run_job" if kind in KINDS else None)
        if not entry:
            raise TldiagError(f"Unknown job kind '{kind}'; valid: {', '.join(KINDS)}.")
        if ":" not in entry:
            raise TldiagError(f"Job entry '{entry}' must be 'module:function'.")
        try:
            config_json = json.dumps(dict(config), sort_keys=True)
        except TypeError as exc:
            raise TldiagError(f"The job configuration must be JSON-serialisable ({exc}).") from None
        queue = queue_of(device)
        queue_capacity(queue)  # a bad TLDIAG_*_JOBS value is refused before anything is written
        limit = max_queued_per_user()
        job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        now = time.time()
        with self._transaction() as db:  # the count and the insert in one transaction: two tabs cannot both pass
            waiting = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND owner = ?",
                                 (user,)).fetchone()[0] if user else 0
            if limit and waiting >= limit:  # signed-in users share the machine; the local user is alone on it
                raise TldiagError(f"{user} already has {waiting} queued jobs (at most {limit} per user, "
                                  f"{MAX_QUEUED_ENV}); wait for one to start or cancel one.")
            self.folder(job_id).mkdir(parents=True)
            db.execute("INSERT INTO jobs (id, kind, entry, name, config, queue, status, created, updated, owner) "
                       "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                       (job_id, kind, entry, name or job_id, config_json, queue, now, now, user or ANONYMOUS))
        AuditLog(self.root).record("launch", user, job_id, kind=kind, name=name or job_id)
        self.start(job_id)
        return self.get(job_id)

    def start(self, job_id: str) -> int:
        """Start the process of a queued job (detached, in its own process group); returns its pid."""
        log = open(self.log_path(job_id), "ab")
        try:
            proc = subprocess.Popen([sys.executable, "-m", "tldiag.training.jobs", "run", job_id, "--root",
                                     str(self.root)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            self.finish(job_id, "failed", error=f"Could not start the job process: {exc}")
            raise TldiagError(f"Could not start the job process for {job_id}: {exc}") from None
        finally:
            log.close()
        with self._transaction() as db:
            db.execute("UPDATE jobs SET pid = COALESCE(pid, ?), updated = ? WHERE id = ?", (proc.pid, time.time(), job_id))
        return proc.pid

    def queue_position(self, job: Job) -> int | None:
        """A queued job's place in its queue (1 = next to start), first come first served across users; None once
        it runs or ended."""
        if job.status != "queued":
            return None
        with self._connect() as db:
            ahead = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND queue = ? AND seq < ?",
                               (job.queue, job.seq)).fetchone()[0]
        return int(ahead) + 1

    def cancel(self, job_id: str, *, grace_s: float = 5.0, user: str | None = None) -> Job:
        """Stop a queued or running job: SIGTERM to its process group, SIGKILL after ``grace_s``; status
        ``cancelled``. ``user`` (who asks) goes to the audit log."""
        job = self.get(job_id)
        if not job.active:
            raise TldiagError(f"Job {job_id} is already {job.status}; only queued or running jobs can be cancelled.")
        AuditLog(self.root).record("cancel", user, job_id, kind=job.kind, owner=job.owner)
        with self._transaction() as db:
            db.execute("UPDATE jobs SET cancel_requested = 1, updated = ? WHERE id = ?", (time.time(), job_id))
            row = db.execute("SELECT pid, pid_start FROM jobs WHERE id = ?", (job_id,)).fetchone()
        pid, start = row["pid"], row["pid_start"]
        if process_alive(pid, start):
            _signal_group(pid, signal.SIGTERM)
            if not _wait_gone(pid, start, grace_s):
                _signal_group(pid, signal.SIGKILL)
                _wait_gone(pid, start, 5.0)
        self.finish(job_id, "cancelled")
        return self.get(job_id)

    def finish(self, job_id: str, status: str, *, result: Mapping[str, Any] | None = None,
               error: str | None = None) -> bool:
        """Record the end of an active job; False when it had already ended (the first end wins)."""
        if status not in ("done", "failed", "cancelled"):
            raise ValueError(f"finish() takes done, failed or cancelled, not {status!r}")
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, finished = ?, updated = ?, "
                "progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (status, json.dumps(result) if result is not None else None, error, now, now, status, job_id))
            return cur.rowcount == 1

    def try_start(self, job_id: str) -> str:
        """Take a slot of the job's queue for it if one is free and no older job of the queue waits; returns the
        job's status afterwards (``running`` when it got the slot)."""
        self.reconcile()
        with self._transaction() as db:
            row = db.execute("SELECT status, queue FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] != "queued":
                return "missing" if row is None else row["status"]
            queue = row["queue"]
            running = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running' AND queue = ?", (queue,)
                                 ).fetchone()[0]
            free = queue_capacity(queue) - running
            if free <= 0:
                return "queued"
            first = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE status = 'queued' AND queue = ? "
                                                 "ORDER BY seq LIMIT ?", (queue, free))]
            if job_id not in first:
                return "queued"
            now = time.time()
            db.execute("UPDATE jobs SET status = 'running', started = ?, updated = ? WHERE id = ?", (now, now, job_id))
            return "running"

    def _claim_process(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET pid = ?, pid_start = ?, updated = ? WHERE id = ?",
                       (os.getpid(), process_start(os.getpid()), time.time(), job_id))

    def _report(self, job_id: str, progress: float | None, message: str | None,
                metrics: Mapping[str, Any] | None) -> None:
        now = time.time()
        with self._transaction() as db:
            if metrics is not None:
                step = db.execute("SELECT COALESCE(MAX(step), -1) + 1 FROM metrics WHERE job_id = ?",
                                  (job_id,)).fetchone()[0]
                db.execute("INSERT INTO metrics VALUES (?, ?, ?, ?)", (job_id, step, now, json.dumps(dict(metrics))))
            db.execute("UPDATE jobs SET progress = COALESCE(?, progress), message = COALESCE(?, message), "
                       "updated = ? WHERE id = ?",
                       (None if progress is None else min(max(float(progress), 0.0), 1.0), message, now, job_id))

    def wait(self, job_id: str, *, timeout: float | None = None, poll_s: float = 0.5,
             on_update: Callable[[Job], None] | None = None) -> Job:
        """Poll until the job has ended (or ``timeout`` seconds pass); ``on_update(job)`` after every poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_update:
                on_update(job)
            if not job.active or (deadline is not None and time.monotonic() > deadline):
                return job
            time.sleep(poll_s)


def _log(message: str) -> None:
    """A timestamped line in the job's log (the job process's stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _wait_gone(pid: int, start: str | None, seconds: float) -> bool:
    """Wait up to ``seconds`` for a process to end; whether it has."""
    deadline = time.monotonic() + seconds
    while process_alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not process_alive(pid, start)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the job process leads its own group (start_new_session)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


# ----------------------------------------------------------------------------- inside the job process
class JobContext:
    """What a job's function gets besides its config: its folder and a way to report progress and metrics."""

    def __init__(self, store: JobStore, job: Job):
        self.store, self.job = store, job
        self.folder = job.folder
        self._last = 0.0
        self._progress: float | None = None  # the latest fraction reported, written or not

    def report(self, progress: float | None = None, message: str | None = None, *,
               metrics: Mapping[str, Any] | None = None) -> None:
        """Record progress (fraction in [0, 1]) and a status line, and append a metric row when given. Progress
        alone is written at most twice a second; metric rows always, with the latest fraction reported (so a
        tick skipped by that limit is not lost when a row follows it)."""
        if progress is not None:
            self._progress = progress
        now = time.monotonic()
        if metrics is None and now - self._last < _PROGRESS_EVERY_S and (progress or 0.0) < 1.0:
            return
        self._last = now
        self.store._report(self.job.id, self._progress, message, metrics)
        if message and metrics is not None:  # the log gets a line per metric row, not per progress tick
            _log(message)

    def log(self, message: str) -> None:
        _log(message)


def _raise_cancelled(signum: int, frame: Any) -> None:
    raise JobCancelled()


def _resolve(entry: str) -> Callable[[Mapping[str, Any], JobContext], Mapping[str, Any] | None]:
    module, _, name = entry.partition(":")
    return getattr(import_module(module), name)


def run(job_id: str, root: str | os.PathLike[str] | None = None, *, poll_s: float = 0.5) -> int:
    """The job process: wait for a slot, run the job's function, record how it ended. Returns the exit status."""
    signal.signal(signal.SIGTERM, _raise_cancelled)
    store = JobStore(root)
    job = store.get(job_id)
    if job.status != "queued":
        return 0  # cancelled before it started
    try:
        store._claim_process(job_id)
        waited = False
        while (status := store.try_start(job_id)) == "queued":
            if not waited:
                _log(f"waiting for a free {job.queue} slot")
                store._report(job_id, None, f"waiting for a free {job.queue} slot", None)
                waited = True
            time.sleep(poll_s)
        if status != "running":
            return 0
        if job.queue == "cpu":
            import torch

            torch.set_num_threads(max(1, _config.cpu_count() // queue_capacity("cpu")))
        _log(f"started {job.kind} job {job_id} (pid {os.getpid()})")
        result = _resolve(job.entry)(job.config, JobContext(store, job))
        store.finish(job_id, "done", result=dict(result or {}))
        _log("done")
        return 0
    except JobCancelled:
        store.finish(job_id, "cancelled")
        _log("cancelled")
        return 143
    except BaseException as exc:
        traceback.print_exc()
        sys.stdout.flush()
        if store.get(job_id).cancel_requested:  # e.g. its DataLoader workers died of the SIGTERM first
            store.finish(job_id, "cancelled")
            return 143
        message = str(exc) if isinstance(exc, TldiagError) else f"{type(exc).__name__}: {exc}"
        tail = log_tail(store.log_path(job_id))
        store.finish(job_id, "failed", error=f"{message}\nLast lines of its log:\n{tail}")
        return 1


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tldiag.training.jobs",
                                     description="Run one job (started by JobStore).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("job_id")
    p.add_argument("--root")
    args = parser.parse_args(argv)
    return run(args.job_id, args.root)


__all__ = ["STATUSES", "ACTIVE", "QUEUES", "KINDS", "SCHEMA_VERSION", "MAX_QUEUED_ENV", "JobCancelled", "Job", "Launch",
           "launch", "config_of", "log_tail", "queue_of", "queue_capacity", "max_queued_per_user", "JobStore",
           "JobContext", "run", "main"]


if __name__ == "__main__":
    sys.exit(main())
