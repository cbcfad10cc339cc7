"""The job system: real OS processes, a SQLite record, slots, cancel, crashes, restarts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tldiag.errors import TldiagError
from tldiag.training.jobs import JobStore, process_alive, queue_capacity

HERE = Path(__file__).resolve().parent


@pytest.fixture
def store(monkeypatch):
    """A job store whose processes can import tests/job_helpers.py."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("TLDIAG_GPU_JOBS", raising=False)
    monkeypatch.delenv("TLDIAG_CPU_JOBS", raising=False)
    s = JobStore()
    yield s
    for job in s.list():
        if job.active:
            s.cancel(job.id, grace_s=1)


def _submit(store, seconds=1.0, steps=4, *, entry="job_helpers:sleepy", device="cpu", name=None):
    return store.submit("test", {"seconds": seconds, "steps": steps}, entry=entry, device=device, name=name)


def _until(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_a_job_runs_in_its_own_process_to_done_with_progress_metrics_and_artefacts(store):
    job = _submit(store, seconds=3.0, steps=6, name="my sleepy job")
    assert job.status in ("queued", "running") and job.name == "my sleepy job"
    assert job.pid != os.getpid() and os.getpgid(job.pid) == job.pid  # its own process group
    midway = _until(lambda: (j := store.get(job.id)).status == "running" and 0 < j.progress < 1 and j)
    assert midway.message.startswith("step ")
    done = store.wait(job.id, timeout=60)
    assert done.status == "done", done.error
    assert done.progress == 1.0 and done.result["steps"] == 6
    assert Path(done.result["artefact"]).read_text() == "made by sleepy"
    rows = store.metrics(job.id)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and rows[-1]["loss"] == pytest.approx(1 / 6)
    assert done.started >= done.created and done.finished >= done.started
    assert "step 6 of 6" in done.log_tail()


def test_a_metric_row_carries_the_latest_progress_the_tick_limit_skipped(store):
    job = _submit(store, entry="job_helpers:ticks_then_row")
    done = store.wait(job.id, timeout=60)
    assert done.status == "done", done.error
    assert done.result["progress"] == pytest.approx(0.4)  # not 0.1, the only tick written within half a second

def test_cancel_stops_the_process_group(store):
    job = _submit(store, seconds=120, steps=120)
    _until(lambda: store.get(job.id).status == "running")
    t0 = time.monotonic()
    cancelled = store.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished is not None
    assert time.monotonic() - t0 < 5  # SIGTERM was enough, no SIGKILL grace period
    assert not process_alive(job.pid)
    with pytest.raises(TldiagError, match="already cancelled"):
        store.cancel(job.id)


def test_a_killed_job_process_is_failed_with_its_log_tail(store):
    job = _submit(store, seconds=120, steps=120)
    _until(lambda: "step 1 of 120" in store.get(job.id).log_tail())
    os.kill(job.pid, signal.SIGKILL)
    failed = _until(lambda: (j := store.get(job.id)).status != "running" and j)
    assert failed.status == "failed"
    assert "ended without reporting a result" in failed.error and "step 1 of 120" in failed.error


def test_an_exception_in_the_job_fails_it_with_the_message(store):
    job = store.wait(_submit(store, entry="job_helpers:crash").id, timeout=60)
    assert job.status == "failed"
    assert "RuntimeError: the job broke on purpose" in job.error and "about to fail" in job.error


def test_two_launches_queue_on_one_gpu_slot(store):
    assert queue_capacity("gpu") == 1
    first = _submit(store, seconds=3.0, device="cuda")
    second = _submit(store, seconds=0.5, device="cuda:0")
    assert first.queue == second.queue == "gpu"
    _until(lambda: store.get(first.id).status == "running")
    time.sleep(1.0)
    waiting = store.get(second.id)
    assert waiting.status == "queued" and "waiting for a free gpu slot" in waiting.message
    a, b = store.wait(first.id, timeout=60), store.wait(second.id, timeout=60)
    assert a.status == b.status == "done"
    assert b.started >= a.finished


def test_cpu_slots_are_configurable(store, monkeypatch):
    monkeypatch.setenv("TLDIAG_CPU_JOBS", "2")
    jobs = [_submit(store, seconds=2.0) for _ in range(2)]
    _until(lambda: all(store.get(j.id).status == "running" for j in jobs))
    monkeypatch.setenv("TLDIAG_CPU_JOBS", "0")
    with pytest.raises(TldiagError, match="TLDIAG_CPU_JOBS='0'"):
        _submit(store)


def test_cancel_a_queued_job(store):
    first = _submit(store, seconds=60, steps=60, device="cuda")
    second = _submit(store, seconds=0.5, device="cuda")
    _until(lambda: store.get(first.id).status == "running")
    assert store.cancel(second.id).status == "cancelled"
    assert store.get(first.id).status == "running"


def test_a_new_process_sees_the_old_jobs(store):
    done = store.wait(_submit(store, seconds=0.2, steps=1).id, timeout=60)
    failed = store.wait(_submit(store, entry="job_helpers:crash").id, timeout=60)
    running = _submit(store, seconds=60, steps=60)
    _until(lambda: store.get(running.id).status == "running")
    code = ("import json; from tldiag.training.jobs import JobStore; "
            "print(json.dumps({j.id: [j.status, j.name, len(JobStore().metrics(j.id))] for j in JobStore().list()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    seen = json.loads(out.stdout)
    assert seen[done.id] == ["done", done.name, 1]
    assert seen[failed.id][0] == "failed"
    assert seen[running.id][0] == "running"


def test_unknown_kind_and_unserialisable_config_are_refused_before_anything_is_written(store):
    with pytest.raises(TldiagError, match="Unknown job kind 'train'"):
        store.submit("train", {})
    with pytest.raises(TldiagError, match="JSON-serialisable"):
        store.submit("test", {"x": object()}, entry="job_helpers:sleepy")
    assert store.list() == []


def test_a_user_may_queue_a_few_jobs_and_sees_their_place(store, monkeypatch):
    """First come, first served across users, with a per-user limit on what waits (TLDIAG_MAX_QUEUED_PER_USER)."""
    monkeypatch.setenv("TLDIAG_MAX_QUEUED_PER_USER", "2")

    def submit(user):
        return store.submit("test", {"seconds": 20, "steps": 1}, entry="job_helpers:sleepy", device="cuda",
                            user=user)

    running = submit("ann@example.com")
    _until(lambda: store.get(running.id).status == "running")
    a1, b1, a2 = submit("ann@example.com"), submit("bob@example.com"), submit("ann@example.com")
    assert [store.queue_position(store.get(j.id)) for j in (a1, b1, a2)] == [1, 2, 3]
    assert store.queue_position(store.get(running.id)) is None
    n_jobs = len(store.list())
    with pytest.raises(TldiagError, match="ann@example.com already has 2 queued jobs .at most 2 per user"):
        submit("ann@example.com")
    assert len(store.list()) == n_jobs  # nothing recorded for the refused one
    assert submit("bob@example.com").owner == "bob@example.com"  # the limit is per user
    store.cancel(a1.id, user="ann@example.com")
    assert store.queue_position(store.get(b1.id)) == 1
    monkeypatch.setenv("TLDIAG_MAX_QUEUED_PER_USER", "many")
    with pytest.raises(TldiagError, match="TLDIAG_MAX_QUEUED_PER_USER='many' must be a whole number"):
        submit("ann@example.com")


def test_a_schema_1_store_is_migrated_and_its_jobs_kept(tmp_path):
    """A store written before the queue column was renamed (``pool``) and before owners opens with its jobs, their
    queue and their order intact, and new jobs queue behind them."""
    import sqlite3

    from tldiag.training.jobs import SCHEMA_VERSION

    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                entry TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL, pool TEXT NOT NULL,
                status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', pid INTEGER,
                pid_start TEXT, created REAL NOT NULL, started REAL, finished REAL, updated REAL, error TEXT,
                result TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX jobs_status ON jobs (status, pool, seq);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1');
            INSERT INTO jobs (id, kind, entry, name, config, pool, status, created, finished, result)
                VALUES ('old-done', 'test', 'job_helpers:sleepy', 'an old job', '{}', 'cpu', 'done', 1.0, 2.0, '{}');
        """)
    store = JobStore(tmp_path)
    old = store.get("old-done")
    assert (old.status, old.queue, old.name, old.owner) == ("done", "cpu", "an old job", "")
    with sqlite3.connect(path) as db:
        columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert {"queue", "owner"} <= columns and "pool" not in columns
    assert version == str(SCHEMA_VERSION) == "2"
    JobStore(tmp_path)  # opening a migrated store again changes nothing
    assert [j.id for j in JobStore(tmp_path).list()] == ["old-done"]
