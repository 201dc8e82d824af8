"""Life cycle: no worker left behind, other interpreters, and the in-process stuck state."""

from __future__ import annotations

import glob
import os
import threading
import time

import pytest

from rlm_jupyter.sandbox import SandboxError, open_sandbox


def _live_workers() -> list[int]:
    """Our child processes running worker.py that are not yet reaped (zombies included)."""
    me = os.getpid()
    found = []
    for stat_path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat_path) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            if ppid != me:
                continue
            pid = int(stat_path.split("/")[2])
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
            if b"worker.py" in cmd or fields[0] == "Z":
                found.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_open_close_cycles_leave_nothing_behind() -> None:
    before = set(_live_workers())
    for _ in range(100):
        sb = open_sandbox("local", context="c", timeout_s=5)
        assert sb.execute("print(1)").stdout == "1\n"
        sb.close()
    time.sleep(0.2)
    assert set(_live_workers()) - before == set()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_runs_killed_mid_cell_leave_nothing_behind() -> None:
    before = set(_live_workers())
    for _ in range(20):
        sb = open_sandbox("local", context="c", timeout_s=30)
        results: list = []

        def run(box=sb, out=results) -> None:  # type: ignore[no-untyped-def]
            out.append(box.execute("while True:\n    pass"))

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.3)
        sb.close()  # e.g. the run was cancelled
        t.join(15)
        assert not t.is_alive()
        assert results and not results[0].ok
        with pytest.raises(SandboxError):
            sb.execute("print(1)")
    time.sleep(0.2)
    assert set(_live_workers()) - before == set()


def test_timeouts_and_restarts_leave_one_worker() -> None:
    before = set(_live_workers())
    with open_sandbox("local", timeout_s=0.5, grace_s=0.5) as sb:
        for _ in range(3):
            assert sb.execute("sum(range(10**15))").restarted
        assert sb.execute("print(2)").stdout == "2\n"
        assert len(set(_live_workers()) - before) == 1
    time.sleep(0.2)
    assert set(_live_workers()) - before == set()


def _pyenv(version_prefix: str) -> str | None:
    for path in sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version_prefix}*/bin/"
                                                    "python3"))):
        return path
    for path in (f"/usr/bin/python{version_prefix}", f"/usr/local/bin/python{version_prefix}"):
        if os.path.exists(path):
            return path
    return None


@pytest.mark.parametrize("version", ["3.10", "3.12", "3.13"])
def test_worker_runs_on_other_pythons(version: str) -> None:
    python = _pyenv(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    with open_sandbox("local", context={"a": [1, 2]}, python=python, timeout_s=10) as sb:
        assert sb.worker_info["python"].startswith(version)  # type: ignore[attr-defined]
        r = sb.execute("t = 0\nfor k, v in context.items():\n    t += sum(v)\nprint(t)")
        assert r.stdout == "3\n"
        assert "SecurityError" in (sb.execute("().__class__").error or "")


def test_python39_refuses_without_restrictedpython() -> None:
    python = _pyenv("3.9")
    if python is None:
        pytest.skip("no Python 3.9 on this machine")
    with pytest.raises(SandboxError, match="RestrictedPython"):
        open_sandbox("local", context="c", python=python)
    with open_sandbox("local", context="c", python=python, allow_unrestricted=True) as sb:
        assert sb.worker_info["restricted"] is False  # type: ignore[attr-defined]
        assert sb.execute("print(context)").stdout == "c\n"
        assert "ImportError" in (sb.execute("import os").error or "")


def test_inprocess_refuses_cells_after_unstoppable_one() -> None:
    np = pytest.importorskip("numpy")
    del np
    with open_sandbox("inprocess", timeout_s=0.2, grace_s=0.3) as sb:
        # BLAS releases the GIL, so the host sees the deadline pass while C code runs on. One
        # long C call (~128 GFLOP), not a chain: between the products of a chain the policy's
        # checks run, and a product that ends inside the grace period lets the cell be
        # stopped cleanly, which is not the case under test.
        r = sb.execute("import numpy as np\na = np.ones((4000, 4000))\nb = a @ a")
        if not r.timed_out:
            pytest.skip("this machine multiplied the matrices before the deadline")
        if "restart the kernel" not in (r.error or "") and "sandbox='local'" not in (r.error or ""):
            assert r.error and r.error.startswith("TimeoutError"), r.error
            pytest.skip("the C call ended inside the grace period: the cell stopped cleanly")
        assert "restart the kernel" in (r.error or "") or "sandbox='local'" in (r.error or "")
        try:
            sb.execute("print(1)")
        except SandboxError as exc:
            assert "restart the kernel" in str(exc).lower() or "sandbox='local'" in str(exc)
        # once the C call has finished, cells are accepted again
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                r = sb.execute("print(2)")
                break
            except SandboxError:
                time.sleep(0.5)
        assert r.stdout == "2\n"


def test_inprocess_memory_watchdog_stops_growth() -> None:
    with open_sandbox("inprocess", timeout_s=20, memory_mb=200) as sb:
        r = sb.execute("x = []\nwhile True:\n    x.append(' ' * 10**6)")
        assert r.error and "memory" in r.error.lower()
        sb.execute("x = None")
        assert sb.execute("print(3)").stdout == "3\n"


def test_inprocess_shares_context_and_protects_it() -> None:
    data = {"k": [1, 2, 3]}
    with open_sandbox("inprocess", context=data) as sb:
        r = sb.execute("context['x'] = 1")
        assert r.error and "read-only" in r.error
        assert "x" not in data
        assert sb.execute("print(context['k'][2])").stdout == "3\n"
