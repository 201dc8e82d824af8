"""Is a process still there? One rule for every place that keeps pids across time.

The Docker reaper (containers labelled with their kernel's pid) and the local model servers
(pid files) both outlive the process they point at, so a recorded pid may belong to a process
that has exited (a zombie not yet reaped) or, later, to an unrelated process that reused the
number. Standard library only; importing it costs nothing.
"""

from __future__ import annotations

import contextlib
import os


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (``[0]`` is the state,
    ``[19]`` the start time in clock ticks since boot); None where there is no /proc entry."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name may itself contain ") ", so split at the last one.
    fields = data.rsplit(")", 1)[-1].split()
    return fields if len(fields) > 19 else None


def process_start(pid: int) -> str:
    """Start time of ``pid`` (clock ticks since boot; '' where /proc is missing), recorded
    beside a pid so that a reused pid is not mistaken for the original process."""
    fields = _stat_fields(pid)
    return fields[19] if fields else ""


def pid_alive(pid: int, start: str = "") -> bool:
    """Whether ``pid`` still runs, and is the process that started at ``start`` when given.

    Dead: no such process; a zombie (exited, not reaped; reaped here when it is our child);
    a pid whose start time differs from ``start`` (the number was reused). A process owned by
    another user counts as alive. Without /proc (macOS) only the first two checks apply, the
    zombie one for our own children.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else (so not our child)
    else:
        with contextlib.suppress(ChildProcessError, OSError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return False  # our child had exited: reaped now
    fields = _stat_fields(pid)
    if fields is not None:
        if fields[0] in ("Z", "X"):
            return False  # exited; its parent has not reaped it yet
        if start and fields[19] != start:
            return False  # the pid was reused by another process
    return True
