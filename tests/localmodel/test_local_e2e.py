"""End to end with a real model: the 0.5B Qwen coder drives the RLM loop through llama.cpp.

The 0.5B model is too weak to assert answers (it copies examples, then guesses); these tests
assert the plumbing a real model exercises and a scripted one cannot: its reply is parsed into
a ```repl block, the block really runs, its output reaches the model's next request, the run
ends with FINAL or at the turn limit, and token usage is recorded.

A small recording proxy sits between litellm and the llama.cpp server so the test can read the
exact requests the engine sent, without replacing any of our code.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

LOCAL_TEST_MODEL = "qwen2.5-coder-0.5b"  # same as conftest.py

pytestmark = [pytest.mark.localmodel, pytest.mark.slow, pytest.mark.timeout(2700)]


class _Recorder:
    """Forward every request to ``upstream`` and keep the JSON bodies that went through."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.bodies: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                if data:
                    try:
                        recorder.bodies.append(json.loads(data))
                    except ValueError:
                        pass
                path = self.path[3:] if self.path.startswith("/v1") else self.path
                req = urllib.request.Request(recorder.upstream + path, data=data, method=method,
                                             headers={"Content-Type": "application/json"})
                try:
                    resp = urllib.request.urlopen(req, timeout=900)
                    status, body, ctype = resp.status, resp.read(), resp.headers.get(
                        "Content-Type", "application/json")
                except urllib.error.HTTPError as err:
                    status, body, ctype = err.code, err.read(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                self._forward("POST")

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_Recorder":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def recorder(local_server) -> Iterator[_Recorder]:
    with _Recorder(local_server.api_base) as rec:
        yield rec


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


CONTEXT = "\n".join(
    [f"Line {i}: the weather report for day {i} says mild and dry." for i in range(1, 40)]
    + ["Line 40: The secret code word is PELICAN."]
    + [f"Line {i}: the weather report for day {i} says mild and dry." for i in range(41, 60)])


def test_real_model_drives_the_repl_loop(local_server, recorder) -> None:
    from rlm_jupyter import RLM

    events: list = []
    rlm = RLM(model=local_server.litellm_model, api_base=recorder.base_url, api_key="local",
              sandbox="local", max_iterations=3, timeout_s=900, temperature=0.0, cache=False,
              request_timeout_s=600)
    result = rlm.run("What is the secret code word in the context?", context=CONTEXT,
                     on_event=events.append)

    kinds = [e.type for e in events]
    responses = [e for e in events if e.type == "model_response"]
    executed = [e for e in events if e.type == "code_executed"]
    print("status:", result.status, "answer:", result.answer, "error:", result.error)
    for e in responses:
        print(f"--- turn {e.turn} ({e.prompt_tokens}+{e.completion_tokens} tokens)\n{e.text}")
    for e in executed:
        print(f"--- ran (turn {e.turn}):\n{e.code}\n>>> {e.stdout[:300]!r} error={e.error!r}")

    # 1. The model's reply was parsed into at least one code block that really ran.
    assert responses, f"no model response at all: {kinds}"
    assert executed, "no ```repl block was parsed from the model's replies:\n" + "\n---\n".join(
        e.text for e in responses)
    # 2. The output of a block was fed back: a later request contains it.
    chat_requests = [b for b in recorder.bodies if "messages" in b]
    first = executed[0]
    feedback = (first.stdout or first.error or "").strip()
    if len(responses) > 1:
        later = chat_requests[first.turn:] if first.turn else chat_requests[1:]
        later_text = "\n".join(_text(m) for b in later for m in b["messages"])
        if feedback:
            assert feedback[:60] in later_text, (
                f"block output {feedback[:60]!r} never reached the model")
        else:
            assert "Output" in later_text
    # 3. The run ended by FINAL or at the turn limit, not by a crash.
    assert kinds[-1] == "run_finished"
    if result.error is not None:
        assert result.error.__class__.__name__ == "TurnLimitExceeded", repr(result.error)
    else:
        assert result.answer is not None
    assert len(responses) <= 3 + 1  # turn limit (plus a final "answer now" turn at most)
    # 4. Usage was recorded for the real model.
    assert result.usage, "result.usage is empty"
    totals = {k: v for k, v in result.usage.items()}
    assert sum(int(u.get("prompt_tokens", 0)) for u in totals.values()) > 100
    assert sum(int(u.get("completion_tokens", 0)) for u in totals.values()) > 0
    assert result.total_tokens > 0
    assert result.cost_usd == 0.0  # local models are free unless priced


def test_local_shorthand_reuses_the_running_server(local_server) -> None:
    """``ensure_server`` (behind ``model="local/..."``) reuses the live server."""
    from rlm_jupyter.local import ensure_server, status

    model, api_base = ensure_server(f"local/{LOCAL_TEST_MODEL}")
    assert (model, api_base) == (local_server.litellm_model, local_server.api_base)
    st = status()
    assert any(s["alias"] == LOCAL_TEST_MODEL and s["pid"] == local_server.pid
               for s in st["servers"])
    with urllib.request.urlopen(api_base + "/models", timeout=10) as r:
        assert LOCAL_TEST_MODEL in json.dumps(json.load(r))


def test_rlm_local_shorthand_runs_against_the_server(local_server) -> None:
    """``RLM(model="local/<name>")`` resolves to the running server and records usage there."""
    from rlm_jupyter import RLM

    rlm = RLM(model=f"local/{LOCAL_TEST_MODEL}", max_iterations=1, timeout_s=600,
              temperature=0.0, cache=False, request_timeout_s=600)
    result = rlm.run("How many lines does the context have?", context="a\nb\nc")
    assert result.error is None or result.error.__class__.__name__ == "TurnLimitExceeded"
    assert local_server.litellm_model in result.usage, result.usage
