"""``RLM.map``: one RLM run per item, under one total budget and one 429 gate.

A map is a driver loop on the caller's thread that keeps at most ``concurrency`` items in
flight on an executor and folds their results into rows:

- ``executor=None`` (or any ``ThreadPoolExecutor``): items run in this process, each with its
  own sandbox. They share one :class:`~rlm_jupyter.engine.llm.RateLimitGate` (a 429 seen by one
  item holds back all of them) and one :class:`MapBudget`, which every item's budget charges,
  so the total is exact: once it is spent, running items are refused their next model call and
  items not started end with a budget error.
- ``executor=<dask.distributed.Client>``: each item is one Dask task that runs a whole RLM on
  a worker (which opens its own sandboxes). The resolved settings, **the API key included**,
  travel inside the pickled task, so they are visible to the scheduler and workers of that
  cluster: use a cluster you trust. Progress comes back through Dask's structured events
  (``Worker.log_event`` -> ``Client.subscribe_topic``), results through the futures; a
  cancelled map cancels its futures and tells every worker (``Client.run``) to stop the items
  it is running. Each worker *process* has its own 429 gate, shared by the items it runs.
  The total budget is enforced between items: each item starts with at most what is left of
  the total as its own limit, and no item starts once the total is spent.
- any other ``concurrent.futures.Executor`` (a process pool): as on Dask, without live
  progress (rows arrive as items finish) and without stopping an item already running.

Nothing here imports dask or IPython at module level.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import glob
import hashlib
import json
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from rlm_jupyter import errors
from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.budget import Budget
from rlm_jupyter.engine.llm import RateLimitGate

if TYPE_CHECKING:
    from rlm_jupyter.config import Settings
    from rlm_jupyter.engine.api import RLM
    from rlm_jupyter.engine.trajectory import RunNode

PROGRESS_INTERVAL_S = 0.2  # per item: progress messages are throttled at the source
RESULT_FIELDS = ("key", "answer", "output", "status", "error", "error_type", "total_tokens",
                 "cost_usd", "elapsed_s", "run_id", "log_path", "resumed")


# -- items and results --------------------------------------------------------------------------
@dataclass
class MapItem:
    """One unit of work: the question as this item asks it, and its context."""

    index: int
    key: Any
    question: str
    context: Any

    @property
    def key_id(self) -> str:
        return key_id(self.key)

    @property
    def question_hash(self) -> str:
        return hashlib.sha256(self.question.encode("utf-8")).hexdigest()[:16]


@dataclass
class ItemResult:
    """One item's outcome: a row of :meth:`MapResult.to_pandas`, plus its trajectory."""

    index: int
    key: Any
    question: str
    answer: str | None = None
    output: Any = None
    status: str = "ok"  # ok | error | cancelled
    error: str | None = None
    error_type: str | None = None
    total_tokens: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    run_id: str | None = None
    log_path: str | None = None
    resumed: bool = False
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    trajectory: RunNode | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RESULT_FIELDS}

    def load_trajectory(self) -> RunNode | None:
        """The trajectory, read back from the run's log when the result came from a resume
        file or another machine did not send it."""
        if self.trajectory is None and self.log_path and Path(self.log_path).exists():
            from rlm_jupyter.engine.trajectory import read_trajectory

            try:
                self.trajectory = read_trajectory(self.log_path)
            except (OSError, ValueError):
                return None
        return self.trajectory


class MapResult:
    """Every item's result, in input order; ``to_pandas()`` gives one row per item."""

    def __init__(self, question: str, results: list[ItemResult], *,
                 results_path: Path | None = None, cancelled: bool = False,
                 elapsed_s: float = 0.0) -> None:
        self.question = question
        self.results = results
        self.results_path = results_path
        self.cancelled = cancelled
        self.elapsed_s = elapsed_s

    def __iter__(self) -> Iterator[ItemResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> ItemResult:
        return self.results[index]

    def by_key(self, key: Any) -> ItemResult:
        for result in self.results:
            if result.key == key:
                return result
        raise KeyError(key)

    @property
    def answers(self) -> list[str | None]:
        return [r.answer for r in self.results]

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.results)

    @property
    def total_tokens(self) -> int:
        return sum(r.total_tokens for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "error": 0, "cancelled": 0}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame([r.row() for r in self.results], columns=list(RESULT_FIELDS))

    def __repr__(self) -> str:
        c = self.counts()
        return (f"MapResult(items={len(self)}, ok={c['ok']}, error={c['error']}, "
                f"cancelled={c['cancelled']}, tokens={self.total_tokens}, "
                f"cost_usd={self.cost_usd:.4f}, elapsed_s={self.elapsed_s:.1f})")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """The grid's static table in a notebook (registered by ``jupyter/render.py``, see
        ``engine/result.register_display``), the text repr in a script."""
        from rlm_jupyter.engine.result import rich_display

        return rich_display(self)


# -- map events (what the grid and ``on_event`` see) ---------------------------------------------
@dataclass
class MapEvent:
    type: ClassVar[str] = "map_event"
    ts: float = field(default_factory=time.time)


@dataclass
class MapStarted(MapEvent):
    type: ClassVar[str] = "map_started"
    question: str = ""
    keys: list[str] = field(default_factory=list)
    executor: str = "threads"
    concurrency: int = 0


@dataclass
class ItemStarted(MapEvent):
    type: ClassVar[str] = "item_started"
    index: int = 0


@dataclass
class ItemProgress(MapEvent):
    type: ClassVar[str] = "item_progress"
    index: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0


@dataclass
class ItemFinished(MapEvent):
    type: ClassVar[str] = "item_finished"
    index: int = 0
    result: ItemResult | None = None


@dataclass
class MapFinished(MapEvent):
    type: ClassVar[str] = "map_finished"
    result: MapResult | None = None


# -- contexts -> items ---------------------------------------------------------------------------
_FIELD_RE = re.compile(r"\{(\w+)\}")


def key_id(key: Any) -> str:
    """A stable text id for a row key (resume files match on it)."""
    try:
        return json.dumps(key, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(key)


def render_question(template: str, fields: Mapping[str, Any]) -> str:
    """Fill ``{key}`` and ``{column}`` only; any other brace (code, JSON) is left as written."""
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(fields[name]) if name in fields else match.group(0)

    return _FIELD_RE.sub(fill, template)


def expand_contexts(question: str, contexts: Any) -> list[MapItem]:
    """One item per element: list/tuple, dict (keys are row keys), Series, DataFrame rows, or
    a path glob / directory (one item per file, read when the item starts)."""
    pairs: list[tuple[Any, Any, dict[str, Any]]] = []
    kind = type(contexts).__name__
    if isinstance(contexts, (str, os.PathLike)):
        for path in _files(contexts):
            pairs.append((str(path), path, {"path": str(path), "name": path.name}))
    elif kind == "DataFrame" and hasattr(contexts, "iterrows"):
        for label, row in contexts.iterrows():
            data = row.to_dict()
            fields = {str(k): v for k, v in data.items()}
            pairs.append((_plain(label), data, fields))
    elif kind == "Series" and hasattr(contexts, "items"):
        for label, value in contexts.items():
            pairs.append((_plain(label), value, {}))
    elif isinstance(contexts, Mapping):
        for key, value in contexts.items():
            pairs.append((key, value, {}))
    elif isinstance(contexts, (list, tuple)):
        for i, value in enumerate(contexts):
            pairs.append((i, value, {}))
    else:
        raise errors.ConfigError(
            f"RLM.map cannot take contexts of type {kind}: pass a list, a dict, a pandas "
            "Series or DataFrame, or a path glob / directory ('docs/*.txt').")
    items = []
    seen: set[str] = set()
    for index, (key, context, fields) in enumerate(pairs):
        kid = key_id(key)
        if kid in seen:
            raise errors.ConfigError(f"Two items have the key {key!r}: map keys must be unique "
                                     "(they name rows and resume entries).")
        seen.add(kid)
        rendered = render_question(question, {**fields, "key": key})
        items.append(MapItem(index=index, key=key, question=rendered, context=context))
    return items


def _plain(value: Any) -> Any:
    """numpy scalars (DataFrame/Series labels) as plain Python values."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


def _files(spec: str | os.PathLike[str]) -> list[Path]:
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)
                       if Path(p).is_file())
        if not files:
            raise errors.ConfigError(
                f"No files match {text!r}: RLM.map takes a string only as a path glob or a "
                "directory. To map over texts, pass a list of strings.")
    return files


# -- the total budget ----------------------------------------------------------------------------
class MapBudget:
    """What the whole map may spend; every item's budget charges it (thread-safe)."""

    def __init__(self, budget_usd: float | None = None, max_tokens: int | None = None) -> None:
        self.budget_usd = budget_usd
        self.max_tokens = max_tokens
        self.cost_usd = 0.0
        self.tokens = 0
        self._lock = threading.Lock()

    def add(self, tokens: int, cost_usd: float) -> None:
        with self._lock:
            self.tokens += tokens
            self.cost_usd += cost_usd

    def spent(self, estimated_tokens: int = 0) -> errors.BudgetExceeded | None:
        """A fresh error (one per item: exceptions are not shared across threads) or None."""
        with self._lock:
            if self.budget_usd is not None and self.cost_usd >= self.budget_usd:
                return errors.CostLimitExceeded(
                    f"Map budget spent (usd: {self.cost_usd:g} of {self.budget_usd:g}). Raise "
                    "the map's budget_usd (or --budget) and re-run with resume=True to finish "
                    "only the items left.", used=self.cost_usd, allowed=self.budget_usd)
            if self.max_tokens is not None and self.tokens + estimated_tokens > self.max_tokens:
                return errors.TokenLimitExceeded(
                    f"Map budget spent (tokens: {self.tokens + estimated_tokens} of "
                    f"{self.max_tokens}). Raise the map's max_total_tokens and re-run with "
                    "resume=True to finish only the items left.",
                    used=self.tokens + estimated_tokens, allowed=self.max_tokens)
            return None

    def remaining(self) -> tuple[float | None, int | None]:
        with self._lock:
            usd = None if self.budget_usd is None else max(0.0, self.budget_usd - self.cost_usd)
            tok = None if self.max_tokens is None else max(0, self.max_tokens - self.tokens)
            return usd, tok


@dataclass
class _ItemBudget(Budget):
    """An item's own limits (the RLM's settings) that also charge the map's total."""

    shared: MapBudget | None = None

    def reserve_call(self, *, subcall: bool, estimated_prompt_tokens: int = 0) -> None:
        if self.shared is not None and self.exceeded is None:
            error = self.shared.spent(estimated_prompt_tokens)
            if error is not None:
                with self._lock:
                    self.exceeded = error
        super().reserve_call(subcall=subcall, estimated_prompt_tokens=estimated_prompt_tokens)

    def charge(self, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float,
               *, cached: bool = False) -> list[tuple[str, float, float]]:
        warnings = super().charge(model, prompt_tokens, completion_tokens, cost_usd,
                                  cached=cached)
        if self.shared is not None and not cached:  # a cache hit costs the map nothing
            self.shared.add(prompt_tokens + completion_tokens, cost_usd)
        return warnings


# -- running one item (on this process's threads or on a worker) ---------------------------------
Emit = Callable[[dict[str, Any]], None]


def typed_outputs_available() -> bool:
    """Whether ``RLM.run`` takes ``output_type`` (typed answers, a separate feature)."""
    import inspect

    from rlm_jupyter.engine.api import RLM

    return "output_type" in inspect.signature(RLM.run).parameters


def run_item(settings: Settings, item: MapItem, *, shared: MapBudget | None,
             gate: RateLimitGate | None, cancel: threading.Event,
             emit: Emit | None = None, output_type: Any = None) -> ItemResult:
    """One whole RLM run for one item; never raises (the row carries the error)."""
    from rlm_jupyter.engine.api import RLM

    started = time.monotonic()
    if emit is not None:
        emit({"kind": "started", "index": item.index})
    progress = _ProgressTracker(item.index, emit)
    try:
        if shared is not None:
            error = shared.spent()
            if error is not None:
                return _error_result(item, error, started)
        if cancel.is_set():
            return _cancelled_result(item, "The map was cancelled before this item started.")
        context = item.context
        if isinstance(context, Path):  # one item per file: the file's text, read when it starts
            context = context.read_text(encoding="utf-8", errors="replace")
        rlm = RLM()
        rlm.settings = settings
        budget = _ItemBudget(max_subcalls=settings.max_subcalls,
                             max_tokens=_item_token_limit(settings),
                             budget_usd=settings.budget_usd, timeout_s=settings.timeout_s,
                             shared=shared)
        typed = {"output_type": output_type} if output_type is not None else {}
        result = rlm.run(item.question, context, on_event=progress, cancel=cancel,
                         _budget=budget, _gate=gate, **typed)
    except Exception as exc:  # noqa: BLE001 - a failing item never stops the others
        return _error_result(item, exc, started)
    finally:
        progress.flush()
    return ItemResult(
        index=item.index, key=item.key, question=item.question, answer=result.answer,
        output=getattr(result, "output", None), status=result.status, error=str(result.error) if result.error else None,
        error_type=type(result.error).__name__ if result.error else None,
        total_tokens=result.total_tokens, cost_usd=result.cost_usd,
        elapsed_s=time.monotonic() - started, run_id=result.run_id,
        log_path=str(result.log_path) if result.log_path else None, usage=result.usage,
        trajectory=result.trajectory)


def _item_token_limit(settings: Settings) -> int | None:
    # The per-run token limit (``max_total_tokens``; ``max_tokens`` before the settings table).
    for name in ("max_total_tokens", "max_tokens"):
        if hasattr(settings, name):
            return getattr(settings, name)
    return None


class _ProgressTracker:
    """Counts an item's tokens and cost from its events; sends a throttled progress line."""

    def __init__(self, index: int, emit: Emit | None) -> None:
        self.index = index
        self.emit = emit
        self.tokens = 0
        self.cost_usd = 0.0
        self.calls = 0
        self._last = 0.0
        self._dirty = False
        self._lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        if not isinstance(event, (ev.ModelResponse, ev.SubCallFinished)):
            return
        with self._lock:
            self.calls += 1
            self.tokens += event.prompt_tokens + event.completion_tokens
            if not event.cached:
                self.cost_usd += event.cost_usd
            self._dirty = True
            now = time.monotonic()
            if now - self._last < PROGRESS_INTERVAL_S:
                return
            self._last = now
        self.flush()

    def flush(self) -> None:
        with self._lock:
            if self.emit is None or not self._dirty:
                return
            self._dirty = False
            message = {"kind": "progress", "index": self.index, "tokens": self.tokens,
                       "cost_usd": self.cost_usd, "calls": self.calls}
        self.emit(message)


def _error_result(item: MapItem, exc: BaseException, started: float) -> ItemResult:
    return ItemResult(index=item.index, key=item.key, question=item.question, status="error",
                      error=str(exc) or type(exc).__name__, error_type=type(exc).__name__,
                      elapsed_s=time.monotonic() - started)


def _cancelled_result(item: MapItem, message: str) -> ItemResult:
    return ItemResult(index=item.index, key=item.key, question=item.question,
                      status="cancelled", error=message, error_type="RunCancelled")


# -- remote items (Dask, process pools) ----------------------------------------------------------
#: Per worker process: the 429 gate its items share, and the maps it was told to stop.
_PROCESS_GATES: dict[str, RateLimitGate] = {}
_CANCELLED_MAPS: set[str] = set()
_RUNNING: dict[str, set[threading.Event]] = {}
_REMOTE_LOCK = threading.Lock()


@dataclass
class RemoteTask:
    """Everything an item needs on another process; pickled with the task (the key too)."""

    map_id: str
    settings: Settings
    item: MapItem
    budget_usd_left: float | None
    tokens_left: int | None
    topic: str | None
    output_type: Any = None


def run_remote(task: RemoteTask) -> ItemResult:
    """The Dask task / process-pool function: a whole RLM for one item on this process."""
    cancel = threading.Event()
    gate_key = f"{task.settings.api_base}|{task.settings.model}"
    with _REMOTE_LOCK:
        gate = _PROCESS_GATES.setdefault(gate_key, RateLimitGate())
        _RUNNING.setdefault(task.map_id, set()).add(cancel)
        if task.map_id in _CANCELLED_MAPS:
            cancel.set()
    emit = _dask_emitter(task.topic) if task.topic else None
    shared = None
    if task.budget_usd_left is not None or task.tokens_left is not None:
        shared = MapBudget(task.budget_usd_left, task.tokens_left)
    item = task.item
    if isinstance(item.context, Path):
        item = MapItem(item.index, item.key, item.question, item.context.read_text(
            encoding="utf-8", errors="replace"))
    try:
        result = run_item(task.settings, item, shared=shared, gate=gate, cancel=cancel,
                          emit=emit, output_type=task.output_type)
    finally:
        with _REMOTE_LOCK:
            _RUNNING.get(task.map_id, set()).discard(cancel)
    return result  # the trajectory travels back with it


def cancel_remote_map(map_id: str) -> int:
    """Run on every worker (``Client.run``): stop this map's running items there."""
    with _REMOTE_LOCK:
        _CANCELLED_MAPS.add(map_id)
        running = list(_RUNNING.get(map_id, ()))
    for cancel in running:
        cancel.set()
    return len(running)


def _dask_emitter(topic: str) -> Emit | None:
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None

    def emit(message: dict[str, Any]) -> None:
        try:
            worker.log_event(topic, message)
        except Exception:  # noqa: BLE001 - progress is best effort; the result still comes
            pass

    return emit


# -- the driver ---------------------------------------------------------------------------------
class _Backend:
    """Where items run; the driver only submits, polls and cancels."""

    name = "threads"

    def submit(self, item: MapItem) -> Any:
        raise NotImplementedError

    def done(self, future: Any) -> bool:
        return bool(future.done())

    def result(self, future: Any, item: MapItem) -> ItemResult:
        try:
            return future.result()
        except BaseException as exc:  # noqa: BLE001 - the task itself failed (worker died...)
            if _is_cancelled_future(future):
                return _cancelled_result(item, "The map was cancelled while this item ran.")
            return _error_result(item, exc, time.monotonic())

    def cancel(self, futures: list[Any]) -> None:
        for future in futures:
            future.cancel()

    def abandon(self, futures: list[Any]) -> None:
        """Futures still running after the grace period."""

    def close(self) -> None:
        pass


def _is_cancelled_future(future: Any) -> bool:
    try:
        return bool(future.cancelled())
    except Exception:  # noqa: BLE001
        return getattr(future, "status", "") == "cancelled"


class _ThreadBackend(_Backend):
    def __init__(self, settings: Settings, pool: cf.ThreadPoolExecutor | None, concurrency: int,
                 shared: MapBudget, cancel: threading.Event, emit: Emit) -> None:
        self.own = pool is None
        self.pool = pool or cf.ThreadPoolExecutor(max_workers=concurrency,
                                                  thread_name_prefix="rlm-map")
        self.settings = settings
        self.shared = shared
        self.gate = RateLimitGate()  # one 429 gate for every item of the map
        self.cancel_event = cancel
        self.emit = emit
        self.output_type: Any = None

    def submit(self, item: MapItem) -> Any:
        # Each item runs in a copy of the caller's context (an OpenTelemetry span stays the
        # parent of every item's run).
        return self.pool.submit(contextvars.copy_context().run, run_item, self.settings, item,
                                shared=self.shared,
                                gate=self.gate, cancel=self.cancel_event, emit=self.emit,
                                output_type=self.output_type)

    def close(self) -> None:
        if self.own:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _RemoteBackend(_Backend):
    """A generic ``concurrent.futures.Executor`` (e.g. a process pool): results only."""

    name = "executor"

    def __init__(self, executor: Any, settings: Settings, shared: MapBudget,
                 map_id: str) -> None:
        self.executor = executor
        self.settings = settings
        self.shared = shared
        self.map_id = map_id
        self.topic: str | None = None
        self.output_type: Any = None

    def task(self, item: MapItem) -> RemoteTask:
        usd, tokens = self.shared.remaining()
        if isinstance(item.context, Path):
            # Read here: the other process may not see this file system.
            item = MapItem(item.index, item.key, item.question,
                           item.context.read_text(encoding="utf-8", errors="replace"))
        return RemoteTask(map_id=self.map_id, settings=self.settings, item=item,
                          budget_usd_left=usd, tokens_left=tokens, topic=self.topic,
                          output_type=self.output_type)

    def submit(self, item: MapItem) -> Any:
        return self.executor.submit(run_remote, self.task(item))


class _DaskBackend(_RemoteBackend):
    name = "dask"

    def __init__(self, client: Any, settings: Settings, shared: MapBudget, map_id: str,
                 emit: Emit) -> None:
        super().__init__(client, settings, shared, map_id)
        self.topic = f"rlm-map-{map_id}"
        client.subscribe_topic(self.topic, lambda event: emit(event[1]))

    def submit(self, item: MapItem) -> Any:
        return self.executor.submit(run_remote, self.task(item), pure=False, retries=0,
                                    key=f"rlm-map-{self.map_id}-{item.index}")

    def cancel(self, futures: list[Any]) -> None:
        try:
            self.executor.run(cancel_remote_map, self.map_id, on_error="ignore")
        except Exception:  # noqa: BLE001 - a worker gone is a worker that runs nothing
            pass
        # Every worker now knows the map is cancelled: a running item stops (its sandbox
        # closed) and returns its partial row, a queued one returns at once when it starts.
        # So the driver waits for the futures; Dask's own cancel is only for the ones that
        # outlive the grace period (it would drop a running task's result, not stop it).

    def abandon(self, futures: list[Any]) -> None:
        if futures:
            self.executor.cancel(futures)

    def close(self) -> None:
        try:
            self.executor.unsubscribe_topic(self.topic)
        except Exception:  # noqa: BLE001
            pass


def _is_dask_client(executor: Any) -> bool:
    cls = type(executor)
    return cls.__name__ == "Client" and cls.__module__.startswith("distributed")


def default_results_path(settings: Settings, question: str) -> Path:
    digest = hashlib.sha256(f"{settings.model}\n{question}".encode("utf-8")).hexdigest()[:16]
    return settings.effective_log_dir / "maps" / f"map-{digest}.jsonl"


def read_done(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Finished rows of a results file (the last line for an item wins; ok rows only)."""
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.exists():
        return done
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            ident = (row.get("key_id"), row.get("question_hash"))
            if row.get("status") == "ok":
                done[ident] = row
            else:
                done.pop(ident, None)
    return done


def run_map(rlm: RLM, question: str, contexts: Any, *, output_type: Any = None,
            concurrency: int = 8, executor: Any = None, budget_usd: float | None = None,
            max_total_tokens: int | None = None, resume: str | os.PathLike[str] | bool | None = None,
            on_event: Callable[[MapEvent], None] | None = None,
            cancel: threading.Event | None = None, item_timeout_s: float | None = None,
            cancel_grace_s: float = 30.0) -> MapResult:
    """See :meth:`rlm_jupyter.engine.api.RLM.map`."""
    if output_type is not None and not typed_outputs_available():
        raise errors.ConfigError(
            "Typed outputs are not available yet: RLM.map(output_type=...) needs the typed "
            "answers feature (RLM.run(output_type=...)), which this version does not have. "
            "Leave output_type=None; each row's 'answer' holds the text.")
    if not isinstance(question, str) or not question.strip():
        raise errors.ConfigError("The question is empty: pass the question as a string.")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise errors.ConfigError(f"concurrency must be a positive integer, got {concurrency!r}.")
    settings = rlm._resolved_settings()
    settings = settings.with_(stream=False)  # nobody watches a grid cell's tokens stream
    if item_timeout_s is not None:
        settings = settings.with_(timeout_s=item_timeout_s)
    items = expand_contexts(question, contexts)
    started = time.monotonic()
    cancel = cancel or threading.Event()
    shared = MapBudget(budget_usd, max_total_tokens)
    map_id = uuid.uuid4().hex[:12]

    results_path = (Path(resume).expanduser() if isinstance(resume, (str, os.PathLike))
                    else default_results_path(settings, question))
    done_rows = read_done(results_path) if resume not in (None, False) else {}
    results: dict[int, ItemResult] = {}
    for item in items:
        row = done_rows.get((item.key_id, item.question_hash))
        if row is not None:
            results[item.index] = _resumed(item, row)

    inbox: queue.Queue[dict[str, Any]] = queue.Queue()
    if _is_dask_client(executor):
        backend: _Backend = _DaskBackend(executor, settings, shared, map_id, inbox.put)
    elif executor is None or isinstance(executor, cf.ThreadPoolExecutor):
        backend = _ThreadBackend(settings, executor, concurrency, shared, cancel, inbox.put)
    elif isinstance(executor, cf.Executor) or hasattr(executor, "submit"):
        backend = _RemoteBackend(executor, settings, shared, map_id)
    else:
        raise errors.ConfigError(
            f"executor={executor!r} is not an executor: pass None (threads), a "
            "dask.distributed.Client, or a concurrent.futures.Executor.")

    backend.output_type = output_type  # type: ignore[attr-defined]

    stopping: list[bool] = []

    def emit(event: MapEvent) -> None:
        if on_event is None:
            return
        try:
            on_event(event)
        except Exception:  # noqa: BLE001 - a broken display never stops the map
            pass
        except BaseException:  # Ctrl-C: stop once, then let the cleanup finish in peace
            if not stopping:
                raise

    emit(MapStarted(question=question, keys=[str(i.key) for i in items],
                    executor=backend.name, concurrency=concurrency))
    for index, result in sorted(results.items()):
        emit(ItemFinished(index=index, result=result))

    writer = _ResultsWriter(results_path)
    todo = [item for item in items if item.index not in results]
    todo.reverse()  # pop() from the end keeps the input order
    in_flight: dict[Any, MapItem] = {}
    finished: set[int] = set(results)
    interrupted: BaseException | None = None
    wake = threading.Event()

    def drain() -> None:
        while True:
            try:
                message = inbox.get_nowait()
            except queue.Empty:
                return
            index = message.get("index")
            if not isinstance(index, int) or index in finished:
                continue  # progress that arrived after the item's row: already final
            if message.get("kind") == "started":
                emit(ItemStarted(index=index))
            elif message.get("kind") == "progress":
                emit(ItemProgress(index=index, tokens=int(message.get("tokens", 0)),
                                  cost_usd=float(message.get("cost_usd", 0.0)),
                                  calls=int(message.get("calls", 0))))

    def finish(item: MapItem, result: ItemResult) -> None:
        drain()
        if not isinstance(backend, _ThreadBackend):
            # items on other processes charged a copy of the total: charge the real one here
            shared.add(result.total_tokens, result.cost_usd)
        results[item.index] = result
        finished.add(item.index)
        writer.write(item, result)
        emit(ItemFinished(index=item.index, result=result))

    try:
        while todo or in_flight:
            while todo and len(in_flight) < concurrency and not cancel.is_set():
                item = todo.pop()
                spent = shared.spent()
                if spent is not None:
                    finish(item, _error_result(item, spent, time.monotonic()))
                    continue
                try:
                    future = backend.submit(item)
                except Exception as exc:  # noqa: BLE001 - e.g. a context that cannot pickle
                    finish(item, _error_result(item, exc, time.monotonic()))
                    continue
                in_flight[future] = item
                _on_done(future, wake)
            if cancel.is_set():
                break
            wake.clear()
            for future in [f for f in in_flight if backend.done(f)]:
                item = in_flight.pop(future)
                finish(item, backend.result(future, item))
            drain()
            if in_flight and not any(backend.done(f) for f in in_flight):
                # a finished item wakes the driver at once (its slot goes to the next item);
                # the timeout bounds how late a cancel or a progress line is noticed
                wake.wait(0.05)
    except BaseException as exc:  # KeyboardInterrupt in a script: stop cleanly, then re-raise
        interrupted = exc
        stopping.append(True)
        cancel.set()
    try:
        if cancel.is_set():
            _stop(backend, in_flight, cancel_grace_s, finish)
            for item in reversed(todo):
                finish(item, _cancelled_result(item, "The map was cancelled before this item "
                                                     "started."))
            todo.clear()
    finally:
        drain()
        backend.close()
        writer.close()
    outcome = MapResult(question, [results[i.index] for i in items], results_path=results_path,
                        cancelled=cancel.is_set(), elapsed_s=time.monotonic() - started)
    emit(MapFinished(result=outcome))
    if interrupted is not None:
        raise interrupted
    return outcome


def _on_done(future: Any, wake: threading.Event) -> None:
    try:
        future.add_done_callback(lambda _f: wake.set())
    except Exception:  # noqa: BLE001 - without callbacks the driver still polls
        pass


def _stop(backend: _Backend, in_flight: dict[Any, MapItem], grace_s: float,
          finish: Callable[[MapItem, ItemResult], None]) -> None:
    """Cancel what runs and wait (bounded) for each item to return its row, so no sandbox
    or future outlives the map."""
    backend.cancel(list(in_flight))
    deadline = time.monotonic() + grace_s
    while in_flight and time.monotonic() < deadline:
        for future in [f for f in in_flight if backend.done(f)]:
            item = in_flight.pop(future)
            finish(item, backend.result(future, item))
        time.sleep(0.02)
    backend.abandon(list(in_flight))
    for future, item in list(in_flight.items()):
        in_flight.pop(future)
        finish(item, _cancelled_result(item, "The map was cancelled; this item did not stop "
                                             f"within {grace_s:g} s and was abandoned."))


def _resumed(item: MapItem, row: dict[str, Any]) -> ItemResult:
    return ItemResult(index=item.index, key=item.key, question=item.question,
                      answer=row.get("answer"), status="ok",
                      total_tokens=int(row.get("total_tokens") or 0),
                      cost_usd=0.0, elapsed_s=0.0, run_id=row.get("run_id"),
                      log_path=row.get("log_path"), resumed=True)


class _ResultsWriter:
    """Append-only JSONL of finished rows: what ``resume`` reads after a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("a", encoding="utf-8")
        except OSError:
            self._fh = None

    def write(self, item: MapItem, result: ItemResult) -> None:
        if self._fh is None or result.resumed:
            return
        row = {k: v for k, v in result.row().items() if k not in ("output", "resumed")}
        row.update(key_id=item.key_id, question_hash=item.question_hash, ts=time.time())
        self._fh.write(json.dumps(row, default=str) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
