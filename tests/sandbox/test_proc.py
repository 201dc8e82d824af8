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
