"""Model calls through litellm: retries, timeouts, streaming, usage, cost and the cache.

litellm is imported on first use only (it takes seconds and ~160 MB), with
``LITELLM_LOCAL_MODEL_COST_MAP=True`` so it never reaches for the network at import. Retries use
tenacity; a 429 closes a gate shared by every call of the run tree, so a batch of sub-calls backs
off together instead of each item hammering the provider.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from rlm_jupyter import errors
from rlm_jupyter.engine.cache import ResponseCache, cache_key

_litellm: Any = None
_import_lock = threading.Lock()


def get_litellm() -> Any:
    """Import litellm once, quietly and offline."""
    global _litellm
    if _litellm is None:
        with _import_lock:
            if _litellm is None:
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
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


def _is_retryable(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in (408, 409, 429) or status >= 500
    if type(exc).__module__.startswith("httpx") or isinstance(exc, json.JSONDecodeError):
        return True  # connection drops, read timeouts, a malformed body
    litellm = get_litellm()
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

    def complete(self, model: str, messages: list[dict[str, Any]], *, stream: bool = False,
                 on_delta: Callable[[str], None] | None = None,
                 timeout_s: float | None = None) -> LLMReply:
        """One chat completion with retries; raises :class:`errors.LLMCallError` at the end."""
        key = None
        if self.cache is not None:
            key = cache_key(model, messages, self.litellm_kwargs, self.api_base)
            hit = self.cache.get(key)
            if hit is not None:
                if on_delta and hit.get("text"):
                    on_delta(hit["text"])
                return LLMReply(text=hit.get("text", ""), model=model,
                                prompt_tokens=int(hit.get("prompt_tokens", 0)),
                                completion_tokens=int(hit.get("completion_tokens", 0)),
                                cost_usd=0.0, latency_s=0.0, cached=True)
        import tenacity

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None and getattr(exc, "status_code", None) == 429:
                self.gate.close_for(_retry_after(exc) or 1.0)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.num_retries + 1),
            wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=8.0),
            retry=tenacity.retry_if_exception(_is_retryable),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        started = time.monotonic()
        try:
            for attempt in retrying:
                with attempt:
                    self._raise_if_cancelled()
                    self.gate.wait(self.cancel)
                    self._raise_if_cancelled()
                    reply = self._call(model, messages, stream=stream, on_delta=on_delta,
                                       timeout_s=timeout_s)
        except errors.RLMError:
            raise
        except Exception as exc:  # noqa: BLE001 - everything from the provider becomes one type
            raise errors.LLMCallError(_describe_failure(model, exc)) from exc
        reply.latency_s = time.monotonic() - started
        if self.cache is not None and key is not None:
            self.cache.put(key, {"text": reply.text, "prompt_tokens": reply.prompt_tokens,
                                 "completion_tokens": reply.completion_tokens})
        return reply

    def _sleep(self, seconds: float) -> None:
        """Backoff that a cancel cuts short."""
        if self.cancel is None:
            time.sleep(seconds)
        elif self.cancel.wait(seconds):
            raise errors.RunCancelled("The run was cancelled.")

    def _call(self, model: str, messages: list[dict[str, Any]], *, stream: bool,
              on_delta: Callable[[str], None] | None, timeout_s: float | None) -> LLMReply:
        """One attempt, abandoned at once when the run is cancelled.

        An HTTP call in flight cannot be interrupted, so it runs on its own daemon thread and
        the caller stops waiting on cancel; the abandoned reply is dropped (and not charged).
        """
        def attempt() -> LLMReply:
            with self.slots:
                return self._once(model, messages, stream=stream, on_delta=on_delta,
                                  timeout_s=timeout_s)

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

    def close(self) -> None:
        """Nothing to free: HTTP connection pools are shared per endpoint for the process."""

    def _once(self, model: str, messages: list[dict[str, Any]], *, stream: bool,
              on_delta: Callable[[str], None] | None, timeout_s: float | None) -> LLMReply:
        if self._http is not None:
            text, prompt_tokens, completion_tokens = self._http.complete(
                model, messages, self.litellm_kwargs, stream=stream, on_delta=on_delta,
                timeout_s=timeout_s or self.request_timeout_s)
            cost, priced = _cost_from_tokens(model, prompt_tokens, completion_tokens)
            return LLMReply(text=text, model=model, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens, cost_usd=cost, latency_s=0.0,
                            priced=priced)
        litellm = get_litellm()
        kwargs: dict[str, Any] = dict(self.litellm_kwargs)
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
            for chunk in litellm.completion(**kwargs):
                chunks.append(chunk)
                choices = getattr(chunk, "choices", None) or []
                delta = getattr(choices[0].delta, "content", None) if choices else None
                if delta:
                    parts.append(delta)
                    if on_delta:
                        on_delta(delta)
                if self.cancel is not None and self.cancel.is_set():
                    raise errors.RunCancelled("The run was cancelled.")
            response = litellm.stream_chunk_builder(chunks, messages=messages)
            text = "".join(parts)
        else:
            response = litellm.completion(**kwargs)
            text = response.choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost, priced = _cost_of(response, model)
        return LLMReply(text=text, model=model, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, cost_usd=cost, latency_s=0.0,
                        priced=priced)


_UNPRICED: set[str] = set()


def _cost_of(response: Any, model: str) -> tuple[float, bool]:
    """USD from litellm's price map; models it does not know (local ones) cost 0.

    An unknown model makes litellm raise through a slow lookup on every call, so the answer
    "unpriced" is remembered per model (``litellm.register_model`` later clears it).
    """
    litellm = get_litellm()
    if model in _UNPRICED:
        if not _registered(litellm, model):
            return 0.0, False
        _UNPRICED.discard(model)
    try:
        cost = litellm.completion_cost(completion_response=response, model=model)
        return float(cost or 0.0), True
    except Exception:  # noqa: BLE001 - ModelNotMappedError and friends
        _UNPRICED.add(model)
        return 0.0, False


def _cost_from_tokens(model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, bool]:
    litellm = get_litellm()
    if model in _UNPRICED and not _registered(litellm, model):
        return 0.0, False
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        _UNPRICED.discard(model)
        return float(prompt_cost + completion_cost), True
    except Exception:  # noqa: BLE001
        _UNPRICED.add(model)
        return 0.0, False


def _registered(litellm: Any, model: str) -> bool:
    bare = model.split("/", 1)[-1]
    return model in litellm.model_cost or bare in litellm.model_cost


def _describe_failure(model: str, exc: BaseException) -> str:
    litellm = get_litellm()
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if isinstance(exc, litellm.AuthenticationError):
        return (f"The provider rejected the API key for {model}: set the provider's key "
                f"(e.g. OPENAI_API_KEY) or RLM_API_KEY. ({text})")
    if isinstance(exc, litellm.NotFoundError):
        return f"Model {model!r} was not found by the provider: check the model name. ({text})"
    if isinstance(exc, litellm.APIConnectionError):
        return (f"Could not reach the model {model!r}: check api_base / RLM_API_BASE and that "
                f"the server is running. ({text})")
    return f"The call to {model!r} failed after retries: {type(exc).__name__}: {text}"
