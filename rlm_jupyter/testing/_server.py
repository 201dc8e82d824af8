"""The scripted OpenAI-compatible HTTP server (stdlib only).

A ThreadingHTTPServer with daemon threads and a deep accept queue, so 64+ requests can be in
flight at once (latency is simulated with per-thread sleeps, never a global lock). HTTP/1.1 with
keep-alive and Nagle off, as real providers behave, so client connection pooling is exercised
and small streamed chunks are not delayed.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ._demo import demo_root, demo_sub
from ._faults import Fault, FaultQueue, Match
from ._request import ROOT, SUB, ScriptedRequest, estimate_tokens
from ._script import RootScript, ScriptError, SubScript, compile_root, compile_sub

_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_MODEL_PATHS = ("/v1/models", "/models")
_STREAM_PIECES = 32          # content chunks per streamed reply when no rate is simulated
_TICK_S = 0.02               # granularity of simulated decoding


class _Abort(Exception):
    """The connection must be dropped without a response (disconnect fault or shutdown)."""


class RequestLog:
    """Thread-safe, append-only log of :class:`ScriptedRequest` (iteration gives a snapshot)."""

    def __init__(self) -> None:
        self._items: list[ScriptedRequest] = []
        self._lock = threading.Lock()

    def append(self, req: ScriptedRequest) -> int:
        with self._lock:
            req.index = len(self._items)
            self._items.append(req)
            return req.index

    def snapshot(self) -> list[ScriptedRequest]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[ScriptedRequest]:
        return iter(self.snapshot())

    def __getitem__(self, index: int) -> ScriptedRequest:
        with self._lock:
            return self._items[index]

    def roots(self) -> list[ScriptedRequest]:
        return [r for r in self.snapshot() if r.kind == ROOT]

    def subs(self) -> list[ScriptedRequest]:
        return [r for r in self.snapshot() if r.kind == SUB]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __repr__(self) -> str:
        items = self.snapshot()
        roots = sum(1 for r in items if r.kind == ROOT)
        return f"<RequestLog {len(items)} requests: {roots} root, {len(items) - roots} sub>"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], scripted: "ScriptedServer") -> None:
        self.scripted = scripted
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which stalls for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        with self.connections_lock:
            self.connections.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.connections_lock:
            socks, self.connections = list(self.connections), set()
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, _Abort, OSError)):
            return  # clients hanging up are normal here
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ScriptedServer/1.0"
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed after this
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def parse_request(self) -> bool:
        # The request line has arrived: from here on the time is the server's own (parsing the
        # headers and the JSON body included), so ``elapsed_s`` does not charge it to the client.
        self.received_at = time.monotonic()
        return super().parse_request()

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, _Abort, OSError):
            self.close_connection = True

    # -- plumbing ---------------------------------------------------------------------------
    def send_body(self, status: int, body: bytes, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, json.dumps(payload).encode(), headers=headers)

    def send_error_json(self, status: int, message: str, type_: str, code: str | None = None,
                        headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"error": {"message": message, "type": type_, "param": None,
                                          "code": code}}, headers)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Hang up without a response, as a crashed proxy or dropped network would."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Abort()

    # -- routes -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path in _MODEL_PATHS:
            self.send_json(200, self.server.scripted.models_payload())
        elif path in ("", "/health", "/v1", "/v1/health"):
            self.send_json(200, {"status": "ok", "server": "rlm_jupyter.testing.ScriptedServer"})
        else:
            self.send_error_json(404, f"No route GET {path}; try /v1/models.",
                                 "invalid_request_error", "not_found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if path not in _CHAT_PATHS:
            self.send_error_json(404, f"No route POST {path}; this server speaks "
                                      "/v1/chat/completions.", "invalid_request_error",
                                 "not_found")
            return
        try:
            body = json.loads(raw or b"null")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            req = ScriptedRequest.from_body(body, dict(self.headers.items()))
        except ValueError as exc:
            self.send_error_json(400, f"Invalid request body: {exc}", "invalid_request_error")
            return
        try:
            self.server.scripted._serve_chat(self, req)
        except (_Abort, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - a server bug must still answer, loudly
            message = f"ScriptedServer internal error: {type(exc).__name__}: {exc}"
            self.server.scripted.errors.append(message)
            self.send_error_json(500, message, "server_error")


class ScriptedServer:
    """An OpenAI-compatible chat-completions server whose "model" is a script.

    See the package docstring (``help(rlm_jupyter.testing)``) for a tour; arguments:

    root: replies for root (RLM) turns: list of str/``fn(req)`` consumed in order, ``fn(req)``,
        a constant str, or a dict question-substring -> any of those (first matching key wins;
        a ``""`` key is the fallback). None: the demo policy.
    sub: replies for sub-calls (``llm_query``): ``fn(prompt, req)``, a constant str, or
        ``[(regex, reply-or-fn(prompt, req)), ...]`` / ``{regex: reply}`` rules tried in order,
        falling back to :func:`answer_from_prompt`. None: that fallback alone.
    classify: ``fn(req) -> "root" | "sub"``; default: root iff the request has a system message.
    latency_s: seconds before the first byte of every response, or ``fn(req) -> seconds``
        (e.g. to give root turns and sub-calls different latencies); settable while running.
    tokens_per_s: simulated decoding speed (streams are paced, non-streamed replies wait).
    exhausted: when a root list runs out: "error" (HTTP 400 + ScriptError), "repeat", "cycle".
    strict: raise the first script error again when the ``with`` block exits.
    """

    def __init__(self, root: RootScript = None, sub: SubScript = None, *,
                 classify: Callable[[ScriptedRequest], str] | None = None,
                 latency_s: float | Callable[[ScriptedRequest], float] = 0.0,
                 tokens_per_s: float | None = None,
                 host: str = "127.0.0.1", port: int = 0, model_name: str = "scripted",
                 exhausted: str = "error", strict: bool = True) -> None:
        if (not callable(latency_s) and latency_s < 0) or (
                tokens_per_s is not None and tokens_per_s <= 0):
            raise ValueError("latency_s must be >= 0 and tokens_per_s > 0 (or None)")
        self._root = compile_root(root, exhausted)
        self._sub = compile_sub(sub)
        self.classify = classify
        self.latency_s = latency_s if callable(latency_s) else float(latency_s)
        self.tokens_per_s = tokens_per_s
        self.host = host
        self.port = port
        self.model_name = model_name
        self.strict = strict
        self.requests = RequestLog()
        self.errors: list[str] = []
        self._faults = FaultQueue()
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset_counters()

    # -- lifecycle --------------------------------------------------------------------------
    @classmethod
    def demo(cls, **kwargs: Any) -> "ScriptedServer":
        """A server whose root follows the generic peek / map / reduce demo policy."""
        return cls(root=demo_root, sub=demo_sub, **kwargs)

    def start(self) -> "ScriptedServer":
        if self._httpd is not None:
            return self
        self._stopping.clear()
        try:
            self._httpd = _HTTPServer((self.host, self.port), self)
        except OSError as exc:
            raise OSError(f"ScriptedServer could not listen on {self.host}:{self.port} ({exc}); "
                          "pass port=0 to pick a free port.") from exc
        self.port = self._httpd.server_port
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={
            "poll_interval": 0.05}, name=f"ScriptedServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    close = stop

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop()
        if self.strict and exc_type is None and self.errors:
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            raise ScriptError(self.errors[0] + more)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("The ScriptedServer is not running: use `with ScriptedServer(...) "
                               "as srv:` or call srv.start() first.")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model(self) -> str:
        """The litellm model string that reaches this server (with api_base=srv.base_url)."""
        return f"openai/{self.model_name}"

    @property
    def client_kwargs(self) -> dict[str, str]:
        """``model``, ``api_base``, ``api_key``: splat into ``litellm.completion`` or ``RLM``."""
        return {"model": self.model, "api_base": self.base_url, "api_key": "scripted"}

    def env(self) -> dict[str, str]:
        """RLM_MODEL / RLM_API_BASE / RLM_API_KEY for subprocesses, notebooks and the CLI."""
        return {"RLM_MODEL": self.model, "RLM_API_BASE": self.base_url,
                "RLM_API_KEY": "scripted"}

    def __repr__(self) -> str:
        where = self.base_url if self._httpd else "stopped"
        return f"<ScriptedServer {where} model={self.model!r} requests={len(self.requests)}>"

    # -- faults and counters ----------------------------------------------------------------
    def inject(self, kind: str | int, times: int = 1, delay_s: float | None = None,
               match: Match = None) -> Fault:
        """Make the next ``times`` matching requests fail as ``kind``.

        kind: "429" (with Retry-After = delay_s, default 0.05 s), "500" (or any 4xx/5xx),
        "malformed" (HTTP 200 with a truncated JSON body / SSE event), "slow" (delay_s extra
        seconds, default 1, then a normal reply), "disconnect" (hang up without a response).
        match: None, "root", "sub", a regex searched in the prompt, or ``fn(req) -> bool``.
        """
        return self._faults.add(Fault(kind=str(kind), times=times, delay_s=delay_s,
                                      match=match))

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return self._faults.pending()

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot: requests, root, sub, stream, faults, script_errors, in_flight,
        max_in_flight, completed, prompt_tokens, completion_tokens."""
        with self._lock:
            return dict(self._counters)

    def reset_counters(self) -> None:
        with self._lock:
            in_flight = self._counters.get("in_flight", 0)
            self._counters = dict.fromkeys(
                ("requests", "root", "sub", "stream", "faults", "script_errors", "in_flight",
                 "max_in_flight", "completed", "prompt_tokens", "completion_tokens"), 0)
            self._counters["in_flight"] = in_flight

    def reset(self) -> None:
        """Forget requests, errors, counters and pending faults (scripts keep their place)."""
        self.requests.clear()
        self.errors.clear()
        self._faults.clear()
        self.reset_counters()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, delta in deltas.items():
                self._counters[key] = self._counters.get(key, 0) + delta
            if self._counters["in_flight"] > self._counters["max_in_flight"]:
                self._counters["max_in_flight"] = self._counters["in_flight"]

    def models_payload(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model",
                                            "created": 0, "owned_by": "rlm-jupyter"}]}

    # -- serving ----------------------------------------------------------------------------
    def _sleep(self, handler: _Handler, seconds: float) -> None:
        if seconds > 0 and self._stopping.wait(seconds):
            handler.abort()

    def reply_for(self, req: ScriptedRequest) -> str:
        """The script's reply to ``req``; raises :class:`ScriptError` with a useful message."""
        try:
            if req.kind == ROOT:
                text = self._root(req)
            else:
                text = self._sub(req.prompt, req)
        except ScriptError:
            raise
        except Exception as exc:  # noqa: BLE001 - user script code
            raise ScriptError(f"The {req.kind} script raised {type(exc).__name__}: {exc} "
                              f"(request #{req.index}, turn {req.turn}).") from exc
        if not isinstance(text, str):
            raise ScriptError(f"The {req.kind} script returned {type(text).__name__} for "
                              f"request #{req.index}; it must return a str.")
        return text

    def _serve_chat(self, handler: _Handler, req: ScriptedRequest) -> None:
        started = getattr(handler, "received_at", None) or time.monotonic()
        self.requests.append(req)
        self._count(requests=1, in_flight=1, stream=int(req.stream))
        try:
            self._serve_chat_inner(handler, req)
        finally:
            req.elapsed_s = time.monotonic() - started
            self._count(in_flight=-1, completed=1)

    def _fail_script(self, handler: _Handler, req: ScriptedRequest, exc: Exception) -> None:
        message = f"ScriptedServer: {exc}"
        with self._lock:
            self.errors.append(message)
        self._count(script_errors=1)
        req.status = 400
        handler.send_error_json(400, message, "invalid_request_error", "script_error")

    def _serve_chat_inner(self, handler: _Handler, req: ScriptedRequest) -> None:
        try:
            if self.classify is not None:
                req.reclassify(self.classify(req))
            fault = self._faults.take(req)
        except Exception as exc:  # noqa: BLE001 - user classify/match code
            self._count(**{req.kind: 1})
            self._fail_script(handler, req, ScriptError(
                f"classify= or an inject(match=...) function raised {type(exc).__name__}: "
                f"{exc}"))
            return
        self._count(**{req.kind: 1})
        latency = self.latency_s
        self._sleep(handler, float(latency(req)) if callable(latency) else latency)
        if fault is not None:
            req.fault = fault.kind
            self._count(faults=1)
            if fault.kind == "slow":
                self._sleep(handler, fault.delay)
            elif fault.kind == "disconnect":
                self._sleep(handler, fault.delay)
                req.status = 0
                handler.abort()
            elif fault.kind.isdigit():
                self._send_status_fault(handler, req, int(fault.kind), fault.delay)
                return
        try:
            reply = self.reply_for(req)
        except ScriptError as exc:
            self._fail_script(handler, req, exc)
            return
        req.reply = reply
        prompt_tokens = estimate_tokens(req.prompt_chars)
        completion_tokens = estimate_tokens(len(reply))
        self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        ident = f"chatcmpl-scripted-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        req.status = 200
        if fault is not None and fault.kind == "malformed":
            self._send_malformed(handler, req, ident)
        elif req.stream:
            self._send_stream(handler, req, reply, usage, ident, created)
        else:
            if self.tokens_per_s:
                self._sleep(handler, completion_tokens / self.tokens_per_s)
            handler.send_json(200, {
                "id": ident, "object": "chat.completion", "created": created,
                "model": req.model, "system_fingerprint": "scripted",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": reply}}],
                "usage": usage,
            })

    def _send_status_fault(self, handler: _Handler, req: ScriptedRequest, status: int,
                           delay: float) -> None:
        req.status = status
        headers: dict[str, str] = {}
        if status in (429, 503):
            headers = {"Retry-After": f"{delay:g}", "retry-after-ms": f"{delay * 1000:g}"}
        if status == 429:
            handler.send_error_json(429, "Rate limit reached (injected by ScriptedServer).",
                                    "rate_limit_error", "rate_limit_exceeded", headers)
        else:
            handler.send_error_json(status, f"Injected HTTP {status} from ScriptedServer.",
                                    "server_error" if status >= 500 else "invalid_request_error",
                                    None, headers)

    def _send_malformed(self, handler: _Handler, req: ScriptedRequest, ident: str) -> None:
        broken = ('{"id": "%s", "object": "chat.completion", "choices": [{"index": 0, '
                  '"message": {"role": "assistant", "content": "trunc' % ident)
        if not req.stream:
            handler.send_body(200, broken.encode())
            return
        handler.start_stream()
        handler.write_chunk(f"data: {broken}\n\n".encode())
        handler.write_chunk(b"data: [DONE]\n\n")
        handler.end_stream()

    def _send_stream(self, handler: _Handler, req: ScriptedRequest, reply: str,
                     usage: dict[str, int], ident: str, created: int) -> None:
        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            payload = {"id": ident, "object": "chat.completion.chunk", "created": created,
                       "model": req.model, "system_fingerprint": "scripted",
                       "choices": choices, **extra}
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        def delta(content: str | None, finish: str | None = None,
                  role: bool = False) -> bytes:
            body: dict[str, Any] = {"role": "assistant"} if role else {}
            if content is not None:
                body["content"] = content
            return event([{"index": 0, "delta": body, "logprobs": None,
                           "finish_reason": finish}])

        rate = self.tokens_per_s
        if rate:
            piece_chars = max(4, int(4 * rate * _TICK_S))
        else:
            piece_chars = max(16, -(-len(reply) // _STREAM_PIECES))
        pieces = [reply[i:i + piece_chars] for i in range(0, len(reply), piece_chars)]
        options = req.body.get("stream_options") or {}
        tail = [delta(None, "stop")]
        if isinstance(options, dict) and options.get("include_usage"):
            tail.append(event([], usage=usage))
        tail.append(b"data: [DONE]\n\n")

        handler.start_stream()
        head = delta("", role=True)
        if not rate:
            handler.write_chunk(head + b"".join(delta(p) for p in pieces) + b"".join(tail))
        else:
            handler.write_chunk(head)
            for piece in pieces:
                self._sleep(handler, max(1, len(piece) // 4) / rate)
                handler.write_chunk(delta(piece))
            handler.write_chunk(b"".join(tail))
        handler.end_stream()
