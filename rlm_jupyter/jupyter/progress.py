"""Compact progress log for terminal IPython and plain consoles (no widget, no reprinting).

Why a separate printer: a terminal cannot redraw a tree, and reprinting whole outputs floods
the scrollback. One short line per meaningful step (turn, code block, batch of sub-calls,
child run, finish) is enough to follow a run and costs nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.trajectory import as_event
from rlm_jupyter.jupyter.render import REPLAYED, fmt_cost, fmt_secs, fmt_tokens, one_line


class ProgressPrinter:
    """Event subscriber that emits one-line summaries through ``write``.

    Lines are queued (engine threads call ``__call__``) and written by ``drain()`` from the
    thread that owns the console, so output lands in the cell that started the run.
    """

    def __init__(self, write: Callable[[str], None] | None = None, *,
                 subcall_every_s: float = 1.0) -> None:
        self._write = write or (lambda line: print(line, flush=True))
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._sub_started = 0
        self._sub_done = 0
        self._sub_failed = 0
        self._last_sub_report = 0.0
        self._every = subcall_every_s
        self._root: str | None = None

    def __call__(self, event: Any) -> None:
        """Takes ``Event`` objects or their JSONL dicts (replays)."""
        line = self._line(as_event(event))
        if line:
            with self._lock:
                self._pending.append(line)

    def drain(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        for line in lines:
            self._write(line)

    def _line(self, e: ev.Event) -> str | None:
        ind = "  " * int(e.depth or 0)
        if isinstance(e, ev.RunStarted):
            if self._root is None:
                self._root = e.run_id
                return (f"▶ RLM {e.model or ''} · sandbox {e.sandbox or '?'}"
                        + (f" · context {one_line(e.context_summary, 70)}"
                           if e.context_summary else ""))
            return f"{ind}↳ child RLM: {one_line(e.question or '', 60)}"
        if isinstance(e, ev.ModelResponse):
            toks = int(e.prompt_tokens or 0) + int(e.completion_tokens or 0)
            cached = " · cached" if e.cached else ""
            return (f"{ind}turn {e.turn}: model {fmt_secs(float(e.latency_s or 0))}"
                    f" · {fmt_tokens(toks)} tok{cached}")
        if isinstance(e, ev.CodeExecuted):
            out = e.stdout or ""
            err = e.error
            status = "timed out" if e.timed_out else ("error" if err else "ok")
            line = (f"{ind}  code #{int(e.index or 0) + 1} {status} "
                    f"({len(out.splitlines())} output lines, {fmt_secs(float(e.duration_s or 0))})")
            if err:
                last = err.strip().splitlines()[-1] if err.strip() else err
                line += f": {one_line(last, 100)}"
            return line
        if isinstance(e, ev.SubCallStarted):
            self._sub_started += 1
            return None
        if isinstance(e, ev.SubCallFinished):
            self._sub_done += 1
            if e.error:
                self._sub_failed += 1
            return self._sub_report(ind, force=self._sub_done == self._sub_started)
        if isinstance(e, ev.BudgetWarning):
            return f"{ind}⚠ budget: {e.limit} at {e.used}/{e.allowed}"
        if isinstance(e, ev.BudgetExceededEvent):
            return f"{ind}✖ budget exceeded: {e.limit} {e.used}/{e.allowed}"
        if isinstance(e, ev.RunFinished):
            if e.run_id != self._root:
                return f"{ind}↲ child RLM {e.status}"
            toks = sum(int(v.get("prompt_tokens", 0)) + int(v.get("completion_tokens", 0))
                       for v in (e.usage or {}).values() if isinstance(v, dict))
            head = "■" if e.status == "ok" else "✖"
            line = (f"{head} {e.status} in {fmt_secs(float(e.elapsed_s or 0))} · "
                    f"{e.turns} turns · {e.subcalls} sub-calls · {fmt_tokens(toks)} tok"
                    f" · {fmt_cost(float(e.cost_usd or 0))}")
            rows = [u for u in (e.usage or {}).values() if isinstance(u, dict)]
            if rows and sum(int(u.get("calls", 0)) for u in rows) and all(
                    int(u.get("cached_calls", 0)) == int(u.get("calls", 0)) for u in rows):
                line += f" · {REPLAYED} (--no-cache asks the model again)"
            if e.error:
                line += f"\n  {e.error_type or 'error'}: {one_line(e.error or '', 160)}"
            return line
        return None

    def _sub_report(self, ind: str, force: bool) -> str | None:
        now = time.monotonic()
        if not force and now - self._last_sub_report < self._every:
            return None
        self._last_sub_report = now
        failed = f", {self._sub_failed} failed" if self._sub_failed else ""
        return f"{ind}  sub-calls {self._sub_done}/{self._sub_started} done{failed}"
