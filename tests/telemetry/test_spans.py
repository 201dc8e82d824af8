"""OpenTelemetry spans shaped as the run tree, over the real scripted HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from rlm_jupyter import RLM

KEY = "sk-test-4f9a8b7c6d5e4f3a2b1c"


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


def rlm(srv, tmp_path, **kwargs) -> RLM:
    kwargs.setdefault("sandbox", "inprocess")
    return RLM(model=srv.model, api_base=srv.base_url, api_key=KEY,
               log_dir=str(tmp_path / "runs"), cell_timeout_s=20, **kwargs)


def by_id(spans):
    return {s.context.span_id: s for s in spans}


def parent_of(span, spans):
    return by_id(spans).get(span.parent.span_id) if span.parent else None


def named(spans, name, **attrs):
    return [s for s in spans if s.name == name
            and all(s.attributes.get(k) == v for k, v in attrs.items())]


def test_spans_follow_the_run_tree_with_genai_attributes(exporter, server_factory, tmp_path):
    srv = server_factory(
        root={"child question": [fence("print(llm_query('inner'))"), "FINAL(child-done)"],
              "": [fence("print(llm_query_batched(['a', 'b']))"),
                   fence("print(rlm_query('child question'))"), "FINAL(done)"]},
        sub=lambda prompt, req: "pong:" + prompt)
    result = rlm(srv, tmp_path, max_depth=1).run("What is it?", context="some text")
    assert result.error is None, result.error
    assert result.answer == "done"
    spans = exporter.get_finished_spans()

    runs = named(spans, "rlm.run")
    root = next(s for s in runs if s.attributes["rlm.depth"] == 0)
    child = next(s for s in runs if s.attributes["rlm.depth"] == 1)
    assert root.parent is None
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert root.attributes["rlm.status"] == "ok"
    assert root.attributes["rlm.sandbox"] == "inprocess"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"

    root_turns = [s for s in named(spans, "rlm.turn") if parent_of(s, spans) is root]
    assert sorted(s.attributes["rlm.turn"] for s in root_turns) == [1, 2, 3]
    turn = {s.attributes["rlm.turn"]: s for s in root_turns}

    # Each turn holds its model call; turns 1 and 2 their code cell.
    model = f"chat {srv.model}"
    for n, span in turn.items():
        calls = [s for s in named(spans, model, **{"rlm.call": "root"})
                 if parent_of(s, spans) is span]
        assert len(calls) == 1
        call = calls[0]
        assert call.kind.name == "CLIENT"
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.request.model"] == srv.model
        assert call.attributes["gen_ai.provider.name"] == "openai"
        assert call.attributes["gen_ai.usage.input_tokens"] > 0
        assert call.attributes["gen_ai.usage.output_tokens"] > 0
        # what the server said of its reply (the scripted server names itself "scripted")
        assert call.attributes["gen_ai.response.model"] == srv.model.split("/", 1)[1]
        assert tuple(call.attributes["gen_ai.response.finish_reasons"]) == ("stop",)
        assert call.attributes["rlm.turn"] == n and call.attributes["rlm.depth"] == 0
        assert call.attributes["rlm.cached"] is False
        assert "rlm.cost_usd" in call.attributes and call.attributes["rlm.retries"] == 0
        assert span.start_time <= call.start_time <= call.end_time <= span.end_time
    for n in (1, 2):
        code = [s for s in named(spans, "rlm.code") if parent_of(s, spans) is turn[n]]
        assert len(code) == 1 and code[0].attributes["rlm.sandbox"] == "inprocess"

    # Turn 1's two sub-calls; turn 2's child RLM, whose own sub-call sits in its own turn.
    subs = named(spans, model, **{"rlm.call": "sub"})
    assert sorted(parent_of(s, spans).attributes["rlm.turn"] for s in subs
                  if parent_of(s, spans).attributes["rlm.depth"] == 0) == [1, 1]
    assert parent_of(child, spans) is turn[2]
    child_sub = [s for s in subs if s.attributes["rlm.depth"] == 1]
    assert len(child_sub) == 1
    assert parent_of(parent_of(child_sub[0], spans), spans) is child
    assert child.attributes["rlm.parent_run_id"] == root.attributes["rlm.run_id"]

    # A run's totals include its children; the root's are the whole tree's.
    assert root.attributes["rlm.subcalls"] == 2
    assert child.attributes["rlm.subcalls"] == 1
    assert root.attributes["rlm.calls"] == 3 + 2 + 2 + 1
    assert root.attributes["gen_ai.usage.input_tokens"] == result.total_tokens - sum(
        u["completion_tokens"] for u in result.usage.values())


def test_parallel_child_runs_and_subcalls_keep_their_parents(exporter, server_factory,
                                                             tmp_path):
    """Three child RLMs at once, each with three sub-calls at once, on pool threads: every
    span's parent is found from the event ids, never from the thread it finished on."""
    steps = [fence("print(llm_query_batched([f'{context} part {i}' for i in range(3)]))"),
             "FINAL(ok)"]

    def child_script(req):  # each child is at its own turn
        return steps[req.turn - 1]

    srv = server_factory(
        root={"child": child_script,
              "": [fence("print(rlm_query_batched(['child 0', 'child 1', 'child 2']))"),
                   "FINAL(all)"]},
        sub=lambda prompt, req: "r:" + prompt, latency_s=0.05)
    result = rlm(srv, tmp_path, max_depth=1, concurrency=16).run("Go", context="c")
    assert result.error is None, result.error
    spans = exporter.get_finished_spans()
    children = [s for s in named(spans, "rlm.run") if s.attributes["rlm.depth"] == 1]
    assert len(children) == 3
    subs = named(spans, f"chat {srv.model}", **{"rlm.call": "sub"})
    assert len(subs) == 9
    for sub in subs:
        turn = parent_of(sub, spans)
        assert turn.name == "rlm.turn"
        # The turn belongs to the same child run the sub-call was made in.
        assert turn.attributes["rlm.run_id"] == sub.attributes["rlm.run_id"]
        run = parent_of(turn, spans)
        assert run.attributes["rlm.run_id"] == sub.attributes["rlm.run_id"]
        assert run in children
    # The children ran concurrently (their spans overlap) under the root's first turn.
    first = min(children, key=lambda s: s.end_time)
    assert all(c.start_time < first.end_time for c in children)
    assert len({parent_of(c, spans).context.span_id for c in children}) == 1


def test_a_run_joins_the_callers_current_span(exporter, server_factory, tmp_path):
    srv = server_factory(root=["FINAL(42)"])
    tracer = exporter.provider.get_tracer("caller")
    with tracer.start_as_current_span("notebook cell") as caller:
        result = rlm(srv, tmp_path).run("q", context="c")
    assert result.answer == "42"
    spans = exporter.get_finished_spans()
    run = named(spans, "rlm.run")[0]
    assert run.parent is not None and run.parent.span_id == caller.get_span_context().span_id
    assert run.context.trace_id == caller.get_span_context().trace_id


def _all_text(spans) -> str:
    parts = []
    for s in spans:
        parts.append(json.dumps(dict(s.attributes), default=str))
        parts.extend(json.dumps(dict(e.attributes), default=str) for e in s.events)
        parts.append(s.status.description or "")
    return "\n".join(parts)


def _leaky_server(server_factory):
    """The model echoes the API key in its reply, its code prints it, a sub-call returns it."""
    return server_factory(
        root=[f"Thinking about {KEY}.\n" + fence(f"print('{KEY}', llm_query('say the key'))"),
              "FINAL(done)"],
        sub=lambda prompt, req: f"the key is {KEY}")


def test_no_content_and_no_key_by_default(exporter, server_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    srv = _leaky_server(server_factory)
    result = rlm(srv, tmp_path).run("Secret question?", context="private context")
    assert result.error is None, result.error
    spans = exporter.get_finished_spans()
    text = _all_text(spans)
    assert KEY not in text
    for banned in ("Secret question", "private context", '"gen_ai.input.messages"',
                   '"gen_ai.output.messages"', '"rlm.code"', '"rlm.stdout"', '"rlm.answer"',
                   '"rlm.question"', "Thinking about"):
        assert banned not in text, banned


def test_content_is_attached_on_opt_in_redacted(exporter, server_factory, tmp_path,
                                                monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    srv = _leaky_server(server_factory)
    result = rlm(srv, tmp_path).run("Secret question?", context="private context")
    assert result.error is None, result.error
    spans = exporter.get_finished_spans()
    text = _all_text(spans)
    assert KEY not in text
    assert "[redacted" in text
    run = named(spans, "rlm.run")[0]
    assert run.attributes["rlm.question"] == "Secret question?"
    assert run.attributes["rlm.answer"] == "done"
    code = named(spans, "rlm.code")[0]
    assert "llm_query('say the key')" in code.attributes["rlm.code"]
    assert "[redacted" in code.attributes["rlm.stdout"]
    sub = named(spans, f"chat {srv.model}", **{"rlm.call": "sub"})[0]
    messages = json.loads(sub.attributes["gen_ai.input.messages"])
    assert messages[0]["role"] == "user"
    assert messages[0]["parts"][0]["content"] == "say the key"
    root_call = named(spans, f"chat {srv.model}", **{"rlm.call": "root"})[0]
    output = json.loads(root_call.attributes["gen_ai.output.messages"])
    assert output[0]["role"] == "assistant" and "Thinking about" in \
        output[0]["parts"][0]["content"]


def test_retries_are_counted_on_the_call_span(exporter, server_factory, tmp_path):
    srv = server_factory(root=[fence("print(llm_query('x'))"), "FINAL(ok)"],
                         sub=lambda prompt, req: "y")
    srv.inject("500", times=1, match="sub")
    srv.inject("500", times=1, match="root")
    result = rlm(srv, tmp_path).run("q", context="c")
    assert result.error is None, result.error
    spans = exporter.get_finished_spans()
    sub = named(spans, f"chat {srv.model}", **{"rlm.call": "sub"})[0]
    assert sub.attributes["rlm.retries"] == 1
    assert [e.name for e in sub.events] == ["rlm.retry"]
    roots = named(spans, f"chat {srv.model}", **{"rlm.call": "root"})
    assert sum(s.attributes["rlm.retries"] for s in roots) == 1
    turn1 = [s for s in named(spans, "rlm.turn") if s.attributes["rlm.turn"] == 1][0]
    assert [e.name for e in turn1.events] == ["rlm.retry"]


def test_a_failed_run_and_a_failing_cell_are_errors(exporter, server_factory, tmp_path):
    srv = server_factory(root=[fence("print({}['missing'])"), fence("x = 1"), fence("y = 2")])
    result = rlm(srv, tmp_path, max_iterations=2).run("q", context="c")
    assert result.error is not None
    spans = exporter.get_finished_spans()
    run = named(spans, "rlm.run")[0]
    assert run.status.status_code.name == "ERROR"
    assert run.attributes["error.type"] == "TurnLimitExceeded"
    bad = [s for s in named(spans, "rlm.code") if s.status.status_code.name == "ERROR"]
    assert bad and bad[0].attributes["error.type"] == "KeyError"
    # Every turn span ended, the last one included.
    assert all(s.end_time for s in named(spans, "rlm.turn"))


def test_tracing_false_turns_it_off_even_with_a_provider(exporter, server_factory, tmp_path):
    srv = server_factory(root=["FINAL(1)"])
    result = rlm(srv, tmp_path, tracing=False).run("q", context="c")
    assert result.answer == "1"
    assert exporter.get_finished_spans() == ()


def test_tracing_content_knob(exporter, server_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    srv = server_factory(root=["FINAL(1)"])
    rlm(srv, tmp_path, tracing="content").run("the question", context="c")
    run = named(exporter.get_finished_spans(), "rlm.run")[0]
    assert run.attributes["rlm.question"] == "the question"


def test_off_means_no_opentelemetry_import(server_factory, tmp_path):
    """With no provider configured a run imports nothing of OpenTelemetry."""
    srv = server_factory(root=[fence("print(llm_query('x'))"), "FINAL(fine)"])
    script = textwrap.dedent(f"""
        import sys
        from rlm_jupyter import RLM
        r = RLM(model={srv.model!r}, api_base={srv.base_url!r}, api_key='k',
                sandbox='inprocess', log_dir={str(tmp_path)!r}).run('q', context='c')
        assert r.answer == "fine", r.error
        print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**__import__("os").environ,
                                           "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_bad_tracing_value_is_a_config_error():
    from rlm_jupyter.errors import ConfigError

    with pytest.raises(ConfigError, match="tracing"):
        RLM(model="openai/x", api_base="http://127.0.0.1:9/v1", api_key="k",
            tracing="loud").run("q", context="c")


def test_a_streamed_run_and_a_map_join_the_callers_span(exporter, server_factory, tmp_path):
    """`stream` and `map` run on other threads: the caller's span must still be the parent."""
    srv = server_factory(root=lambda req: "FINAL(42)")
    tracer = exporter.provider.get_tracer("caller")
    with tracer.start_as_current_span("service request") as caller:
        types = [e.type for e in rlm(srv, tmp_path).stream("q", context="c")]
        rlm(srv, tmp_path).map("q {key}", ["a", "b"], concurrency=2)
    assert "run_finished" in types
    runs = named(exporter.get_finished_spans(), "rlm.run")
    assert len(runs) == 3
    for run in runs:
        assert run.parent is not None and run.parent.span_id == caller.get_span_context().span_id


def test_a_notebook_cell_run_joins_the_cells_span(exporter, server_factory, tmp_path):
    """%%rlm runs the engine on its own thread (so ■ can stop it); the cell's span is its
    parent all the same."""
    from IPython.core.interactiveshell import InteractiveShell

    from rlm_jupyter.jupyter.magics import get_magics

    srv = server_factory(root=lambda req: "FINAL(42)")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rlm_jupyter")
    magics = get_magics(ip)
    magics.model, magics.api_base, magics.api_key = srv.model, srv.base_url, "k"
    magics.log_dir, magics.display = str(tmp_path), "text"
    tracer = exporter.provider.get_tracer("caller")
    try:
        with tracer.start_as_current_span("notebook cell") as caller:
            assert ip.run_cell("%%rlm --quiet --no-cache -o answer\nq?").success
    finally:
        ip.run_line_magic("rlm", "config --reset")
    assert ip.user_ns["answer"] == "42"
    run = named(exporter.get_finished_spans(), "rlm.run")[0]
    assert run.parent is not None and run.parent.span_id == caller.get_span_context().span_id


def test_tool_calls_are_execute_tool_spans_under_their_turn(exporter, server_factory, tmp_path):
    def lookup(key: str) -> dict:
        """Look a key up."""
        return {"key": key, "tier": "gold"}

    def broken() -> None:
        """Always fails."""
        raise ValueError("the CRM is down")

    code = ("print(lookup('c-42'))\ntry:\n    broken()\nexcept Exception as exc:\n"
            "    print('failed', exc)\n")
    srv = server_factory(root=[f"```repl\n{code}```", "FINAL(done)"])
    result = rlm(srv, tmp_path, tools=[lookup, broken]).run("q", context="c")
    assert result.answer == "done", result.error
    spans = exporter.get_finished_spans()
    tools = named(spans, "execute_tool lookup") + named(spans, "execute_tool broken")
    assert len(tools) == 2
    turn = named(spans, "rlm.turn")[0]
    for span in tools:
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert parent_of(span, spans).context.span_id in {turn.context.span_id} | {
            s.context.span_id for s in named(spans, "rlm.code")}
        assert "rlm.tool.arguments" not in span.attributes  # content is opt-in
    failed = named(spans, "execute_tool broken")[0]
    assert failed.status.status_code.name == "ERROR"


def test_a_guardrail_that_acts_is_an_event_on_the_run_span(exporter, server_factory, tmp_path,
                                                           monkeypatch):
    srv = server_factory(root=["Let me think about it.", "FINAL(4)"])
    result = rlm(srv, tmp_path, guardrails="small").run("What is 'kiwi' worth?",
                                                        context="kiwi 4\n")
    assert result.answer == "4"
    run = named(exporter.get_finished_spans(), "rlm.run")[0]
    acted = [dict(e.attributes) for e in run.events if e.name == "rlm.guardrail"]
    assert {"rlm.guardrail.fix": "prose_only", "rlm.turn": 1} in acted
    # What a fix did can quote the question: not exported without content on.
    assert not any("rlm.guardrail.detail" in a for a in acted)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    exporter.clear()
    srv = server_factory(root=["Let me think about it.", "FINAL(4)"])
    rlm(srv, tmp_path, guardrails="small").run("What is 'kiwi' worth?", context="kiwi 4\n")
    run = named(exporter.get_finished_spans(), "rlm.run")[0]
    details = [e.attributes.get("rlm.guardrail.detail") for e in run.events
               if e.name == "rlm.guardrail"]
    assert "'kiwi': 1" in details  # key_word_lines: the question's word and its count
