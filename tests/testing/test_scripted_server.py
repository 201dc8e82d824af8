"""The scripted server over litellm's real HTTP path: scripts, streaming, usage, concurrency."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlm_jupyter.testing import ScriptedRequest, ScriptedServer, ScriptError


def test_root_list_is_consumed_in_order_with_realistic_usage(chat, root_messages):
    with ScriptedServer(root=["first reply", "second reply"]) as srv:
        assert srv.base_url.startswith("http://127.0.0.1:") and srv.base_url.endswith("/v1")
        assert srv.model == "openai/scripted"
        messages = root_messages("What is the key?")
        first = chat(srv, messages)
        second = chat(srv, root_messages("What is the key?", "first reply", "Output: 1"))

    assert first.choices[0].message.content == "first reply"
    assert second.choices[0].message.content == "second reply"
    assert first.choices[0].finish_reason == "stop"
    assert first.id.startswith("chatcmpl-") and first.id != second.id
    assert abs(first.created - time.time()) < 60
    chars = sum(len(m["content"]) for m in messages)
    assert first.usage.prompt_tokens == chars // 4
    assert first.usage.completion_tokens == len("first reply") // 4
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens

    log = srv.requests.snapshot()
    assert [r.kind for r in log] == ["root", "root"]
    assert [r.turn for r in log] == [1, 2]
    assert log[0].question == "What is the key?"
    assert log[1].prompt == "Output: 1"
    assert log[0].reply == "first reply" and log[0].status == 200
    assert log[0].raw["messages"] == messages and log[0].model == "scripted"
    counters = srv.counters
    assert counters["requests"] == counters["root"] == counters["completed"] == 2
    assert counters["prompt_tokens"] == first.usage.prompt_tokens + second.usage.prompt_tokens


def test_usage_is_at_least_one_token(chat):
    with ScriptedServer(sub="") as srv:
        reply = chat(srv, [{"role": "user", "content": "hi"}])
    assert reply.usage.prompt_tokens == 1 and reply.usage.completion_tokens == 1


def test_streaming_with_usage_chunk(chat, litellm, root_messages):
    long_reply = "```repl\n" + "\n".join(f"print({i})" for i in range(60)) + "\n```"
    with ScriptedServer(root=[long_reply]) as srv:
        stream = chat(srv, root_messages(), stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == long_reply
    assert len(chunks) > 10  # really streamed in pieces
    built = litellm.stream_chunk_builder(chunks)
    assert built.usage.completion_tokens == len(long_reply) // 4
    assert built.usage.prompt_tokens > 0
    assert srv.counters["stream"] == 1 and srv.requests[0].stream


def _raw_post(url: str, body: dict) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_sse_wire_format():
    with ScriptedServer(sub="streamed words") as srv:
        url = srv.base_url + "/chat/completions"
        body = {"model": "scripted", "messages": [{"role": "user", "content": "x"}],
                "stream": True}
        _, headers, with_usage = _raw_post(url, {**body, "stream_options": {"include_usage": True}})
        _, _, without = _raw_post(url, body)
    assert headers["Content-Type"] == "text/event-stream"
    events = [line[len("data: "):] for line in with_usage.decode().splitlines() if line]
    assert events[-1] == "[DONE]"
    payloads = [json.loads(e) for e in events[:-1]]
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 3
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert b'"usage"' not in without and without.rstrip().endswith(b"data: [DONE]")


def test_models_endpoint_and_unknown_routes():
    with ScriptedServer() as srv:
        with urllib.request.urlopen(srv.base_url + "/models", timeout=10) as response:
            models = json.loads(response.read())
        status, _, body = _raw_post(srv.base_url + "/embeddings", {"input": "x"})
        bad_status, _, bad_body = _raw_post(srv.base_url + "/chat/completions", {"messages": 3})
    assert models["data"][0]["id"] == "scripted"
    assert status == 404 and b"chat/completions" in body
    assert bad_status == 400 and b"messages" in bad_body


def test_sub_rules_callables_and_default(chat):
    rules = [(r"capital of France", "Paris"), (r"shout (\w+)", lambda p, req: p.upper())]
    with ScriptedServer(sub=rules) as srv:
        paris = chat(srv, [{"role": "user", "content": "What is the capital of France?"}])
        shout = chat(srv, [{"role": "user", "content": "shout this"}])
        default = chat(srv, [{"role": "user", "content": (
            "Question: what is the vault code?\n\nChunk:\nnothing here\n"
            "the vault code is 7731\nbye")}])
        missing = chat(srv, [{"role": "user", "content": (
            "Question: what is the vault code?\n\nChunk:\nnothing here")}])
    assert paris.choices[0].message.content == "Paris"
    assert shout.choices[0].message.content == "SHOUT THIS"
    assert default.choices[0].message.content == "the vault code is 7731"
    assert missing.choices[0].message.content == "NOT FOUND"
    assert [r.kind for r in srv.requests] == ["sub"] * 4
    assert srv.requests[2].question == "what is the vault code?"


def test_sub_callable_gets_prompt_and_request(chat):
    seen: list[ScriptedRequest] = []

    def sub(prompt: str, req: ScriptedRequest) -> str:
        seen.append(req)
        return f"{req.kind}:{prompt}"

    with ScriptedServer(sub=sub) as srv:
        reply = chat(srv, [{"role": "user", "content": "ping"}])
    assert reply.choices[0].message.content == "sub:ping"
    assert seen[0].prompt == "ping" and seen[0].turn == 1


def test_classify_override(chat, root_messages):
    with ScriptedServer(root=["as root"], sub="as sub",
                        classify=lambda req: "sub" if "child" in req.prompt else "root") as srv:
        a = chat(srv, [{"role": "user", "content": "Question: top?"}])
        b = chat(srv, [{"role": "system", "content": "s"}, {"role": "user", "content": "child"}])
    assert a.choices[0].message.content == "as root"
    assert b.choices[0].message.content == "as sub"
    assert srv.requests[0].question == "top?"


def test_per_question_scripts_for_child_rlms(chat, root_messages):
    script = {"CHILD": ["child turn 1", "child turn 2"], "": ["parent turn 1", "parent turn 2"]}
    with ScriptedServer(root=script) as srv:
        replies = [chat(srv, root_messages(q)).choices[0].message.content
                   for q in ["Top question", "CHILD task", "Top question", "child task"]]
    assert replies == ["parent turn 1", "child turn 1", "parent turn 2", "child turn 2"]


def test_root_callable_sees_turn_and_question(chat, root_messages):
    with ScriptedServer(root=lambda req: f"{req.turn}|{req.question}") as srv:
        reply = chat(srv, root_messages("Which one?", "a", "b", "c", "d"))
    assert reply.choices[0].message.content == "3|Which one?"


def test_question_extraction_is_tolerant(chat):
    with ScriptedServer(root=lambda req: req.question) as srv:
        def ask(user: str) -> str:
            messages = [{"role": "system", "content": "s"}, {"role": "user", "content": user}]
            return chat(srv, messages).choices[0].message.content

        assert ask("How many rows?") == "How many rows?"
        assert ask("Context: a list\n**Question:** Who won?\n\nStart now.") == "Who won?"
        assert ask("Question: Who won\nthe cup?\n\nThe context is x") == "Who won\nthe cup?"
        assert ask("<question>Where?</question> context follows") == "Where?"
        assert ask("Question:\nfirst line\nsecond line\n\nThe context is x") == (
            "first line\nsecond line")


def test_exhausted_script_is_a_clear_error(chat, litellm, root_messages):
    srv = ScriptedServer(root=["only one"])
    with pytest.raises(ScriptError, match="exhausted"):
        with srv:
            chat(srv, root_messages())
            with pytest.raises(litellm.BadRequestError, match="exhausted"):
                chat(srv, root_messages())
    assert srv.counters["script_errors"] == 1 and srv.requests[1].status == 400

    with ScriptedServer(root=["a", "b"], exhausted="repeat") as srv:
        replies = [chat(srv, root_messages()).choices[0].message.content for _ in range(3)]
    assert replies == ["a", "b", "b"]


def test_script_exceptions_are_reported(chat, litellm):
    def broken(prompt, req):
        raise KeyError("boom")

    with ScriptedServer(sub=broken, strict=False) as srv:
        with pytest.raises(litellm.BadRequestError, match="KeyError"):
            chat(srv, [{"role": "user", "content": "x"}])
    assert "KeyError" in srv.errors[0]


def test_start_stop_and_base_url():
    srv = ScriptedServer()
    with pytest.raises(RuntimeError, match="not running"):
        srv.base_url
    assert srv.start() is srv and srv.running
    port = srv.port
    with urllib.request.urlopen(srv.base_url + "/models", timeout=10):
        pass
    srv.stop()
    srv.stop()  # idempotent
    assert not srv.running
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    with srv:  # restartable
        assert srv.client_kwargs == {"model": "openai/scripted", "api_base": srv.base_url,
                                     "api_key": "scripted"}


def test_64_concurrent_requests_do_not_serialise(chat):
    with ScriptedServer(sub="ok", latency_s=0.2) as srv:
        chat(srv, [{"role": "user", "content": "warm up"}])  # litellm's first-call set-up
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=64) as pool:
            replies = list(pool.map(
                lambda i: chat(srv, [{"role": "user", "content": f"q{i}"}]), range(64)))
        elapsed = time.monotonic() - started
    assert [r.choices[0].message.content for r in replies] == ["ok"] * 64
    assert elapsed < 5.0, f"64 requests at 0.2 s latency took {elapsed:.1f} s"
    assert srv.counters["max_in_flight"] >= 16


def test_tokens_per_s_paces_streams_and_replies(chat):
    reply = "x" * 400  # 100 tokens
    with ScriptedServer(sub=reply, tokens_per_s=500) as srv:
        started = time.monotonic()
        chat(srv, [{"role": "user", "content": "a"}])
        plain = time.monotonic() - started
        started = time.monotonic()
        chunks = list(chat(srv, [{"role": "user", "content": "b"}], stream=True))
        streamed = time.monotonic() - started
    assert plain >= 0.18 and streamed >= 0.18  # 100 tokens at 500 tok/s = 0.2 s
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply


def test_dict_rules_cycle_env_and_latency_function(chat, root_messages):
    latency = {"root": 0.0, "sub": 0.3}
    with ScriptedServer(root=["a", "b"], exhausted="cycle", sub={r"^hi$": "hello"},
                        latency_s=lambda req: latency[req.kind]) as srv:
        roots = [chat(srv, root_messages()).choices[0].message.content for _ in range(3)]
        started = time.monotonic()
        hello = chat(srv, [{"role": "user", "content": "hi"}]).choices[0].message.content
        assert time.monotonic() - started >= 0.3
        assert srv.env() == {"RLM_MODEL": "openai/scripted", "RLM_API_BASE": srv.base_url,
                             "RLM_API_KEY": "scripted"}
    assert roots == ["a", "b", "a"] and hello == "hello"
    assert len(srv.requests.roots()) == 3 and len(srv.requests.subs()) == 1
