"""Run the engine in a worker thread so the kernel stays interruptible (pyinstrument's pattern).

Why a thread: ``RLM.run`` blocks for minutes. If the cell called it directly, a kernel
interrupt would land somewhere inside litellm or a socket read and leave sub-calls and the
sandbox running. Instead the cell waits in short ``join``s; a ``KeyboardInterrupt`` arrives
there, we set the run's cancel flag, and the engine winds down cleanly (sub-calls cancelled,
sandbox closed, partial trajectory kept).
"""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

#: How long one join waits; also the latency of progress drains in the cell.
POLL_S = 0.1
#: After an interrupt, how long the cell waits for the engine to wind down; past that the run
#: finishes in the background (its result still lands in the variables) and the cell returns.
STOP_GRACE_S = 2.0


class RunHandle:
    """One engine run on a daemon thread, with a cancel flag and completion callbacks."""

    def __init__(self, rlm: Any, question: str, context: Any,
                 on_event: Callable[[Any], None] | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.rlm = rlm
        self.question = question
        self.context = context
        self.cancel = cancel if cancel is not None else threading.Event()
        self.result: Any = None
        self.exception: BaseException | None = None
        self.started = time.time()
        self._on_event = on_event
        self._callbacks: list[Callable[["RunHandle"], None]] = []
        self._done = threading.Event()
        self._cb_lock = threading.Lock()
        self._fired = False
        # The run thread carries the cell's context variables, so an OpenTelemetry span (or any
        # contextvar) current in the cell is current in the run: the run joins the cell's trace.
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self._target,), name="rlm-run",
                                       daemon=True)

    def add_done_callback(self, fn: Callable[["RunHandle"], None]) -> None:
        """Run ``fn(handle)`` when the run ends (at once, here, if it already has)."""
        with self._cb_lock:
            if not self._fired:
                self._callbacks.append(fn)
                return
        fn(self)

    def start(self) -> "RunHandle":
        self.thread.start()
        return self

    def _target(self) -> None:
        try:
            self.result = self.rlm.run(self.question, context=self.context,
                                       on_event=self._on_event, cancel=self.cancel)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the cell's thread
            self.exception = exc
        finally:
            self._done.set()
            with self._cb_lock:
                self._fired = True
                callbacks = list(self._callbacks)
            for fn in callbacks:
                try:
                    fn(self)
                except Exception:  # a display callback must never kill the run thread
                    pass

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, tick: Callable[[], None] | None = None, poll_s: float = POLL_S) -> None:
        """Block in short joins (interruptible); ``tick`` runs between joins (progress)."""
        while not self._done.wait(poll_s):
            if tick is not None:
                tick()
        self.thread.join(poll_s)
        if tick is not None:
            tick()

    def stop(self, grace_s: float = STOP_GRACE_S, tick: Callable[[], None] | None = None) -> bool:
        """Cancel and wait up to ``grace_s``; True when the engine thread has finished.

        Further interrupts while waiting are swallowed: the user already asked to stop.
        """
        self.cancel.set()
        deadline = time.monotonic() + grace_s
        while not self._done.is_set() and time.monotonic() < deadline:
            try:
                self._done.wait(POLL_S)
                if tick is not None:
                    tick()
            except KeyboardInterrupt:
                continue
        return self._done.is_set()


@dataclass
class Ledger:
    """This session's spend per model, summed from every finished run's usage."""

    per_model: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, usage: dict[str, dict[str, Any]] | None) -> None:
        with self._lock:
            self.runs += 1
            for model, u in (usage or {}).items():
                row = self.per_model.setdefault(model, {"calls": 0, "prompt_tokens": 0,
                                                        "completion_tokens": 0, "cost_usd": 0.0,
                                                        "cached_calls": 0, "retries": 0})
                for key in row:
                    row[key] += float(u.get(key, 0) or 0)

    def rows(self) -> list[tuple[str, dict[str, float]]]:
        with self._lock:
            return sorted(self.per_model.items())

    @property
    def total_usd(self) -> float:
        return sum(r["cost_usd"] for _, r in self.rows())
