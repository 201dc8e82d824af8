"""The in-process sandbox: the same policy, run on a thread inside the kernel (opt-in).

Why it exists: no process start and no copy of the context, so a 1 GB DataFrame is available
instantly. Why it is best effort: everything runs in the kernel's own interpreter. The policy
(RestrictedPython, guards, facades, strict pandas allow-list) keeps honest and most hostile code
in its lane, and Python-level loops stop at the deadline, but a C-level loop (a regex that
backtracks, ``sum(range(10**13))``), one huge allocation or a very deep chain of iterators can
still hang or kill the kernel. After a cell that cannot be stopped this sandbox refuses further
cells: restart the kernel, or use ``sandbox="local"``. SECURITY.md has the details.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import weakref
from typing import Any, Callable

from .base import ExecResult, HostFunctions, SandboxError, checked_functions
from .policy import Repl

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_statm: tuple[int, int] | None = None  # (pid, fd): a forked child must open its own
_statm_lock = threading.Lock()


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux; 0 where unknown).

    Read before every cell, so the file stays open: ``pread`` costs ~3 us, an ``open`` ~20 us.
    The descriptor names the process that opened it, so a forked child opens its own.
    """
    global _statm
    try:
        pid = os.getpid()
        if _statm is None or _statm[0] != pid:
            with _statm_lock:
                if _statm is None or _statm[0] != pid:
                    _statm = (pid, os.open("/proc/self/statm", os.O_RDONLY))
        return int(os.pread(_statm[1], 128, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc, no os.pread
        return 0


def _json_copy(value: Any, what: str) -> Any:
    """Cut every object reference: host functions get and return plain JSON data, exactly as
    in the worker backends, so no host object (client, key, closure) reaches the sandbox."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-compatible (str, int, float, bool, None, list, "
                        f"dict): {exc}") from None


class _Done:
    """A one-shot "finished" flag on a bare lock, held until the cell is done.

    ``threading.Event`` waits through a Python-level ``Condition``; a bare lock's timed
    acquire is one C call, which halves the cost of handing a result back (~40 us -> ~20 us a
    cell here).
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def is_set(self) -> bool:
        return not self._lock.locked()

    def wait(self, timeout: float) -> bool:
        if self._lock.acquire(timeout=timeout):
            self._lock.release()  # stays set for every later look
            return True
        return False


class _Cell:
    """One cell handed to the cell thread; ``done`` is set when its result is in."""

    __slots__ = ("run", "code", "timeout", "result", "done")

    def __init__(self, run: Callable[[str, float], dict[str, Any]], code: str,
                 timeout: float) -> None:
        self.run: Callable[[str, float], dict[str, Any]] | None = run
        self.code = code
        self.timeout = timeout
        self.result: dict[str, Any] | None = None
        self.done = _Done()


class _CellThread:
    """A daemon thread that runs one sandbox's cells, one after another.

    Why one long-lived thread rather than one per cell: starting a thread costs ~140 us and,
    about one start in a hundred, a whole GIL switch interval (5 ms) while the new thread and
    the caller contend for the GIL; handing a cell to a waiting thread costs ~40 us. The cell
    still never runs on the caller's thread, so a cell stuck in C code cannot hang the engine
    or the kernel: the caller stops waiting and gives this thread up (it finishes the stuck
    cell, then exits). The thread holds no reference to the sandbox between cells, so an
    unclosed sandbox is still collected (and its thread told to stop).
    """

    def __init__(self) -> None:
        self._jobs: "queue.SimpleQueue[_Cell | None]" = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="rlm-inprocess-cell", daemon=True).start()

    def _loop(self) -> None:
        while True:
            cell = self._jobs.get()
            if cell is None:
                return
            try:
                if cell.run is not None:
                    cell.result = cell.run(cell.code, cell.timeout)
            except BaseException as exc:  # noqa: BLE001 - Repl.execute catches the cell's own
                cell.result = {"error": f"SandboxError: the cell could not run: "
                                        f"{type(exc).__name__}: {exc}"}
            finally:
                cell.run = None  # drop the sandbox before waiting for the next cell
                cell.done.set()

    def submit(self, cell: _Cell) -> None:
        self._jobs.put(cell)

    def stop(self) -> None:
        """Exit after the cell in hand (if any); never waits."""
        self._jobs.put(None)


class InProcessSandbox:
    """Runs cells on a daemon thread of the current process, sharing ``context`` without copy."""

    kind = "inprocess"

    def __init__(self, context: Any = None, functions: HostFunctions | None = None,
                 timeout_s: float = 30.0, memory_mb: int | None = None, *,
                 grace_s: float = 2.0, limits: dict[str, int] | None = None,
                 watchdog_interval_s: float = 0.05, **options: Any) -> None:
        if options:
            raise TypeError(f"unknown sandbox option(s): {', '.join(sorted(options))}")
        self._functions: dict[str, Callable[..., Any]] = checked_functions(functions)
        self.timeout_s = float(timeout_s)
        self.grace_s = float(grace_s)
        #: Growth of the kernel's RSS during one cell that stops the cell (MB).
        self.memory_mb = int(memory_mb) if memory_mb else 2048
        self._interval = watchdog_interval_s
        self._repl = Repl(context=context, host_call=self._host_call,
                          functions=list(self._functions), limits=limits, strict=True,
                          restricted=True)
        self._lock = threading.Lock()
        #: A cell that could not be stopped and still runs (its thread was given up).
        self._stuck: _Cell | None = None
        self._cells: _CellThread | None = None
        #: Stops the cell thread: called when it is given up, or when the sandbox is collected.
        self._stop_cells: weakref.finalize | None = None
        self._closed = False

    # host functions run on the cell's thread; the deadline is paused meanwhile (policy)
    def _host_call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        fn = self._functions.get(name)
        if fn is None:
            raise NameError(f"no host function named {name!r}")
        args = _json_copy(args, f"arguments to {name}()")
        kwargs = _json_copy(kwargs, f"arguments to {name}()")
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            raise RuntimeError(f"{name}() failed: {type(exc).__name__}: {exc}"[:4000]) from None
        return _json_copy(value, f"the result of {name}()")

    def _check_usable(self) -> list[str]:
        if self._closed:
            raise SandboxError("this sandbox is closed; open a new one with open_sandbox()")
        if self._stuck is not None:
            if not self._stuck.done.is_set():
                raise SandboxError(
                    "an earlier cell in the in-process sandbox could not be stopped (a C-level "
                    "loop or a blocking call) and is still running in the kernel. Restart the "
                    "kernel, or use sandbox='local' (the default), which can always kill a "
                    "runaway cell.")
            self._stuck = None
            return ["The cell that could not be stopped has finished by now; the sandbox "
                    "accepts cells again. Its partial changes to variables may remain."]
        return []

    def _give_up_thread(self) -> None:
        """Let the cell thread go (stuck in a cell, or the sandbox closed): it exits after the
        cell in hand; a later cell gets a new thread."""
        stop, self._stop_cells, self._cells = self._stop_cells, None, None
        if stop is not None:
            stop()

    def execute(self, code: str, timeout_s: float | None = None) -> ExecResult:
        with self._lock:
            notes = self._check_usable()
            timeout = float(timeout_s if timeout_s is not None else self.timeout_s)
            cell = _Cell(self._repl.execute, str(code), timeout)
            t0 = time.monotonic()
            base_rss = _rss_bytes()
            limit = self.memory_mb * 1024 * 1024
            cells = self._cells
            if cells is None:
                cells = self._cells = _CellThread()
                self._stop_cells = weakref.finalize(self, cells.stop)
            cells.submit(cell)
            aborted_for_memory = False
            try:
                dl = self._repl.deadline
                abort_at: float | None = None
                while not cell.done.wait(self._interval):
                    now = time.monotonic()
                    if base_rss and not aborted_for_memory and _rss_bytes() - base_rss > limit:
                        aborted_for_memory = True
                        dl.abort(f"memory use grew by more than {self.memory_mb} MB")
                        abort_at = now
                    # Past the deadline: the next (cheap, per-item) check raises, so a
                    # comprehension of slow items stops without waiting for its full check.
                    dl.expire_if_late(now)
                    end = dl.deadline  # moves forward while a host function runs
                    past_deadline = (end is not None and dl._paused_at is None
                                     and now > end + self.grace_s)
                    past_abort = abort_at is not None and now > abort_at + self.grace_s
                    if past_deadline or past_abort:
                        self._repl.deadline.abort("the cell could not be stopped in time")
                        self._stuck = cell
                        self._give_up_thread()
                        return ExecResult(
                            error=(f"TimeoutError: the cell ran past its {timeout:g} s limit "
                                   f"inside C code that cannot be interrupted in-process. The "
                                   f"in-process sandbox now refuses further cells: restart the "
                                   f"kernel or switch to sandbox='local'."),
                            timed_out=True, duration_s=time.monotonic() - t0,
                            notes=notes + ["in-process cell could not be stopped"])
            except BaseException:
                self._repl.deadline.abort("interrupted by the user")
                if not cell.done.wait(self.grace_s):
                    self._stuck = cell
                    self._give_up_thread()
                raise
            if self._closed:  # closed while this cell ran
                self._give_up_thread()
            res = cell.result or {}
            extra = list(res.get("notes") or [])
            if aborted_for_memory:
                extra.append(f"the cell was stopped because the kernel's memory grew by more "
                             f"than {self.memory_mb} MB")
            return ExecResult(
                stdout=res.get("stdout", ""), error=res.get("error"),
                timed_out=bool(res.get("timed_out")), restarted=False,
                duration_s=time.monotonic() - t0, final=res.get("final"),
                answer=res.get("answer") or {"content": "", "ready": False},
                notes=notes + extra)

    def get_variable(self, name: str) -> str | None:
        if self._closed or (self._stuck is not None and not self._stuck.done.is_set()):
            return None
        return self._repl.get_variable(name)

    def get_json(self, name: str, max_chars: int = 1_000_000) -> dict[str, Any]:
        """A variable by value as plain JSON data (see ``values.py``), copied so that no
        reference into the sandbox's namespace reaches the caller."""
        from .values import export

        if self._closed or (self._stuck is not None and not self._stuck.done.is_set()):
            raise SandboxError("this sandbox is closed or busy; its variables cannot be read")
        reply = export(self._repl.ns, name, max_chars)
        if reply.get("ok"):
            reply["value"] = _json_copy(reply["value"], f"the value of {name}")
        return reply

    def variables(self) -> dict[str, str]:
        if self._closed:
            return {}
        return self._repl.variables()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._repl.deadline.abort("the sandbox was closed")
        # Not under the lock: a cell still running holds it. Its thread exits after that cell;
        # ``execute`` lets go of a thread it started after this point itself.
        self._give_up_thread()
        self._repl.close()

    def __enter__(self) -> "InProcessSandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
