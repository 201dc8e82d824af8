"""Model calls through litellm: retries, timeouts, streaming, usage, cost and the cache.

litellm is imported on first use only (it takes seconds and ~160 MB), with
``LITELLM_LOCAL_MODEL_COST_MAP=True`` (set by the package) so it never reaches for the network
at import. Retries use
tenacity; a 429 closes a gate shared by every call of the run tree, so a batch of sub-calls backs
off together instead of each item hammering the provider.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from rlm_jupyter import errors
from rlm_jupyter.engine.cache import ResponseCache, cache_key
from rlm_jupyter.engine.http_transport import ConnectFailure, InFlight, TransportFailure
from rlm_jupyter.engine.pricing import cost_usd as _cost

#: Streamed text reaches ``on_delta`` at most this often (plus once at the end of the reply):
#: a model streaming 100 tokens/s would otherwise cost one event per token, and the widget
#: redraws 10 times a second at most anyway.
DELTA_INTERVAL_S = 0.05

#: ``on_retry(attempt, error, wait_s)``: attempt is 1-based (the one that failed), wait_s the
#: back-off before the next try.
OnRetry = Callable[[int, BaseException, float], None]

_litellm: Any = None
_import_lock = threading.Lock()


def get_litellm() -> Any:
    """Import litellm once, quietly and offline."""
    global _litellm
    if _litellm is None:
        with _import_lock:
            if _litellm is None:
                # LITELLM_LOCAL_MODEL_COST_MAP=True is set once, by rlm_jupyter/__init__.py,
                # before any of our modules (this one included) can be imported.
                import litellm

                litellm.suppress_debug_info = True
                litellm.telemetry = False
                for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
                    logging.getLogger(name).setLevel(logging.CRITICAL)
                _litellm = litellm
    return _litellm


@dataclass
class LLMReply:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    cached: bool = False
    priced: bool = True
    #: What the provider said of its reply: the model that answered and why it stopped (for
    #: traces: gen_ai.response.model / finish_reasons). Empty when it said nothing.
    response_model: str = ""
    finish_reason: str | None = None


class RateLimitGate:
    """After a 429 every call in the run tree waits until the provider's retry time."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def close_for(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self, cancel: threading.Event | None = None) -> None:
        while True:
            with self._lock:
                delay = self._until - time.monotonic()
            if delay <= 0:
                return
            if cancel is not None and cancel.wait(min(delay, 0.25)):
                return
            elif cancel is None:
                time.sleep(min(delay, 0.25))


class _Coalescer:
    """Passes streamed text on in pieces, at most every ``interval_s``; ``flush()`` the rest.

    The first piece goes out at once (time to first token is what a viewer notices); later
    ones wait for the next piece that arrives after the interval, or for the final flush, so
    every character arrives, in order.
    """

    __slots__ = ("_sink", "_interval", "_parts", "_due")

    def __init__(self, sink: Callable[[str], None], interval_s: float) -> None:
        self._sink = sink
        self._interval = interval_s
        self._parts: list[str] = []
        self._due = 0.0

    def __call__(self, delta: str) -> None:
        self._parts.append(delta)
        now = time.monotonic()
        if now >= self._due:
            self._due = now + self._interval
            self.flush()

    def flush(self) -> None:
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            self._sink(text)


def _is_retryable(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in (408, 409, 429) or status >= 500
    if isinstance(exc, (TransportFailure, json.JSONDecodeError)) or \
            type(exc).__module__.startswith("httpx"):
        return True  # connection drops, read timeouts, a malformed body
    litellm = sys.modules.get("litellm")
    if litellm is None:  # not imported: the failure cannot be one of litellm's
        return isinstance(exc, (ValueError, OSError))
    retryable = (litellm.RateLimitError, litellm.InternalServerError,
                 litellm.ServiceUnavailableError, litellm.APIConnectionError, litellm.Timeout,
                 litellm.BadGatewayError)
    if isinstance(exc, retryable):
        return True
    # A malformed body surfaces as a generic APIError or a JSON error: worth one more try.
    return isinstance(exc, (litellm.APIError, ValueError)) and not isinstance(
        exc, (litellm.AuthenticationError, litellm.BadRequestError, litellm.NotFoundError))


def _retry_after(exc: BaseException) -> float | None:
    # litellm keeps the provider's headers on the exception, not on ``exc.response``.
    headers = (getattr(exc, "litellm_response_headers", None)
               or getattr(getattr(exc, "response", None), "headers", None) or {})
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class LLMClient:
    """One client per run tree: shared cache, rate-limit gate and concurrency cap."""

    def __init__(self, *, api_base: str | None, api_key: str | None, num_retries: int,
                 request_timeout_s: float, litellm_kwargs: dict[str, Any],
                 cache: ResponseCache | None, concurrency: int,
                 cancel: threading.Event | None = None, transport: str = "litellm") -> None:
        self.api_base = api_base
        self.transport = transport
        self._http: Any = None
        if transport == "http":
            if not api_base:
                raise errors.ConfigError(
                    "transport='http' talks to an OpenAI-compatible server directly: give "
                    "api_base (or RLM_API_BASE), or use transport='litellm'.")
            from rlm_jupyter.engine.http_transport import shared_transport

            self._http = shared_transport(api_base, api_key)
        self.api_key = api_key
        self.num_retries = num_retries
        self.request_timeout_s = request_timeout_s
        self.litellm_kwargs = dict(litellm_kwargs)
        self.cache = cache
        self.gate = RateLimitGate()
        self.slots = threading.BoundedSemaphore(max(1, concurrency))
        self.cancel = cancel
        self._in_flight = InFlight()

    def complete(self, model: str, messages: list[dict[str, Any]], *, stream: bool = False,
                 on_delta: Callable[[str], None] | None = None,
                 timeout_s: float | None = None,
                 sampling: dict[str, Any] | None = None,
                 on_retry: OnRetry | None = None) -> LLMReply:
        """One chat completion with retries; raises :class:`errors.LLMCallError` at the end.

        ``sampling`` overrides the run's sampling parameters for this call only (the engine
        raises the temperature after a reply that repeated code, to break a small model's loop).
        ``on_retry(attempt, error, wait_s)`` hears of each failed attempt that will be retried,
        before the back-off: the client has no event bus, so the engine turns it into an event
        and a count (a retried attempt costs time and, with some providers, money).
        """
        params = {**self.litellm_kwargs, **sampling} if sampling else self.litellm_kwargs
        deltas = _Coalescer(on_delta, DELTA_INTERVAL_S) if on_delta is not None else None
        try:
            return self._complete(model, messages, stream=stream, on_delta=deltas,
                                  timeout_s=timeout_s, params=params, on_retry=on_retry)
        finally:
            if deltas is not None:
                deltas.flush()  # the rest of the text, before the caller sees the reply

    def _complete(self, model: str, messages: list[dict[str, Any]], *, stream: bool,
                  on_delta: Callable[[str], None] | None, timeout_s: float | None,
                  params: dict[str, Any], on_retry: OnRetry | None = None) -> LLMReply:
        key = None
        if self.cache is not None:
            key = cache_key(model, messages, params, self.api_base)
            hit = self.cache.get(key)
            if hit is not None:
                if on_delta and hit.get("text"):
                    on_delta(hit["text"])
                return LLMReply(text=hit.get("text", ""), model=model,
                                prompt_tokens=int(hit.get("prompt_tokens", 0)),
                                completion_tokens=int(hit.get("completion_tokens", 0)),
                                cost_usd=0.0, latency_s=0.0, cached=True)
        started = time.monotonic()
        try:
            # The first attempt outside tenacity: its machinery costs ~17 us a call, and almost
            # every call succeeds the first time.
            try:
                reply = self._attempt(model, messages, stream=stream, on_delta=on_delta,
                                      timeout_s=timeout_s, params=params)
            except errors.RLMError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried, or described, below
                if not (self.num_retries > 0 and _is_retryable(exc)):
                    raise
                reply = self._retry(exc, model, messages, stream=stream, on_delta=on_delta,
                                    timeout_s=timeout_s, params=params, on_retry=on_retry)
        except errors.RLMError:
            raise
        except Exception as exc:  # noqa: BLE001 - everything from the provider becomes one type
            raise errors.LLMCallError(_describe_failure(model, exc)) from exc
        reply.latency_s = time.monotonic() - started
        if self.cache is not None and key is not None:
            self.cache.put(key, {"text": reply.text, "prompt_tokens": reply.prompt_tokens,
                                 "completion_tokens": reply.completion_tokens})
        return reply

    def _attempt(self, model: str, messages: list[dict[str, Any]], *, stream: bool,
                 on_delta: Callable[[str], None] | None, timeout_s: float | None,
                 params: dict[str, Any]) -> LLMReply:
        self._raise_if_cancelled()
        self.gate.wait(self.cancel)
        self._raise_if_cancelled()
        return self._call(model, messages, stream=stream, on_delta=on_delta,
                          timeout_s=timeout_s, params=params)

    def _retry(self, failure: Exception, model: str, messages: list[dict[str, Any]], *,
               stream: bool, on_delta: Callable[[str], None] | None, timeout_s: float | None,
               params: dict[str, Any], on_retry: OnRetry | None = None) -> LLMReply:
        """The retries after a first attempt failed with ``failure``: tenacity replays that
        failure as its own first attempt, so back-off and the shared 429 gate apply as if it
        had made it."""
        import tenacity

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait_s = float(state.next_action.sleep) if state.next_action else 0.0
            if exc is not None and getattr(exc, "status_code", None) == 429:
                closed_for = _retry_after(exc) or 1.0
                self.gate.close_for(closed_for)
                wait_s = max(wait_s, closed_for)  # the gate holds the next try at least this long
            if on_retry is not None and exc is not None:
                on_retry(state.attempt_number, exc, wait_s)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.num_retries + 1),
            wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=8.0),
            retry=tenacity.retry_if_exception(_is_retryable),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        replay: list[Exception] = [failure]
        for attempt in retrying:
            with attempt:
                if replay:
                    raise replay.pop()
                reply = self._attempt(model, messages, stream=stream, on_delta=on_delta,
                                      timeout_s=timeout_s, params=params)
        return reply

    def _sleep(self, seconds: float) -> None:
        """Backoff that a cancel cuts short."""
        if self.cancel is None:
            time.sleep(seconds)
        elif self.cancel.wait(seconds):
            raise errors.RunCancelled("The run was cancelled.")

    def _call(self, model: str, messages: list[dict[str, Any]], *, stream: bool,
              on_delta: Callable[[str], None] | None, timeout_s: float | None,
              params: dict[str, Any]) -> LLMReply:
        """One attempt, abandoned at once when the run is cancelled.

        The direct HTTP path runs on the caller's thread: a cancel hangs its connection up
        (:meth:`abort_in_flight`, which ``RLM.run``'s cancel watcher calls), and a thread per
        call would cost ~0.1 ms and GIL hand-offs. A litellm call in
        flight cannot be interrupted, so it runs on its own daemon thread and the caller stops
        waiting on cancel; the abandoned reply is dropped (and not charged).
        """
        def attempt() -> LLMReply:
            with self.slots:
                return self._once(model, messages, stream=stream, on_delta=on_delta,
                                  timeout_s=timeout_s, params=params)

        if self._http is not None and self._http.abortable:
            try:
                return attempt()
            except Exception:
                self._raise_if_cancelled()  # the cancel cut the call: say so, not "reset"
                raise
        if self.cancel is None:
            return attempt()
        box: list[Any] = []
        done = threading.Event()

        def target() -> None:
            try:
                box.append(("ok", attempt()))
            except BaseException as exc:  # noqa: BLE001 - handed back to the waiting thread
                box.append(("err", exc))
            finally:
                done.set()

        threading.Thread(target=target, daemon=True, name="rlm-llm-call").start()
        while not done.wait(0.05):
            if self.cancel.is_set():
                raise errors.RunCancelled("The run was cancelled.")
        kind, value = box[0]
        if kind == "err":
            raise value
        return value

    def _raise_if_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise errors.RunCancelled("The run was cancelled.")

    def abort_in_flight(self) -> None:
        """Hang up this client's HTTP calls in flight, and refuse new ones (on cancel).

        Only the direct HTTP path can be cut this way; litellm calls are abandoned instead.
        """
        self._in_flight.abort()

    def _once(self, model: str, messages: list[dict[str, Any]], *, stream: bool,
              on_delta: Callable[[str], None] | None, timeout_s: float | None,
              params: dict[str, Any]) -> LLMReply:
        if self._http is not None:
            done = self._http.complete(
                model, messages, params, stream=stream, on_delta=on_delta,
                timeout_s=timeout_s or self.request_timeout_s, in_flight=self._in_flight)
            cost, priced = _cost(model, done.prompt_tokens, done.completion_tokens)
            return LLMReply(text=done.text, model=model, prompt_tokens=done.prompt_tokens,
                            completion_tokens=done.completion_tokens, cost_usd=cost,
                            latency_s=0.0, priced=priced, response_model=done.response_model,
                            finish_reason=done.finish_reason)
        litellm = get_litellm()
        kwargs: dict[str, Any] = dict(params)
        kwargs.update(model=model, messages=messages, max_retries=0,
                      timeout=timeout_s or self.request_timeout_s)
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if stream:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}
            chunks = []
            parts: list[str] = []
            usage = None
            served_by, finish = "", None
            for chunk in litellm.completion(**kwargs):
                chunks.append(chunk)
                usage = getattr(chunk, "usage", None) or usage
                served_by = getattr(chunk, "model", None) or served_by
                choices = getattr(chunk, "choices", None) or []
                finish = (getattr(choices[0], "finish_reason", None) if choices else None) \
                    or finish
                delta = getattr(choices[0].delta, "content", None) if choices else None
                if delta:
                    parts.append(delta)
                    if on_delta:
                        on_delta(delta)
                if self.cancel is not None and self.cancel.is_set():
                    raise errors.RunCancelled("The run was cancelled.")
            if usage is None:
                # The provider sent no usage chunk: litellm rebuilds the reply and counts the
                # tokens itself (~2 ms, so only when needed).
                usage = getattr(litellm.stream_chunk_builder(chunks, messages=messages),
                                "usage", None)
            text = "".join(parts)
        else:
            response = litellm.completion(**kwargs)
            text = response.choices[0].message.content or ""
            usage = getattr(response, "usage", None)
            served_by = getattr(response, "model", None) or ""
            finish = getattr(response.choices[0], "finish_reason", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost, priced = _cost(model, prompt_tokens, completion_tokens, usage=usage)
        return LLMReply(text=text, model=model, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, cost_usd=cost, latency_s=0.0,
                        priced=priced, response_model=str(served_by or ""),
                        finish_reason=finish)


def attempt_error_text(exc: BaseException, limit: int = 200) -> str:
    """One line naming a failed attempt's error (``RateLimitError: ...``), for events and logs:
    provider errors run to pages of JSON, and a retry note needs only the gist."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _describe_failure(model: str, exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if isinstance(exc, ConnectFailure):
        return (f"Could not reach the model {model!r}: check api_base / RLM_API_BASE and that "
                f"the server is running. ({text})")
    litellm = sys.modules.get("litellm")
    if litellm is None or not hasattr(litellm, "AuthenticationError"):
        return f"The call to {model!r} failed after retries: {type(exc).__name__}: {text}"
    if isinstance(exc, litellm.AuthenticationError):
        return (f"The provider rejected the API key for {model}: set the provider's key "
                f"(e.g. OPENAI_API_KEY) or RLM_API_KEY. ({text})")
    if isinstance(exc, litellm.NotFoundError):
        return f"Model {model!r} was not found by the provider: check the model name. ({text})"
    if isinstance(exc, litellm.APIConnectionError):
        return (f"Could not reach the model {model!r}: check api_base / RLM_API_BASE and that "
                f"the server is running. ({text})")
    return f"The call to {model!r} failed after retries: {type(exc).__name__}: {text}"
