"""The default sandbox: the worker program as a hardened local subprocess.

:class:`LocalSandbox` starts the worker with ``subprocess.Popen`` (never a bare ``fork()`` of
the kernel). Everything that does not depend on how the worker process is started (the init
handshake, host-function dispatch, the hard deadline, recovery) is
:class:`~rlm_jupyter.sandbox.worker_sandbox.WorkerSandbox`'s, re-exported here for
compatibility.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from typing import IO, Any

from .._proc import cgroup_add, cgroup_create, cgroup_kill, kill_tree
from .base import SandboxError
from .protocol import worker_path
from .worker_sandbox import (_LIVE, RAW_EXEC_ENV, RESET_NOTE, WorkerSandbox,  # noqa: F401
                             default_memory_mb)


def _minimal_env(home: str) -> dict[str, str]:
    """No API keys, no tokens, no user configuration: only what Python needs to run."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": home,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_MAX_THREADS": "1",
    }


class LocalSandbox(WorkerSandbox):
    """The worker as a local subprocess: ``python -I -B worker.py --fds R,W`` in a new session,
    an empty working directory, a minimal environment and rlimits (set by the worker before it
    reads anything). The protocol uses dedicated pipes, not stdin/stdout."""

    kind = "local"

    def __init__(self, *args: Any, python: str | None = None, landlock: bool = True,
                 read_paths: list[str] | tuple[str, ...] = (), seccomp: bool = True,
                 **kwargs: Any) -> None:
        self._python = python or sys.executable
        self._landlock = landlock
        self._seccomp = seccomp
        self._read_paths = [str(p) for p in read_paths]
        self._proc: subprocess.Popen[bytes] | None = None
        self._cgroup: str | None = None
        self._tree_token = ""
        self._tmpdir: str | None = None
        self._stderr_tail = b""
        super().__init__(*args, **kwargs)

    def _spawn(self, context_bytes: int) -> tuple[IO[bytes], IO[bytes]]:
        if not self._python or not os.path.exists(self._python):
            raise SandboxError("cannot find a Python interpreter for the sandbox worker; pass "
                               "python='/path/to/python3'")
        if self._tmpdir is None or not os.path.isdir(self._tmpdir):
            self._tmpdir = tempfile.mkdtemp(prefix="rlm-sandbox-")
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        cmd = [self._python, "-I", "-B", worker_path(), "--fds", f"{to_r},{from_w}",
               "--memory-mb", str(int(self.memory_mb or 0)), "--cpu-s", str(int(self.cpu_s)),
               "--nofile", "256"]
        if self._landlock:
            cmd.append("--landlock")
            for p in self._read_paths:
                cmd += ["--read-path", p]
        cmd.append("--harden")
        if self._seccomp:
            cmd.append("--seccomp")
        # Every process of this worker's tree carries the token in its environment: the
        # fallback sweep finds a setsid() orphan by it where no cgroup can be made.
        self._tree_token = secrets.token_hex(12)
        env = dict(_minimal_env(self._tmpdir), RLM_SANDBOX_TREE=self._tree_token)
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                pass_fds=(to_r, from_w), cwd=self._tmpdir, env=env,
                start_new_session=True, close_fds=True)
        except OSError as exc:
            os.close(to_r), os.close(to_w), os.close(from_r), os.close(from_w)
            raise SandboxError(f"cannot start the sandbox worker: {exc}") from None
        os.close(to_r)
        os.close(from_w)
        # Into a cgroup of its own before it reads its first byte (nothing untrusted has run
        # yet), so that cgroup.kill takes everything it will ever start.
        self._cgroup = cgroup_create()
        if self._cgroup and not cgroup_add(self._cgroup, self._proc.pid):
            cgroup_kill(self._cgroup, timeout=0.2)
            self._cgroup = None
        self._stderr_tail = b""
        threading.Thread(target=self._drain_stderr, args=(self._proc,), daemon=True,
                         name="rlm-sandbox-stderr").start()
        return os.fdopen(to_w, "wb"), os.fdopen(from_r, "rb")

    def _kill(self) -> None:
        """Kill the worker and everything it started, whatever session or parent those
        ended up with: ``cgroup.kill`` where we could make a cgroup, else a sweep of its
        descendants (the worker is their child subreaper) and of the processes carrying its
        token, then its process group. Every wait is bounded; nothing here waits on a pipe."""
        proc = self._proc
        if proc is None:
            self._close_streams()
            return
        cgroup, self._cgroup = self._cgroup, None
        emptied = cgroup_kill(cgroup, timeout=2.0) if cgroup else False
        if not emptied:
            kill_tree(proc.pid, self._tree_token, timeout=2.0)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if cgroup:
                cgroup_kill(cgroup, timeout=0.5)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self._close_streams()

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _close_streams(self) -> None:
        """Close our pipe ends without ever blocking: the writer is non-blocking (pending
        bytes are dropped), and the reader is closed by its own thread at EOF when that
        thread still runs (closing it here would wait for the read)."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if writer is not None:
            try:
                os.set_blocking(writer.fileno(), False)
            except (OSError, ValueError):
                pass
            try:
                writer.close()
            except Exception:
                pass
        thread = self._reader_thread
        if reader is not None and (thread is None or not thread.is_alive()):
            try:
                reader.close()
            except Exception:
                pass

    def _death_reason(self) -> str:
        proc = self._proc
        if proc is None:
            return "no process"
        try:
            code = proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = {"SIGKILL": "killed, often for memory", "SIGSEGV": "crashed",
                    "SIGXCPU": "CPU limit", "SIGXFSZ": "file size limit"}.get(name, "")
            return f"killed by {name}" + (f", {hint}" if hint else "")
        tail = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
        return f"exit code {code}" + (f": {' | '.join(tail)[:500]}" if tail else "")

    @property
    def pid(self) -> int | None:
        """The current worker's process id (changes after a restart)."""
        return self._proc.pid if self._proc is not None else None
