"""The default sandbox: the worker program as a hardened local subprocess.

:class:`WorkerSandbox` holds everything that does not depend on how the worker process is
started: the init handshake, host-function dispatch, the hard deadline, and recovery when the
worker hangs or dies. :class:`LocalSandbox` starts it with ``subprocess.Popen`` (never a bare
``fork()`` of the kernel); the Docker backend subclasses :class:`WorkerSandbox` the same way.

Subclass contract: implement ``_spawn() -> (writer, reader)`` (binary file objects connected to
the worker's input and output), ``_kill()`` (stop the process and everything it started;
idempotent) and optionally ``_death_reason() -> str`` and ``_cleanup()``.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import IO, Any, Callable

from .._proc import cgroup_add, cgroup_create, cgroup_kill, kill_tree
from .base import ExecResult, HostFunctions, SandboxError, checked_functions
from .protocol import (DEFAULT_LIMITS, MAX_WORKER_LINE, ProtocolError, encode, make_init,
                       message_limit, read_message, worker_path)

#: Test-only: when the host's environment sets this to "1", workers accept a ``raw_exec``
#: request that runs plain Python without the policy (to simulate an escape and check what the
#: OS still refuses). Only the host can turn it on (in the init message); sandbox code cannot.
RAW_EXEC_ENV = "RLM_SANDBOX_UNSAFE_TEST_RAW_EXEC"

RESET_NOTE = ("The sandbox worker was restarted: every variable you defined is gone. Only "
              "`context`, `answer` (reset) and the built-in functions are available again; "
              "recompute what you need.")

_LIVE: "weakref.WeakSet[WorkerSandbox]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # pragma: no cover - runs at interpreter exit
    for sb in list(_LIVE):
        try:
            sb.close()
        except Exception:
            pass


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "\n... [cut by the host]"


class _Deadline(Exception):
    pass


class _WorkerDied(Exception):
    pass


def default_memory_mb(context_bytes: int) -> int:
    """Address-space limit sized to the context: room for the decoded object, copies the
    model makes, and pandas/numpy imports (which reserve a lot of virtual memory)."""
    return max(2048, 1536 + 6 * (context_bytes // (1024 * 1024)))


class WorkerSandbox:
    """A worker process behind the JSON protocol. See the module docstring for subclassing."""

    kind = "worker"

    def __init__(self, context: Any = None, functions: HostFunctions | None = None,
                 timeout_s: float = 30.0, memory_mb: int | None = None, *,
                 grace_s: float = 3.0, start_timeout_s: float = 60.0,
                 limits: dict[str, int] | None = None, strict: bool = False,
                 allow_unrestricted: bool = False, cpu_s: int | None = None,
                 compile_allowance_s: float = 30.0, **options: Any) -> None:
        if options:
            raise TypeError(f"unknown sandbox option(s): {', '.join(sorted(options))}")
        self._context = context
        self._has_context = context is not None
        self._functions: dict[str, Callable[..., Any]] = checked_functions(functions)
        self.timeout_s = float(timeout_s)
        self.grace_s = float(grace_s)
        #: Extra time a cell may spend compiling before it starts running (huge cells).
        self.compile_allowance_s = float(compile_allowance_s)
        self.start_timeout_s = float(start_timeout_s)
        self._limits = dict(limits or {})
        self._max_message = MAX_WORKER_LINE  # set from the context's size at each start
        self._strict = strict
        self._allow_unrestricted = allow_unrestricted
        self._header, self._payload_len = None, 0
        self.memory_mb = memory_mb
        self.cpu_s = cpu_s if cpu_s is not None else 24 * 3600
        self._writer: IO[bytes] | None = None
        self._reader: IO[bytes] | None = None
        self._reader_thread: threading.Thread | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._next_id = 0
        self._closed = False
        self._needs_restart = False
        self._lock = threading.RLock()
        self.restarts = 0
        self.worker_info: dict[str, Any] = {}
        _LIVE.add(self)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # ---- subclass hooks -----------------------------------------------------------------

    def _drain_stderr(self, proc: "subprocess.Popen[bytes]") -> None:
        """Keep the last 8 KB of the worker's stderr (for crash messages); never block it."""
        assert proc.stderr is not None
        try:
            for chunk in iter(lambda: proc.stderr.read1(4096), b""):  # type: ignore[union-attr]
                self._stderr_tail = (self._stderr_tail + chunk)[-8192:]
        except (OSError, ValueError):
            pass
        finally:  # closed here, at EOF: closing it from another thread would wait for us
            try:
                proc.stderr.close()
            except Exception:
                pass

    def _spawn(self, context_bytes: int) -> tuple[IO[bytes], IO[bytes]]:  # pragma: no cover
        raise NotImplementedError

    def _kill(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _death_reason(self) -> str:
        return "it exited unexpectedly"

    def _alive(self) -> bool:
        """Whether the worker process still runs (checked before each cell)."""
        return True

    def _cleanup(self) -> None:
        pass

    def _context_path(self) -> str | None:
        """Subclasses may hand the context over as a file (e.g. a read-only mount)."""
        return None

    # ---- life cycle -------------------------------------------------------------------------

    def _start(self) -> None:
        try:
            header, payload = make_init(self._context, list(self._functions), self._limits,
                                        strict=self._strict,
                                        allow_unrestricted=self._allow_unrestricted,
                                        has_context=self._has_context)
        except TypeError as exc:
            raise SandboxError(str(exc)) from None
        if self.memory_mb is None:
            self.memory_mb = default_memory_mb(len(payload))
        self._max_message = int(self._limits.get("max_message") or message_limit(len(payload)))
        header["limits"]["max_message"] = self._max_message
        if os.environ.get(RAW_EXEC_ENV) == "1":
            header["test_raw_exec"] = True
        self._queue = queue.Queue()
        self._writer, self._reader = self._spawn(len(payload))
        if self._closed:  # closed from another thread while we were starting
            self._kill()
            raise SandboxError("this sandbox was closed while it was starting")
        path = self._context_path()
        reader_thread = threading.Thread(target=self._read_loop,
                                         args=(self._reader, self._queue, self._max_message),
                                         name="rlm-sandbox-reader", daemon=True)
        self._reader_thread = reader_thread
        reader_thread.start()
        start_deadline = time.monotonic() + self.start_timeout_s
        try:
            if path:
                header["context_path"] = path
                self._send(header, start_deadline)
            else:
                self._send(header, start_deadline, payload)
        except (_WorkerDied, _Deadline):
            pass  # the reason surfaces below as a death or a time-out
        del payload
        try:
            msg = self._recv(start_deadline)
        except _Deadline:
            self._kill()
            raise SandboxError(f"the sandbox worker did not start within "
                               f"{self.start_timeout_s:g} s; check the machine's load, or "
                               f"raise start_timeout_s") from None
        except _WorkerDied as exc:
            self._kill()
            raise SandboxError(f"the sandbox worker failed to start ({self._death_reason()}): "
                               f"{exc}") from None
        if msg.get("op") == "fatal":
            self._kill()
            raise SandboxError(f"the sandbox worker refused to start: {msg.get('error')}")
        if msg.get("op") != "ready":
            self._kill()
            raise SandboxError(f"the sandbox worker sent {msg.get('op')!r} instead of 'ready'")
        self.worker_info = msg
        self._needs_restart = False

    def _restart(self) -> None:
        if self._closed:
            raise SandboxError("this sandbox is closed; open a new one with open_sandbox()")
        self._kill()
        self.restarts += 1
        self._start()

    @staticmethod
    def _read_loop(reader: IO[bytes], q: "queue.Queue[Any]", limit: int = MAX_WORKER_LINE
                   ) -> None:
        try:
            while True:
                try:
                    msg = read_message(reader, limit)
                except ProtocolError as exc:
                    q.put(exc)
                    return
                except (OSError, ValueError) as exc:
                    q.put(ProtocolError(str(exc)))
                    return
                q.put(msg)
        finally:
            # Closed here, at EOF: from another thread, close() would wait for this read,
            # that is for every process holding the pipe's other end.
            try:
                reader.close()
            except Exception:
                pass

    def _recv(self, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Deadline()
        try:
            item = self._queue.get(timeout=left)
        except queue.Empty:
            raise _Deadline() from None
        if isinstance(item, ProtocolError):
            raise _WorkerDied(str(item))
        return item

    def _send(self, msg: dict[str, Any], deadline: float | None = None,
              payload: bytes | memoryview | None = None) -> None:
        """Write one message (and a raw payload) by ``deadline`` (default: 30 s from now).
        Never blocks past it: a worker that stops reading its input (or an orphan holding the
        pipe) cannot hang the host. Raises :class:`_Deadline` or :class:`_WorkerDied`."""
        if deadline is None:
            deadline = time.monotonic() + 30.0
        if payload is not None:
            msg = dict(msg, payload=len(payload))
        try:
            writer = self._writer
            assert writer is not None
            writer.flush()
            fd = writer.fileno()
            os.set_blocking(fd, False)
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            for part in (encode(msg), payload):
                view = memoryview(part).cast("B") if part is not None else memoryview(b"")
                while len(view):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _Deadline()
                    if not poller.poll(min(left, 1.0) * 1000):
                        continue
                    try:
                        n = os.write(fd, view[:1 << 20])
                    except BlockingIOError:
                        continue
                    view = view[n:]
        except (BrokenPipeError, OSError, ValueError, AssertionError) as exc:
            raise _WorkerDied(f"cannot write to the worker: {exc}") from None

    # ---- host functions --------------------------------------------------------------------

    def _host_reply(self, msg: dict[str, Any]) -> dict[str, Any]:
        name = msg.get("fn")
        cid = msg.get("id")
        fn = self._functions.get(name) if isinstance(name, str) else None
        if fn is None:
            return {"op": "reply", "id": cid, "ok": False,
                    "error": f"NameError: no host function named {name!r}"}
        args = msg.get("args") if isinstance(msg.get("args"), list) else []
        kwargs = msg.get("kwargs") if isinstance(msg.get("kwargs"), dict) else {}
        try:
            value = fn(*args, **{str(k): v for k, v in kwargs.items()})
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            return {"op": "reply", "id": cid, "ok": False, "error": text[:4000]}
        reply = {"op": "reply", "id": cid, "ok": True, "value": value}
        try:
            json.dumps(reply)
        except (TypeError, ValueError):
            return {"op": "reply", "id": cid, "ok": False,
                    "error": f"TypeError: {name} returned a {type(value).__name__}, which "
                             f"cannot cross to the sandbox as JSON"}
        return reply

    # ---- Sandbox API ------------------------------------------------------------------------

    def _ensure_running(self) -> list[str]:
        if self._closed:
            raise SandboxError("this sandbox is closed; open a new one with open_sandbox()")
        if self._needs_restart or not self._alive():
            self._restart()
            return [RESET_NOTE]
        return []

    def execute(self, code: str, timeout_s: float | None = None) -> ExecResult:
        with self._lock:
            notes = self._ensure_running()
            restarted = bool(notes)
            timeout = float(timeout_s if timeout_s is not None else self.timeout_s)
            t0 = time.monotonic()
            self._next_id += 1
            mid = self._next_id
            # Until the worker says the cell compiled ("running"), allow extra time for
            # compiling a big cell; then the hard deadline is timeout + grace.
            hard = t0 + timeout + self.grace_s + self.compile_allowance_s
            try:
                self._send({"op": "exec", "id": mid, "code": str(code), "timeout": timeout},
                           hard)
                while True:
                    msg = self._recv(hard)
                    op = msg.get("op")
                    if op == "running" and msg.get("id") == mid:
                        hard = time.monotonic() + timeout + self.grace_s
                        continue
                    if op == "call":
                        c0 = time.monotonic()
                        reply = self._host_reply(msg)
                        hard += time.monotonic() - c0
                        self._send(reply, hard)
                        continue
                    if op == "result" and msg.get("id") == mid:
                        return self._to_result(msg, notes, restarted, t0)
                    # anything else mid-cell is ignored (stale replies)
            except _Deadline:
                self._kill()
                self._needs_restart = True
                note = self._recover_note()
                return ExecResult(
                    error=(f"TimeoutError: the cell ran past its {timeout:g} s limit and could "
                           f"not be stopped gently, so the sandbox worker was killed."),
                    timed_out=True, restarted=True, duration_s=time.monotonic() - t0,
                    notes=notes + [note])
            except _WorkerDied as exc:
                reason = self._death_reason()
                self._kill()
                self._needs_restart = True
                note = self._recover_note()
                return ExecResult(
                    error=(f"SandboxError: the sandbox worker died while running the cell "
                           f"({reason}; {exc}). This usually means it ran out of memory or hit "
                           f"a crash in a C extension."),
                    restarted=True, duration_s=time.monotonic() - t0, notes=notes + [note])
            except BaseException:
                # KeyboardInterrupt or a host function raising BaseException: the worker is
                # mid-cell in an unknown state; start over on the next call.
                self._kill()
                self._needs_restart = True
                raise

    def _recover_note(self) -> str:
        """Restart right away so the next cell is fast; say so either way."""
        try:
            self._restart()
            return RESET_NOTE
        except SandboxError as exc:
            self._needs_restart = True
            return f"{RESET_NOTE} (restart failed for now: {exc})"

    def _to_result(self, msg: dict[str, Any], notes: list[str], restarted: bool, t0: float
                   ) -> ExecResult:
        # Re-cap on this side: a worker that escaped its policy must not flood the host.
        lim = {**DEFAULT_LIMITS, **self._limits}
        answer = msg.get("answer") if isinstance(msg.get("answer"), dict) else {}
        final = msg.get("final")
        error = msg.get("error")
        return ExecResult(
            stdout=_text(msg.get("stdout"), lim["max_output"] + 200),
            error=None if error is None else _text(error, lim["max_error"] + 200),
            timed_out=msg.get("timed_out") is True,
            restarted=restarted,
            duration_s=time.monotonic() - t0,
            final=None if final is None else _text(final, lim["max_final"] + 200),
            answer={"content": _text(answer.get("content", ""), lim["max_final"] + 200),
                    "ready": answer.get("ready") is True},
            notes=notes + [_text(n, 1000) for n in (msg.get("notes") or [])[:20]],
        )

    def _query(self, msg: dict[str, Any], timeout: float = 15.0) -> dict[str, Any] | None:
        with self._lock:
            self._ensure_running()
            self._next_id += 1
            msg = dict(msg, id=self._next_id)
            try:
                self._send(msg, time.monotonic() + timeout)
                while True:
                    reply = self._recv(time.monotonic() + timeout)
                    if reply.get("id") == self._next_id:
                        return reply
            except (_Deadline, _WorkerDied):
                self._kill()
                self._needs_restart = True
                return None

    def _raw_exec_for_tests(self, code: str, timeout: float = 15.0) -> dict[str, Any] | None:
        """Test-only: run plain Python in the worker, past the policy (an escape simulated).
        Works only when the host's environment set ``RLM_SANDBOX_UNSAFE_TEST_RAW_EXEC=1``
        before the worker started; returns ``{"stdout", "error"}``, or None when the worker
        died or timed out (it is then restarted on the next call)."""
        return self._query({"op": "raw_exec", "code": str(code)}, timeout)

    def get_variable(self, name: str) -> str | None:
        reply = self._query({"op": "get", "name": str(name)})
        value = reply.get("value") if reply else None
        return value if isinstance(value, str) else None

    def get_json(self, name: str, max_chars: int = 1_000_000) -> dict[str, Any]:
        """A variable by value as plain JSON data (``values.py``): ``{"ok", "value"|"error"}``.

        Only plain data and DataFrames cross; the host parses nothing but JSON."""
        max_chars = max(1, min(int(max_chars), MAX_WORKER_LINE // 2))
        reply = self._query({"op": "get_json", "name": str(name), "max_chars": max_chars},
                            timeout=60.0)
        if reply is None:
            raise SandboxError("the sandbox worker died or stopped answering while copying "
                               f"{name!r}; its variables are lost")
        if reply.get("op") != "json_value":
            raise SandboxError("this sandbox worker cannot copy values out (an older "
                               "worker.py?); update rlm-jupyter in the image")
        if reply.get("ok") is True:
            return {"ok": True, "value": reply.get("value"), "chars": reply.get("chars", 0)}
        return {"ok": False, "error": _text(reply.get("error"), 2000),
                "chars": reply.get("chars", 0)}

    def variables(self) -> dict[str, str]:
        reply = self._query({"op": "vars"})
        vs = reply.get("vars") if reply else None
        if not isinstance(vs, dict):
            return {}
        return {str(k): str(v) for k, v in vs.items()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                self._send({"op": "shutdown"}, time.monotonic() + 0.5)
        except Exception:
            pass
        try:
            self._kill()
        finally:
            self._cleanup()
            _LIVE.discard(self)

    def __enter__(self) -> "WorkerSandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


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

    def _cleanup(self) -> None:
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    @property
    def pid(self) -> int | None:
        """The current worker's process id (changes after a restart)."""
        return self._proc.pid if self._proc is not None else None
