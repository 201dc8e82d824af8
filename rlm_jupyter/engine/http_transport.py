"""A direct HTTP path for OpenAI-compatible servers (``transport="http"``).

litellm and the openai SDK spend ~5 ms of CPU per call re-validating every message of the
request (measured in benchmarks/RESULTS.md), which dominates a turn against a fast local server
and serialises a batch of sub-calls on the GIL. For endpoints that speak the OpenAI chat API
(vLLM, llama.cpp, Ollama's /v1, our scripted server) this path posts plain JSON over keep-alive
connections shared per endpoint for the whole process. Retries, the rate-limit gate, the cache
and pricing stay in :mod:`rlm_jupyter.engine.llm`; errors carry ``status_code`` and headers so
the same retry rules apply.

The wire is httpcore, the maintained HTTP/1.1 engine underneath httpx: one
``httpcore.ConnectionPool`` per endpoint (keep-alive, connections the server closed are noticed
and replaced, h11 parses every reply), TLS with the context httpx builds
(``httpx.create_ssl_context``: certifi, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), and the proxy
the environment names (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, read as httpx reads them).
We use httpcore rather than an ``httpx.Client`` on top of it because the Client's request
building, header merging, cookie and redirect layers cost ~0.2-0.3 ms of CPU per call (cProfile
in benchmarks/RESULTS.md), a third of a turn's whole host overhead against a zero-latency
server, and nothing in them is used here.

One small adapter sits between httpcore and its socket backend (:class:`_Stream`), for two
things httpcore has no setting for:

* it sends a request in one write (h11 hands over the head and the body separately; two
  writes cost a second system call and wake-up on a local server, ~0.1 ms a call);
* it lets :class:`InFlight` hang up the connection a call is using from another thread (a
  cancel): shutting the socket down makes a blocked read return at once, where closing the
  response from another thread would leave the read blocked until its timeout;
* it checks whether the server has closed an idle connection once, when a call picks it up,
  instead of on every pass of the pool over all its idle connections (httpcore polls each of
  them twice per request: +0.9 ms of CPU a call with 50 connections left idle by a batch).
  A connection found closed is handed back with ``ConnectionNotAvailable``, on which httpcore
  takes another one.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Iterator, NamedTuple
from urllib.parse import unquote, urlsplit

from rlm_jupyter import errors
from rlm_jupyter.engine.cache import CLIENT_ONLY_KEYS
from rlm_jupyter.engine.request_body import MessageMemo, chat_body
from rlm_jupyter.settings import OPENAI_COMPATIBLE_PREFIXES, speaks_openai

_USER_AGENT = "rlm-jupyter"
_MEMO = MessageMemo()  # one for the process: the histories of all live runs

# CLIENT_ONLY_KEYS (engine/cache.py): options the engine governs itself, never sent.
#: litellm features with no meaning on a plain HTTP call: they need transport="litellm".
LITELLM_ONLY_KEYS = frozenset({
    "mock_response", "mock_tool_calls", "api_version", "metadata", "caching", "cache",
    "custom_llm_provider", "fallbacks", "context_window_fallbacks", "model_list", "base_url",
    "input_cost_per_token", "output_cost_per_token", "input_cost_per_second",
    "output_cost_per_second", "base_model", "logger_fn", "litellm_logging_obj", "ssl_verify",
    "client", "acompletion", "azure_ad_token", "azure_ad_token_provider", "aws_region_name",
    "vertex_project", "vertex_location", "api_type", "organization", "deployment_id",
    "litellm_call_id", "litellm_metadata", "no-log", "proxy_server_request",
})


class Completion(NamedTuple):
    """One reply as the server sent it (the engine prices and records it)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    response_model: str = ""        # the model the server says answered ("" if it did not)
    finish_reason: str | None = None  # "stop", "length", ...


class HTTPStatusFailure(Exception):
    """A non-2xx reply; ``status_code`` and ``headers`` drive the shared retry rules."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status_code}: {message[:300]}")
        self.status_code = status_code
        self.litellm_response_headers = headers


class TransportFailure(Exception):
    """The connection failed (refused, reset, timed out, cut mid-reply): worth a retry."""


class ConnectFailure(TransportFailure):
    """The server could not be reached at all: a wrong ``api_base`` or a server not running."""


class TLSFailure(Exception):
    """The server's certificate was refused: not worth a retry (the same certificate comes
    back), so deliberately not a :class:`TransportFailure`."""


def wire_model_name(model: str) -> str:
    for prefix in OPENAI_COMPATIBLE_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix):]
    return model


def request_fields(model: str, params: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[bytes,
                                                                                         bytes]]]:
    """The JSON fields and extra headers for ``params``, as litellm sends them to an
    OpenAI-compatible server: every parameter goes into the body (``logprobs``, ``top_k``,
    ``cache_prompt``... the server decides what it supports), ``extra_body`` is merged into it,
    ``extra_headers`` (or ``headers``) become request headers, and the engine's own client
    options stay out. A litellm-only feature is refused with the way out, rather than dropped.
    """
    fields: dict[str, Any] = {"model": wire_model_name(model)}
    headers: list[tuple[bytes, bytes]] = []
    extra_body: Any = None
    for key, value in params.items():
        if key in CLIENT_ONLY_KEYS:
            continue
        if key in LITELLM_ONLY_KEYS:
            raise errors.ConfigError(
                f"{key!r} is a litellm option, which transport='http' (the direct path that "
                f"transport='auto' picks for an OpenAI-compatible api_base) cannot honour: "
                f"pass transport='litellm' to use it, or leave it out.")
        if key in ("extra_headers", "headers"):
            if value:
                if not isinstance(value, dict):
                    raise errors.ConfigError(f"{key} must be a dict of header names to values, "
                                             f"got {type(value).__name__}.")
                headers.extend((str(k).encode("latin-1"), str(v).encode("latin-1"))
                               for k, v in value.items())
            continue
        if key == "extra_body":
            extra_body = value
            continue
        if key in ("model", "messages", "stream", "stream_options"):
            continue  # the engine's own
        fields[key] = value
    if extra_body:
        if not isinstance(extra_body, dict):
            raise errors.ConfigError(f"extra_body must be a dict of JSON fields, got "
                                     f"{type(extra_body).__name__}.")
        fields.update(extra_body)
    return fields, headers


#: Idle connections kept per endpoint: as many as a run tree's default concurrency uses at once,
#: so a batch of sub-calls does not reconnect (a TLS handshake to a remote server costs
#: milliseconds). Not more: httpcore walks its connections twice per request in
#: O(idle x all), ~0.1 ms of CPU a call with 16 idle, ~0.9 ms with 50.
_POOL_SIZE = 16
_transports: dict[tuple[str, str | None], "HTTPTransport"] = {}
_transports_lock = threading.Lock()


def shared_transport(api_base: str, api_key: str | None) -> "HTTPTransport":
    """One keep-alive pool per endpoint for the whole process.

    Reusing it keeps connections warm across runs and notebook cells, and pays for the TLS
    context (loading the certificates, ~30-150 ms) once.
    """
    key = (api_base.rstrip("/"), api_key)
    with _transports_lock:
        transport = _transports.get(key)
        if transport is None:
            transport = _transports[key] = HTTPTransport(api_base, api_key)
        return transport


_tls: dict[tuple[str | None, str | None], Any] = {}
_tls_lock = threading.Lock()


def _tls_context() -> Any:
    """httpx's own verified TLS context (certifi's bundle, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR`` when set), built once per setting of those variables."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _tls_lock:
        context = _tls.get(key)
        if context is None:
            import httpx

            context = _tls[key] = httpx.create_ssl_context(trust_env=True)
        return context


def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL the environment routes ``scheme://host`` through, or None.

    The same variables httpx reads (through ``urllib.request.getproxies``): ``<scheme>_proxy``,
    then ``all_proxy``, unless ``no_proxy`` names the host."""
    import urllib.request

    proxies = urllib.request.getproxies()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass(host):
        return None
    return url if "://" in url else f"http://{url}"


# -- cancelling calls in flight ---------------------------------------------------------------

_current = threading.local()  # .call: the _Call this thread is making, if any


class _Call:
    """One call in flight: the connection it writes to, once it has one."""

    __slots__ = ("owner", "stream")

    def __init__(self, owner: "InFlight") -> None:
        self.owner = owner
        self.stream: _Stream | None = None

    def attach(self, stream: "_Stream") -> None:
        """Called from the connection on the call's first write (on the caller's thread)."""
        with self.owner._lock:
            self.stream = stream
            aborted = self.owner.aborted
        if aborted:
            stream.hang_up()
            raise TransportFailure("the call was cancelled")


class InFlight:
    """The calls one run tree has in flight, so that a cancel can hang them up.

    ``abort()`` shuts down the connections they are using, from another thread: a blocked read
    returns at once and the call fails, instead of running on for minutes. Calls started after
    ``abort()`` fail straight away.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self.aborted = False

    def enter(self) -> _Call:
        call = _Call(self)
        with self._lock:
            if self.aborted:
                raise TransportFailure("the call was cancelled")
            self._calls.add(call)
        return call

    def leave(self, call: _Call) -> None:
        with self._lock:
            self._calls.discard(call)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            streams = [c.stream for c in self._calls if c.stream is not None]
        for stream in streams:
            stream.hang_up()


class _Stream:
    """httpcore's socket stream, with the request sent in one write and a way to hang up.

    httpcore writes the request head and body separately and then reads: writes are kept
    until the first read and sent together. The write also tells the thread's :class:`_Call`
    which connection it is on. Implements httpcore's ``NetworkStream`` interface (duck-typed,
    so this module imports nothing until a transport is built).
    """

    __slots__ = ("_inner", "_out", "_write_timeout", "_used", "read_cap")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._out: list[bytes] = []
        self._write_timeout: float | None = None
        self._used = False
        #: Caps the read timeout: set once the answer is complete, to read the body's end.
        self.read_cap: float | None = None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if not self._out:  # a new request
            if self._used and self._inner.get_extra_info("is_readable"):
                # An idle keep-alive connection that is readable was closed (or broken) by the
                # server: httpcore closes it and retries the request on another.
                import httpcore

                raise httpcore.ConnectionNotAvailable()
            self._used = True
            self.read_cap = None
            call = getattr(_current, "call", None)
            if call is not None and call.stream is not self:
                call.attach(self)
        self._out.append(buffer)
        self._write_timeout = timeout

    def _flush(self) -> None:
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self._inner.write(data, self._write_timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush()
        if self.read_cap is not None:
            timeout = self.read_cap if timeout is None else min(timeout, self.read_cap)
        return self._inner.read(max_bytes, timeout)

    def close(self) -> None:
        self._out.clear()
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> "_Stream":
        self._flush()
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return False  # checked in write(), for the one connection a call picks up
        return self._inner.get_extra_info(info)

    def hang_up(self) -> None:
        """Shut the connection down in both directions, from any thread.

        A read blocked in another thread returns at once (end of stream); ``close()`` alone
        would not wake it on Linux, where it waits out its timeout."""
        sock = self._inner.get_extra_info("socket")
        if sock is None:
            self._inner.close()
            return
        try:
            sock.shutdown(2)  # SHUT_RDWR
        except OSError:
            pass


class _Backend:
    """httpcore's ``NetworkBackend`` (its sync socket backend), handing out :class:`_Stream`s."""

    def __init__(self) -> None:
        import httpcore

        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> _Stream:
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address,
                                               socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class HTTPTransport:
    """POST ``/chat/completions`` to one OpenAI-compatible endpoint, over pooled connections."""

    #: Whether :class:`InFlight` can hang a call up (always, through a proxy too); the engine
    #: then runs the call on the caller's thread rather than abandoning it on a helper thread.
    abortable = True

    def __init__(self, api_base: str, api_key: str | None) -> None:
        import httpcore

        base = api_base.rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"api_base must be an http:// or https:// URL, got {api_base!r}")
        if api_key and ("\r" in api_key or "\n" in api_key):
            raise ValueError("the API key contains a line break; check how it was pasted")
        self._hc = httpcore
        self._origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self._url = httpcore.URL(base + "/chat/completions")
        self._headers: list[tuple[bytes, bytes]] = [
            (b"Host", parts.netloc.rsplit("@", 1)[-1].encode("idna")),
            (b"Accept-Encoding", b"identity"),
            (b"Content-Type", b"application/json"),
            (b"User-Agent", _USER_AGENT.encode()),
        ]
        if api_key:
            self._headers.append((b"Authorization", f"Bearer {api_key}".encode("latin-1")))
        https = parts.scheme == "https"
        proxy_url = _proxy_for(parts.scheme, parts.hostname)
        options: dict[str, Any] = {}
        if proxy_url is not None:  # ``proxy=`` needs httpcore >= 1.0.6; passed only when used
            p = urlsplit(proxy_url)
            auth = (unquote(p.username), unquote(p.password or "")) if p.username else None
            netloc = p.netloc.rsplit("@", 1)[-1]
            options["proxy"] = httpcore.Proxy(
                f"{p.scheme}://{netloc}{p.path}", auth=auth,
                ssl_context=_tls_context() if p.scheme == "https" else None)
        #: The proxy the calls go through (from the environment), for error messages.
        self.proxy = proxy_url
        self._pool = httpcore.ConnectionPool(
            ssl_context=_tls_context() if https else None, max_connections=None,
            max_keepalive_connections=_POOL_SIZE, network_backend=_Backend(), **options)
        self._timeouts: dict[float, dict[str, dict[str, float]]] = {}

    def close(self) -> None:
        self._pool.close()

    def _extensions(self, timeout_s: float) -> dict[str, dict[str, float]]:
        ext = self._timeouts.get(timeout_s)
        if ext is None:
            ext = self._timeouts[timeout_s] = {"timeout": {
                "connect": min(10.0, timeout_s), "read": timeout_s, "write": timeout_s,
                "pool": timeout_s}}
        return ext

    # -- the call ----------------------------------------------------------------------------
    def complete(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], *,
                 stream: bool, on_delta: Callable[[str], None] | None,
                 timeout_s: float, in_flight: InFlight | None = None) -> Completion:
        """The reply's text, token counts, and the model and finish reason the server named."""
        fields, extra_headers = request_fields(model, params)
        if stream:
            fields["stream"] = True
            fields["stream_options"] = {"include_usage": True}
        payload = chat_body(_MEMO, messages, fields)
        if extra_headers:  # the caller's headers replace ours of the same name (as in litellm)
            names = {name.lower() for name, _ in extra_headers}
            headers = [h for h in self._headers if h[0].lower() not in names]
            headers += [*extra_headers, (b"Content-Length", b"%d" % len(payload))]
        else:
            headers = [*self._headers, (b"Content-Length", b"%d" % len(payload))]
        call = in_flight.enter() if in_flight is not None else None
        _current.call = call
        hc = self._hc
        try:
            with self._pool.stream(b"POST", self._url, headers=headers, content=payload,
                                   extensions=self._extensions(timeout_s)) as response:
                if response.status >= 400:
                    text = response.read().decode("utf-8", "replace")
                    raise HTTPStatusFailure(
                        response.status, text,
                        {k.decode("latin-1").lower(): v.decode("latin-1")
                         for k, v in response.headers})
                if not stream:
                    return self._from_json(response.read(), messages)
                return self._from_events(response, messages, on_delta)
        except (hc.ConnectError, hc.ConnectTimeout) as exc:
            raise self._connect_failure(exc) from exc
        except hc.TimeoutException as exc:
            raise TransportFailure(f"{self._origin} did not answer within {timeout_s:g} s "
                                   f"({type(exc).__name__})") from exc
        except (hc.NetworkError, hc.ProtocolError, hc.ProxyError,
                hc.UnsupportedProtocol) as exc:  # reset, cut off, malformed, hung up by a cancel
            raise TransportFailure(f"the reply from {self._origin} failed or was cut off: "
                                   f"{type(exc).__name__}: {exc}") from exc
        finally:
            _current.call = None
            if call is not None:
                call.owner.leave(call)

    def _connect_failure(self, exc: Exception) -> Exception:
        cause = exc.__cause__ or exc.__context__
        if getattr(cause, "library", None) == "SSL" or "CERTIFICATE" in str(exc):
            return TLSFailure(
                f"TLS with {self._origin} failed: {exc}. If the server's certificate is "
                f"signed by a private CA, point SSL_CERT_FILE at that CA's certificate (PEM).")
        via = f" through the proxy {self.proxy}" if self.proxy else ""
        return ConnectFailure(f"cannot connect to {self._origin}{via}: {exc or type(exc).__name__}")

    # -- replies ------------------------------------------------------------------------------
    def _from_json(self, data: bytes, messages: list[dict[str, Any]]) -> Completion:
        reply = json.loads(data)
        choice = reply["choices"][0]
        text = choice["message"].get("content") or ""
        return Completion(text, *self._usage(reply.get("usage") or {}, messages, text),
                          str(reply.get("model") or ""), choice.get("finish_reason"))

    def _from_events(self, response: Any, messages: list[dict[str, Any]],
                     on_delta: Callable[[str], None] | None) -> Completion:
        """Server-sent events: ``data: {json}`` lines until ``data: [DONE]``."""
        parts: list[str] = []
        usage: dict[str, Any] = {}
        served_by = ""
        finish: str | None = None
        loads = json.loads
        blocks = response.iter_stream()
        for line in _lines(blocks):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self._drain(response, blocks)
                break
            chunk = loads(data)
            if chunk.get("usage"):
                usage = chunk["usage"]
            served_by = chunk.get("model") or served_by
            for choice in chunk.get("choices") or ():
                finish = choice.get("finish_reason") or finish
                delta = choice.get("delta")
                piece = delta.get("content") if delta else None
                if piece:
                    parts.append(piece)
                    if on_delta is not None:
                        on_delta(piece)
        text = "".join(parts)
        return Completion(text, *self._usage(usage, messages, text), str(served_by), finish)

    def _drain(self, response: Any, blocks: Iterator[bytes]) -> None:
        """Read what follows ``data: [DONE]`` (the closing chunk), so that the connection can
        be reused; a server that keeps the body open costs the connection (after at most 1 s),
        never the answer."""
        stream = response.extensions.get("network_stream")
        if isinstance(stream, _Stream):
            stream.read_cap = 1.0
        try:
            for _ in blocks:
                pass
        except Exception:  # noqa: BLE001 - the answer is complete; the connection is dropped
            pass

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


def _lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines out of blocks of bytes (one block per network read, not per line)."""
    pending = b""
    for block in blocks:
        pending += block
        if b"\n" not in block:
            continue
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending
