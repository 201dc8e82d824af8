"""What the local and Docker backends share: the worker program behind the JSON protocol.

:class:`WorkerSandbox` holds everything that does not depend on how the worker process is
started: the init handshake, host-function dispatch, the hard deadline, and recovery when the
worker hangs or dies. :class:`~rlm_jupyter.sandbox.local.LocalSandbox` starts it with
``subprocess.Popen`` (never a bare ``fork()`` of the kernel); the Docker backend subclasses
:class:`WorkerSandbox` the same way.

Subclass contract: implement ``_spawn() -> (writer, reader)`` (binary file objects connected to
the worker's input and output), ``_kill()`` (stop the process and everything it started;
idempotent) and optionally ``_death_reason() -> str`` and ``_cleanup()``.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import shutil
import threading
import time
import weakref
from typing import IO, Any, Callable

from .base import ExecResult, HostFunctions, SandboxError, checked_functions
from .protocol import (DEFAULT_LIMITS, MAX_WORKER_LINE, ProtocolError, encode, make_init,
                       message_limit, read_message)

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
        """Remove the backend's private scratch folder (``_tmpdir``), if it made one."""
        folder = getattr(self, "_tmpdir", None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
            self._tmpdir = None

    def _context_path(self) -> str | None:
        """Subclasses may hand the context over as a file the worker reads (a path in its own
        file system)."""
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
