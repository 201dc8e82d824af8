"""The direct HTTP path for OpenAI-compatible servers keeps every engine guarantee."""

from __future__ import annotations

import pytest

from rlm_jupyter import RLM, errors
from rlm_jupyter.engine import events as ev


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


def make(srv, tmp_path, **kwargs):
    return RLM(model=srv.model, api_base=srv.base_url, api_key="k", transport="http",
               log_dir=str(tmp_path), **kwargs)


def test_batched_run_streaming_and_usage(server_factory, tmp_path):
    srv = server_factory(root=[fence("print(llm_query_batched(['a', 'b', 'c']))"),
                               "FINAL(over http)"], sub=lambda p, r: p.upper())
    seen = []
    result = make(srv, tmp_path).run("q", context="c", on_event=seen.append)
    assert result.error is None and result.answer == "over http"
    assert "['A', 'B', 'C']" in result.trajectory.turns[0].code[0].stdout
    assert any(isinstance(e, ev.ModelChunk) for e in seen)
    usage = result.usage[srv.model]
    assert usage["calls"] == 5 and usage["prompt_tokens"] > 100
    assert srv.requests[0].body["model"] == "scripted"


@pytest.mark.parametrize("fault", ["429", "500", "malformed", "disconnect"])
def test_recovers_from_faults(server_factory, tmp_path, fault):
    script = [fence("print(llm_query('x'))"), "FINAL(ok)"]
    srv = server_factory(root=lambda req: script[req.turn - 1], sub=lambda p, r: "y")
    srv.inject(fault, times=2)
    result = make(srv, tmp_path).run("q", context="c")
    assert result.error is None, result.error
    assert result.answer == "ok"


def test_requires_an_api_base(tmp_path):
    with pytest.raises(errors.ConfigError, match="api_base"):
        RLM(model="openai/x", transport="http", log_dir=str(tmp_path)).run("q", context="c")


def test_auto_picks_http_only_for_openai_compatible_endpoints():
    from rlm_jupyter.config import Settings

    assert Settings.resolve(model="openai/x", api_base="http://h/v1").effective_transport == "http"
    assert Settings.resolve(model="openai/gpt-4o-mini").effective_transport == "litellm"
    assert Settings.resolve(model="anthropic/claude", api_base="http://h").effective_transport \
        == "litellm"
    assert Settings.resolve(model="openai/x", api_base="http://h/v1",
                            transport="litellm").effective_transport == "litellm"


def test_bad_transport_name_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="transport"):
        RLM(model="openai/x", transport="carrier-pigeon")


# -- the wire: keep-alive, streaming, cancel, failures ------------------------------------------

def _client(srv, **kwargs):
    from rlm_jupyter.engine.llm import LLMClient

    kwargs.setdefault("num_retries", 0)
    return LLMClient(api_base=srv.base_url, api_key="k", request_timeout_s=30,
                     litellm_kwargs={}, cache=None, concurrency=4, transport="http", **kwargs)


def test_streamed_text_arrives_whole_and_in_order_in_fewer_pieces(server_factory):
    """Deltas are handed on at most every DELTA_INTERVAL_S, yet every character arrives."""
    reply = "".join(f"line {i:03d} of a reply streamed slowly\n" for i in range(20))
    srv = server_factory(root=lambda req: reply, tokens_per_s=400)  # 32-char pieces, 20 ms apart
    pieces: list[str] = []
    got = _client(srv).complete(srv.model, [{"role": "system", "content": "s"},
                                            {"role": "user", "content": "q"}],
                                stream=True, on_delta=pieces.append)
    assert got.text == reply
    assert "".join(pieces) == reply
    sent = -(-len(reply) // 32)
    assert 2 <= len(pieces) < sent  # coalesced, but still live (not one piece at the end)


def test_run_with_listener_streams_every_turn_whole(server_factory, tmp_path):
    replies = [fence("x = 'a' * 10\nprint(len(x))"), "FINAL(" + "word " * 60 + ")"]
    srv = server_factory(root=lambda req: replies[req.turn - 1], tokens_per_s=2000)
    seen: list[ev.Event] = []
    result = make(srv, tmp_path).run("q", context="c", on_event=seen.append)
    assert result.error is None
    for turn, text in enumerate(replies, start=1):
        chunks = [e.delta for e in seen if isinstance(e, ev.ModelChunk) and e.turn == turn]
        assert "".join(chunks) == text
    # every chunk of a turn comes before that turn's response
    kinds = [(e.type, getattr(e, "turn", 0)) for e in seen
             if isinstance(e, (ev.ModelChunk, ev.ModelResponse))]
    for turn in (1, 2):
        last_chunk = max(i for i, k in enumerate(kinds) if k == ("model_chunk", turn))
        response = kinds.index(("model_response", turn))
        assert last_chunk < response


def test_connections_survive_a_server_restart(server_factory):
    """An idle pooled connection the server closed is noticed and replaced, not reported."""
    srv = server_factory(root=lambda req: "FINAL(ok)")
    client = _client(srv)  # no retries: a stale socket must not surface as an error
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    for _ in range(3):
        assert client.complete(srv.model, msgs).text == "FINAL(ok)"
    srv.stop()
    srv.start()  # same port; every old connection was dropped
    assert client.complete(srv.model, msgs).text == "FINAL(ok)"
    assert client.complete(srv.model, msgs, stream=True, on_delta=lambda d: None).text \
        == "FINAL(ok)"


def test_status_errors_keep_their_code_and_message(server_factory):
    srv = server_factory(root=lambda req: "FINAL(ok)")
    srv.inject(404, times=1)
    client = _client(srv)
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    with pytest.raises(errors.LLMCallError, match="404"):
        client.complete(srv.model, msgs)
    assert client.complete(srv.model, msgs).text == "FINAL(ok)"


def test_unreachable_server_says_what_to_check(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    rlm = RLM(model="openai/x", api_base=f"http://127.0.0.1:{port}/v1", api_key="k",
              transport="http", num_retries=0, log_dir=str(tmp_path))
    result = rlm.run("q", context="c")
    assert isinstance(result.error, errors.LLMCallError)
    assert "Could not reach" in str(result.error) and "api_base" in str(result.error)


def test_cancel_hangs_up_a_root_call_in_flight(server_factory, tmp_path):
    import threading
    import time

    srv = server_factory(root=lambda req: "FINAL(late)")
    srv.inject("slow", times=1, delay_s=30, match="root")
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    result = make(srv, tmp_path).run("q", context="c", cancel=cancel)
    assert time.monotonic() - started < 5
    assert result.status == "cancelled" and isinstance(result.error, errors.RunCancelled)


def test_proxy_from_the_environment_is_used(server_factory, monkeypatch):
    """An endpoint the environment routes through a proxy goes through it (via httpx)."""
    srv = server_factory(root=lambda req: "FINAL(via proxy)")
    # The scripted server answers absolute-URI requests, so it can stand in for the proxy.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{srv.port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{srv.port}")
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    from rlm_jupyter.engine.llm import LLMClient

    client = LLMClient(api_base="http://model-host.invalid/v1", api_key="proxy-test",
                       num_retries=0, request_timeout_s=30, litellm_kwargs={}, cache=None,
                       concurrency=2, transport="http")
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert client.complete("openai/scripted", msgs).text == "FINAL(via proxy)"
    assert client.complete("openai/scripted", msgs, stream=True,
                           on_delta=lambda d: None).text == "FINAL(via proxy)"
    assert len(srv.requests) == 2


def test_https_endpoint_with_a_private_ca(tmp_path, monkeypatch):
    """TLS is verified against SSL_CERT_FILE when set (as httpx and litellm do)."""
    import json
    import shutil
    import ssl
    import subprocess
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from rlm_jupyter.engine import http_transport
    from rlm_jupyter.engine.llm import LLMClient

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], capture_output=True, timeout=60)
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {made.stderr[-200:]!r}")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # noqa: ANN002
            pass

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = json.dumps({"choices": [{"message": {"content": "tls " + body["model"]}}],
                                "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        client = LLMClient(api_base=f"https://localhost:{httpd.server_port}/v1", api_key="k",
                           num_retries=0, request_timeout_s=30, litellm_kwargs={}, cache=None,
                           concurrency=2, transport="http")
        msgs = [{"role": "user", "content": "q"}]
        for _ in range(2):  # the second call reuses the TLS connection
            reply = client.complete("openai/m", msgs)
            assert reply.text == "tls m" and reply.prompt_tokens == 3
        # without the private CA the certificate is refused, with the way out, and not retried
        monkeypatch.delenv("SSL_CERT_FILE")
        other = LLMClient(api_base=f"https://127.0.0.1:{httpd.server_port}/v1", api_key="k",
                          num_retries=3, request_timeout_s=30, litellm_kwargs={}, cache=None,
                          concurrency=2, transport="http")
        started = time.monotonic()
        with pytest.raises(errors.LLMCallError, match="(?i)certificate") as failure:
            other.complete("openai/m", msgs)
        assert "SSL_CERT_FILE" in str(failure.value)
        assert isinstance(failure.value.__cause__, http_transport.TLSFailure)
        assert time.monotonic() - started < 2  # no back-off: a retry gets the same certificate
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- the wire format, byte by byte, from a raw socket server ----------------------------------

class _RawServer:
    """Answers each request with the next canned byte string; counts connections."""

    def __init__(self, replies):  # type: ignore[no-untyped-def]
        import socket
        import threading

        self.replies = list(replies)
        self.connections = 0
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:  # type: ignore[no-untyped-def]
        fp = conn.makefile("rb")
        try:
            while self.replies:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = fp.readline()
                    if not line:
                        return
                    head += line
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                fp.read(length)
                self.requests += 1
                reply = self.replies.pop(0)
                conn.sendall(reply)
                if b"connection: close" in reply.lower() or reply.startswith(b"HTTP/1.0"):
                    conn.shutdown(2)
                    return
        except OSError:
            pass
        finally:
            fp.close()
            conn.close()

    def close(self) -> None:
        self._sock.close()


def _json_reply(text: str) -> bytes:
    import json

    return json.dumps({"choices": [{"message": {"content": text}}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).encode()


def _chunked(*pieces: bytes, trailer: bytes = b"") -> bytes:
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    return out + b"0\r\n" + trailer + b"\r\n"


def _raw_client(raw):  # type: ignore[no-untyped-def]
    from rlm_jupyter.engine.llm import LLMClient

    return LLMClient(api_base=raw.base_url, api_key="k", num_retries=0, request_timeout_s=10,
                     litellm_kwargs={}, cache=None, concurrency=2, transport="http")


MSGS = [{"role": "user", "content": "q"}]


def test_wire_chunked_json_interim_reply_and_keep_alive():
    body = _json_reply("chunked ok")
    raw = _RawServer([
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n" + _chunked(body[:7], body[7:],
                                                            trailer=b"X-Trailer: 1\r\n"),
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
    ])
    try:
        client = _raw_client(raw)
        assert client.complete("openai/m", MSGS).text == "chunked ok"
        assert client.complete("openai/m", MSGS).text == "chunked ok"
        assert raw.requests == 2 and raw.connections == 1  # one kept-alive connection
    finally:
        raw.close()


def test_wire_close_delimited_http10_body():
    body = _json_reply("until close")
    raw = _RawServer([b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body,
                      b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)])
    try:
        client = _raw_client(raw)
        assert client.complete("openai/m", MSGS).text == "until close"
        assert client.complete("openai/m", MSGS).text == "until close"
        assert raw.connections == 2  # the first one ended with the body
    finally:
        raw.close()


def test_wire_events_split_anywhere_are_put_back_together():
    import json

    events = b"".join(
        b"data: " + json.dumps({"choices": [{"delta": {"content": piece}}]}).encode() + b"\r\n\r\n"
        for piece in ["Hel", "lo, ", "wor", "ld"])
    events += b'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}\n\n'
    events += b"data: [DONE]\n\n"
    pieces = [events[i:i + 7] for i in range(0, len(events), 7)]  # cuts through JSON and CRLF
    raw = _RawServer([b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(*pieces)] * 2)
    try:
        client = _raw_client(raw)
        for _ in range(2):
            got: list[str] = []
            reply = client.complete("openai/m", MSGS, stream=True, on_delta=got.append)
            assert reply.text == "Hello, world" == "".join(got)
            assert (reply.prompt_tokens, reply.completion_tokens) == (9, 4)
        assert raw.connections == 1
    finally:
        raw.close()


@pytest.mark.parametrize("reply, message", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"choices\"",
     "cut off.*(?i:incomplete|closed)"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n40\r\nab",
     "cut off.*(?i:incomplete|closed)"),
    (b"SSH-2.0-OpenSSH_9.2\r\nConnection: close\r\n\r\n", "(?i)illegal status line"),
])
def test_wire_broken_replies_are_errors_not_answers(reply, message):
    raw = _RawServer([reply])
    try:
        with pytest.raises(errors.LLMCallError, match=message):
            _raw_client(raw).complete("openai/m", MSGS)
    finally:
        raw.close()


def test_wire_a_stream_left_open_after_done_still_answers():
    """A server that sends ``[DONE]`` but never ends the body costs the socket, not the call."""
    import json

    events = (b"data: " + json.dumps({"choices": [{"delta": {"content": "kept"}}]}).encode()
              + b"\n\ndata: [DONE]\n\n")
    body = _json_reply("next")
    raw = _RawServer([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"%x\r\n%s\r\n" % (len(events), events),  # no closing chunk
                      b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)])
    try:
        client = _raw_client(raw)
        assert client.complete("openai/m", MSGS, stream=True,
                               on_delta=lambda d: None).text == "kept"
        assert client.complete("openai/m", MSGS).text == "next"
        assert raw.connections == 2
    finally:
        raw.close()


def test_cancel_through_a_proxy_does_not_wait_for_the_reply(server_factory, monkeypatch,
                                                          tmp_path):
    import threading
    import time

    srv = server_factory(root=lambda req: "FINAL(late)")
    srv.inject("slow", times=1, delay_s=30, match="root")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{srv.port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{srv.port}")
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    rlm = RLM(model="openai/scripted", api_base="http://cancel-host.invalid/v1", api_key="k",
              transport="http", log_dir=str(tmp_path))
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    result = rlm.run("q", context="c", cancel=cancel)
    assert time.monotonic() - started < 5
    assert result.status == "cancelled"


# -- request parameters: everything reaches the server, as litellm would send it ---------------

def test_every_request_parameter_reaches_the_server(server_factory):
    srv = server_factory(root=lambda req: "FINAL(ok)")
    params = {"temperature": 0.3, "logprobs": True, "top_logprobs": 2, "min_p": 0.05,
              "extra_body": {"cache_prompt": True, "top_k": 7},
              "extra_headers": {"X-Trace-Id": "abc123", "User-Agent": "mine/1.0"},
              "timeout": 5, "max_retries": 4, "drop_params": True}  # the engine's own: not sent
    client = _client(srv)
    client.litellm_kwargs = params
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert client.complete(srv.model, msgs).text == "FINAL(ok)"
    assert client.complete(srv.model, msgs, stream=True, on_delta=lambda d: None).text \
        == "FINAL(ok)"
    for req in srv.requests:
        body = req.body
        assert body["logprobs"] is True and body["top_logprobs"] == 2 and body["min_p"] == 0.05
        assert body["temperature"] == 0.3
        assert body["cache_prompt"] is True and body["top_k"] == 7  # extra_body, merged
        assert not {"extra_body", "extra_headers", "timeout", "max_retries",
                    "drop_params"} & set(body)
        headers = {k.lower(): v for k, v in req.headers.items()}
        assert headers["x-trace-id"] == "abc123" and headers["user-agent"] == "mine/1.0"
        assert headers["authorization"] == "Bearer k"
    assert srv.requests[1].body["stream"] is True


def test_run_keyword_arguments_reach_the_server(server_factory, tmp_path):
    srv = server_factory(root=lambda req: "FINAL(ok)")
    result = make(srv, tmp_path, logprobs=True, extra_body={"cache_prompt": True}).run(
        "q", context="c")
    assert result.error is None, result.error
    assert srv.requests[0].body["logprobs"] is True
    assert srv.requests[0].body["cache_prompt"] is True


def test_a_litellm_only_option_is_refused_with_the_way_out(server_factory, tmp_path):
    srv = server_factory(root=lambda req: "FINAL(ok)")
    result = make(srv, tmp_path, mock_response="hi").run("q", context="c")
    assert isinstance(result.error, errors.ConfigError)
    assert "mock_response" in str(result.error) and "transport='litellm'" in str(result.error)
    assert len(srv.requests) == 0


def test_parameters_that_change_the_reply_are_in_the_cache_key():
    from rlm_jupyter.engine.cache import cache_key

    msgs = [{"role": "user", "content": "q"}]
    plain = cache_key("openai/m", msgs, {"temperature": 0})
    assert cache_key("openai/m", msgs, {"temperature": 0, "logprobs": True}) != plain
    assert cache_key("openai/m", msgs, {"temperature": 0,
                                        "extra_body": {"cache_prompt": True}}) != plain
    # the engine's own client options do not change the reply
    assert cache_key("openai/m", msgs, {"temperature": 0, "timeout": 9, "max_retries": 2}) \
        == plain


# -- cancel during a slow streamed reply ----------------------------------------------------------

def test_cancel_during_a_slow_streamed_reply_returns_within_a_second(server_factory, tmp_path):
    """The reply is streaming (headers and some text are in); a cancel hangs up the read."""
    import threading
    import time

    slow = "word " * 2000  # ~2500 tokens at 20 tokens/s: two minutes
    srv = server_factory(root=lambda req: slow, tokens_per_s=20)
    cancel = threading.Event()
    chunks: list[float] = []
    cancelled_at: list[float] = []

    def on_event(event):  # type: ignore[no-untyped-def]
        if isinstance(event, ev.ModelChunk) and not chunks:
            chunks.append(time.monotonic())

            def later() -> None:
                cancelled_at.append(time.monotonic())
                cancel.set()

            threading.Timer(0.3, later).start()

    result = make(srv, tmp_path).run("q", context="c", cancel=cancel, on_event=on_event)
    returned = time.monotonic()
    assert chunks, "the reply never started streaming"
    assert result.status == "cancelled" and isinstance(result.error, errors.RunCancelled)
    assert returned - cancelled_at[0] < 1.0


# -- a real forwarding proxy from the environment ---------------------------------------------

class _ForwardProxy:
    """A tiny HTTP forward proxy (absolute-URI requests, forwarded to a fixed upstream) that
    records the targets it was asked for."""

    def __init__(self, upstream_port: int) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self
        self.targets: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # noqa: ANN002
                pass

            def do_POST(self):  # noqa: N802
                proxy.targets.append(self.path)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                path = "/" + self.path.split("://", 1)[1].split("/", 1)[1]
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "proxy-connection", "connection")}
                upstream.request("POST", path, body=body, headers=headers)
                reply = upstream.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_port
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def test_a_forward_proxy_from_the_environment_carries_the_calls(server_factory, monkeypatch):
    srv = server_factory(root=lambda req: "FINAL(proxied)")
    proxy = _ForwardProxy(srv.port)
    try:
        for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        from rlm_jupyter.engine.llm import LLMClient

        client = LLMClient(api_base="http://llm.proxy-test.invalid:8000/v1", api_key="k",
                           num_retries=0, request_timeout_s=30, litellm_kwargs={}, cache=None,
                           concurrency=2, transport="http")
        msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
        assert client.complete("openai/scripted", msgs).text == "FINAL(proxied)"
        assert client.complete("openai/scripted", msgs, stream=True,
                               on_delta=lambda d: None).text == "FINAL(proxied)"
        assert proxy.targets == ["http://llm.proxy-test.invalid:8000/v1/chat/completions"] * 2
        # NO_PROXY names the host: the call goes straight there (and fails: it does not exist)
        monkeypatch.setenv("no_proxy", "llm.proxy-test.invalid")
        monkeypatch.setenv("NO_PROXY", "llm.proxy-test.invalid")
        direct = LLMClient(api_base="http://llm.proxy-test.invalid:8001/v1", api_key="k",
                           num_retries=0, request_timeout_s=30, litellm_kwargs={}, cache=None,
                           concurrency=2, transport="http")
        with pytest.raises(errors.LLMCallError, match="Could not reach"):
            direct.complete("openai/scripted", msgs)
        assert len(proxy.targets) == 2
    finally:
        proxy.close()
