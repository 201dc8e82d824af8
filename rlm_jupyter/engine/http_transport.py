"""A direct HTTP path for OpenAI-compatible servers (``transport="http"``).

litellm and the openai SDK spend ~5 ms of CPU per call re-validating every message of the
request (measured in benchmarks/RESULTS.md), which dominates a turn against a fast local server
and serialises a batch of sub-calls on the GIL. For endpoints that speak the OpenAI chat API
(vLLM, llama.cpp, Ollama's /v1, our scripted server) this path posts plain JSON over one
keep-alive ``httpx.Client`` per run tree. Retries, the rate-limit gate, the cache and pricing
stay in :mod:`rlm_jupyter.engine.llm`; errors carry ``status_code`` and headers so the same retry
rules apply.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

_PROVIDER_PREFIXES = ("openai/", "hosted_vllm/", "openai_like/", "custom_openai/")
_PASS_THROUGH = ("temperature", "top_p", "seed", "max_tokens", "max_completion_tokens", "stop",
                 "presence_penalty", "frequency_penalty", "response_format", "n", "logit_bias",
                 "reasoning_effort", "top_k")


class HTTPStatusFailure(Exception):
    """A non-2xx reply; ``status_code`` and ``headers`` drive the shared retry rules."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status_code}: {message[:300]}")
        self.status_code = status_code
        self.litellm_response_headers = headers


def speaks_openai(model: str) -> bool:
    """Models litellm would send to an OpenAI-compatible endpoint unchanged."""
    return model.startswith(_PROVIDER_PREFIXES)


def wire_model_name(model: str) -> str:
    for prefix in _PROVIDER_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix):]
    return model


_POOL_SIZE = 128  # the engine's own semaphore caps concurrency; this only bounds the pool
_transports: dict[tuple[str, str | None], "HTTPTransport"] = {}
_transports_lock = threading.Lock()


def shared_transport(api_base: str, api_key: str | None) -> "HTTPTransport":
    """One keep-alive pool per endpoint for the whole process.

    Building an ``httpx.Client`` loads the SSL certificates (~150 ms), which would otherwise be
    paid on every run; reusing it also keeps connections warm across notebook cells.
    """
    key = (api_base.rstrip("/"), api_key)
    with _transports_lock:
        transport = _transports.get(key)
        if transport is None:
            transport = _transports[key] = HTTPTransport(api_base, api_key)
        return transport


class HTTPTransport:
    def __init__(self, api_base: str, api_key: str | None) -> None:
        import httpx

        self._httpx = httpx
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=api_base.rstrip("/") + "/", headers=headers,
            limits=httpx.Limits(max_connections=_POOL_SIZE,
                                max_keepalive_connections=_POOL_SIZE))

    def close(self) -> None:
        self._client.close()

    def complete(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], *,
                 stream: bool, on_delta: Callable[[str], None] | None,
                 timeout_s: float) -> tuple[str, int, int]:
        """Returns (text, prompt_tokens, completion_tokens)."""
        body: dict[str, Any] = {"model": wire_model_name(model), "messages": messages}
        body.update({k: params[k] for k in _PASS_THROUGH if k in params})
        timeout = self._httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        if not stream:
            response = self._client.post("chat/completions", content=json.dumps(body),
                                         timeout=timeout)
            self._raise_for_status(response.status_code, response.text, response.headers)
            data = response.json()
            text = data["choices"][0]["message"].get("content") or ""
            usage = data.get("usage") or {}
            return text, *self._usage(usage, messages, text)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        parts: list[str] = []
        usage: dict[str, Any] = {}
        with self._client.stream("POST", "chat/completions", content=json.dumps(body),
                                 timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                self._raise_for_status(response.status_code, response.text, response.headers)
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        parts.append(delta)
                        if on_delta:
                            on_delta(delta)
        text = "".join(parts)
        return text, *self._usage(usage, messages, text)

    @staticmethod
    def _usage(usage: dict[str, Any], messages: list[dict[str, Any]],
               text: str) -> tuple[int, int]:
        """The server's count; an estimate (chars / 4) when it reports none."""
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if prompt is None:
            prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4
        if completion is None:
            completion = len(text) // 4
        return int(prompt), int(completion)

    @staticmethod
    def _raise_for_status(status: int, text: str, headers: Any) -> None:
        if status < 400:
            return
        raise HTTPStatusFailure(status, text, {k.lower(): v for k, v in headers.items()})
