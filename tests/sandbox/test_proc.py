"""``pid_alive``: one rule for the Docker reaper and the local model servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from rlm_jupyter._proc import pid_alive, process_start


def test_this_process_is_alive_with_its_start_time() -> None:
    me = os.getpid()
    assert pid_alive(me)
    start = process_start(me)
    if start:
        assert pid_alive(me, start)
        assert not pid_alive(me, str(int(start) + 1))  # a reused pid has another start time


def test_nonsense_pids_are_dead() -> None:
    assert not pid_alive(0)
    assert not pid_alive(-5)


def test_an_exited_child_is_dead_and_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    pid = child.pid
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(pid)  # a zombie counts as dead (and was reaped here)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_a_zombie_of_another_parent_is_dead() -> None:
    # The middle process starts a child that exits, and never reaps it.
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'pass'])\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(30)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pid_alive(pid)
        assert pid_alive(parent.pid)
    finally:
        parent.kill()
        parent.wait()


ORPHAN_MAKER = (
    "import os, sys, time\n"
    "r, w = os.pipe()\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        os.write(w, b'%d\\n' % os.getpid())\n"
    "        time.sleep(120)\n"
    "    os._exit(0)\n"
    "print(os.read(r, 32).decode().strip(), flush=True)\n"
    "time.sleep(120)\n")


def _wait(check, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_kill_tree_finds_a_setsid_daemon_by_its_token() -> None:
    """The daemon left its parent's session and was re-parented away: the parent chain no
    longer leads to it, the environment token does."""
    from rlm_jupyter._proc import descendants, kill_tree

    token = "rlm-test-token-" + os.urandom(6).hex()
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_MAKER], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, RLM_SANDBOX_TREE=token),
                              start_new_session=True)
    assert parent.stdout is not None
    daemon = int(parent.stdout.readline())
    try:
        assert pid_alive(daemon) and daemon not in descendants(parent.pid)
        t0 = time.monotonic()
        hit = kill_tree(parent.pid, token, timeout=2.0)
        assert time.monotonic() - t0 < 3.0
        assert daemon in hit
        assert _wait(lambda: not pid_alive(daemon))
        parent.wait(timeout=5)
    finally:
        for p in (daemon, parent.pid):
            try:
                os.kill(p, 9)
            except (ProcessLookupError, PermissionError):
                pass


def test_cgroup_kill_takes_the_whole_group() -> None:
    from rlm_jupyter._proc import cgroup_add, cgroup_create, cgroup_kill, cgroup_pids

    path = cgroup_create()
    if path is None:
        pytest.skip("no writable cgroup v2 with cgroup.kill here")
    parent = subprocess.Popen([sys.executable, "-c", "import time\ntime.sleep(1)\n" + ORPHAN_MAKER],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert cgroup_add(path, parent.pid)  # before it forks (it sleeps first)
        assert parent.stdout is not None
        daemon = int(parent.stdout.readline())
        assert daemon in cgroup_pids(path)
        assert cgroup_kill(path, timeout=2.0)
        assert _wait(lambda: not pid_alive(daemon))
        assert not os.path.exists(path)  # removed once empty
        parent.wait(timeout=5)
    finally:
        if os.path.exists(path):
            cgroup_kill(path, timeout=1.0)
        try:
            parent.kill()
        except ProcessLookupError:
            pass
