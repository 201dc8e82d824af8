"""The orchestrator: turns, code execution, finishing, sub-calls and recursion.

A :class:`RunTree` holds what the whole tree shares (settings, budget, event bus, LLM client,
cancel flag); a :class:`Run` is one RLM (the root or a child) with its own sandbox and message
history. Sub-calls arrive from sandboxed code as host-function calls on sandbox threads, so
everything a sub-call touches is thread-safe.
"""

from __future__ import annotations

import json as _json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from rlm_jupyter import errors
from rlm_jupyter.config import Settings
from rlm_jupyter.engine import data_hints
from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine import guardrails as gr
from rlm_jupyter.engine import prompts
from rlm_jupyter.engine.budget import Budget
from rlm_jupyter.engine.context import (describe_context, lines_containing, normalize_context,
                                        type_name)
from rlm_jupyter.engine.llm import LLMClient, LLMReply, OnRetry, attempt_error_text
from rlm_jupyter.engine.parsing import (ParsedReply, is_placeholder, parse_reply,
                                        rebinds_name)
from rlm_jupyter.engine.output import OutputSpec, OutputValidationError, ValueTransferError, fetch_plain
from rlm_jupyter.engine.redact import Redactor
from rlm_jupyter.engine.tools import Tool, invoke, preview

PREVIEW_CHARS = 300
MAX_PROMPT_CHARS = 2_000_000
#: An llm_query prompt shorter than this, over a large context, cannot hold the evidence.
BLIND_PROMPT_CHARS = 400
#: The temperature of the call after a reply that only repeated earlier code; each repeat in a
#: row takes the next step (a 1.5B model repeated the same reply three times at 0.7).
LOOSE_TEMPERATURES = (0.7, 1.0, 1.3)
#: The largest host-call result kept in the log for ``export`` (JSON characters).
RECORD_CHARS = 200_000
#: ``FINAL_VAR('x')`` / ``FINAL_VAR(x)`` / ``FINAL(x)`` in code: the variable a typed answer is in.
_FINAL_NAME = re.compile(r"FINAL(?:_VAR)?\(\s*['\"]?([A-Za-z_]\w*)['\"]?\s*\)")
#: The host functions every sandbox gets, before the user's tools.
HOST_FUNCTIONS = ("llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched")


class SandboxHost(Protocol):
    """Lends a root run a sandbox that outlives it (a session): ``acquire`` opens it or hands
    back the open one, ``release`` takes it back without closing it."""

    def acquire(self, run: "Run") -> Any: ...

    def release(self, run: "Run") -> None: ...


@dataclass
class RunTree:
    settings: Settings
    budget: Budget
    bus: ev.EventBus
    client: LLMClient
    cancel: threading.Event
    #: Stream root replies only when someone listens to the deltas (widget, ``stream()``):
    #: streaming through litellm costs 10-20 ms a call for nothing otherwise.
    stream_root: bool = False
    sandboxes: list[Any] = field(default_factory=list)
    #: Known secrets, replaced in every prompt, event and answer (see engine/redact.py);
    #: gathered once per run tree from the run's key and the environment.
    redactor: Redactor | None = None
    #: User tools (``RLM(tools=...)``) every run of the tree may call from its sandbox.
    tools: dict[str, Tool] = field(default_factory=dict)
    #: The event loop async tools run on (the caller's, for ``Session.aask``), else None.
    loop: Any = None
    tool_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.redactor is None:
            self.redactor = Redactor.for_run(self.settings.api_key)

    def register(self, sandbox: Any) -> None:
        with self._lock:
            self.sandboxes.append(sandbox)
        if self.cancel.is_set():
            _close_quietly(sandbox)

    def unregister(self, sandbox: Any) -> None:
        with self._lock:
            if sandbox in self.sandboxes:
                self.sandboxes.remove(sandbox)

    def close_all_sandboxes(self) -> None:
        with self._lock:
            sandboxes = list(self.sandboxes)
        for sandbox in sandboxes:
            _close_quietly(sandbox)


def _close_quietly(sandbox: Any) -> None:
    try:
        sandbox.close()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


@dataclass
class RunOutcome:
    run_id: str
    answer: str | None
    status: str
    error: errors.RLMError | None


class Run:
    """One RLM: a root run or a child started by ``rlm_query``."""

    def __init__(self, tree: RunTree, question: str, context: Any, *, model: str, depth: int = 0,
                 parent_run_id: str | None = None, parent_span_id: str | None = None,
                 host: SandboxHost | None = None, prior: list[dict[str, str]] | None = None,
                 preamble: str = "", output: OutputSpec | None = None,
                 start_notes: list[tuple[str, str, str]] | None = None) -> None:
        self.tree = tree
        #: A session lends the root its sandbox; a run without one opens and closes its own.
        self.host = host
        #: Earlier asks' messages (a session's history, already compacted to fit).
        self.prior = list(prior or [])
        #: Text put before the question in the first message (a follow-up's note).
        self.preamble = preamble
        self.output = output
        self.output_value: Any = None
        self._repairs = 0
        #: (session id, kind, message) notes emitted right after RunStarted.
        self._start_notes = list(start_notes or [])
        self.messages: list[dict[str, str]] = []
        self._host_seq = 0
        self._host_lock = threading.Lock()
        self._host_functions: dict[str, Callable[..., Any]] | None = None
        self.question = question
        self._terms = prompts.key_terms(question)  # its words to search for (first message, nudges)
        self.context = normalize_context(context)
        self.model = model
        self.depth = depth
        self.run_id = ev.new_id()
        self.parent_run_id = parent_run_id
        self.parent_span_id = parent_span_id
        self.turn = 0
        self.turn_span: str | None = None
        self.sandbox: Any = None
        self.started = time.monotonic()
        self._seen_code: set[str] = set()
        self._outputs: list[str] = []
        self._grounding_checked = False
        self._repeats_in_a_row = 0  # replies in a row that only repeated code already run
        self._blind_subcalls = 0  # short llm_query prompts in this turn (see _act_on)
        self._opener: _Background | None = None
        self._clean_upto = 0  # the root history's messages[:this] are redacted (_root_call)
        #: The small-model fixes this run uses (engine/guardrails.py; the ``guardrails`` knob).
        self.guards = gr.resolve(getattr(tree.settings, "guardrails", "auto"), model)
        self._stuck = 0  # loop_breaker: stuck replies in a row (empty, fence-only, repeated)
        self._replies: set[str] = set()  # reply texts that gave no answer (loop_breaker)
        self._confirmed = False  # confirm_final asked once
        self._empty_checked = False  # empty_answer asked once
        self._cache_noted = False  # prompt_cache reported once
        self._confirm_turn = 0  # the turn whose finish was held back to be confirmed
        self._pending: str | None = None  # a finish the engine held back: best evidence
        self._last_good_code = ""  # the last block that ran without error (loop_breaker)

    # -- events ---------------------------------------------------------------------------
    def emit(self, cls: type[ev.Event], **fields: Any) -> ev.Event:
        """Build and publish an event; its text fields are redacted here, the one door every
        event leaves by, so stdout, errors, previews and answers never carry a known secret."""
        redactor = self.tree.redactor
        if redactor:
            redact = redactor.redact
            for name, value in fields.items():
                if type(value) is str:
                    fields[name] = redact(value)
        fields.setdefault("parent_span_id", self.turn_span)
        event = cls(run_id=self.run_id, parent_run_id=self.parent_run_id, depth=self.depth,
                    **fields)
        self.tree.bus.emit(event)
        return event

    def _redact(self, text: str) -> str:
        redactor = self.tree.redactor
        return redactor.redact(text) if redactor else text

    def _charge(self, reply: LLMReply) -> None:
        budget = self.tree.budget
        if not reply.priced and not reply.cached:
            budget.unpriced_models.add(reply.model)
        for limit, used, allowed in budget.charge(reply.model, reply.prompt_tokens,
                                                  reply.completion_tokens, reply.cost_usd,
                                                  cached=reply.cached):
            self.emit(ev.BudgetWarning, limit=limit, used=used, allowed=allowed)

    def _retry_reporter(self, model: str, call: str, span_id: str | None) -> OnRetry:
        """The ``on_retry`` hook for one model call: counts the retry in the budget's usage and
        emits a ``ModelRetry`` under ``span_id`` (the turn's, or the sub-call's), so retries
        show in results, logs and displays instead of only as lost seconds."""
        turn = self.turn

        def on_retry(attempt: int, error: BaseException, wait_s: float) -> None:
            self.tree.budget.record_retry(model)
            self.emit(ev.ModelRetry, parent_span_id=span_id, turn=turn, model=model, call=call,
                      attempt=attempt, error=attempt_error_text(error), wait_s=round(wait_s, 3))

        return on_retry

    def _complete(self, model: str, messages: list[dict[str, str]], *, call: str,
                  span_id: str | None, **kwargs: Any) -> LLMReply:
        """``client.complete`` with retries reported, and a call that failed for good counted."""
        try:
            return self.tree.client.complete(
                model, messages, on_retry=self._retry_reporter(model, call, span_id), **kwargs)
        except errors.LLMCallError:
            self.tree.budget.record_failure(model)
            raise

    # -- the loop -------------------------------------------------------------------------
    def execute(self) -> RunOutcome:
        settings = self.tree.settings
        self.emit(ev.RunStarted, parent_span_id=self.parent_span_id, question=self.question,
                  model=self.model, sub_model=settings.effective_sub_model or self.model,
                  sandbox=settings.sandbox, context_summary=describe_context(self.context)[:1000],
                  limits={**self.tree.budget.limits(), "max_iterations": settings.max_iterations,
                          "max_depth": settings.max_depth})
        for session_id, kind, message in self._start_notes:
            self.emit(ev.SessionNote, session_id=session_id, kind=kind, message=message)
        answer: str | None = None
        error: errors.RLMError | None = None
        status = "ok"
        try:
            answer, error = self._loop()
        except errors.RunCancelled as exc:
            error, status = exc, "cancelled"
        except KeyboardInterrupt:
            self.tree.cancel.set()
            error, status = errors.RunCancelled("The run was interrupted."), "cancelled"
        except errors.RLMError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - a bug must still return the partial work
            error = errors.RLMError(f"Internal error: {type(exc).__name__}: {exc}")
        finally:
            if self._opener is not None:
                self._opener.join()
            if self.sandbox is not None:
                self.tree.unregister(self.sandbox)
                if self.host is not None:
                    self.host.release(self)
                else:
                    _close_quietly(self.sandbox)
        if self.tree.cancel.is_set() and not isinstance(error, errors.RunCancelled):
            error, status = errors.RunCancelled("The run was cancelled."), "cancelled"
        if answer is not None:
            answer = self._redact(answer)
        if error is not None:
            _redact_error(error, self._redact)
            if status == "ok":
                status = "error"
            if answer is None:
                answer = self._partial_answer()
                answer = self._redact(answer) if answer is not None else None
            error.partial_answer = answer
            if isinstance(error, errors.BudgetExceeded):
                self.emit(ev.BudgetExceededEvent, limit=error.limit, used=error.used,
                          allowed=error.allowed)
            self.emit(ev.ErrorEvent, kind=type(error).__name__, message=str(error))
        budget = self.tree.budget
        self.emit(ev.RunFinished, parent_span_id=self.parent_span_id, answer=answer,
                  status=status, error=str(error) if error else None,
                  error_type=type(error).__name__ if error else None, turns=self.turn,
                  subcalls=budget.subcalls, usage=budget.usage_dict(), cost_usd=budget.cost_usd,
                  elapsed_s=time.monotonic() - self.started)
        return RunOutcome(self.run_id, answer, status, error)

    def _partial_answer(self) -> str | None:
        last = getattr(self, "_last_answer_dict", None)
        if last and str(last.get("content") or "").strip():
            return str(last["content"])
        return None

    def _open_sandbox(self) -> None:
        settings = self.tree.settings
        if self.host is not None:
            self.sandbox = self.host.acquire(self)
            self.tree.register(self.sandbox)
            return
        self.sandbox = open_run_sandbox(settings, self.context, self.host_functions())
        self.tree.register(self.sandbox)

    def _loop(self) -> tuple[str | None, errors.RLMError | None]:
        settings = self.tree.settings
        # The first model call needs only the context's description, so the sandbox (worker
        # start, context transfer, container start) comes up behind its latency.
        opener = _Background(self._open_sandbox)
        found = self._key_word_lines() if self.guards.on("key_word_lines") else []
        if found:
            self._acted("key_word_lines", ", ".join(f"{t!r}: {n}" for t, n, _ in found))
        hint = (data_hints.structure_hint(self.context, self.question)
                if self.guards.on("data_hints") else "")
        if hint:
            self._acted("data_hints", hint.split("\n", 1)[0][:200])
        first = prompts.first_user_message(self.question, describe_context(self.context),
                                           text=isinstance(self.context, str), found=found,
                                           hint=hint)
        if self.preamble:
            first = f"{self.preamble}\n\n{first}"
        if self.output is not None:
            first = f"{first}\n\n{self.output.instructions()}"
        messages: list[dict[str, str]] = [
            {"role": "system", "content": self._system_prompt()},
            *self.prior,
            {"role": "user", "content": first},
        ]
        self.messages = messages
        self._opener = opener
        for turn in range(1, settings.max_iterations + 1):
            self.turn = turn
            self.turn_span = None
            started = self.emit(ev.TurnStarted, turn=turn)
            self.turn_span = started.span_id
            reply = self._root_call(messages)
            parsed = self._parse(reply.text)
            if self._resends_confirmed_finish(parsed):
                # Asked to confirm, it sent the block that finished again: that confirms it.
                return self._pending, None
            stuck = self._stuck_reply(reply.text, parsed)
            repeat = (stuck is None and self.guards.on("repeat_ladder")
                      and self._only_repeats(parsed))
            if repeat and self.guards.on("loop_breaker"):
                stuck = "only repeated code that already ran"
            if stuck is not None:
                # loop_breaker: not kept in the history; a concrete next step instead of a
                # generic nudge, and after LOOP_BOUND in a row the run ends with its evidence.
                self._stuck += 1
                self._acted("loop_breaker", f"the reply {stuck}"
                            + (" (run ended)" if self._stuck >= gr.LOOP_BOUND else ""))
                if self._stuck >= gr.LOOP_BOUND:
                    return self._stuck_end()
                self._note(messages, self._loop_note(stuck))
                continue
            self._stuck = 0
            if repeat:
                # Not added to the history: the model would copy it again. The next call says
                # so and samples at a higher temperature (see _loosened_sampling).
                self._acted("repeat_ladder", "the reply only repeated code that already ran")
                self._note(messages, prompts.repeat_nudge(self._terms))
                continue
            if not parsed.code_blocks and parsed.final is None:
                self._replies.add(reply.text.strip())
                if self.guards.on("prose_only"):
                    # Prose alone: small models write the output they expect ("25 lines
                    # contain ...", "Final answer: 3577") and later answer from it. Kept out.
                    self._acted("prose_only", "a reply with no code and no FINAL was dropped")
                    self._note(messages, prompts.NO_CODE_MESSAGE)
                    continue
                messages.append({"role": "assistant", "content": reply.text})
                messages.append({"role": "user", "content": prompts.NO_CODE_MESSAGE})
                continue
            keep_prose = not (parsed.code_blocks and self.guards.on("trailing_prose"))
            if not keep_prose and parsed.history.strip() != reply.text.strip():
                self._acted("trailing_prose", "prose after the last code block was dropped")
            messages.append({"role": "assistant",
                             "content": reply.text if keep_prose else parsed.history})
            answer, feedback = self._act_on(parsed)
            if answer is not None and self.output is not None:
                answer, feedback, refused = self._check_output(parsed, answer)
                if refused is not None:
                    return None, refused
            if answer is not None:
                return answer, None
            if self._confirm_turn != turn:  # "FINAL(x) again" is the confirmation asked for
                self._replies.add(reply.text.strip())
            messages.append({"role": "user", "content": feedback})
        # Out of turns: one last call for the best answer, which still respects the budget.
        self.turn += 1
        self.turn_span = None
        started = self.emit(ev.TurnStarted, turn=self.turn)
        self.turn_span = started.span_id
        messages.append({"role": "user", "content": prompts.LAST_TURN_MESSAGE})
        reply = self._root_call(messages)
        # A model out of turns may still answer in code (``FINAL(x)`` inside a block): run it.
        parsed = self._parse(reply.text)
        best, feedback = self._act_on(parsed, final_call=True)
        accepted = best is not None
        refused = best is None and parsed.final is not None
        if best is None and not refused:
            # Raw code is no answer; prose the model wrote around it may be, unless it only
            # echoes our own messages (small models copy the last error back). A finish the
            # engine refused (FINAL_VAR of a missing name, a placeholder) never is: its text
            # is the marker the engine said no to.
            text = parsed.prose.strip() if parsed.code_blocks else reply.text.strip()
            if self.guards.on("echo_filter") and prompts.echoes_feedback(text, self.question):
                self._acted("echo_filter", "the last reply only echoed the engine's message")
                text = ""
            if self.guards.on("loop_breaker") and gr.is_degenerate(text):
                text = ""
            best = self._partial_answer() or text or self._pending or None
        elif refused:
            best = self._partial_answer()
        if best is not None and self.output is not None:
            self._repairs = self.output.max_repairs  # no turn left to repair in
            best, _, bad = self._check_output(parsed, best)
            if bad is not None:
                return None, bad
        if accepted and self.guards.on("last_turn_ok"):
            # The model finished on its last call and the engine accepted the finish: a right
            # answer at turn max_iterations + 1 is an answer, not a turn-limit failure.
            self._acted("last_turn_ok", "the answer of the out-of-turns call ends the run ok")
            return best, None
        if best is None:
            why = (f" Its last answer was refused: {_first_line(feedback)}" if refused and
                   feedback else " The model gave no answer.")
            return None, errors.TurnLimitExceeded(
                f"The run used all {settings.max_iterations} turns with no accepted answer."
                f"{why} Raise max_iterations (or --max-iterations), or try a stronger model.",
                used=settings.max_iterations, allowed=settings.max_iterations)
        return best, errors.TurnLimitExceeded(
            f"The run used all {settings.max_iterations} turns; the answer is the model's best "
            f"guess. Raise max_iterations (or --max-iterations) for a fuller search.",
            used=settings.max_iterations, allowed=settings.max_iterations)

    def _system_prompt(self) -> str:
        text = prompts.system_prompt(type_name(self.context))
        section = prompts.tools_section([t.prompt_line() for t in self.tree.tools.values()])
        return f"{text}\n\n{section}" if section else text

    # -- typed answers ------------------------------------------------------------------------
    def _final_names(self, parsed: ParsedReply, answer: str) -> list[str]:
        """Where a typed answer may live: the FINAL_VAR name, names finished with in code, or
        a FINAL(text) that names a variable."""
        names: list[str] = []
        if parsed.final is not None and parsed.final.kind != "text":
            names.append(parsed.final.value.strip().strip("'\""))
        for code in reversed(parsed.code_blocks):
            names.extend(reversed(_FINAL_NAME.findall(code)))
        token = answer.strip()
        if token.isidentifier():
            names.append(token)
        return list(dict.fromkeys(n for n in names if n.isidentifier()))

    def _check_output(self, parsed: ParsedReply, answer: str
                      ) -> tuple[str | None, str, errors.RLMError | None]:
        """Validate a finish against ``output_type``: (answer, "", None) when it fits; else
        (None, repair message, None) while repairs are left, then (None, "", the error)."""
        spec = self.output
        assert spec is not None
        error = ""
        raw: Any = answer
        try:
            for name in self._final_names(parsed, answer):
                try:
                    raw = fetch_plain(self.sandbox, name)
                except ValueTransferError as exc:
                    if "no variable named" in str(exc):
                        continue
                    raise
                self.output_value = spec.validate(raw)
                break
            else:
                self.output_value = spec.validate_text(answer)
        except (ValueError, TypeError, ValueTransferError) as exc:
            error = str(exc)
        if not error:
            self.emit(ev.OutputChecked, turn=self.turn, type_label=spec.label, ok=True,
                      repair=self._repairs)
            return answer, "", None
        self._repairs += 1
        self.output_value = None
        self.emit(ev.OutputChecked, turn=self.turn, type_label=spec.label, ok=False,
                  error=error[:2000], repair=self._repairs)
        if self._repairs > spec.max_repairs:
            return None, "", OutputValidationError(
                f"The answer is not a valid {spec.label} after {spec.max_repairs} repair "
                f"turn(s): {error[:1000]}. Loosen output_type, raise max_repairs, or try a "
                f"stronger model.", value=raw)
        return None, prompts.OUTPUT_REPAIR_MESSAGE.format(label=spec.label,
                                                          error=error[:2000]), None

    # -- host functions (the sandbox's door to the host) -------------------------------------
    def host_functions(self) -> dict[str, Callable[..., Any]]:
        """Every function sandboxed code may call, each recorded (``HostCallRecorded``) so
        the run's code can be re-run without a model (``export``)."""
        if self._host_functions is None:
            plain: dict[str, Callable[..., Any]] = {
                "llm_query": self.llm_query,
                "llm_query_batched": self.llm_query_batched,
                "rlm_query": self.rlm_query,
                "rlm_query_batched": self.rlm_query_batched,
            }
            for name in self.tree.tools:
                plain[name] = _bound_tool(self, name)
            self._host_functions = {name: self._recorded(name, fn) for name, fn in plain.items()}
        return self._host_functions

    def call_host(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Dispatch a host call by name (a session's sandbox calls whichever ask is current)."""
        fn = self.host_functions().get(name)
        if fn is None:
            raise NameError(f"no host function named {name!r}")
        return fn(*args, **kwargs)

    def _recorded(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            turn = self.turn
            with self._host_lock:
                self._host_seq += 1
                seq = self._host_seq
            try:
                value = fn(*args, **kwargs)
            except Exception as exc:
                self.emit(ev.HostCallRecorded, turn=turn, seq=seq, fn=name,
                          error=f"{type(exc).__name__}: {exc}"[:2000])
                raise
            try:
                size = len(_json.dumps(value, ensure_ascii=False))
            except (TypeError, ValueError):
                size = RECORD_CHARS + 1
            too_big = size > RECORD_CHARS
            self.emit(ev.HostCallRecorded, turn=turn, seq=seq, fn=name,
                      value=None if too_big else value, truncated=too_big)
            return value

        return call

    def call_tool(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """A user tool, on behalf of sandboxed code: counted, timed, an event pair; its
        exception reaches the cell as an error message."""
        tree = self.tree
        tool = tree.tools[name]
        if tree.cancel.is_set():
            raise errors.RunCancelled("The run was cancelled.")
        tree.budget.reserve_call(subcall=False)  # the run's time and money limits still hold
        with tree._lock:
            tree.tool_calls += 1
        started = self.emit(ev.ToolStarted, turn=self.turn, name=name,
                            arguments_preview=preview({"args": list(args), "kwargs": kwargs}))
        t0 = time.monotonic()
        try:
            value = invoke(tool, list(args), dict(kwargs), tree.loop)
        except Exception as exc:
            self.emit(ev.ToolFinished, span_id=started.span_id, turn=self.turn, name=name,
                      duration_s=time.monotonic() - t0,
                      error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        self.emit(ev.ToolFinished, span_id=started.span_id, turn=self.turn, name=name,
                  result_preview=preview(value), duration_s=time.monotonic() - t0)
        return value

    def _key_word_lines(self) -> list[tuple[str, int, list[str]]]:
        """Where the question's key words occur in a text context: (word, count, first lines).

        The first ten lines for the first word, three for the next two; at most ~2,600
        characters, so the first message stays a preview.
        """
        if not isinstance(self.context, str):
            return []
        return [(term, *lines_containing(self.context, term, limit=10 if i == 0 else 3))
                for i, term in enumerate(self._terms)]

    def _root_call(self, messages: list[dict[str, str]]) -> LLMReply:
        tree = self.tree
        if tree.cancel.is_set():
            raise errors.RunCancelled("The run was cancelled.")
        if tree.redactor:
            # What was added since the last call, and the last message again (notes are
            # appended to it in place): every message reaches the model redacted, once.
            tree.redactor.redact_messages(messages, max(0, self._clean_upto - 1))
            self._clean_upto = len(messages)
        estimate = sum(len(m["content"]) for m in messages) // 4
        tree.budget.reserve_call(subcall=False, estimated_prompt_tokens=estimate)
        turn = self.turn

        def on_delta(delta: str) -> None:
            self.emit(ev.ModelChunk, turn=turn, delta=delta)

        reply = self._complete(self.model, messages, call="root", span_id=self.turn_span,
                               stream=tree.stream_root, on_delta=on_delta,
                               timeout_s=self._call_timeout(),
                               sampling={**(self._loosened_sampling() or {}),
                                         **self._cache_fields()} or None)
        self._charge(reply)
        self.emit(ev.ModelResponse, turn=turn, text=reply.text, model=reply.model,
                  prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                  cost_usd=reply.cost_usd, latency_s=reply.latency_s, cached=reply.cached,
                  response_model=reply.response_model, finish_reason=reply.finish_reason)
        return reply

    def _only_repeats(self, parsed: ParsedReply) -> bool:
        """A reply whose every block already ran, with no answer: recorded, not run again.

        Greedy small models fall into loops of the same reply (Qwen2.5-Coder 1.5B: five
        identical turns). Running it again teaches nothing, and keeping it in the history makes
        the next reply a copy too; so the turn is spent, the block is logged as not run, and
        the next call samples less greedily from the history as it was.
        """
        if (not parsed.code_blocks or parsed.final is not None
                or not all(code.strip() in self._seen_code for code in parsed.code_blocks)):
            self._repeats_in_a_row = 0
            return False
        self._repeats_in_a_row += 1
        for index, code in enumerate(parsed.code_blocks):
            self._not_run(index, code, prompts.REPEATED_CODE_NOTE)
        return True

    def _not_run(self, index: int, code: str, why: str) -> None:
        """Log a block the engine refused to run, with the reason as its error."""
        self.emit(ev.CodeExecuted, turn=self.turn, index=index, code=code, stdout="",
                  error=why, duration_s=0.0, timed_out=False, restarted=False)

    # -- guardrails (engine/guardrails.py) -------------------------------------------------
    def _acted(self, fix: str, detail: str = "") -> None:
        """Record that guardrail ``fix`` changed what this run did (a ``guardrail`` event)."""
        self.emit(ev.GuardrailActed, turn=self.turn, fix=fix, detail=detail[:300])

    def _parse(self, text: str) -> ParsedReply:
        parsed = parse_reply(text, unfenced_code=self.guards.on("unfenced_code"),
                             literal_final=self.guards.on("literal_final"))
        for fix in parsed.guarded:
            self._acted(fix, _PARSE_ACTIONS[fix])
        return parsed

    def _note(self, messages: list[dict[str, str]], note: str) -> None:
        """Tell the model something before the next call, without keeping its reply.

        With ``prompt_cache`` the note is a new message (the history is only ever appended to,
        so a server's cached prefix stays valid); else it is added to the last message."""
        if self.guards.on("prompt_cache"):
            if messages[-1]["content"] != note:
                messages.append({"role": "user", "content": note})
        else:
            _add_note(messages, note)

    def _stuck_reply(self, text: str, parsed: ParsedReply) -> str | None:
        """loop_breaker: why this reply is stuck (empty, fence-only, a word-for-word repeat of
        an earlier reply that gave no answer), or None."""
        if not self.guards.on("loop_breaker"):
            return None
        if gr.is_degenerate(text):
            why = "was empty" if not text.strip() else "was only a code fence with no code"
        elif text.strip() in self._replies:
            why = "repeated an earlier reply word for word"
        else:
            return None
        for index, code in enumerate(parsed.code_blocks):
            self._not_run(index, code, f"Not run: the reply {why}.")
        if self.guards.on("repeat_ladder"):
            self._repeats_in_a_row += 1  # and sample the next call hotter
            self._acted("repeat_ladder", "the next call samples hotter")
        return why

    def _resends_confirmed_finish(self, parsed: ParsedReply) -> bool:
        return bool(self._confirm_turn and self._confirm_turn == self.turn - 1
                    and self._pending is not None and parsed.code_blocks
                    and all(c.strip() in self._seen_code for c in parsed.code_blocks)
                    and any("FINAL" in c for c in parsed.code_blocks))

    def _evidence(self) -> str:
        """The last printed output worth showing (a few lines), or ""."""
        for out in reversed(self._outputs):
            lines = [ln for ln in out.strip().splitlines() if ln.strip()]
            if lines:
                text = "\n".join(lines[:6])
                return text if len(text) <= 600 else text[:600] + "..."
        return ""

    def _loop_note(self, why: str) -> str:
        """A concrete next step: what the model printed last and, when that does not hold the
        question's key word, the lines of `context` that do (found by the engine) and a search
        for that word; else code that prints the variables its last good block assigned."""
        evidence = self._evidence()
        text = isinstance(self.context, str)
        missing = [t for t in self._terms if t not in evidence]
        names = gr.assigned_names(self._last_good_code) if self._last_good_code else []
        if missing and text:
            names = []  # its variables hold nothing useful: search for the word instead
        example = prompts.loop_example(missing or self._terms, names, text)
        found = prompts.LOOP_FOUND.format(evidence=evidence) if evidence else ""
        if missing and text:
            count, lines = lines_containing(self.context, missing[0], limit=3)
            if count:
                found += prompts.LOOP_LINES.format(term=missing[0], count=count, lines="\n".join(
                    f"    {line[:300]}" for line in lines))
        return prompts.LOOP_NOTE.format(what=why, found=found, example=example)

    def _stuck_end(self) -> tuple[str | None, errors.RLMError]:
        """loop_breaker's bound: end now with the best evidence found, and say so."""
        best = self._partial_answer() or self._pending
        evidence = self._evidence()
        if best is not None:
            said = f"The answer is the best candidate found so far: {best!r}."
        elif evidence:
            said = f"No answer; the last output the model printed was:\n{evidence}"
        else:
            said = "No answer and no output were found."
        return best, errors.TurnLimitExceeded(
            prompts.LOOP_GAVE_UP.format(count=self._stuck, best=said),
            used=self.turn, allowed=self.tree.settings.max_iterations)

    def _confirm_note(self, value: str) -> str:
        self._acted("confirm_final", f"asked to confirm {str(value)[:100]!r}")
        self._confirmed = True
        self._confirm_turn = self.turn
        self._pending = str(value)
        shown = str(value) if len(str(value)) <= 200 else str(value)[:200] + "..."
        return prompts.CONFIRM_NOTE.format(value=shown)

    def _cache_fields(self) -> dict[str, Any]:
        """prompt_cache: llama.cpp's server reuses its KV cache for a request that says
        ``cache_prompt`` and lands in the slot that holds the prefix (``id_slot``: root calls
        always use slot 0). Only for a local server; other servers would refuse the fields."""
        settings = self.tree.settings
        if (self.depth == 0 and self.guards.on("prompt_cache")
                and gr.is_local_server(settings.api_base, self.model)):
            if not self._cache_noted:
                self._cache_noted = True
                self._acted("prompt_cache", "cache_prompt and id_slot 0 sent to the local server")
            return {"cache_prompt": True, "id_slot": 0}
        return {}

    def _loosened_sampling(self) -> dict[str, Any] | None:
        """After a reply that only repeated earlier code, sample the next one less greedily.

        At temperature 0 a small model that repeated itself once repeats forever: the history
        it sees only grows by the same reply and the same output (measured with Qwen2.5-Coder
        1.5B: five identical turns in a row). The call after a repeat samples at 0.7, after a
        second repeat in a row at 1.0, then 1.3; the run's own setting applies again from the
        call after.
        """
        if not self._repeats_in_a_row:  # the last reply was not a repeat (or none yet)
            return None
        loose = LOOSE_TEMPERATURES[min(self._repeats_in_a_row, len(LOOSE_TEMPERATURES)) - 1]
        current = self.tree.settings.litellm_kwargs.get("temperature")
        if current is not None and float(current) >= loose:
            return None
        return {"temperature": loose}

    def _call_timeout(self) -> float | None:
        remaining = self.tree.budget.remaining_s()
        base = self.tree.settings.request_timeout_s
        return base if remaining is None else max(1.0, min(base, remaining))

    def _act_on(self, parsed: ParsedReply, final_call: bool = False) -> tuple[str | None, str]:
        """Run the reply's code; return (answer, feedback for the next turn).

        ``final_call``: the out-of-turns call, where no finish can be sent back to confirm."""
        if parsed.code_blocks or parsed.final is not None:
            self._wait_for_sandbox()
        outputs: list[str] = []
        notes: list[str] = []
        guards = self.guards
        seen = list(self._outputs)  # what the model saw before this reply (confirm_final)
        confirm = guards.on("confirm_final") and not final_call and not self._confirmed
        self._seen_code.update(code.strip() for code in parsed.code_blocks)
        self._blind_subcalls = 0
        for index, code in enumerate(parsed.code_blocks):
            if self.tree.cancel.is_set():
                raise errors.RunCancelled("The run was cancelled.")
            if guards.on("context_rebind") and rebinds_name(code, "context"):
                self._acted("context_rebind", "a block that rebinds `context` was not run")
                self._not_run(index, code, prompts.CONTEXT_REBIND_NOTE)
                outputs.append(prompts.CONTEXT_REBIND_NOTE)
                continue
            timeout = self.tree.settings.cell_timeout_s
            remaining = self.tree.budget.remaining_s()
            if remaining is not None:
                if remaining <= 0:
                    self.tree.budget.reserve_call(subcall=False)  # raises TimeLimitExceeded
                timeout = min(timeout, remaining)
            result = self.sandbox.execute(code, timeout_s=timeout)
            if self.tree.cancel.is_set():
                # Cancelling closes the sandbox under the cell; say so, not "worker died".
                result.error = "Cancelled: the run was stopped by the user."
                result.restarted = False
            self._last_answer_dict = result.answer
            self.emit(ev.CodeExecuted, turn=self.turn, index=index, code=code,
                      stdout=result.stdout, error=result.error, duration_s=result.duration_s,
                      timed_out=result.timed_out, restarted=result.restarted)
            if self.tree.cancel.is_set():
                raise errors.RunCancelled("The run was cancelled.")
            if self.tree.budget.exceeded is not None:
                raise self.tree.budget.exceeded
            self._outputs.append(result.stdout)
            word = (_final_of_unknown_name(code, result.error)
                    if guards.on("final_unknown_name") else None)
            if word is not None and len(parsed.code_blocks) == 1 and not is_placeholder(word):
                # ``FINAL(billing)`` with no variable ``billing``: the model meant the word.
                self._acted("final_unknown_name", f"FINAL({word}) answers the word")
                return self._finish(word, notes, final_call)
            if (result.error and not result.timed_out and not result.restarted
                    and prompts.ERROR_NOTE not in notes):
                missing = re.search(r"NameError: name '(\w+)' is not defined", result.error)
                hint = (prompts.IMPORTS.get(missing.group(1))
                        if missing and guards.on("import_hints") else None)
                slip = (data_hints.error_hint(result.error) if guards.on("data_hints")
                        else None)
                if hint:
                    self._acted("import_hints", hint)
                    notes.append(prompts.IMPORT_NOTE.format(name=missing.group(1),
                                                            statement=hint))
                elif slip:
                    self._acted("data_hints", "the corrected form of the error's slip")
                    notes.append(slip)
                else:
                    notes.append(prompts.ERROR_NOTE)
            if not result.error:
                self._last_good_code = code
            if result.final is not None:
                if not (guards.on("placeholder_final") and is_placeholder(result.final)):
                    if confirm and not gr.seen_in(result.final, seen):
                        # FINAL in the block that computed it: show the output, ask once.
                        outputs.append(_format_output(result))
                        notes.append(self._confirm_note(result.final))
                        break
                    if self._empty_note(result.final, final_call, notes):
                        outputs.append(_format_output(result))
                        break
                    return result.final, ""
                self._acted("placeholder_final", f"FINAL({result.final}) is a placeholder")
                notes.append(prompts.PLACEHOLDER_NOTE.format(value=result.final))
            if result.answer.get("ready"):
                return str(result.answer.get("content", "")), ""
            outputs.append(_format_output(result))
        if (guards.on("blind_subcall_note") and self._blind_subcalls
                and _large(self.context)):
            # Small models ask llm_query "what is X in the context?" without the text, and
            # the sub-model answers with an invented value that then looks like evidence.
            self._acted("blind_subcall_note", f"{self._blind_subcalls} short llm_query prompt(s)")
            notes.append(prompts.BLIND_SUBCALL_NOTE)
        if parsed.final is not None:
            if parsed.final.kind == "text":
                value = parsed.final.value
                if parsed.code_blocks and guards.on("final_with_code"):
                    self._acted("final_with_code", "a prose FINAL next to code not yet run")
                    self._pending = value
                    notes.append(prompts.FINAL_WITH_CODE_NOTE)
                elif guards.on("placeholder_final") and is_placeholder(value):
                    self._acted("placeholder_final", f"FINAL({value[:80]}) is a placeholder")
                    notes.append(prompts.PLACEHOLDER_NOTE.format(value=value))
                elif guards.on("ungrounded_number") and self._ungrounded(value):
                    self._acted("ungrounded_number", f"{value[:80]} was never printed")
                    self._pending = value
                    notes.append(prompts.UNGROUNDED_NOTE.format(value=value))
                elif confirm and self._outputs and not gr.seen_in(value, seen):
                    notes.append(self._confirm_note(value))
                elif not self._empty_note(value, final_call, notes):
                    return value, ""
            else:
                value = self.sandbox.get_variable(parsed.final.value)
                if value is not None and confirm and not gr.seen_in(value, seen):
                    notes.append(self._confirm_note(value))
                elif value is not None and not self._empty_note(value, final_call, notes):
                    return value, ""
                else:
                    notes.append(
                        f"FINAL_VAR({parsed.final.value}) failed: there is no variable named "
                        f"{parsed.final.value!r}. Assign it in a ```repl block first, or use "
                        f"FINAL(your answer).")
        if not parsed.code_blocks and not notes:
            return None, prompts.NO_CODE_MESSAGE
        return None, prompts.execution_feedback(outputs, self.question, notes)

    def _finish(self, value: str, notes: list[str], final_call: bool) -> tuple[str | None, str]:
        """An accepted finish, unless empty_answer asks about it first."""
        if self._empty_note(value, final_call, notes):
            return None, prompts.execution_feedback([], self.question, notes)
        return value, ""

    def _empty_note(self, value: Any, final_call: bool, notes: list[str]) -> bool:
        """empty_answer: a finish of 0, an empty value or None, the first time, on a turn that
        can still be answered: ask the model to check its filter against the data. A filter
        written for a format the data does not have keeps no row and sums to 0; the model
        reports that 0 as the answer (Qwen2.5-Coder 1.5B, 3 of 3 CSV tasks)."""
        if (final_call or self._empty_checked or not self.guards.on("empty_answer")
                or not gr.is_empty_answer(value)):
            return False
        self._empty_checked = True
        self._confirm_turn = self.turn  # "FINAL(0) again" is the confirmation asked for
        self._pending = str(value)
        self._acted("empty_answer", f"asked to check the empty answer {str(value)[:60]!r}")
        notes.append(prompts.EMPTY_NOTE.format(value=str(value)[:60]))
        return True

    def _ungrounded(self, value: str) -> bool:
        """A bare number that no output ever showed: small models invent them (``FINAL(12345)``).

        Checked once per run and only for a lone number after code has run, so a model that
        really computed the value in its head loses one turn at most.
        """
        if self._grounding_checked or not self._outputs:
            return False
        token = value.strip().rstrip(".")
        if not re.fullmatch(r"-?[\d,]*\d(\.\d+)?", token):
            return False
        self._grounding_checked = True
        pattern = re.compile(rf"(?<![\d.]){re.escape(token)}(?![\d])")
        return not any(pattern.search(out) for out in self._outputs)

    def _wait_for_sandbox(self) -> None:
        opener = getattr(self, "_opener", None)
        if opener is not None:
            self._opener = None
            opener.result()

    # -- host functions called from sandboxed code ---------------------------------------------
    def _sub_model(self, model: Any) -> str:
        if model:
            return str(model)
        return self.tree.settings.effective_sub_model or self.model

    def llm_query(self, prompt: Any, model: Any = None, json: Any = False) -> Any:
        """A plain model call on behalf of sandboxed code; errors become exceptions in the cell.

        ``json=True``: the reply is parsed as JSON (the provider's JSON mode where it has one,
        one repair call when the reply does not parse) and a dict/list/value is returned."""
        if json is True:
            return self._json_subcall(_as_prompt(prompt), self._sub_model(model))
        return self._subcall(_as_prompt(prompt), self._sub_model(model))

    def _json_subcall(self, prompt: str, model: str) -> Any:
        from rlm_jupyter.engine.jsonmode import json_mode_params, parse_json_reply

        request = prompt + prompts.JSON_SUBCALL_SUFFIX
        params = json_mode_params(self.tree.client, model)
        try:
            text = self._subcall(request, model, sampling=params)
        except errors.LLMCallError as exc:
            if params is None or "response_format" not in str(exc):
                raise
            params = None  # the server refused JSON mode: ask in words only
            text = self._subcall(request, model)
        try:
            return parse_json_reply(text)
        except ValueError as exc:
            repair = prompts.JSON_REPAIR_PROMPT.format(error=exc, prompt=request,
                                                       reply=text[:4000])
            text = self._subcall(repair, model, sampling=params)
        try:
            return parse_json_reply(text)
        except ValueError as exc:
            raise ValueError(f"llm_query(json=True): the reply is not JSON after one repair "
                             f"({exc}); ask for a simpler shape, or parse the text yourself "
                             f"with json=False") from None

    def _subcall(self, prompt: str, model: str,
                 sampling: dict[str, Any] | None = None) -> str:
        tree = self.tree
        if tree.cancel.is_set():
            raise errors.RunCancelled("The run was cancelled.")
        prompt = self._redact(prompt)  # sandbox code builds it: it may hold what it printed
        tree.budget.reserve_call(subcall=True, estimated_prompt_tokens=len(prompt) // 4)
        if len(prompt) < BLIND_PROMPT_CHARS:
            self._blind_subcalls += 1
        started = self.emit(ev.SubCallStarted, turn=self.turn, model=model,
                            prompt_preview=prompt[:PREVIEW_CHARS], prompt_chars=len(prompt))
        try:
            reply = self._complete(model, [{"role": "user", "content": prompt}], call="sub",
                                   span_id=started.span_id, timeout_s=self._call_timeout(),
                                   sampling=sampling)
        except errors.RLMError as exc:
            self.emit(ev.SubCallFinished, span_id=started.span_id, turn=self.turn, model=model,
                      error=str(exc))
            raise
        self._charge(reply)
        self.emit(ev.SubCallFinished, span_id=started.span_id, turn=self.turn, model=model,
                  response_preview=reply.text[:PREVIEW_CHARS], prompt_tokens=reply.prompt_tokens,
                  completion_tokens=reply.completion_tokens, cost_usd=reply.cost_usd,
                  latency_s=reply.latency_s, cached=reply.cached,
                  response_model=reply.response_model, finish_reason=reply.finish_reason)
        return reply.text

    def llm_query_batched(self, prompts_: Any, model: Any = None) -> list[str]:
        """Concurrent sub-calls, order kept; a failed item becomes an error string."""
        items = _as_prompt_list(prompts_)
        chosen = self._sub_model(model)
        return self._map(lambda p: self._subcall(p, chosen), items)

    def rlm_query(self, prompt: Any, context: Any = None) -> str:
        """A child RLM while depth < max_depth; below that, a plain call."""
        text = _as_prompt(prompt)
        tree = self.tree
        if self.depth >= tree.settings.max_depth:
            return self._subcall(text, self._sub_model(None))
        tree.budget.reserve_call(subcall=True)
        child = Run(tree, text, context if context is not None else text,
                    model=self._sub_model(None), depth=self.depth + 1,
                    parent_run_id=self.run_id, parent_span_id=self.turn_span)
        outcome = child.execute()
        if outcome.error is not None and isinstance(outcome.error, (errors.BudgetExceeded,
                                                                    errors.RunCancelled)):
            raise outcome.error
        if outcome.answer is None:
            raise RuntimeError(f"The child RLM found no answer ({outcome.error}).")
        return outcome.answer

    def rlm_query_batched(self, prompts_: Any, contexts: Any = None) -> list[str]:
        items = _as_prompt_list(prompts_)
        ctxs = list(contexts) if contexts is not None else [None] * len(items)
        if len(ctxs) != len(items):
            raise ValueError("rlm_query_batched: give one context per prompt.")
        pairs = list(zip(items, ctxs))
        return self._map(lambda pc: self.rlm_query(pc[0], pc[1]), pairs)

    def _map(self, fn: Callable[[Any], str], items: list[Any]) -> list[str]:
        if not items:
            return []
        workers = min(len(items), self.tree.settings.concurrency)

        def safe(item: Any) -> str:
            try:
                return fn(item)
            except Exception as exc:  # noqa: BLE001 - one failure must not sink the batch
                return f"Error: {exc}"

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rlm-subcall") as pool:
            return list(pool.map(safe, items))


def _bound_tool(run: Run, name: str) -> Callable[..., Any]:
    def tool(*args: Any, **kwargs: Any) -> Any:
        return run.call_tool(name, *args, **kwargs)

    return tool


class _Background:
    """Run ``fn`` in a thread now; ``result()`` joins and re-raises its exception here."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True,
                                        name="rlm-sandbox-start")
        self._thread.start()

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _as_prompt(prompt: Any) -> str:
    text = prompt if isinstance(prompt, str) else str(prompt)
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"Prompt of {len(text):,} characters is too long: split the text "
                         f"into chunks of at most {MAX_PROMPT_CHARS:,} characters.")
    return text


def _as_prompt_list(prompts_: Any) -> list[str]:
    if isinstance(prompts_, str):
        raise TypeError("llm_query_batched expects a list of prompts, not one string.")
    return [_as_prompt(p) for p in list(prompts_)]


def _format_output(result: Any) -> str:
    parts = []
    if result.stdout:
        parts.append(result.stdout.rstrip("\n"))
    if result.error:
        parts.append(f"Error:\n{result.error}")
    if result.timed_out:
        parts.append("[the cell hit its time limit]")
    for note in result.notes:
        parts.append(f"[{note}]")
    if result.restarted and not any("reset" in n for n in result.notes):
        parts.append(prompts.STATE_RESET_NOTE)
    return "\n".join(parts)


def _final_of_unknown_name(code: str, error: str | None) -> str | None:
    """``name`` when the block is just ``FINAL(name)`` and failed because no such variable
    exists (Qwen2.5-Coder 1.5B answers ``FINAL(billing)`` meaning the label "billing")."""
    match = re.fullmatch(r"\s*FINAL\(\s*([A-Za-z_]\w*)\s*\)\s*", code)
    if match is None or not error:
        return None
    name = match.group(1)
    return name if f"NameError: name '{name}' is not defined" in error else None


def _redact_error(error: errors.RLMError, redact: Callable[[str], str]) -> None:
    """Scrub a known secret from the error the run ends with (a provider may quote the key)."""
    text = str(error)
    clean = redact(text)
    if clean is not text and clean != text:
        error.args = (clean,)


def _add_note(messages: list[dict[str, str]], note: str) -> None:
    """Append ``note`` to the last (user) message, once: the reply it answers is not kept."""
    if not messages[-1]["content"].endswith(note):
        messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n\n{note}"}


def _large(context: Any) -> bool:
    """Whether the context is far bigger than a short prompt (strings only: cheap to tell)."""
    return isinstance(context, str) and len(context) > 20 * BLIND_PROMPT_CHARS


#: What each parsing guardrail did, for its ``guardrail`` event.
_PARSE_ACTIONS = {"unfenced_code": "code without its opening fence was recovered",
                  "literal_final": "a block with only FINAL(literal) read as prose"}


def _first_line(text: str, limit: int = 200) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[:limit] + "..."


def open_run_sandbox(settings: Any, context: Any, functions: dict[str, Callable[..., Any]]
                     ) -> Any:
    """The sandbox of a run (or of a session's asks), with a failure to start as one typed
    error that says what to do; it suggests another backend only when there is one to try."""
    from rlm_jupyter.sandbox import open_sandbox

    try:
        return open_sandbox(settings.sandbox, context=context, functions=functions,
                            timeout_s=settings.cell_timeout_s, memory_mb=settings.memory_mb,
                            limits={"max_output": settings.output_chars})
    except errors.RLMError:
        raise
    except Exception as exc:  # noqa: BLE001
        other = (" or choose another with sandbox='local'" if settings.sandbox != "local"
                 else "")
        raise errors.SandboxFailure(f"The {settings.sandbox!r} sandbox could not start: {exc}. "
                                    f"Run `rlm doctor`{other}.") from exc
