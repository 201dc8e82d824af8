"""The run tree, its JSONL log, and the reader that rebuilds one from the other.

The log is append-only, one event per line, flushed as events happen, so a crash or a killed
kernel leaves a valid prefix that still reads back into a (partial) tree. Streaming chunks are
not logged: the finished model response carries the same text once. The engine redacts known
secrets from every event it emits (engine/redact.py); the writer runs the same redactor over
every line as a second guard, for events that did not come through the engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.redact import Redactor


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
class SubCallNode:
    span_id: str
    turn: int
    model: str = ""
    prompt_preview: str = ""
    response_preview: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    finished: bool = False
    prompt_chars: int = 0
    #: Failed attempts that were tried again, and their one-line errors (``llm_retry``).
    retries: int = 0
    retry_errors: list[str] = field(default_factory=list)


@dataclass
class ToolNode:
    """A user tool called from sandboxed code (``tool_started``/``tool_finished``)."""

    span_id: str
    turn: int
    name: str = ""
    arguments_preview: str = ""
    result_preview: str = ""
    duration_s: float = 0.0
    error: str | None = None
    finished: bool = False


@dataclass
class TurnNode:
    turn: int
    span_id: str = ""
    text: str = ""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    code: list[CodeNode] = field(default_factory=list)
    subcalls: list[SubCallNode] = field(default_factory=list)
    children: list["RunNode"] = field(default_factory=list)
    #: Chunks arrived but the full response not yet: ``text`` is partial (live displays).
    streaming: bool = False
    #: The model's response arrived, so tokens / latency / cost are final.
    responded: bool = False
    #: Failed attempts of this turn's root call that were tried again, and their errors.
    retries: int = 0
    retry_errors: list[str] = field(default_factory=list)
    #: User tools this turn's code called, in call order.
    tools: list[ToolNode] = field(default_factory=list)


@dataclass
class Totals:
    """Sums over a run and its child runs, for headers and progress lines."""

    turns: int = 0
    subcalls: int = 0
    subcalls_running: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    child_runs: int = 0
    retries: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(*(a + b for a, b in zip(dataclasses.astuple(self),
                                               dataclasses.astuple(other))))


@dataclass
class RunNode:
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
    turns: list[TurnNode] = field(default_factory=list)
    children: list["RunNode"] = field(default_factory=list)
    answer: str | None = None
    status: str = "running"
    error: str | None = None
    error_type: str | None = None
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    subcall_count: int = 0
    warnings: list[str] = field(default_factory=list)
    #: What a session did to this ask, typed-answer checks and guardrails that acted
    #: (``session_note``, ``output_checked``, ``guardrail``), one line each.
    notes: list[str] = field(default_factory=list)

    @property
    def replayed(self) -> bool:
        """Every model call of this finished run came from the response cache: nothing was
        sent, nothing paid (a re-run of an unchanged notebook cell)."""
        rows = [u for u in (self.usage or {}).values() if isinstance(u, dict)]
        calls = sum(int(u.get("calls", 0) or 0) for u in rows)
        return calls > 0 and all(int(u.get("cached_calls", 0) or 0) == int(u.get("calls", 0)
                                                                           or 0) for u in rows)

    def walk(self) -> Iterator["RunNode"]:
        yield self
        for child in self.children:
            yield from child.walk()

    def all_subcalls(self) -> list[SubCallNode]:
        return [s for run in self.walk() for t in run.turns for s in t.subcalls]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def totals(self) -> Totals:
        """Turns, sub-calls, tokens and cost of this run and every child run, counted from the
        nodes (so they are right mid-run too, unlike ``usage``/``cost_usd`` which arrive with
        ``RunFinished``)."""
        out = Totals()
        for run in self.walk():
            out.child_runs += len(run.children)
            for turn in run.turns:
                out.turns += 1
                out.retries += turn.retries
                out.prompt_tokens += turn.prompt_tokens
                out.completion_tokens += turn.completion_tokens
                out.cost_usd += turn.cost_usd
                for sub in turn.subcalls:
                    out.subcalls += 1
                    out.subcalls_running += not sub.finished
                    out.retries += sub.retries
                    out.prompt_tokens += sub.prompt_tokens
                    out.completion_tokens += sub.completion_tokens
                    out.cost_usd += sub.cost_usd
        return out


def as_event(item: ev.Event | dict[str, Any]) -> ev.Event:
    """An ``Event`` as is, or one parsed back from a JSONL dict (``Event.to_dict`` shape)."""
    if isinstance(item, ev.Event):
        return item
    if isinstance(item, dict):
        return ev.Event.from_dict(item)
    raise TypeError(f"not an RLM event: {item!r} (expected an Event or its to_dict() dict)")


class Trajectory:
    """Builds :class:`RunNode` trees from a flat event stream (live or from a file).

    Incremental and thread-safe, so live displays fold the stream with it too: one fold for
    results, logs and widgets alike. ``add`` also takes JSONL dicts.
    """

    def __init__(self) -> None:
        self.runs: dict[str, RunNode] = {}
        self.root: RunNode | None = None
        self.events = 0
        self._turn_by_span: dict[str, TurnNode] = {}
        self._turn_by_number: dict[tuple[str, int], TurnNode] = {}  # (run id, turn)
        self._subcalls: dict[str, SubCallNode] = {}
        self._turn_of_subcall: dict[str, TurnNode] = {}
        self._attached: set[str] = set()
        self._tools: dict[str, ToolNode] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_events(cls, events: Iterable[ev.Event]) -> RunNode | None:
        builder = cls()
        for event in events:
            builder.add(event)
        return builder.root

    def add(self, event: ev.Event | dict[str, Any]) -> None:
        event = as_event(event)
        with self._lock:
            self.events += 1
            self._add(event)

    @property
    def roots(self) -> list[RunNode]:
        """Runs that are nobody's child: the root, plus runs whose parent is not in the
        stream (a log that starts mid-run), so displays can still show them."""
        with self._lock:
            return [run for run_id, run in self.runs.items() if run_id not in self._attached]

    def turn_node(self, run_id: str, turn: int) -> TurnNode | None:
        """The node of turn ``turn`` of run ``run_id``, if the stream has it (live displays
        look up the nodes an event touched)."""
        return self._turn_by_number.get((run_id, turn))

    def subcall_node(self, span_id: str) -> SubCallNode | None:
        return self._subcalls.get(span_id)

    def totals(self) -> Totals:
        """:meth:`RunNode.totals` summed over :attr:`roots`."""
        return sum((run.totals() for run in self.roots), Totals())

    def _run(self, event: ev.Event) -> RunNode:
        run = self.runs.get(event.run_id)
        if run is None:  # tolerate logs that start mid-run
            run = RunNode(run_id=event.run_id, parent_run_id=event.parent_run_id,
                          depth=event.depth)
            self.runs[event.run_id] = run
            if self.root is None:
                self.root = run
            parent = self.runs.get(event.parent_run_id or "")
            if parent is not None and not isinstance(event, ev.RunStarted):
                parent.children.append(run)  # a child seen without its start: keep it in the tree
                self._attached.add(run.run_id)
        return run

    def _turn(self, run: RunNode, turn: int, span_id: str | None = None) -> TurnNode:
        node = self._turn_by_number.get((run.run_id, turn))
        if node is not None:
            return node
        node = self._turn_by_number[run.run_id, turn] = TurnNode(turn=turn, span_id=span_id or "")
        run.turns.append(node)
        if span_id:
            self._turn_by_span[span_id] = node
        return node

    def _add(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            run = self._run(event)
            run.parent_span_id = event.parent_span_id
            run.question, run.model, run.sub_model = event.question, event.model, event.sub_model
            run.sandbox, run.context_summary = event.sandbox, event.context_summary
            run.limits, run.started_ts = dict(event.limits), event.ts
            if event.parent_run_id and event.parent_run_id in self.runs:
                parent = self.runs[event.parent_run_id]
                if run not in parent.children:
                    parent.children.append(run)
                self._attached.add(run.run_id)
                span = event.parent_span_id or ""
                # Under the turn that started it; a child nested under a sub-call's span goes
                # under that sub-call's turn.
                turn = self._turn_by_span.get(span) or self._turn_of_subcall.get(span)
                if turn is not None and run not in turn.children:
                    turn.children.append(run)
            return
        run = self._run(event)
        if isinstance(event, ev.TurnStarted):
            self._turn(run, event.turn, event.span_id)
        elif isinstance(event, ev.ModelChunk):
            turn = self._turn(run, event.turn)
            turn.text += event.delta
            turn.streaming = True
        elif isinstance(event, ev.ModelResponse):
            turn = self._turn(run, event.turn)
            turn.streaming, turn.responded = False, True
            turn.text, turn.model = event.text, event.model
            turn.prompt_tokens, turn.completion_tokens = event.prompt_tokens, event.completion_tokens
            turn.cost_usd, turn.latency_s, turn.cached = event.cost_usd, event.latency_s, event.cached
        elif isinstance(event, ev.CodeExecuted):
            self._turn(run, event.turn).code.append(CodeNode(
                index=event.index, code=event.code, stdout=event.stdout, error=event.error,
                duration_s=event.duration_s, timed_out=event.timed_out, restarted=event.restarted))
        elif isinstance(event, ev.SubCallStarted):
            node = SubCallNode(span_id=event.span_id, turn=event.turn, model=event.model,
                               prompt_preview=event.prompt_preview,
                               prompt_chars=event.prompt_chars)
            self._subcalls[event.span_id] = node
            turn = self._turn(run, event.turn)
            turn.subcalls.append(node)
            self._turn_of_subcall[event.span_id] = turn
            run.subcall_count += 1
        elif isinstance(event, ev.SubCallFinished):
            node = self._subcalls.get(event.span_id)
            if node is None:
                node = self._subcalls[event.span_id] = SubCallNode(span_id=event.span_id,
                                                                   turn=event.turn)
                self._turn(run, event.turn).subcalls.append(node)
            node.model = event.model or node.model
            node.response_preview, node.error = event.response_preview, event.error
            node.prompt_tokens, node.completion_tokens = event.prompt_tokens, event.completion_tokens
            node.cost_usd, node.latency_s, node.cached = event.cost_usd, event.latency_s, event.cached
            node.finished = True
        elif isinstance(event, ev.ModelRetry):
            target: TurnNode | SubCallNode | None = None
            if event.call == "sub":
                target = self._subcalls.get(event.parent_span_id or "")
            if target is None:
                target = self._turn(run, event.turn)
            target.retries += 1
            target.retry_errors.append(event.error)
        elif isinstance(event, ev.ToolStarted):
            tool = ToolNode(span_id=event.span_id, turn=event.turn, name=event.name,
                            arguments_preview=event.arguments_preview)
            self._tools[event.span_id] = tool
            self._turn(run, event.turn).tools.append(tool)
        elif isinstance(event, ev.ToolFinished):
            tool = self._tools.get(event.span_id)
            if tool is None:
                tool = self._tools[event.span_id] = ToolNode(span_id=event.span_id,
                                                             turn=event.turn, name=event.name)
                self._turn(run, event.turn).tools.append(tool)
            tool.result_preview, tool.error = event.result_preview, event.error
            tool.duration_s, tool.finished = event.duration_s, True
        elif isinstance(event, ev.SessionNote):
            run.notes.append(f"session {event.kind}: {event.message}")
        elif isinstance(event, ev.OutputChecked):
            run.notes.append(f"output {event.type_label}: accepted" if event.ok else
                             f"output {event.type_label}: refused (repair {event.repair}): "
                             f"{event.error}")
        elif isinstance(event, ev.GuardrailActed):
            run.notes.append(f"guardrail {event.fix} (turn {event.turn})"
                             + (f": {event.detail}" if event.detail else ""))
        elif isinstance(event, (ev.BudgetWarning, ev.BudgetExceededEvent)):
            word = "warning" if isinstance(event, ev.BudgetWarning) else "exceeded"
            run.warnings.append(f"{event.limit} {word}: {event.used:g} of {event.allowed:g}")
        elif isinstance(event, ev.ErrorEvent):
            run.warnings.append(f"{event.kind}: {event.message}")
        elif isinstance(event, ev.RunFinished):
            run.answer, run.status = event.answer, event.status
            run.error, run.error_type = event.error, event.error_type
            run.usage, run.cost_usd, run.elapsed_s = event.usage, event.cost_usd, event.elapsed_s
            for turn in run.turns:
                turn.streaming = False


#: One encoder for every line: ``json.dumps`` with options builds a new one per call.
_encode_line = json.JSONEncoder(ensure_ascii=False, default=str).encode


class JsonlWriter:
    """Subscriber that appends each event to ``path`` as one JSON line, flushed at once.

    ``secrets`` (the run's key) join the known secrets of the environment; each line is
    redacted with ``[redacted: NAME]`` markers, or with ``redactor`` when one is given.
    """

    def __init__(self, path: Path, secrets: Iterable[str] = (), *,
                 redactor: Redactor | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._redactor = redactor if redactor is not None else Redactor.for_run(
            extra=[s for s in secrets if s])
        self._lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.ModelChunk):
            return
        line = self._redactor.redact(_encode_line(event.to_dict()))
        with self._lock:
            if self._fh.closed:
                return
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def log_path_for(log_dir: Path, run_id: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    return Path(log_dir) / f"{stamp}-{run_id}.jsonl"


def iter_events(path: str | os.PathLike[str]) -> Iterator[ev.Event]:
    """Events from a JSONL log; a truncated last line (a crash mid-write) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            yield ev.Event.from_dict(data)


def read_trajectory(path: str | os.PathLike[str]) -> RunNode:
    """Rebuild the run tree saved in a JSONL log (no model is called)."""
    root = Trajectory.from_events(iter_events(path))
    if root is None:
        raise ValueError(f"{path} holds no RLM events: is it a run log?")
    return root


@dataclass
class RunSummary:
    """One row of ``%rlm logs`` / ``rlm logs``."""

    run_id: str
    path: str
    started: float
    question: str
    model: str
    turns: int
    subcalls: int
    tokens: int
    cost_usd: float
    status: str
    retries: int = 0


def find_run(log_dir: str | os.PathLike[str], run_id_or_path: str) -> Path:
    """A log file by path, or by (a prefix of) its run id."""
    candidate = Path(run_id_or_path).expanduser()
    if candidate.is_file():
        return candidate
    matches = sorted(Path(log_dir).expanduser().glob(f"*-{run_id_or_path}*.jsonl"))
    if not matches:
        raise FileNotFoundError(
            f"No run log matches {run_id_or_path!r} in {log_dir}: list runs with `rlm logs`.")
    return matches[-1]


def list_runs(log_dir: str | os.PathLike[str], limit: int = 20) -> list[RunSummary]:
    """The most recent runs in ``log_dir``, newest first."""
    directory = Path(log_dir).expanduser()
    if not directory.is_dir():
        return []
    files = sorted(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    rows = []
    for path in files[:limit]:
        try:
            root = read_trajectory(path)
        except (OSError, ValueError):
            continue
        tokens = sum(int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0))
                     for u in root.usage.values())
        rows.append(RunSummary(
            run_id=root.run_id, path=str(path), started=root.started_ts,
            question=root.question, model=root.model,
            turns=sum(len(r.turns) for r in root.walk()),
            subcalls=sum(r.subcall_count for r in root.walk()), tokens=tokens,
            cost_usd=root.cost_usd, status=root.status, retries=root.totals().retries))
    return rows
