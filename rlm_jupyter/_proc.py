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


# ---- process trees: a cgroup where we can make one, else a /proc sweep ------------------------

def _ppid_map() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) for every process in /proc (empty without /proc)."""
    out: dict[int, tuple[int, str]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None:
            continue
        try:
            out[int(name)] = (int(fields[1]), fields[0])
        except ValueError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every live (not zombie) process below ``pid`` in the parent chain, parents first."""
    tree = _ppid_map()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in tree.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        p = todo.pop(0)
        if p in found or p == pid:
            continue
        found.append(p)
        todo.extend(children.get(p, ()))
    return [p for p in found if tree.get(p, (0, "Z"))[1] not in ("Z", "X")]


def _marked(token: str) -> list[int]:
    """Processes whose initial environment carries ``token`` (set by the host at spawn; every
    fork inherits it, whatever session or parent it ends up with)."""
    if not token:
        return []
    needle = token.encode()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle in fh.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def kill_tree(pid: int, token: str = "", timeout: float = 2.0) -> list[int]:
    """SIGKILL everything below ``pid`` (the parent chain; with ``token``, also any process
    whose environment carries it: a ``setsid()`` orphan re-parented to init), then ``pid``.
    The root is killed last so that orphans stay below it (a child subreaper) while we sweep.
    Bounded by ``timeout``; returns the pids signalled. Without /proc only ``pid`` is killed."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    hit: list[int] = []
    while time.monotonic() < deadline:
        found = [p for p in descendants(pid) + _marked(token) if p != pid]
        live = [p for p in found if pid_alive(p)]
        if not live:
            break
        for p in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
            if p not in hit:
                hit.append(p)
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    return hit


_CG_PREFIX = "rlm-sandbox-"
_cg_counter = 0


def _cgroup2_dir() -> str | None:
    """This process's own cgroup v2 directory, when a cgroup2 file system is mounted."""
    try:
        with open("/proc/self/cgroup") as fh:
            path = next((ln.strip()[3:] for ln in fh if ln.startswith("0::")), None)
        with open("/proc/self/mountinfo") as fh:
            mounts = [ln.split() for ln in fh]
    except OSError:
        return None
    if path is None:
        return None
    for f in mounts:
        try:
            sep = f.index("-")
        except ValueError:
            continue
        if f[sep + 1] != "cgroup2":
            continue
        root, point = f[3], f[4]
        if root == "/" or path == root or path.startswith(root.rstrip("/") + "/"):
            rel = path[len(root.rstrip("/")):] if root != "/" else path
            return os.path.join(point, rel.lstrip("/")).rstrip("/") or point
    return None


def cgroup_create() -> str | None:
    """A fresh child cgroup (v2, with ``cgroup.kill``: Linux >= 5.14) below ours, or None where
    we may not make one (no cgroup2, read-only in a container, no delegation). Empty groups
    left by a kernel that died are removed on the way (their processes killed first)."""
    global _cg_counter
    parent = _cgroup2_dir()
    if not parent or not os.access(parent, os.W_OK):
        return None
    reap_stale_cgroups(parent)
    _cg_counter += 1
    me = os.getpid()
    path = os.path.join(parent, f"{_CG_PREFIX}{me}-{process_start(me) or 0}-{_cg_counter}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    if not os.path.exists(os.path.join(path, "cgroup.kill")):
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None
    return path


def cgroup_add(path: str, pid: int) -> bool:
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as fh:
            fh.write(str(pid))
        return True
    except OSError:
        return False


def cgroup_pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as fh:
            return [int(x) for x in fh.read().split()]
    except (OSError, ValueError):
        return []


def cgroup_kill(path: str, timeout: float = 2.0, remove: bool = True) -> bool:
    """Kill every process in the group (one write to ``cgroup.kill``; no fork can outrun it),
    wait (bounded) until it is empty, and remove it when ``remove``. True when it is empty."""
    import time

    with contextlib.suppress(OSError):
        with open(os.path.join(path, "cgroup.kill"), "w") as fh:
            fh.write("1")
    deadline = time.monotonic() + timeout
    while cgroup_pids(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    empty = not cgroup_pids(path)
    if remove and empty:
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY for a moment while the last zombie goes
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
    return empty


def reap_stale_cgroups(parent: str) -> None:
    """Kill and remove our groups whose kernel (pid and start time in the name) is gone."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(_CG_PREFIX)]
    except OSError:
        return
    for name in names:
        try:
            pid_s, start, _ = name[len(_CG_PREFIX):].split("-")
            pid = int(pid_s)
        except ValueError:
            continue
        if pid_alive(pid, "" if start == "0" else start):
            continue
        cgroup_kill(os.path.join(parent, name), timeout=0.5)
