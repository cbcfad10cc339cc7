"""Process identity and liveness from /proc (Linux), with a portable fallback: for job records and stale-file
clean-up, where a pid may have died, become a zombie, or been reused by another process."""
from __future__ import annotations

import os
from pathlib import Path


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc, or None when it does not exist there."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return rest[0], rest[19]


def process_start(pid: int) -> str | None:
    """An identity of process ``pid`` that a later process reusing the pid will not share (its start time)."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def process_alive(pid: int | None, start: str | None = None) -> bool:
    """Whether ``pid`` is a live process (not a zombie) and, when ``start`` is given, still the same process."""
    if not pid:
        return False
    if Path("/proc/self/stat").exists():
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            _reap(pid)
            return False
        return start is None or stat[1] == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    """Collect the exit status of a finished child of this process (a dashboard that launched it), if it is one."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass
