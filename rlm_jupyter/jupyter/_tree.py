"""Fold a flat event stream into a display tree (runs → turns → code / sub-calls / child runs).

Why our own fold and not the engine's trajectory: displays must work on a *live* stream (events
arrive one by one from engine threads, a run may never finish) and on replays of JSONL logs alike,
so the fold is incremental, tolerant of missing or out-of-order events, and depends only on plain
dicts (``Event.to_dict()`` shape). The widget's JavaScript does the same fold in the browser.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable


def event_dict(event: Any) -> dict[str, Any]:
    """Accept an ``Event`` or an already-serialised dict (one JSONL line)."""
    if isinstance(event, dict):
        return event
    to_dict = getattr(event, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"not an event: {event!r}")


@dataclass
class SubCallNode:
    span_id: str
    turn: int = 0
    model: str = ""
    prompt_preview: str = ""
    prompt_chars: int = 0
    response_preview: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    done: bool = False
    children: list["RunNodeView"] = field(default_factory=list)


@dataclass
class CodeNode:
    index: int
    code: str
    stdout: str = ""
    error: str | None = None
    duration_s: float = 0.0
    timed_out: bool = False
    restarted: bool = False


@dataclass
class TurnNode:
    turn: int
    text: str = ""
    streaming: bool = False
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    responded: bool = False
    codes: list[CodeNode] = field(default_factory=list)
    subcalls: list[SubCallNode] = field(default_factory=list)
    children: list["RunNodeView"] = field(default_factory=list)


@dataclass
class RunNodeView:
    run_id: str
    parent_run_id: str | None = None
    parent_span_id: str | None = None
    depth: int = 0
    question: str = ""
    model: str = ""
    sub_model: str = ""
    sandbox: str = ""
    context_summary: str = ""
    limits: dict[str, Any] = field(default_factory=dict)
    started_ts: float = 0.0
    status: str = "running"
    answer: str | None = None
    error: str | None = None
    error_type: str | None = None
    elapsed_s: float | None = None
    turns: list[TurnNode] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def turn(self, n: int) -> TurnNode:
        for t in reversed(self.turns):
            if t.turn == n:
                return t
        node = TurnNode(turn=n)
        self.turns.append(node)
        return node


@dataclass
class Totals:
    turns: int = 0
    subcalls: int = 0
    subcalls_running: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    child_runs: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class RunTree:
    """Incremental fold of events. ``feed`` is cheap (O(1) amortised per event)."""

    def __init__(self, events: Iterable[Any] = ()) -> None:
        self.runs: dict[str, RunNodeView] = {}
        self.roots: list[RunNodeView] = []
        self.totals = Totals()
        self.events = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._subcalls: dict[str, SubCallNode] = {}
        self._turn_spans: dict[str, TurnNode] = {}
        for ev in events:
            self.feed(ev)

    # -- folding ---------------------------------------------------------------------------
    def _run(self, d: dict[str, Any]) -> RunNodeView:
        run_id = d.get("run_id") or "run"
        run = self.runs.get(run_id)
        if run is None:  # events before (or without) their RunStarted: still show them
            run = RunNodeView(run_id=run_id, parent_run_id=d.get("parent_run_id"),
                              parent_span_id=d.get("parent_span_id"), depth=d.get("depth") or 0,
                              started_ts=d.get("ts") or 0.0)
            self.runs[run_id] = run
            self._attach(run)
        return run

    def _attach(self, run: RunNodeView) -> None:
        parent = self.runs.get(run.parent_run_id or "") if run.parent_run_id else None
        if parent is None:
            self.roots.append(run)
            return
        self.totals.child_runs += 1
        sub = self._subcalls.get(run.parent_span_id or "")
        turn = self._turn_spans.get(run.parent_span_id or "")
        if sub is not None:
            sub.children.append(run)
        elif turn is not None:
            turn.children.append(run)
        elif parent.turns:
            parent.turns[-1].children.append(run)
        else:
            parent.turn(0).children.append(run)

    def feed(self, event: Any) -> None:
        d = event_dict(event)
        kind = d.get("type", "")
        ts = d.get("ts")
        if isinstance(ts, (int, float)):
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        self.events += 1
        if kind == "run_started":
            run = self._run(d)
            for key in ("question", "model", "sub_model", "sandbox", "context_summary"):
                setattr(run, key, d.get(key) or getattr(run, key))
            run.limits = dict(d.get("limits") or {})
            run.started_ts = d.get("ts") or run.started_ts
            return
        run = self._run(d)
        if kind == "turn_started":
            node = run.turn(int(d.get("turn") or 0))
            if d.get("span_id"):
                self._turn_spans[d["span_id"]] = node
            self.totals.turns += 1
        elif kind == "model_chunk":
            t = run.turn(int(d.get("turn") or 0))
            if not t.responded:
                t.text += d.get("delta") or ""
                t.streaming = True
        elif kind == "model_response":
            t = run.turn(int(d.get("turn") or 0))
            t.text = d.get("text") or t.text
            t.streaming = False
            t.responded = True
            t.model = d.get("model") or ""
            t.prompt_tokens = int(d.get("prompt_tokens") or 0)
            t.completion_tokens = int(d.get("completion_tokens") or 0)
            t.cost_usd = float(d.get("cost_usd") or 0.0)
            t.latency_s = float(d.get("latency_s") or 0.0)
            t.cached = bool(d.get("cached"))
            self.totals.prompt_tokens += t.prompt_tokens
            self.totals.completion_tokens += t.completion_tokens
            self.totals.cost_usd += t.cost_usd
        elif kind == "code_executed":
            t = run.turn(int(d.get("turn") or 0))
            t.codes.append(CodeNode(index=int(d.get("index") or 0), code=d.get("code") or "",
                                    stdout=d.get("stdout") or "", error=d.get("error"),
                                    duration_s=float(d.get("duration_s") or 0.0),
                                    timed_out=bool(d.get("timed_out")),
                                    restarted=bool(d.get("restarted"))))
        elif kind == "subcall_started":
            t = run.turn(int(d.get("turn") or 0))
            sub = SubCallNode(span_id=d.get("span_id") or "", turn=t.turn, model=d.get("model") or "",
                              prompt_preview=d.get("prompt_preview") or "",
                              prompt_chars=int(d.get("prompt_chars") or 0))
            self._subcalls[sub.span_id] = sub
            t.subcalls.append(sub)
            self.totals.subcalls += 1
            self.totals.subcalls_running += 1
        elif kind == "subcall_finished":
            sub = self._subcalls.get(d.get("span_id") or "")
            if sub is None:  # finished without a start (truncated log): still count it
                t = run.turn(int(d.get("turn") or 0))
                sub = SubCallNode(span_id=d.get("span_id") or "", turn=t.turn)
                t.subcalls.append(sub)
                self.totals.subcalls += 1
                self.totals.subcalls_running += 1
            if not sub.done:
                self.totals.subcalls_running -= 1
            sub.done = True
            sub.model = d.get("model") or sub.model
            sub.response_preview = d.get("response_preview") or ""
            sub.prompt_tokens = int(d.get("prompt_tokens") or 0)
            sub.completion_tokens = int(d.get("completion_tokens") or 0)
            sub.cost_usd = float(d.get("cost_usd") or 0.0)
            sub.latency_s = float(d.get("latency_s") or 0.0)
            sub.cached = bool(d.get("cached"))
            sub.error = d.get("error")
            self.totals.prompt_tokens += sub.prompt_tokens
            self.totals.completion_tokens += sub.completion_tokens
            self.totals.cost_usd += sub.cost_usd
        elif kind == "budget_warning" or kind == "budget_exceeded":
            run.warnings.append({"kind": kind, "limit": d.get("limit"), "used": d.get("used"),
                                 "allowed": d.get("allowed")})
        elif kind == "error":
            run.errors.append({"kind": d.get("kind"), "message": d.get("message")})
        elif kind == "run_finished":
            run.status = d.get("status") or "ok"
            run.answer = d.get("answer")
            run.error = d.get("error")
            run.error_type = d.get("error_type")
            run.elapsed_s = d.get("elapsed_s")
            for t in run.turns:
                t.streaming = False

    # -- queries ---------------------------------------------------------------------------
    @property
    def root(self) -> RunNodeView | None:
        return self.roots[0] if self.roots else None

    @property
    def status(self) -> str:
        root = self.root
        return root.status if root else "waiting"

    def elapsed_s(self, now: float | None = None) -> float:
        root = self.root
        if root is None:
            return 0.0
        if root.elapsed_s is not None:
            return float(root.elapsed_s)
        start = root.started_ts or self.first_ts or 0.0
        end = now if now is not None else time.time()
        return max(0.0, end - start) if start else 0.0

    def budget_bars(self, now: float | None = None) -> list[tuple[str, float, float]]:
        """(label, used, allowed) for every limit the root run declared."""
        root = self.root
        if root is None:
            return []
        lim = root.limits
        bars: list[tuple[str, float, float]] = []

        def pick(*names: str) -> float | None:
            for name in names:
                value = lim.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                    return float(value)
            return None

        root_turns = len([t for t in root.turns if t.turn > 0]) or len(root.turns)
        checks = [
            ("turns", pick("max_iterations", "turns", "max_turns"), float(root_turns)),
            ("sub-calls", pick("max_subcalls", "subcalls"), float(self.totals.subcalls)),
            ("tokens", pick("max_tokens", "tokens"), float(self.totals.tokens)),
            ("cost $", pick("budget_usd", "usd", "max_usd"), self.totals.cost_usd),
            ("time s", pick("timeout_s", "time", "max_time_s"), self.elapsed_s(now)),
        ]
        for label, allowed, used in checks:
            if allowed:
                bars.append((label, used, allowed))
        return bars
