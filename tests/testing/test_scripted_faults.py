"""Injected faults reach litellm as the errors a real provider would cause."""

from __future__ import annotations

import time

import pytest

from rlm_jupyter.testing import ScriptedServer

SUB = [{"role": "user", "content": "ping"}]


def test_429_carries_retry_after_then_recovers(chat, litellm):
    with ScriptedServer(sub="pong") as srv:
        srv.inject("429", delay_s=0.25)
        with pytest.raises(litellm.RateLimitError) as caught:
            chat(srv, SUB)
        assert chat(srv, SUB).choices[0].message.content == "pong"
    # litellm keeps the provider's headers here (exc.response.headers is a stand-in).
    headers = caught.value.litellm_response_headers
    assert float(headers["retry-after"]) == 0.25 and headers["retry-after-ms"] == "250"
    assert [r.status for r in srv.requests] == [429, 200]
    assert srv.requests[0].fault == "429" and srv.counters["faults"] == 1


def test_client_retries_honour_retry_after(chat):
    with ScriptedServer(sub="pong") as srv:
        srv.inject(429, times=2)  # default Retry-After: 0.05 s
        started = time.monotonic()
        reply = chat(srv, SUB, max_retries=3)
        elapsed = time.monotonic() - started
    assert reply.choices[0].message.content == "pong"
    assert [r.status for r in srv.requests] == [429, 429, 200]
    assert elapsed < 3.0


def test_500(chat, litellm):
    with ScriptedServer(sub="pong") as srv:
        srv.inject("500", times=2)
        for _ in range(2):
            with pytest.raises(litellm.InternalServerError):
                chat(srv, SUB)
        assert chat(srv, SUB).choices[0].message.content == "pong"
    assert srv.pending_faults == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_malformed_body(chat, litellm, stream):
    with ScriptedServer(sub="pong") as srv:
        srv.inject("malformed")
        with pytest.raises(Exception) as caught:
            response = chat(srv, SUB, stream=stream)
            if stream:
                list(response)
        assert chat(srv, SUB).choices[0].message.content == "pong"
    assert not isinstance(caught.value, AssertionError)
    assert srv.requests[0].fault == "malformed"


def test_slow_reply_and_client_timeout(chat, litellm):
    with ScriptedServer(sub="pong") as srv:
        srv.inject("slow", delay_s=0.4)
        started = time.monotonic()
        assert chat(srv, SUB).choices[0].message.content == "pong"
        assert time.monotonic() - started >= 0.4
        srv.inject("slow", delay_s=3)
        with pytest.raises(litellm.Timeout):
            chat(srv, SUB, timeout=0.3)


def test_disconnect(chat, litellm):
    with ScriptedServer(sub="pong") as srv:
        srv.inject("disconnect")
        # litellm maps the client's connection error to InternalServerError (a retryable type).
        with pytest.raises((litellm.APIConnectionError, litellm.InternalServerError),
                           match="Connection error"):
            chat(srv, SUB)
        assert chat(srv, SUB).choices[0].message.content == "pong"
    assert srv.requests[0].status == 0


def test_match_selects_requests(chat, litellm, root_messages):
    with ScriptedServer(root=lambda req: "root ok", sub=lambda p, r: "sub:" + p) as srv:
        srv.inject("500", match="sub")
        srv.inject("500", match=r"^b$")
        srv.inject("500", match=lambda req: req.turn == 2)
        assert chat(srv, root_messages()).choices[0].message.content == "root ok"
        with pytest.raises(litellm.InternalServerError):  # first sub-call takes "sub"
            chat(srv, [{"role": "user", "content": "a"}])
        assert chat(srv, [{"role": "user", "content": "a"}]).choices[0].message.content == "sub:a"
        with pytest.raises(litellm.InternalServerError):
            chat(srv, [{"role": "user", "content": "b"}])
        with pytest.raises(litellm.InternalServerError):
            chat(srv, root_messages("q", "turn 1 reply", "output"))
    assert srv.pending_faults == []


def test_unknown_fault_is_rejected():
    with pytest.raises(ValueError, match="Unknown fault"):
        ScriptedServer().inject("teapot")
