"""Defence in depth for the local worker: what the OS still refuses once code is past the policy.

Each test simulates an escape that already happened (issue 12: a real ``os``, ``socket`` and
``fork`` in the worker). It uses the test-only ``raw_exec`` request: plain Python run in the
worker process with every OS-level restriction in force (rlimits, Landlock, capabilities,
seccomp, the cgroup) and no policy. The host turns it on only when its own environment sets
``RLM_SANDBOX_UNSAFE_TEST_RAW_EXEC=1`` before the worker starts (the ``raw`` fixture); sandbox
code can neither send that request nor change the init message.

What is checked: forks are refused (seccomp); where forks are allowed (``seccomp=False``), a
``fork()`` + ``setsid()`` child or a double-forked daemon does not outlive ``close()``, a
hard-deadline restart or the kernel's exit, and ``close()`` returns promptly even when an
orphan holds the protocol pipes; ``socket()`` fails for every family (UDP, AF_UNIX, TCP); other
processes cannot be signalled; capabilities are gone; the worker still works afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any, Iterator

import pytest

from rlm_jupyter._proc import pid_alive
from rlm_jupyter.sandbox import local as local_mod
from rlm_jupyter.sandbox import open_sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process-level containment is Linux-only")

RAW_ENV = "RLM_SANDBOX_UNSAFE_TEST_RAW_EXEC"


@pytest.fixture
def raw(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(RAW_ENV, "1")
    yield


def run_raw(sb: Any, code: str, timeout: float = 15.0) -> dict[str, Any]:
    """Run plain Python in the worker (an escape simulated); the reply must come back."""
    reply = sb._raw_exec_for_tests(textwrap.dedent(code), timeout)
    assert reply is not None, "the worker died or did not answer"
    assert reply.get("op") == "raw_result", reply
    return reply


def _wait_dead(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


def _kill_leftovers(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# A child that leaves the worker's session and keeps the protocol pipes open (it inherited
# them), and a double-forked daemon whose parent exits at once (re-parented away from the
# worker). Both print their pid, then sleep far longer than any test.
ORPHANS = """
import os, time
r, w = os.pipe()
a = os.fork()
if a == 0:
    os.setsid()
    b = os.fork()
    if b == 0:
        os.write(w, b"%d\\n" % os.getpid())
        time.sleep(300)
        os._exit(0)
    os.write(w, b"%d\\n" % os.getpid())
    time.sleep(300)
    os._exit(0)
c = os.fork()
if c == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, b"%d\\n" % os.getpid())
        time.sleep(300)
        os._exit(0)
    os._exit(0)
os.waitpid(c, 0)
data = b""
while len(data.split()) < 3:
    data += os.read(r, 64)
print(*[int(x) for x in data.split()[:3]])
"""


def _start_orphans(sb: Any) -> list[int]:
    reply = run_raw(sb, ORPHANS)
    if reply["error"] and "PermissionError" in reply["error"]:
        pytest.skip("forks are refused here even without seccomp (RLIMIT_NPROC, non-root)")
    assert reply["error"] is None, reply
    pids = [int(x) for x in reply["stdout"].split()]
    assert len(pids) == 3 and all(pid_alive(p) for p in pids)
    return pids


@pytest.fixture(params=["cgroup", "sweep"])
def tree_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of killing the tree: the cgroup (where one can be made) and the /proc sweep
    used where it cannot (a read-only /sys/fs/cgroup in a container)."""
    if request.param == "sweep":
        monkeypatch.setattr(local_mod, "cgroup_create", lambda: None)
    else:
        from rlm_jupyter._proc import cgroup_create, cgroup_kill
        probe = cgroup_create()
        if probe is None:
            pytest.skip("no writable cgroup v2 here; the sweep variant covers this machine")
        cgroup_kill(probe, timeout=0.5)
    return str(request.param)


# ---- fork / setsid / daemon: nothing outlives the worker -----------------------------------

def test_setsid_children_die_with_close_and_close_is_prompt(raw: None, tree_mode: str) -> None:
    sb = open_sandbox("local", context="c", timeout_s=5, seccomp=False)
    pids: list[int] = []
    try:
        pids = _start_orphans(sb)
        t0 = time.monotonic()
        sb.close()
        assert time.monotonic() - t0 < 5.0, "close() waited on a pipe an orphan holds"
        assert _wait_dead(pids) == [], f"survived close() ({tree_mode})"
    finally:
        sb.close()
        _kill_leftovers(pids)


def test_hard_deadline_restart_kills_the_whole_tree(raw: None, tree_mode: str) -> None:
    sb = open_sandbox("local", context="c", timeout_s=1, grace_s=0.5, seccomp=False)
    pids: list[int] = []
    try:
        pids = _start_orphans(sb)
        t0 = time.monotonic()
        r = sb.execute("sum(range(10**15))", timeout_s=0.5)
        assert r.timed_out and r.restarted
        assert time.monotonic() - t0 < 10.0
        assert _wait_dead(pids) == [], f"survived the restart ({tree_mode})"
        assert sb.execute("print(6 * 7)").stdout == "42\n"
    finally:
        sb.close()
        _kill_leftovers(pids)


def test_kernel_exit_kills_the_whole_tree(tmp_path: Any) -> None:
    """The kernel (here a child Python) exits without closing its sandbox: atexit does it."""
    script = tmp_path / "kernel.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, textwrap
        os.environ[{RAW_ENV!r}] = "1"
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from rlm_jupyter.sandbox import open_sandbox
        from test_worker_escape_containment import ORPHANS
        sb = open_sandbox("local", context="c", timeout_s=5, seccomp=False)
        reply = sb._raw_exec_for_tests(textwrap.dedent(ORPHANS))
        print(reply["stdout"].strip() or "none", flush=True)
    """))
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.monotonic() - t0 < 30.0
    out = proc.stdout.strip().splitlines()[-1]
    if out == "none":
        pytest.skip("forks are refused here even without seccomp")
    pids = [int(x) for x in out.split()]
    try:
        assert _wait_dead(pids) == [], "survived the kernel's exit"
    finally:
        _kill_leftovers(pids)


def test_close_never_blocks_on_a_pipe_an_orphan_holds(raw: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if the tree kill missed a process (simulated: both mechanisms switched off), the
    orphan holding the protocol and stderr pipes cannot make close() wait."""
    monkeypatch.setattr(local_mod, "cgroup_create", lambda: None)
    monkeypatch.setattr(local_mod, "kill_tree", lambda *a, **k: [])
    sb = open_sandbox("local", context="c", timeout_s=5, seccomp=False)
    pids: list[int] = []
    try:
        pids = _start_orphans(sb)
        t0 = time.monotonic()
        sb.close()
        assert time.monotonic() - t0 < 8.0, "close() waited on a pipe an orphan holds"
    finally:
        _kill_leftovers(pids)


# ---- seccomp: no new processes, no program, no socket --------------------------------------

def test_fork_bomb_is_refused(raw: None) -> None:
    with open_sandbox("local", context="c", timeout_s=5) as sb:
        reply = run_raw(sb, """
            import os, subprocess
            ok = refused = 0
            for _ in range(60):
                try:
                    pid = os.fork()
                except OSError:
                    refused += 1
                    continue
                if pid == 0:
                    os._exit(0)
                ok += 1
                os.waitpid(pid, 0)
            try:
                subprocess.run(["/bin/true"])
                spawned = "yes"
            except OSError as exc:
                spawned = type(exc).__name__
            try:
                os.execv("/bin/true", ["true"])
            except OSError as exc:
                execd = type(exc).__name__
            import threading
            t = threading.Thread(target=lambda: None)
            t.start(); t.join()
            print(ok, refused, spawned, execd, "threads-ok")
        """)
        assert reply["error"] is None, reply
        assert reply["stdout"].split() == ["0", "60", "PermissionError", "PermissionError",
                                           "threads-ok"], reply
        assert sb.worker_info.get("seccomp") == 1


def test_udp_datagram_is_refused(raw: None) -> None:
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind(("127.0.0.1", 0))
    host.settimeout(0.5)
    port = host.getsockname()[1]
    try:
        with open_sandbox("local", context="c", timeout_s=5) as sb:
            reply = run_raw(sb, f"""
                import socket
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.sendto(b"exfiltrated", ("127.0.0.1", {port}))
                    print("sent")
                except OSError as exc:
                    print(type(exc).__name__)
            """)
            assert reply["stdout"].strip() == "PermissionError", reply
        with pytest.raises(socket.timeout):
            host.recvfrom(100)
    finally:
        host.close()


def test_unix_socket_connect_is_refused(raw: None, tmp_path: Any) -> None:
    path = str(tmp_path / "host.sock")
    host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host.bind(path)
    os.chmod(path, 0o777)
    host.listen(1)
    host.settimeout(0.5)
    try:
        with open_sandbox("local", context="c", timeout_s=5, read_paths=[str(tmp_path)]) as sb:
            reply = run_raw(sb, f"""
                import socket
                for target in ({path!r}, "\\0rlm-abstract-test"):
                    try:
                        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        s.connect(target)
                        print("connected")
                    except OSError as exc:
                        print(type(exc).__name__)
                try:
                    socket.socketpair()
                    print("pair")
                except OSError as exc:
                    print(type(exc).__name__)
            """)
            assert reply["stdout"].split() == ["PermissionError"] * 3, reply
        with pytest.raises(socket.timeout):
            host.accept()
    finally:
        host.close()


def test_tcp_is_still_refused_even_without_landlock(raw: None) -> None:
    host = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    host.bind(("127.0.0.1", 0))
    host.listen(1)
    host.settimeout(0.5)
    port = host.getsockname()[1]
    try:
        for landlock in (True, False):
            with open_sandbox("local", context="c", timeout_s=5, landlock=landlock) as sb:
                reply = run_raw(sb, f"""
                    import socket
                    for fam in (socket.AF_INET, socket.AF_INET6):
                        try:
                            s = socket.socket(fam, socket.SOCK_STREAM)
                            s.connect(("127.0.0.1", {port}) if fam == socket.AF_INET
                                      else ("::1", {port}))
                            print("connected")
                        except OSError as exc:
                            print(type(exc).__name__)
                """)
                assert reply["stdout"].split() == ["PermissionError"] * 2, (landlock, reply)
        with pytest.raises(socket.timeout):
            host.accept()
    finally:
        host.close()


def test_other_processes_cannot_be_signalled_or_traced(raw: None) -> None:
    """Without Landlock's signal scoping (kernels < 6.12), seccomp still keeps kill() to the
    worker itself; as root the capabilities (CAP_KILL, CAP_SYS_PTRACE, ...) are gone too."""
    with open_sandbox("local", context="c", timeout_s=5, landlock=False) as sb:
        reply = run_raw(sb, f"""
            import os, signal
            out = []
            for pid in ({os.getpid()}, -1, 1):
                try:
                    os.kill(pid, 0)
                    out.append("sent")
                except OSError as exc:
                    out.append(type(exc).__name__)
            os.kill(os.getpid(), 0)
            signal.pthread_kill(__import__("threading").get_ident(), 0)
            with open("/proc/self/status") as fh:
                caps = [l.split()[1] for l in fh if l.startswith(("CapEff", "CapBnd"))]
            print(*out, *caps)
        """)
        assert reply["error"] is None, reply
        words = reply["stdout"].split()
        assert words[:3] == ["PermissionError"] * 3, reply
        assert words[3:] == ["0000000000000000"] * 2, reply
        assert sb.worker_info.get("caps_dropped") == 1


# ---- the worker still works ------------------------------------------------------------------

def test_worker_still_works_normally(raw: None) -> None:
    calls: list[str] = []

    def llm_query(prompt: str) -> str:
        calls.append(prompt)
        return "answer:" + prompt

    with open_sandbox("local", context={"a": [1, 2, 3]}, functions={"llm_query": llm_query},
                      timeout_s=2, grace_s=1) as sb:
        assert sb.worker_info.get("seccomp") == 1
        r = sb.execute("import json, re, collections\n"
                       "x = sum(context['a'])\n"
                       "print(x, llm_query('hi'), json.dumps([x]))")
        assert r.error is None and r.stdout == "6 answer:hi [6]\n", r
        assert calls == ["hi"]
        r = sb.execute("sum(range(10**15))", timeout_s=0.5)
        assert r.timed_out
        r = sb.execute("print(sorted(context['a'])[-1], llm_query('again'))")
        assert r.error is None and r.stdout == "3 answer:again\n", r
        assert sb.worker_info.get("seccomp") == 1  # the restarted worker is filtered too


def test_raw_exec_is_off_unless_the_host_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RAW_ENV, raising=False)
    with open_sandbox("local", context="c", timeout_s=5) as sb:
        reply = sb._raw_exec_for_tests("print('escaped')")
        assert reply is not None and reply.get("op") == "error" and "escaped" not in str(reply)
        r = sb.execute("print(1)")
        assert r.stdout == "1\n"
