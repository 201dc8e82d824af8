"""A direct HTTP path for OpenAI-compatible servers (``transport="http"``).

litellm and the openai SDK spend ~5 ms of CPU per call re-validating every message of the
request (measured in benchmarks/RESULTS.md), which dominates a turn against a fast local server
and serialises a batch of sub-calls on the GIL. For endpoints that speak the OpenAI chat API
(vLLM, llama.cpp, Ollama's /v1, our scripted server) this path posts plain JSON over keep-alive
connections shared per endpoint for the whole process. Retries, the rate-limit gate, the cache
and pricing stay in :mod:`rlm_jupyter.engine.llm`; errors carry ``status_code`` and headers so
the same retry rules apply.

The wire is plain sockets: the request goes out in one ``sendall`` and :class:`_Reply` reads the
answer (status line, headers, then a body by Content-Length, chunked, or up to the close). httpx
cost ~0.9 ms of CPU more per call (its URL, header and h11 state-machine layers), the standard
library's ``HTTPConnection`` sends headers and body in two writes (~0.1 ms more against a local
server) and ``HTTPResponse`` parses headers with the e-mail parser (~0.07 ms): together most of a
turn's host overhead against a zero-latency server. httpx is kept for one case only: an endpoint
the environment says to reach through a proxy (``HTTPS_PROXY`` and friends), which it supports.
"""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import threading
from typing import Any, Callable, Iterator
from urllib.parse import quote, urlsplit

from rlm_jupyter.engine.request_body import MessageMemo, chat_body

_PROVIDER_PREFIXES = ("openai/", "hosted_vllm/", "openai_like/", "custom_openai/")
_PASS_THROUGH = ("temperature", "top_p", "seed", "max_tokens", "max_completion_tokens", "stop",
                 "presence_penalty", "frequency_penalty", "response_format", "n", "logit_bias",
                 "reasoning_effort", "top_k")
_USER_AGENT = "rlm-jupyter"
_MEMO = MessageMemo()  # one for the process: the histories of all live runs


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


def speaks_openai(model: str) -> bool:
    """Models litellm would send to an OpenAI-compatible endpoint unchanged."""
    return model.startswith(_PROVIDER_PREFIXES)


def wire_model_name(model: str) -> str:
    for prefix in _PROVIDER_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix):]
    return model


_POOL_SIZE = 128  # the engine's own semaphore caps concurrency; this only bounds idle sockets
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


_tls: ssl.SSLContext | None = None
_tls_lock = threading.Lock()


def _tls_context() -> ssl.SSLContext:
    """Verified TLS with the CA bundle httpx (and so litellm) would use: ``SSL_CERT_FILE`` or
    ``SSL_CERT_DIR`` when set, certifi's bundle otherwise (the system's if certifi is absent)."""
    global _tls
    with _tls_lock:
        if _tls is None:
            if os.environ.get("SSL_CERT_FILE"):
                _tls = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                _tls = ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
            else:
                try:
                    import certifi

                    _tls = ssl.create_default_context(cafile=certifi.where())
                except ImportError:
                    _tls = ssl.create_default_context()
            _tls.set_alpn_protocols(["http/1.1"])
        return _tls


def _proxied(scheme: str, host: str) -> bool:
    """Whether the environment routes ``scheme://host`` through a proxy (as httpx reads it)."""
    import urllib.request

    proxies = urllib.request.getproxies()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(host)


class InFlight:
    """The connections one run tree has in flight, so that a cancel can hang them up.

    ``abort()`` shuts their sockets down from another thread: the blocked read returns at once
    and the call fails, instead of running on for minutes. Calls started after ``abort()``
    fail straight away.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self.aborted = False

    def add(self, sock: socket.socket | None) -> None:
        with self._lock:
            if sock is not None:
                self._socks.add(sock)
            aborted = self.aborted
        if aborted:
            _hang_up(sock)
            raise TransportFailure("the call was cancelled")

    def discard(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socks.discard(sock)  # type: ignore[arg-type]

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            socks = list(self._socks)
        for sock in socks:
            _hang_up(sock)


def _hang_up(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class HTTPTransport:
    """POST ``/chat/completions`` to one OpenAI-compatible endpoint, over pooled connections."""

    def __init__(self, api_base: str, api_key: str | None) -> None:
        base = api_base.rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"api_base must be an http:// or https:// URL, got {api_base!r}")
        if api_key and ("\r" in api_key or "\n" in api_key):
            raise ValueError("the API key contains a line break; check how it was pasted")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        host = parts.netloc.rsplit("@", 1)[-1]
        path = quote((parts.path or "") + "/chat/completions", safe="/%:@!$&'()*+,;=-._~")
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity",
                 *(f"{k}: {v}" for k, v in headers.items())]
        #: Everything before Content-Length: the request head is the same for every call.
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._httpx: Any = None
        if _proxied(parts.scheme, self._host):
            self._httpx = _HttpxPath(base, headers)
        #: Whether :class:`InFlight` can hang a call up (not through httpx).
        self.abortable = self._httpx is None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()
        if self._httpx is not None:
            self._httpx.close()

    # -- the call ----------------------------------------------------------------------------
    def complete(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], *,
                 stream: bool, on_delta: Callable[[str], None] | None,
                 timeout_s: float, in_flight: InFlight | None = None) -> tuple[str, int, int]:
        """Returns (text, prompt_tokens, completion_tokens)."""
        fields: dict[str, Any] = {"model": wire_model_name(model)}
        for k in _PASS_THROUGH:
            if k in params:
                fields[k] = params[k]
        if stream:
            fields["stream"] = True
            fields["stream_options"] = {"include_usage": True}
        payload = chat_body(_MEMO, messages, fields)
        if self._httpx is not None:
            if not stream:
                data = self._httpx.post(payload, timeout_s)
                return self._from_json(data, messages)
            return self._from_events(self._httpx.stream_lines(payload, timeout_s), messages,
                                     on_delta)
        sock = self._checkout(timeout_s)
        if in_flight is not None:
            try:
                in_flight.add(sock)
            except BaseException:
                sock.close()
                raise
        reusable = False
        reply: _Reply | None = None
        try:
            try:
                sock.sendall(b"%s%d\r\n\r\n%s" % (self._head, len(payload), payload))
                reply = _Reply(sock)
                if reply.status >= 400:
                    text = reply.read().decode("utf-8", "replace")
                    reusable = not reply.will_close
                    raise HTTPStatusFailure(reply.status, text, reply.headers)
                if not stream:
                    result = self._from_json(reply.read(), messages)
                else:
                    result = self._from_events(_lines(reply.blocks()), messages, on_delta)
                    self._drain(sock, reply)
            except OSError as exc:  # refused, reset, timed out, or hung up by a cancel
                raise TransportFailure(f"{type(exc).__name__}: {exc}") from exc
            reusable = not reply.will_close
            return result
        finally:
            if reply is not None:
                reply.close()  # its file object only; the socket is ours
            if in_flight is not None:
                in_flight.discard(sock)
                reusable = reusable and not in_flight.aborted
            if reusable:
                self._checkin(sock)
            else:
                sock.close()

    @staticmethod
    def _drain(sock: socket.socket, reply: "_Reply") -> None:
        """Read what follows ``data: [DONE]`` (the closing chunk), so that the socket can be
        reused; a server that keeps the body open costs the socket, never the answer."""
        try:
            sock.settimeout(min(1.0, sock.gettimeout() or 1.0))
            reply.read()
        except (OSError, TransportFailure):
            reply.will_close = True

    # -- replies ------------------------------------------------------------------------------
    def _from_json(self, data: bytes, messages: list[dict[str, Any]]) -> tuple[str, int, int]:
        reply = json.loads(data)
        text = reply["choices"][0]["message"].get("content") or ""
        return (text, *self._usage(reply.get("usage") or {}, messages, text))

    def _from_events(self, lines: Iterator[bytes], messages: list[dict[str, Any]],
                     on_delta: Callable[[str], None] | None) -> tuple[str, int, int]:
        """Server-sent events: ``data: {json}`` lines until ``data: [DONE]``."""
        parts: list[str] = []
        usage: dict[str, Any] = {}
        loads = json.loads
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            chunk = loads(data)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta")
                piece = delta.get("content") if delta else None
                if piece:
                    parts.append(piece)
                    if on_delta is not None:
                        on_delta(piece)
        text = "".join(parts)
        return (text, *self._usage(usage, messages, text))

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

    # -- the pool -------------------------------------------------------------------------------
    def _checkout(self, timeout_s: float) -> socket.socket:
        """An idle connection the server has not closed, or a new one."""
        while True:
            with self._lock:
                sock = self._idle.pop() if self._idle else None
            if sock is None:
                break
            if not _closed_by_peer(sock):
                sock.settimeout(timeout_s)
                return sock
            sock.close()
        try:
            sock = socket.create_connection((self._host, self._port),
                                            timeout=min(10.0, timeout_s))
        except OSError as exc:
            scheme = "https" if self._https else "http"
            raise ConnectFailure(f"cannot connect to {scheme}://{self._host}:{self._port}: "
                                 f"{exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._https:
                sock = _tls_context().wrap_socket(sock, server_hostname=self._host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise TransportFailure(f"TLS with {self._host}:{self._port} failed: {exc}") from exc
        sock.settimeout(timeout_s)
        return sock

    def _checkin(self, sock: socket.socket) -> None:
        with self._lock:
            if len(self._idle) < _POOL_SIZE:
                self._idle.append(sock)
                return
        sock.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable has been closed (or broken) by the server.

    ``poll`` where there is one: ``select`` cannot watch descriptors above 1023, which a busy
    kernel process may well hand out."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines out of blocks of bytes (one block per network read or chunk, not per line)."""
    pending = b""
    for block in blocks:
        pending += block
        if b"\n" not in block:
            continue
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


_MAX_LINE = 65536
_MAX_HEADERS = 100


class _Reply:
    """One HTTP/1.1 response read off a socket: the status, the headers, then the body.

    Written for what an OpenAI-compatible server sends (JSON with a Content-Length, server-sent
    events in chunks), and strict where it matters: a reply cut short raises
    :class:`TransportFailure` rather than passing for a complete one, and only a body read to
    its declared end leaves the connection reusable. Interim replies (``100 Continue``) are
    skipped; header lines and counts are bounded.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._fp = sock.makefile("rb")
        self.status = 0
        self.headers: dict[str, str] = {}
        self.will_close = False
        try:
            self._read_head()
        except BaseException:
            self._fp.close()
            raise
        encoding = self.headers.get("transfer-encoding", "").lower()
        self._chunked = encoding.rsplit(",", 1)[-1].strip() == "chunked"
        length = self.headers.get("content-length")
        self._left: int | None = None  # bytes of a Content-Length body still to read
        if self.status in (204, 304):
            self._left = 0
        elif not self._chunked and length is not None:
            try:
                self._left = int(length.split(",")[0])
            except ValueError:
                raise TransportFailure(f"bad Content-Length {length!r}") from None
        if not self._chunked and self._left is None:
            self.will_close = True  # the body ends where the server closes the connection
        self._done = self._left == 0

    def _line(self) -> bytes:
        line = self._fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise TransportFailure("the server sent a line longer than 64 KiB")
        return line

    def _read_head(self) -> None:
        while True:
            line = self._line()
            if not line:
                raise TransportFailure("the server closed the connection without replying")
            parts = line.decode("latin-1").split(None, 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise TransportFailure(f"not an HTTP reply: {line[:80]!r}")
            version, status = parts[0], int(parts[1])
            headers: dict[str, str] = {}
            for _ in range(_MAX_HEADERS + 1):
                line = self._line()
                if line in (b"\r\n", b"\n"):
                    break
                if not line:
                    raise TransportFailure("the reply was cut off in its headers")
                name, sep, value = line.decode("latin-1").partition(":")
                if sep:
                    key = name.strip().lower()
                    value = value.strip()
                    headers[key] = f"{headers[key]}, {value}" if key in headers else value
            else:
                raise TransportFailure(f"the server sent more than {_MAX_HEADERS} headers")
            if 100 <= status < 200:
                continue  # an interim reply; the real one follows
            self.status, self.headers = status, headers
            connection = headers.get("connection", "").lower()
            self.will_close = "close" in connection or (
                version == "HTTP/1.0" and "keep-alive" not in connection)
            return

    def blocks(self) -> Iterator[bytes]:
        """The body as it arrives: each chunk, or each network read."""
        if self._done:
            return
        if self._chunked:
            while True:
                size_line = self._line()
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise TransportFailure(f"bad chunk size {size_line[:40]!r}") from None
                if size == 0:
                    while self._line() not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields: nothing we use
                    self._done = True
                    return
                data = self._fp.read(size)
                if len(data) < size or self._line() not in (b"\r\n", b"\n"):
                    raise TransportFailure("the reply was cut off in a chunk")
                yield data
        while self._left is None or self._left > 0:
            want = 65536 if self._left is None else min(65536, self._left)
            data = self._fp.read1(want)
            if not data:
                if self._left is None:
                    break  # close-delimited: this is the end
                raise TransportFailure(f"the reply was cut off ({self._left} bytes missing)")
            if self._left is not None:
                self._left -= len(data)
            yield data
        self._done = True

    def read(self) -> bytes:
        """The rest of the body."""
        if not self._chunked and self._left is not None and not self._done:
            data = self._fp.read(self._left)
            if len(data) < self._left:
                raise TransportFailure(f"the reply was cut off ({self._left - len(data)} bytes "
                                       f"missing)")
            self._left, self._done = 0, True
            return data
        return b"".join(self.blocks())

    def close(self) -> None:
        self._fp.close()


class _HttpxPath:
    """httpx for an endpoint reached through a proxy from the environment (it reads them)."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.Client(base_url=base + "/", headers=headers,
                                    limits=httpx.Limits(max_connections=_POOL_SIZE,
                                                        max_keepalive_connections=_POOL_SIZE))

    def close(self) -> None:
        self._client.close()

    def _timeout(self, timeout_s: float) -> Any:
        return self._httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))

    def post(self, payload: bytes, timeout_s: float) -> bytes:
        try:
            response = self._client.post("chat/completions", content=payload,
                                         timeout=self._timeout(timeout_s))
        except self._httpx.HTTPError as exc:
            raise TransportFailure(f"{type(exc).__name__}: {exc}") from exc
        _raise_for_status(response.status_code, response.text, response.headers)
        return response.content

    def stream_lines(self, payload: bytes, timeout_s: float) -> Iterator[bytes]:
        try:
            with self._client.stream("POST", "chat/completions", content=payload,
                                     timeout=self._timeout(timeout_s)) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_status(response.status_code, response.text, response.headers)
                for line in response.iter_lines():
                    yield line.encode()
        except self._httpx.HTTPError as exc:
            raise TransportFailure(f"{type(exc).__name__}: {exc}") from exc


def _raise_for_status(status: int, text: str, headers: Any) -> None:
    if status >= 400:
        raise HTTPStatusFailure(status, text, {k.lower(): v for k, v in headers.items()})
