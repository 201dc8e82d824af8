"""Events in, OpenTelemetry spans out, shaped as the run tree.

::

    rlm.run                       (joins the caller's current span; a child RLM nests under the
      rlm.turn                     turn whose code called rlm_query)
        chat <model>              the root model's reply (GenAI semantic conventions)
        rlm.code                  one ```repl block
        chat <model>              an llm_query sub-call (rlm.call = "sub")
        rlm.run                   a child RLM (rlm.depth = 1) ...

The tree is built from the events' ids, never from the thread an event arrives on: sub-calls
and child runs finish on pool threads, in any order, and each span's parent is looked up by the
event's ``parent_span_id`` (a turn's or a sub-call's span) or ``parent_run_id``. The caller's
OpenTelemetry context is captured when the builder is made (in ``RLM.run``, on the caller's
thread), so the root run joins the trace the caller is in.

Model calls are reported after they finish (a ``model_response`` carries its latency), so a
root call's span starts at ``ts - latency_s``; a code cell's at ``ts - duration_s``.
Prompts, replies, code and output are attached only with content on; keys never.
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any, Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:  # events are read by their fields: telemetry never imports the engine
    from rlm_jupyter.engine import events as ev

SCOPE = "rlm_jupyter"
_setup_lock = threading.Lock()
_setup_done = False


def _ns(ts: float) -> int:
    return int(ts * 1e9)


def _provider_name(model: str) -> str | None:
    """``openai/gpt-4o-mini`` -> ``openai`` (litellm's provider prefix), else None."""
    head, sep, _ = model.partition("/")
    return head if sep and head else None


def _error_type(error: str) -> str:
    """The exception class named on a traceback's last line (``KeyError: ...`` -> KeyError);
    never the message, which may hold data."""
    last = error.strip().splitlines()[-1] if error.strip() else ""
    name = last.split(":", 1)[0].strip()
    return name if name.replace(".", "").replace("_", "").isalnum() and name[:1].isalpha() \
        else "error"


def _messages(role: str, text: str) -> str:
    """GenAI semantic conventions' message shape, JSON-encoded for an attribute."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}],
                      ensure_ascii=False)


class _RunState:
    __slots__ = ("span", "parent_run_id", "turn_span_id", "cost_usd", "input_tokens",
                 "output_tokens", "calls", "subcalls", "sandbox")

    def __init__(self, span: Any, parent_run_id: str | None, sandbox: str) -> None:
        self.span = span
        self.parent_run_id = parent_run_id
        self.turn_span_id: str | None = None
        self.cost_usd = 0.0
        self.input_tokens = 0
        self.output_tokens = 0
        self.calls = 0
        self.subcalls = 0
        self.sandbox = sandbox


class SpanBuilder:
    """An event subscriber that turns one run tree's events into spans. Thread-safe."""

    def __init__(self, provider: Any, *, content: bool = False, redactor: Any = None,
                 parent_context: Any = None) -> None:
        from rlm_jupyter import __version__

        self.tracer = provider.get_tracer(SCOPE, __version__)
        self.content = content
        self._redact: Callable[[str], str] = (
            redactor.redact if redactor else (lambda text: text))
        # The caller's context, captured on the caller's thread (RLM.run).
        self.parent_context = (parent_context if parent_context is not None
                               else otel_context.get_current())
        self._lock = threading.Lock()
        self._runs: dict[str, _RunState] = {}
        self._open: dict[str, tuple[Any, str]] = {}  # turn and sub-call spans: id -> (span, run)
        self._retries: dict[str, int] = {}  # span id (turn: root call; sub-call) -> retries
        self._handlers: dict[str, Callable[[Any], None]] = {
            "run_started": self._run_started,
            "turn_started": self._turn_started,
            "model_response": self._model_response,
            "code_executed": self._code_executed,
            "subcall_started": self._subcall_started,
            "subcall_finished": self._subcall_finished,
            "tool_started": self._tool_started,
            "tool_finished": self._tool_finished,
            "llm_retry": self._retry,
            "guardrail": self._guardrail,
            "budget_warning": self._run_event,
            "budget_exceeded": self._run_event,
            "error": self._run_event,
            "run_finished": self._run_finished,
        }

    def __call__(self, event: ev.Event) -> None:
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(event)

    # -- helpers ----------------------------------------------------------------------------
    def _text(self, text: str | None) -> str:
        return self._redact(text) if text else ""

    def _parent(self, event: ev.Event) -> tuple[Any, _RunState | None]:
        """The context to start a child span in: the event's parent span (a turn or sub-call)
        if open, else its run's span; and the run's state."""
        with self._lock:
            run = self._runs.get(event.run_id)
            opened = self._open.get(event.parent_span_id or "")
        if opened is not None:
            return trace.set_span_in_context(opened[0]), run
        if run is None and event.parent_run_id:  # a child run: its parent's span
            with self._lock:
                parent_run = self._runs.get(event.parent_run_id)
            if parent_run is not None:
                return trace.set_span_in_context(parent_run.span), None
        if run is not None:
            return trace.set_span_in_context(run.span), run
        return self.parent_context, None

    def _charge(self, run_id: str, input_tokens: int, output_tokens: int, cost: float,
                subcall: bool) -> None:
        """Count a call on its run and every ancestor (a run's totals include its children)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and subcall:
                run.subcalls += 1
            while run is not None:
                run.calls += 1
                run.input_tokens += input_tokens
                run.output_tokens += output_tokens
                run.cost_usd += cost
                run = self._runs.get(run.parent_run_id or "")

    def _model_attributes(self, model: str, e: Any, call: str, retries: int) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": e.prompt_tokens,
            "gen_ai.usage.output_tokens": e.completion_tokens,
            "rlm.call": call,
            "rlm.depth": e.depth,
            "rlm.turn": e.turn,
            "rlm.run_id": e.run_id,
            "rlm.cost_usd": e.cost_usd,
            "rlm.cached": e.cached,
            "rlm.latency_s": e.latency_s,
            "rlm.retries": retries,
        }
        provider = _provider_name(model)
        if provider:
            attrs["gen_ai.provider.name"] = provider
            attrs["gen_ai.system"] = provider  # the older name, still read by many backends
        if getattr(e, "response_model", ""):
            attrs["gen_ai.response.model"] = e.response_model
        if getattr(e, "finish_reason", None):
            attrs["gen_ai.response.finish_reasons"] = [str(e.finish_reason)]
        return attrs

    # -- runs -------------------------------------------------------------------------------
    def _run_started(self, e: ev.RunStarted) -> None:
        if e.parent_run_id is None:
            parent = self.parent_context
        else:
            parent, _ = self._parent(e)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "rlm",
            "gen_ai.request.model": e.model,
            "rlm.run_id": e.run_id,
            "rlm.depth": e.depth,
            "rlm.model": e.model,
            "rlm.sub_model": e.sub_model,
            "rlm.sandbox": e.sandbox,
        }
        if e.parent_run_id:
            attrs["rlm.parent_run_id"] = e.parent_run_id
        for key in ("max_iterations", "max_depth", "max_subcalls", "max_tokens", "budget_usd",
                    "timeout_s"):
            value = e.limits.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[f"rlm.limit.{key}"] = value
        if self.content:
            attrs["rlm.question"] = self._text(e.question)
            attrs["rlm.context_summary"] = self._text(e.context_summary)
        span = self.tracer.start_span("rlm.run", context=parent, kind=SpanKind.INTERNAL,
                                      attributes=attrs, start_time=_ns(e.ts))
        with self._lock:
            self._runs[e.run_id] = _RunState(span, e.parent_run_id, e.sandbox)

    def _add_run_event(self, e: ev.Event, data: dict[str, Any]) -> None:
        """``rlm.<type>`` as an event on the span of the run that emitted ``e``."""
        with self._lock:
            run = self._runs.get(e.run_id)
        if run is not None:
            run.span.add_event(f"rlm.{e.type}", attributes=data, timestamp=_ns(e.ts))

    def _run_event(self, e: ev.Event) -> None:
        data = {k: v for k, v in e.to_dict().items()
                if k in ("limit", "used", "allowed", "kind", "message")}
        if "message" in data:
            data["message"] = self._text(data["message"])
        self._add_run_event(e, data)

    def _guardrail(self, e: ev.GuardrailActed) -> None:
        """A guardrail that acted: an ``rlm.guardrail`` event on the run's span (what it did,
        which can quote the question or an answer, only with content on)."""
        data: dict[str, Any] = {"rlm.guardrail.fix": e.fix, "rlm.turn": e.turn}
        if self.content and e.detail:
            data["rlm.guardrail.detail"] = self._text(e.detail)
        self._add_run_event(e, data)

    def _run_finished(self, e: ev.RunFinished) -> None:
        end = _ns(e.ts)
        with self._lock:
            run = self._runs.pop(e.run_id, None)
            leftovers = [sid for sid, (_, rid) in self._open.items() if rid == e.run_id]
            spans = [self._open.pop(sid)[0] for sid in leftovers]
            for sid in leftovers:
                self._retries.pop(sid, None)
        for span in spans:  # the last turn; a sub-call a cancel cut off
            span.end(end_time=end)
        if run is None:
            return
        span = run.span
        span.set_attributes({
            "rlm.status": e.status,
            "rlm.turns": e.turns,
            "rlm.subcalls": run.subcalls,
            "rlm.calls": run.calls,
            "rlm.cost_usd": run.cost_usd,
            "rlm.elapsed_s": e.elapsed_s,
            "gen_ai.usage.input_tokens": run.input_tokens,
            "gen_ai.usage.output_tokens": run.output_tokens,
        })
        if self.content and e.answer is not None:
            span.set_attribute("rlm.answer", self._text(e.answer))
        if e.status != "ok":
            span.set_attribute("error.type", e.error_type or e.status)
            span.set_status(Status(StatusCode.ERROR, self._text(e.error) or e.status))
        span.end(end_time=end)

    # -- turns ------------------------------------------------------------------------------
    def _turn_started(self, e: ev.TurnStarted) -> None:
        with self._lock:
            run = self._runs.get(e.run_id)
            previous = self._open.pop(run.turn_span_id, None) if run and run.turn_span_id \
                else None
        if run is None:
            return
        if previous is not None:
            previous[0].end(end_time=_ns(e.ts))
        span = self.tracer.start_span(
            "rlm.turn", context=trace.set_span_in_context(run.span), kind=SpanKind.INTERNAL,
            attributes={"rlm.turn": e.turn, "rlm.depth": e.depth, "rlm.run_id": e.run_id},
            start_time=_ns(e.ts))
        with self._lock:
            run.turn_span_id = e.span_id
            self._open[e.span_id] = (span, e.run_id)

    def _model_response(self, e: ev.ModelResponse) -> None:
        parent, run = self._parent(e)
        with self._lock:
            retries = self._retries.pop(e.parent_span_id or "", 0)
        attrs = self._model_attributes(e.model, e, "root", retries)
        if self.content:
            attrs["gen_ai.output.messages"] = _messages("assistant", self._text(e.text))
        end = _ns(e.ts)
        span = self.tracer.start_span(f"chat {e.model}", context=parent, kind=SpanKind.CLIENT,
                                      attributes=attrs, start_time=end - _ns(e.latency_s))
        span.end(end_time=end)
        self._charge(e.run_id, e.prompt_tokens, e.completion_tokens, e.cost_usd, subcall=False)

    def _code_executed(self, e: ev.CodeExecuted) -> None:
        parent, run = self._parent(e)
        attrs: dict[str, Any] = {
            "rlm.turn": e.turn, "rlm.depth": e.depth, "rlm.run_id": e.run_id,
            "rlm.code.index": e.index, "rlm.duration_s": e.duration_s,
            "rlm.timed_out": e.timed_out, "rlm.restarted": e.restarted,
        }
        if run is not None:
            attrs["rlm.sandbox"] = run.sandbox
        if self.content:
            attrs["rlm.code"] = self._text(e.code)
            attrs["rlm.stdout"] = self._text(e.stdout)
            if e.error:
                attrs["rlm.error"] = self._text(e.error)
        end = _ns(e.ts)
        span = self.tracer.start_span("rlm.code", context=parent, kind=SpanKind.INTERNAL,
                                      attributes=attrs, start_time=end - _ns(e.duration_s))
        if e.error:
            kind = "timeout" if e.timed_out else _error_type(e.error)
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, kind))
        span.end(end_time=end)

    # -- sub-calls --------------------------------------------------------------------------
    def _subcall_started(self, e: ev.SubCallStarted) -> None:
        parent, _ = self._parent(e)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": e.model,
            "rlm.call": "sub", "rlm.depth": e.depth, "rlm.turn": e.turn,
            "rlm.run_id": e.run_id, "rlm.prompt_chars": e.prompt_chars,
        }
        provider = _provider_name(e.model)
        if provider:
            attrs["gen_ai.provider.name"] = provider
            attrs["gen_ai.system"] = provider
        if self.content:
            attrs["gen_ai.input.messages"] = _messages("user", self._text(e.prompt_preview))
        span = self.tracer.start_span(f"chat {e.model}", context=parent, kind=SpanKind.CLIENT,
                                      attributes=attrs, start_time=_ns(e.ts))
        with self._lock:
            self._open[e.span_id] = (span, e.run_id)

    def _subcall_finished(self, e: ev.SubCallFinished) -> None:
        with self._lock:
            opened = self._open.pop(e.span_id, None)
            retries = self._retries.pop(e.span_id, 0)
        if opened is None:
            return
        span = opened[0]
        attrs = self._model_attributes(e.model, e, "sub", retries)
        if self.content and e.response_preview:
            attrs["gen_ai.output.messages"] = _messages("assistant",
                                                        self._text(e.response_preview))
        span.set_attributes(attrs)
        if e.error:
            span.set_attribute("error.type", _error_type(e.error))
            span.set_status(Status(StatusCode.ERROR, self._text(e.error)))
        else:
            self._charge(e.run_id, e.prompt_tokens, e.completion_tokens, e.cost_usd,
                         subcall=True)
        span.end(end_time=_ns(e.ts))

    def _tool_started(self, e: ev.ToolStarted) -> None:
        """A user tool called from sandboxed code: GenAI's ``execute_tool`` operation."""
        parent, _ = self._parent(e)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": e.name,
            "rlm.depth": e.depth, "rlm.turn": e.turn, "rlm.run_id": e.run_id,
        }
        if self.content and e.arguments_preview:
            attrs["rlm.tool.arguments"] = self._text(e.arguments_preview)
        span = self.tracer.start_span(f"execute_tool {e.name}", context=parent,
                                      kind=SpanKind.INTERNAL, attributes=attrs,
                                      start_time=_ns(e.ts))
        with self._lock:
            self._open[e.span_id] = (span, e.run_id)

    def _tool_finished(self, e: ev.ToolFinished) -> None:
        with self._lock:
            opened = self._open.pop(e.span_id, None)
        if opened is None:
            return
        span = opened[0]
        span.set_attribute("rlm.duration_s", float(e.duration_s or 0.0))
        if self.content and e.result_preview:
            span.set_attribute("rlm.tool.result", self._text(e.result_preview))
        if e.error:
            span.set_attribute("error.type", _error_type(e.error))
            span.set_status(Status(StatusCode.ERROR, self._text(e.error)))
        span.end(end_time=_ns(e.ts))

    def _retry(self, e: ev.ModelRetry) -> None:
        """A failed attempt: an event on the turn's span (root call) or the sub-call's span,
        and one more in the call's ``rlm.retries``."""
        key = e.parent_span_id or ""
        with self._lock:
            opened = self._open.get(key)
            self._retries[key] = self._retries.get(key, 0) + 1
        if opened is not None:
            opened[0].add_event("rlm.retry", attributes={
                "rlm.call": e.call, "gen_ai.request.model": e.model, "rlm.attempt": e.attempt,
                "rlm.wait_s": e.wait_s, "error.type": _error_type(e.error),
                "rlm.error": self._text(e.error)}, timestamp=_ns(e.ts))


# -- a provider for tracing=True when the process configured none ------------------------------

def _endpoint() -> str:
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")
    return base.rstrip("/") + "/v1/traces"


def ensure_provider(notes: list[str]) -> None:
    """``tracing=True`` in a process that configured no tracer provider: set up the SDK with
    an OTLP/HTTP exporter (the OpenTelemetry default, ``OTEL_EXPORTER_OTLP_*`` respected) as
    the global provider, once, and say so; without the SDK, say that spans go nowhere."""
    global _setup_done
    from rlm_jupyter import telemetry

    if telemetry.provider_configured():
        return
    with _setup_lock:
        if _setup_done or telemetry.provider_configured():
            return
        _setup_done = True
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            notes.append("Tracing is on, but no OpenTelemetry tracer provider is configured and "
                         "opentelemetry-sdk or its OTLP/HTTP exporter is missing, so spans go "
                         "nowhere: pip install 'rlm-jupyter[otel]', or configure a provider.")
            return
        named = "OTEL_SERVICE_NAME" in os.environ or \
            "service.name" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        provider = TracerProvider(resource=Resource.create(
            {} if named else {"service.name": "rlm-jupyter"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        notes.append(f"Tracing: no OpenTelemetry tracer provider was configured, so spans are "
                     f"exported over OTLP/HTTP to {_endpoint()} (set OTEL_EXPORTER_OTLP_ENDPOINT, "
                     f"or configure your own provider before the first run).")
