"""Compact progress log for terminal IPython and plain consoles (no widget, no reprinting).

Why a separate printer: a terminal cannot redraw a tree, and reprinting whole outputs floods
the scrollback. One short line per meaningful step (turn, code block, batch of sub-calls,
child run, finish) is enough to follow a run and costs nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from rlm_jupyter.jupyter._tree import event_dict
from rlm_jupyter.jupyter.render import fmt_cost, fmt_secs, fmt_tokens, one_line


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
        line = self._line(event_dict(event))
        if line:
            with self._lock:
                self._pending.append(line)

    def drain(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        for line in lines:
            self._write(line)

    def _indent(self, d: dict[str, Any]) -> str:
        return "  " * int(d.get("depth") or 0)

    def _line(self, d: dict[str, Any]) -> str | None:
        kind = d.get("type")
        ind = self._indent(d)
        if kind == "run_started":
            if self._root is None:
                self._root = d.get("run_id")
                return (f"▶ RLM {d.get('model') or ''} · sandbox {d.get('sandbox') or '?'}"
                        + (f" · context {one_line(d.get('context_summary') or '', 70)}"
                           if d.get("context_summary") else ""))
            return f"{ind}↳ child RLM: {one_line(d.get('question') or '', 60)}"
        if kind == "model_response":
            toks = int(d.get("prompt_tokens") or 0) + int(d.get("completion_tokens") or 0)
            cached = " · cached" if d.get("cached") else ""
            return (f"{ind}turn {d.get('turn')}: model {fmt_secs(float(d.get('latency_s') or 0))}"
                    f" · {fmt_tokens(toks)} tok{cached}")
        if kind == "code_executed":
            out = d.get("stdout") or ""
            err = d.get("error")
            status = "timed out" if d.get("timed_out") else ("error" if err else "ok")
            line = (f"{ind}  code #{int(d.get('index') or 0) + 1} {status} "
                    f"({len(out.splitlines())} output lines, {fmt_secs(float(d.get('duration_s') or 0))})")
            if err:
                last = err.strip().splitlines()[-1] if err.strip() else err
                line += f": {one_line(last, 100)}"
            return line
        if kind == "subcall_started":
            self._sub_started += 1
            return None
        if kind == "subcall_finished":
            self._sub_done += 1
            if d.get("error"):
                self._sub_failed += 1
            return self._sub_report(ind, force=self._sub_done == self._sub_started)
        if kind == "budget_warning":
            return f"{ind}⚠ budget: {d.get('limit')} at {d.get('used')}/{d.get('allowed')}"
        if kind == "budget_exceeded":
            return f"{ind}✖ budget exceeded: {d.get('limit')} {d.get('used')}/{d.get('allowed')}"
        if kind == "run_finished":
            if d.get("run_id") != self._root:
                return f"{ind}↲ child RLM {d.get('status')}"
            usage = d.get("usage") or {}
            toks = sum(int(v.get("prompt_tokens", 0)) + int(v.get("completion_tokens", 0))
                       for v in usage.values() if isinstance(v, dict))
            head = "■" if d.get("status") == "ok" else "✖"
            line = (f"{head} {d.get('status')} in {fmt_secs(float(d.get('elapsed_s') or 0))} · "
                    f"{d.get('turns')} turns · {d.get('subcalls')} sub-calls · {fmt_tokens(toks)} tok"
                    f" · {fmt_cost(float(d.get('cost_usd') or 0))}")
            if d.get("error"):
                line += f"\n  {d.get('error_type') or 'error'}: {one_line(d.get('error') or '', 160)}"
            return line
        return None

    def _sub_report(self, ind: str, force: bool) -> str | None:
        now = time.monotonic()
        if not force and now - self._last_sub_report < self._every:
            return None
        self._last_sub_report = now
        failed = f", {self._sub_failed} failed" if self._sub_failed else ""
        return f"{ind}  sub-calls {self._sub_done}/{self._sub_started} done{failed}"
