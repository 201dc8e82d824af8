"""A session: one sandbox and one message history that outlive a single question.

``RLM.run`` is a session of one ask, so there is one path through the engine. Each ask is its
own run (own run id, budget, event bus, log file and trajectory); what carries over is the
sandbox (every variable the model made) and the conversation: the root model sees the earlier
asks' messages, newest first, as many as fit ``history_tokens``; older asks are summarised
(question, answer, the first lines of their code) and an event (``SessionNote``) says so.

Life cycle: the sandbox opens behind the first ask's first model call and closes with
``close()``, ``with``/``async with``, or after ``idle_timeout_s`` without an ask (default: the
``session_idle_s`` setting, ``RLM_SESSION_IDLE_S``, 1800 s; 0 never). An ask on a closed
session raises :class:`SessionClosed` saying why. A sandbox that died or was stopped between asks is opened
again; the model and the user are told that the variables are gone.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from rlm_jupyter import errors, telemetry
from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine import prompts
from rlm_jupyter.engine.budget import Budget
from rlm_jupyter.engine.cache import ResponseCache
from rlm_jupyter.engine.llm import LLMClient, get_litellm
from rlm_jupyter.engine.loop import HOST_FUNCTIONS, Run, RunTree, open_run_sandbox
from rlm_jupyter.engine.output import DEFAULT_MAX_CHARS, OutputSpec, copy_out
from rlm_jupyter.engine.preflight import check_context, check_credentials
from rlm_jupyter.engine.result import RunResult
from rlm_jupyter.engine.trajectory import JsonlWriter, Trajectory, log_path_for

if TYPE_CHECKING:
    from rlm_jupyter.engine.api import RLM

#: Seconds without an ask after which a session closes its sandbox (30 minutes): the default
#: of the ``session_idle_s`` setting (rlm_jupyter/settings.py).
DEFAULT_IDLE_S = 1800.0
IDLE_ENV = "RLM_SESSION_IDLE_S"
#: How much earlier conversation a follow-up carries (estimated tokens, chars / 4).
DEFAULT_HISTORY_TOKENS = 16_000
#: An earlier ask in the summary: this much of its answer and of each code block.
SUMMARY_ANSWER_CHARS = 300
SUMMARY_CODE_LINES = 3


class SessionClosed(errors.RLMError):
    """The session was closed (by you, or after being idle); its variables are gone."""


@dataclass
class AskRecord:
    """One finished ask, as the next ask's history needs it."""

    question: str
    answer: str | None
    status: str
    run_id: str
    messages: list[dict[str, str]] = field(default_factory=list)  # without the system prompt
    code: list[str] = field(default_factory=list)

    def chars(self) -> int:
        return sum(len(m["content"]) for m in self.messages)

    def summary(self, number: int) -> str:
        answer = (self.answer or f"(no answer: {self.status})").strip()
        if len(answer) > SUMMARY_ANSWER_CHARS:
            answer = answer[:SUMMARY_ANSWER_CHARS] + "..."
        lines = [f"{number}. Question: {self.question.strip()}", f"   Answer: {answer}"]
        for code in self.code[-3:]:
            head = [ln for ln in code.strip().splitlines() if ln.strip()][:SUMMARY_CODE_LINES]
            lines.append("   Code: " + " | ".join(head))
        return "\n".join(lines)


class Session:
    """One sandbox and one conversation for several asks; see the module docstring.

    Use ``rlm.session(context=...)`` rather than this class directly.
    """

    def __init__(self, rlm: "RLM", context: Any = None, *, name: str | None = None,
                 idle_timeout_s: float | None = None,
                 history_tokens: int = DEFAULT_HISTORY_TOKENS) -> None:
        self.rlm = rlm
        self.settings = rlm._resolved_settings()
        self.settings.require_model()
        check_context(context, self.settings.sandbox)
        self.context = context
        self.session_id = ev.new_id()
        self.name = name or self.session_id
        if idle_timeout_s is None:  # the session_idle_s knob (RLM_SESSION_IDLE_S); 0: never
            idle_timeout_s = self.settings.session_idle_s
        self.idle_timeout_s = float(idle_timeout_s)
        self.history_tokens = int(history_tokens)
        self.created = time.time()
        self.last_used = time.monotonic()
        self.results: list[RunResult] = []
        self.closed_reason: str | None = None
        self._records: list[AskRecord] = []
        self._sandbox: Any = None
        self._state_lost: str | None = None  # why the last sandbox is gone, for the next ask
        self._current: Run | None = None
        self._busy = threading.Lock()
        self._lock = threading.RLock()
        self._idle_timer: threading.Timer | None = None
        self._arm_idle_timer()

    # -- the public surface ---------------------------------------------------------------
    def __repr__(self) -> str:
        state = f"closed: {self.closed_reason}" if self.closed else f"{len(self.results)} asks"
        return f"Session({self.name!r}, {state}, cost_usd={self.cost_usd:.4f})"

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    @property
    def cost_usd(self) -> float:
        """What every ask of this session cost, together."""
        return sum(r.cost_usd for r in self.results)

    @property
    def usage(self) -> dict[str, dict[str, float]]:
        """Per-model usage summed over every ask (the same keys as ``RunResult.usage``)."""
        total: dict[str, dict[str, float]] = {}
        for result in self.results:
            for model, row in result.usage.items():
                into = total.setdefault(model, {})
                for key, value in row.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        into[key] = into.get(key, 0) + value
        return total

    @property
    def idle_s(self) -> float:
        return time.monotonic() - self.last_used

    def variables(self) -> dict[str, str]:
        """The sandbox's variables and their types ({} before the first ask)."""
        with self._lock:
            return self._sandbox.variables() if self._sandbox is not None else {}

    def ask(self, question: str, context: Any = None, *, output_type: Any = None,
            max_repairs: int = 2, on_event: Callable[[ev.Event], None] | None = None,
            cancel: threading.Event | None = None, _budget: Budget | None = None,
            _gate: Any = None, _loop: Any = None) -> RunResult:
        """Ask one question in this session; never raises for a failed run (see ``error``).

        ``context`` is refused after the first ask: a session has one context (open a new
        session for another). ``output_type`` makes the answer typed (``result.output``).
        """
        if not isinstance(question, str) or not question.strip():
            raise errors.ConfigError("The question is empty: pass the question as a string.")
        if context is not None and context is not self.context:
            raise errors.ConfigError("A session has one context, given to rlm.session(context="
                                     "...): open a new session for another context.")
        self._check_open()
        if not self._busy.acquire(timeout=1.0):  # the idle timer holds it for an instant
            raise errors.ConfigError(f"Session {self.name!r} is answering another question: "
                                     f"wait for it, or open a second session.")
        try:
            self._cancel_idle_timer()
            self._check_open()
            result = self._ask(question, output_type=output_type, max_repairs=max_repairs,
                               on_event=on_event, cancel=cancel, budget=_budget, gate=_gate,
                               loop=_loop)
        finally:
            self.last_used = time.monotonic()
            self._busy.release()
            self._arm_idle_timer()
        return result

    async def aask(self, question: str, **kwargs: Any) -> RunResult:
        """``ask`` in a worker thread; async tools run on the caller's event loop."""
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self.ask, question, _loop=loop, **kwargs)

    def get(self, name: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> Any:
        """Copy the sandbox variable ``name`` into the caller, by value: plain data (str,
        numbers, lists, dicts) and pandas DataFrames/Series only, at most ``max_chars`` of
        JSON. Raises :class:`~rlm_jupyter.engine.output.ValueTransferError` saying why not."""
        self._check_open()
        with self._lock:
            if self._sandbox is None:
                raise errors.ConfigError(f"Session {self.name!r} has no variables yet: ask a "
                                         f"question first.")
            return copy_out(self._sandbox, name, max_chars)

    def close(self, reason: str = "closed") -> None:
        """Close the sandbox (its variables are gone); idempotent."""
        with self._lock:
            if self.closed_reason is None:
                self.closed_reason = reason
            self._cancel_idle_timer()
            sandbox, self._sandbox = self._sandbox, None
        _close_sandbox_quietly([sandbox])

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    # -- the sandbox, lent to each ask's root run (loop.SandboxHost) --------------------------
    def acquire(self, run: Run) -> Any:
        with self._lock:
            if self.closed:
                raise SessionClosed(self._closed_message())
            if self._sandbox is not None and _is_closed(self._sandbox):
                self._sandbox = None
                self._state_lost = self._state_lost or "the sandbox was stopped"
            if self._sandbox is None:
                self._sandbox = self._open_sandbox()
            return self._sandbox

    def release(self, run: Run) -> None:
        """The ask is over: keep the sandbox open (the next ask reuses it)."""

    def _open_sandbox(self) -> Any:
        names = [*HOST_FUNCTIONS, *self.rlm.tools]
        functions = {name: self._dispatcher(name) for name in names}
        return open_run_sandbox(self.settings, self.context, functions)

    def _dispatcher(self, name: str) -> Callable[..., Any]:
        """The sandbox keeps calling the same function object; it reaches the current ask."""
        def call(*args: Any, **kwargs: Any) -> Any:
            run = self._current
            if run is None:
                raise RuntimeError(f"{name}() was called between questions")
            return run.call_host(name, *args, **kwargs)

        return call

    # -- one ask ------------------------------------------------------------------------------
    def _ask(self, question: str, *, output_type: Any, max_repairs: int,
             on_event: Callable[[ev.Event], None] | None, cancel: threading.Event | None,
             budget: Budget | None, gate: Any, loop: Any) -> RunResult:
        settings = self.settings
        model = settings.require_model()
        for name in {model, settings.sub_model or model}:
            check_credentials(name, transport=settings.effective_transport,
                              api_base=settings.api_base, api_key=settings.api_key)
        output = OutputSpec(output_type, max_repairs) if output_type is not None else None
        if settings.effective_transport == "litellm":
            # Import litellm (seconds) while the sandbox starts and loads the context. The
            # direct HTTP path needs no litellm at all for a model litellm cannot price.
            threading.Thread(target=get_litellm, daemon=True, name="rlm-import-litellm").start()
        cancel = cancel or threading.Event()
        budget = budget if budget is not None else Budget(
            max_subcalls=settings.max_subcalls, max_tokens=settings.max_total_tokens,
            budget_usd=settings.budget_usd, timeout_s=settings.timeout_s)
        cache = ResponseCache(settings.effective_cache_dir) if settings.cache_enabled else None
        client = LLMClient(api_base=settings.api_base, api_key=settings.api_key,
                           num_retries=settings.num_retries,
                           request_timeout_s=settings.request_timeout_s,
                           litellm_kwargs=settings.request_params, cache=cache,
                           concurrency=settings.concurrency, cancel=cancel,
                           transport=settings.effective_transport)
        if gate is not None:
            client.gate = gate
        bus = ev.EventBus()
        tree = RunTree(settings=settings, budget=budget, bus=bus, client=client, cancel=cancel,
                       stream_root=settings.stream and on_event is not None,
                       tools=self.rlm.tools, loop=loop)
        collected: list[ev.Event] = []
        bus.subscribe(collected.append)
        builder = Trajectory()
        bus.subscribe(builder.add)
        notes: list[str] = []
        telemetry.attach(bus, settings, tree.redactor, notes)  # OpenTelemetry spans, when on
        prior, preamble, start_notes = self._history_for_next_ask(notes)
        root = Run(tree, question, self.context, model=model, host=self, prior=prior,
                   preamble=preamble, output=output, start_notes=start_notes)
        writer = _open_log(root.run_id, settings, notes)
        if writer is not None:
            bus.subscribe(writer)
        if on_event is not None:
            bus.subscribe(on_event)
        done = threading.Event()
        watcher = threading.Thread(target=_close_on_cancel, args=(tree, done), daemon=True,
                                   name="rlm-cancel-watch")
        watcher.start()
        self._current = root
        try:
            outcome = root.execute()
        finally:
            self._current = None
            done.set()
            if writer is not None:
                writer.close()
        if cancel.is_set():
            self._state_lost = "the previous question was cancelled, which stopped the sandbox"
        if budget.unpriced_models:
            notes.append("No price known for " + ", ".join(sorted(budget.unpriced_models))
                         + ": counted as $0 (register prices with litellm.register_model).")
        trajectory = builder.root
        if outcome.error is not None:
            outcome.error.trajectory = trajectory
        self._records.append(AskRecord(
            question=question, answer=outcome.answer, status=outcome.status,
            run_id=outcome.run_id, messages=[m for m in root.messages if m["role"] != "system"],
            code=[c.code for t in (trajectory.turns if trajectory else []) for c in t.code
                  if not (c.error or "").startswith("Not run")]))
        result = RunResult(question=question, answer=outcome.answer, run_id=outcome.run_id,
                           status=outcome.status, usage=budget.usage_dict(),
                           cost_usd=budget.cost_usd, elapsed_s=budget.elapsed_s(),
                           trajectory=trajectory, log_path=writer.path if writer else None,
                           error=outcome.error, notes=notes, events=collected,
                           output=root.output_value, session_id=self.session_id,
                           tool_calls=tree.tool_calls)
        result._session = weakref.ref(self)
        self.results.append(result)
        return result

    def _history_for_next_ask(self, notes: list[str]
                              ) -> tuple[list[dict[str, str]], str, list[tuple[str, str, str]]]:
        """(earlier messages kept whole, the follow-up preamble, session notes to emit)."""
        start: list[tuple[str, str, str]] = []
        if not self._records:
            return [], "", start
        sid = self.session_id
        lost = self._state_lost
        sandbox = self._sandbox
        if sandbox is not None and not lost and (_is_closed(sandbox) or not _is_alive(sandbox)):
            lost = "the sandbox worker died or was stopped between questions"
        if lost:
            self._state_lost = None
            message = (f"The sandbox was restarted since the last question ({lost}): every "
                       f"variable the model made is gone.")
            notes.append(message)
            start.append((sid, "state_lost", message))
        budget_chars = self.history_tokens * 4
        kept: list[AskRecord] = []
        used = 0
        for record in reversed(self._records):
            if used + record.chars() > budget_chars:
                break
            kept.insert(0, record)
            used += record.chars()
        older = self._records[:len(self._records) - len(kept)]
        prior = [m for record in kept for m in record.messages]
        parts: list[str] = []
        if lost:
            parts.append(prompts.FOLLOWUP_STATE_LOST.format(why=lost))
        else:
            names = [n for n in self.variables() if n not in ("context",)]
            shown = f" ({', '.join(names[:30])})" if names else ""
            parts.append(prompts.FOLLOWUP_HEADER.format(variables=shown))
        if older:
            parts.append(prompts.EARLIER_ASKS_HEADER + "\n" + "\n".join(
                record.summary(i) for i, record in enumerate(older, 1)))
            start.append((sid, "history_compacted",
                          f"{len(older)} earlier question(s) summarised, {len(kept)} kept "
                          f"whole, to keep the history under ~{self.history_tokens:,} tokens."))
        if kept:
            last = kept[-1]
            parts.append(f"Your answer to the last question was: {last.answer or '(none)'}")
        start.insert(0, (sid, "followup", f"ask {len(self._records) + 1} of session "
                                          f"{self.name}"))
        return prior, "\n\n".join(parts), start

    # -- idle timeout -----------------------------------------------------------------------
    def _arm_idle_timer(self) -> None:
        with self._lock:
            self._cancel_idle_timer()
            if self.closed or self.idle_timeout_s <= 0:
                return
            ref = weakref.ref(self)
            timer = threading.Timer(self.idle_timeout_s, _idle_close, args=(ref,))
            timer.daemon = True
            timer.name = "rlm-session-idle"
            self._idle_timer = timer
            timer.start()

    def _cancel_idle_timer(self) -> None:
        timer, self._idle_timer = self._idle_timer, None
        if timer is not None:
            timer.cancel()

    def _check_open(self) -> None:
        if self.closed:
            raise SessionClosed(self._closed_message())

    def _closed_message(self) -> str:
        if self.closed_reason == "idle":
            return (f"Session {self.name!r} closed after {self.idle_timeout_s:g} s without a "
                    f"question, and its variables are gone: start a new session (raise "
                    f"idle_timeout_s or {IDLE_ENV} to keep sessions longer).")
        return (f"Session {self.name!r} is closed and its variables are gone: start a new "
                f"one with rlm.session(context=...).")


def _idle_close(ref: "weakref.ReferenceType[Session]") -> None:
    session = ref()
    if session is None or session.closed:
        return
    if not session._busy.acquire(blocking=False):
        return  # an ask started just now; it re-arms the timer when it ends
    try:
        if session.idle_s >= session.idle_timeout_s - 0.05:
            session.close("idle")
    finally:
        session._busy.release()


def _is_closed(sandbox: Any) -> bool:
    return bool(getattr(sandbox, "_closed", False))


def _is_alive(sandbox: Any) -> bool:
    alive = getattr(sandbox, "_alive", None)
    try:
        return bool(alive()) if callable(alive) else True
    except Exception:  # noqa: BLE001
        return False


def _close_sandbox_quietly(box: list[Any]) -> None:
    for sandbox in list(box):
        if sandbox is None:
            continue
        try:
            sandbox.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _open_log(run_id: str, settings: Any, notes: list[str]) -> JsonlWriter | None:
    secrets = [settings.api_key or ""]
    try:
        return JsonlWriter(log_path_for(settings.effective_log_dir, run_id), secrets=secrets)
    except OSError as exc:
        notes.append(f"Run log disabled: cannot write to {settings.effective_log_dir} "
                     f"({exc}); set RLM_LOG_DIR to a writable folder.")
        return None


def _close_on_cancel(tree: RunTree, done: threading.Event) -> None:
    """Stop what runs when the user cancels: hang up the model calls in flight (the direct
    HTTP path waits on them on the run's own threads) and close the sandboxes, which kills a
    running cell."""
    while not done.is_set():
        if tree.cancel.wait(0.05):
            tree.client.abort_in_flight()
            tree.close_all_sandboxes()
            return
