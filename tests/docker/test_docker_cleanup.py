"""No container is ever left behind: close, cancelled cells, interpreter exit, killed kernels
(the reaper), and many cycles of each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from docker_helpers import session_containers, volume_exists, volumes_of
from rlm_jupyter.sandbox import open_sandbox
from rlm_jupyter.sandbox import docker as dsb

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_ready")]

IMAGE = os.environ.get("RLM_DOCKER_IMAGE") or dsb.DEFAULT_IMAGE
#: Sandboxes opened at once in the cycle tests: enough to be quick, few enough for 2 cores.
PARALLEL = 4


def containers_with_prefix(prefix: str) -> list[str]:
    return [r["name"] for r in dsb.list_sandbox_containers() if r["session"].startswith(prefix)]


def our_threads() -> list[str]:
    """Docker threads still alive: each waits on a container this process holds."""
    return [t.name for t in threading.enumerate() if t.name.startswith("rlm-docker-")]


def wait_for_no_threads(timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while our_threads() and time.monotonic() < deadline:
        time.sleep(0.1)
    return our_threads()


@pytest.mark.slow
def test_100_open_close_cycles_leave_nothing() -> None:
    prefix = f"cyc{uuid.uuid4().hex[:6]}"

    def cycle(i: int) -> str:
        with open_sandbox("docker", context=f"cycle {i}", timeout_s=10,
                          session_id=f"{prefix}-{i}") as sb:
            return sb.execute("print(context)").stdout

    with ThreadPoolExecutor(PARALLEL) as pool:
        outputs = list(pool.map(cycle, range(100)))
    assert outputs == [f"cycle {i}\n" for i in range(100)]
    assert containers_with_prefix(prefix) == []
    assert wait_for_no_threads() == []


@pytest.mark.slow
def test_20_runs_killed_mid_cell_leave_nothing() -> None:
    prefix = f"kill{uuid.uuid4().hex[:6]}"

    def killed_run(i: int) -> bool:
        sb = open_sandbox("docker", context="x", timeout_s=120, session_id=f"{prefix}-{i}")
        results = []
        runner = threading.Thread(
            target=lambda: results.append(sb.execute("n = 0\nwhile True:\n    n += 1")))
        runner.start()
        time.sleep(0.5)
        sb.close()  # what a kernel interrupt or the Stop button does to a running cell
        runner.join(60)
        return not runner.is_alive() and bool(results) and not results[0].ok

    with ThreadPoolExecutor(PARALLEL) as pool:
        stopped = list(pool.map(killed_run, range(20)))
    assert all(stopped)
    assert containers_with_prefix(prefix) == []
    assert wait_for_no_threads() == []


KERNEL = textwrap.dedent("""
    import sys, time
    from rlm_jupyter.sandbox import open_sandbox
    sb = open_sandbox("docker", context="x", timeout_s=300, session_id=sys.argv[1])
    print("ready", sb.container_name, flush=True)
    if sys.argv[2] == "busy":
        sb.execute("while True:\\n    pass")
    elif sys.argv[2] == "idle":
        time.sleep(600)
    # "exit": leave without close(); atexit must clean up
""")


def _kernel(session: str, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", KERNEL, session, mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), line
    return proc


def test_interpreter_exit_removes_the_container() -> None:
    session = f"exit{uuid.uuid4().hex[:6]}"
    proc = _kernel(session, "exit")
    assert proc.wait(60) == 0
    assert session_containers(session) == []


def test_an_idle_killed_kernels_container_goes_by_itself() -> None:
    """No reaper needed when the worker is idle: the kernel's death closes the attach
    connection, the worker reads the end of its input and exits, and AutoRemove deletes the
    container with the volume that held the context."""
    session = f"idle{uuid.uuid4().hex[:6]}"
    proc = _kernel(session, "idle")
    [name] = session_containers(session)
    volumes = volumes_of(name)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 20
    while session_containers(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_containers(session) == []
    assert volumes and not [v for v in volumes if volume_exists(v)]


def test_killed_kernels_containers_are_reaped() -> None:
    prefix = f"reap{uuid.uuid4().hex[:6]}"
    kernels = [_kernel(f"{prefix}-{i}", "busy") for i in range(3)]
    names = containers_with_prefix(prefix)
    assert len(names) == 3
    for proc in kernels:
        proc.send_signal(signal.SIGKILL)  # no close(), no atexit: only the reaper can help
        proc.wait(30)
    dirs = [os.path.join(tempfile.gettempdir(), n) for n in os.listdir(tempfile.gettempdir())
            if any(n.startswith(f"rlm-docker-{k.pid}-") for k in kernels)]
    assert len(dirs) == 3  # their context files, which hold the user's data
    removed = dsb.reap_orphans()
    assert set(names) <= set(removed)
    assert containers_with_prefix(prefix) == []
    assert not [d for d in dirs if os.path.exists(d)]


def test_reaper_removes_only_orphans_of_this_host() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    tag = uuid.uuid4().hex[:6]

    def start(name: str, pid: int, host: str) -> None:
        subprocess.run(
            ["docker", "run", "-d", "--rm", "--name", name, "--network", "none",
             "--label", f"{dsb.LABEL}=1", "--label", f"{dsb.LABEL_PID}={pid}",
             "--label", f"{dsb.LABEL_HOST}={host}", "--label", f"{dsb.LABEL_SESSION}=t{tag}",
             IMAGE, "python3", "-c", "import time; time.sleep(600)"],
            check=True, capture_output=True, timeout=60)

    orphan, alive, foreign = f"rlm-orphan-{tag}", f"rlm-alive-{tag}", f"rlm-foreign-{tag}"
    try:
        start(orphan, dead.pid, dsb._hostname())
        start(alive, os.getpid(), dsb._hostname())
        start(foreign, dead.pid, "some-other-host")
        removed = dsb.reap_orphans()
        assert orphan in removed
        assert alive not in removed and foreign not in removed
        assert sorted(session_containers(f"t{tag}")) == sorted([alive, foreign])
    finally:
        subprocess.run(["docker", "rm", "-f", orphan, alive, foreign], capture_output=True,
                       timeout=60)


def test_opening_a_sandbox_reaps_orphans() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"rlm-orphan-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "none",
         "--label", f"{dsb.LABEL}=1", "--label", f"{dsb.LABEL_PID}={dead.pid}",
         "--label", f"{dsb.LABEL_HOST}={dsb._hostname()}", IMAGE, "true"],
        check=True, capture_output=True, timeout=60)  # an exited, never-removed container
    try:
        with open_sandbox("docker", timeout_s=5):
            pass
        left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"name={name}"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
        assert left == ""
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
