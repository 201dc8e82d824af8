"""End-to-end runs over real HTTP against the scripted server."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from rlm_jupyter import errors
from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.trajectory import read_trajectory

NEEDLE_RE = re.compile(r"secret number for project KIWI is (\d+)")


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


def last_user(req) -> str:
    users = [m for m in req.messages if m["role"] == "user"]
    return users[-1]["content"] if users else ""


def haystack(size: int = 5_000_000) -> str:
    line = "The weather report for the harbour says calm seas and light wind today.\n"
    body = line * (size // len(line))
    cut = int(len(body) * 0.71)
    cut = body.rfind("\n", 0, cut) + 1
    return body[:cut] + "The secret number for project KIWI is 88123.\n" + body[cut:]


def needle_sub(prompt: str, req) -> str:
    match = NEEDLE_RE.search(prompt)
    return match.group(1) if match else "NONE"


def test_needle_in_5mb_context_with_batched_subcalls(server_factory, rlm_for):
    turns = [
        fence("print('chars', len(context))\nprint(context[:80])"),
        "Let me split it.\n" + fence(
            "size = 500_000\n"
            "chunks = [context[i:i + size] for i in range(0, len(context), size)]\n"
            "answers = llm_query_batched([\n"
            "    f'Find the secret number for project KIWI; reply NONE if absent.\\n{c}'\n"
            "    for c in chunks])\n"
            "found = [a for a in answers if a != 'NONE']\n"
            "print(len(chunks), found)"),
        fence("result = found[0]") + "\nFINAL_VAR(result)",
    ]
    srv = server_factory(root=turns, sub=needle_sub)
    context = haystack()
    assert len(context) >= 5_000_000
    result = rlm_for(srv).run("What is the secret number for project KIWI?", context=context)
    assert result.error is None, result.error
    assert result.answer == "88123"
    root = result.trajectory
    assert [t.turn for t in root.turns] == [1, 2, 3]
    assert "chars 5000" in root.turns[0].code[0].stdout
    chunks = -(-len(context) // 500_000)
    assert len(root.turns[1].subcalls) == chunks
    assert all(s.finished for s in root.turns[1].subcalls)
    usage = result.usage[srv.model]
    assert usage["calls"] == 3 + chunks
    assert usage["prompt_tokens"] > 1_000_000  # the chunks really crossed to the model
    # The root model never saw the context: each root request is small.
    root_requests = [r for r in srv.requests if any(m["role"] == "system" for m in r.messages)]
    assert root_requests and all(
        sum(len(m["content"]) for m in r.messages) < 20_000 for r in root_requests)


def test_output_is_capped_with_a_note(server_factory, rlm_for):
    srv = server_factory(root=[fence("print('x' * 500_000)"), "FINAL(done)"])
    result = rlm_for(srv).run("q", context="abc")
    root_reqs = [r for r in srv.requests if any(m["role"] == "system" for m in r.messages)]
    feedback = last_user(root_reqs[1])
    assert len(feedback) < 60_000
    assert re.search(r"(truncat|cut|omitted)", feedback, re.I)
    # Exactly the cap (output_chars, 20,000 by default) reaches the model, and the note says
    # how much was cut (500,000 x's and the newline) and what the limit is.
    assert "x" * 20_000 in feedback and "x" * 20_001 not in feedback
    assert "output truncated: 480001 more characters were not shown (limit 20000)" in feedback
    assert result.trajectory.turns[0].code[0].stdout == "x" * 20_000
    assert result.answer == "done"


def test_depth_two_recursion_shares_one_budget(server_factory, rlm_for):
    def root(req):
        q = req.question
        if "GRANDCHILD" in q:
            return fence("x = llm_query('say hi')\nFINAL('gc:' + x)")
        if "CHILD" in q:
            if req.turn == 1:
                return fence("r2 = rlm_query('GRANDCHILD task', context='gc context')\nprint(r2)")
            return fence("FINAL('child:' + r2)")
        if req.turn == 1:
            return fence("r = rlm_query('CHILD task', context='child context')\nprint(r)")
        return fence("FINAL('root:' + r)")

    srv = server_factory(root=root, sub=lambda prompt, req: "hi")
    result = rlm_for(srv, max_depth=2).run("TOP question", context="top context")
    assert result.error is None, result.error
    assert result.answer == "root:child:gc:hi"
    tree = result.trajectory
    assert [r.depth for r in tree.walk()] == [0, 1, 2]
    child = tree.children[0]
    assert child.question == "CHILD task" and child.children[0].question == "GRANDCHILD task"
    assert tree.turns[0].children == [child]
    # One budget: the root's usage counts every call of every level (2 + 2 + 1 root calls, 1 sub).
    assert result.usage[srv.model]["calls"] == 6

    # The same tree with max_subcalls=2 is refused at the grandchild's llm_query (3rd sub-call).
    srv2 = server_factory(root=root, sub=lambda prompt, req: "hi")
    limited = rlm_for(srv2, max_depth=2, max_subcalls=2).run("TOP question", context="x")
    assert isinstance(limited.error, errors.SubcallLimitExceeded)
    assert not any("say hi" in last_user(r) for r in srv2.requests)


def test_beyond_max_depth_rlm_query_is_a_plain_call(server_factory, rlm_for):
    srv = server_factory(root=[fence("r = rlm_query('inner question')\nFINAL(r)")],
                         sub=lambda prompt, req: "plain:" + prompt)
    result = rlm_for(srv, max_depth=0).run("q", context="c")
    assert result.answer == "plain:inner question"
    assert result.trajectory.children == []


@pytest.mark.parametrize("reply,expected", [
    ("I have it.\nFINAL(forty two)\nthanks", "forty two"),
    (fence("res = 'abc' * 2") + "\nFINAL_VAR(res)", "abcabc"),
    (fence("FINAL(6 * 7)"), "42"),
    (fence("v = [1, 2]\nFINAL_VAR('v')"), "[1, 2]"),
    (fence("answer['content'] = 'done'\nanswer['ready'] = True"), "done"),
    ("```python\nFINAL('py fence')\n```", "py fence"),
    ("x = 'no opening fence'\nFINAL_VAR('x')\n```", "no opening fence"),
], ids=["final-text", "final-var-text", "final-code", "final-var-code", "answer-dict",
        "python-fence", "missing-open-fence"])
def test_every_finishing_style(server_factory, rlm_for, reply, expected):
    srv = server_factory(root=[reply])
    result = rlm_for(srv).run("q", context="c")
    assert result.error is None, result.error
    assert result.answer == expected


def test_final_var_of_missing_name_is_fed_back_not_an_answer(server_factory, rlm_for):
    srv = server_factory(root=["FINAL_VAR(nope)", "FINAL(recovered)"])
    result = rlm_for(srv).run("q", context="c")
    assert result.answer == "recovered"
    second = [r for r in srv.requests if any(m["role"] == "system" for m in r.messages)][1]
    assert "no variable named 'nope'" in last_user(second)


def test_reply_without_code_or_final_gets_a_corrective_message(server_factory, rlm_for):
    srv = server_factory(root=["I am thinking about it.", "FINAL(ok)"])
    result = rlm_for(srv).run("q", context="c")
    assert result.answer == "ok"
    second = [r for r in srv.requests if any(m["role"] == "system" for m in r.messages)][1]
    assert "no ```repl block" in last_user(second)
    # The prose is not kept: small models write the output they expect and answer from it.
    assert "thinking" not in str(second.messages)


def test_turn_limit_asks_once_for_the_best_answer(server_factory, rlm_for):
    def root(req):
        if "out of turns" in last_user(req):
            return "FINAL(best guess)"
        return fence("answer['content'] = 'partial'\nprint('working')")

    srv = server_factory(root=root)
    result = rlm_for(srv, max_iterations=2).run("q", context="c")
    assert isinstance(result.error, errors.TurnLimitExceeded)
    assert result.answer == "best guess"
    assert result.error.partial_answer == "best guess"
    assert result.error.trajectory is result.trajectory
    assert len(result.trajectory.turns) == 3
    assert result.status == "error"


def test_subcall_budget_refuses_before_sending(server_factory, rlm_for):
    srv = server_factory(root=[fence(
        "answer['content'] = 'partial work'\n"
        "r = llm_query_batched(['a', 'b', 'c', 'd', 'e'])\nprint(r)"), "FINAL(never)"])
    result = rlm_for(srv, max_subcalls=3, concurrency=1).run("q", context="c")
    assert isinstance(result.error, errors.SubcallLimitExceeded)
    assert result.answer == "partial work"
    sub_requests = [r for r in srv.requests if not any(m["role"] == "system" for m in r.messages)]
    assert len(sub_requests) == 3
    types = [e.type for e in result.events]
    assert "budget_exceeded" in types and types[-1] == "run_finished"


def test_token_budget(server_factory, rlm_for):
    srv = server_factory(root=lambda req: fence("print('y' * 3000)"))
    result = rlm_for(srv, max_total_tokens=3000, max_iterations=30).run("q", context="c")
    assert isinstance(result.error, errors.TokenLimitExceeded)
    root_requests = [r for r in srv.requests if any(m["role"] == "system" for m in r.messages)]
    assert 1 <= len(root_requests) < 30
    # The call that would break the budget was refused before it was sent: every request
    # the server saw was charged, the tokens spent stay within the budget, and the refused
    # call (what was spent plus its estimated prompt) is what would have crossed it.
    usage = result.usage[srv.model]
    assert len(srv.requests) == usage["calls"] == len(root_requests)
    assert usage["total_tokens"] <= 3000 < result.error.used
    assert result.error.allowed == 3000
    exceeded = [e for e in result.events if isinstance(e, ev.BudgetExceededEvent)]
    assert [(e.limit, e.allowed) for e in exceeded] == [("tokens", 3000)]


def test_usd_budget_with_registered_prices(server_factory, tmp_path):
    from rlm_jupyter.engine.llm import get_litellm

    litellm = get_litellm()
    from rlm_jupyter import RLM

    srv = server_factory(root=lambda req: fence("print('step')"))
    name = "scripted-priced-test-model"  # a name of its own: litellm keeps registered prices
    litellm.register_model({name: {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002,
                                   "litellm_provider": "openai", "mode": "chat"}})
    result = RLM(model=f"openai/{name}", api_base=srv.base_url, api_key="k",
                 budget_usd=1.0, max_iterations=10, log_dir=str(tmp_path)).run("q", context="c")
    assert isinstance(result.error, errors.CostLimitExceeded), result.error
    assert 1.0 <= result.cost_usd < 3.0
    assert not any("No price" in n for n in result.notes)
    # The registered prices were used, per call and in total...
    usage = result.usage[f"openai/{name}"]
    assert result.cost_usd == pytest.approx(
        0.001 * usage["prompt_tokens"] + 0.002 * usage["completion_tokens"])
    costs = [e.cost_usd for e in result.events if isinstance(e, ev.ModelResponse)]
    assert costs and all(c > 0 for c in costs)
    # ...and the run stopped at the first call after the budget was spent: the calls before
    # the last one were under it, and the refused call never reached the server.
    assert sum(costs[:-1]) < 1.0 <= sum(costs) == pytest.approx(result.cost_usd)
    assert len(srv.requests) == usage["calls"] == len(costs)
    assert result.error.allowed == 1.0 and result.error.used == pytest.approx(result.cost_usd)


def test_unpriced_models_cost_zero_with_a_note(server_factory, rlm_for):
    srv = server_factory(root=["FINAL(x)"])
    result = rlm_for(srv).run("q", context="c")
    assert result.cost_usd == 0.0
    assert any("No price known" in n for n in result.notes)


def test_time_budget(server_factory, rlm_for):
    srv = server_factory(root=lambda req: fence("print('tick')"))
    srv.inject("slow", times=10, delay_s=0.8)
    started = time.monotonic()
    result = rlm_for(srv, timeout_s=1.5, max_iterations=10).run("q", context="c")
    assert isinstance(result.error, errors.TimeLimitExceeded)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("fault", ["429", "500", "malformed", "disconnect"])
def test_recovers_after_injected_faults(server_factory, rlm_for, fault):
    script = [fence("print(llm_query('ping'))"), "FINAL(fine)"]
    srv = server_factory(root=lambda req: script[req.turn - 1], sub=lambda prompt, req: "pong")
    srv.inject(fault, times=2)
    result = rlm_for(srv).run("q", context="c")
    assert result.error is None, result.error
    assert result.answer == "fine"
    assert len(srv.requests) >= 5  # two failures were retried


def test_persistent_failure_ends_with_llm_error(server_factory, rlm_for):
    srv = server_factory(root=["FINAL(x)"])
    srv.inject("500", times=100)
    result = rlm_for(srv, num_retries=1).run("q", context="c")
    assert isinstance(result.error, errors.LLMCallError)
    assert result.status == "error"


def test_failed_batch_item_becomes_error_string(server_factory, rlm_for):
    def sub(prompt, req):
        return "ok:" + prompt

    srv = server_factory(root=[fence(
        "r = llm_query_batched(['a', 'boom-item', 'c'])\nprint(r)"), "FINAL(done)"], sub=sub)
    srv.inject("500", times=100, match="boom-item")
    result = rlm_for(srv, num_retries=0).run("q", context="c")
    out = result.trajectory.turns[0].code[0].stdout
    assert "ok:a" in out and "ok:c" in out and "Error" in out
    assert result.answer == "done"


def test_jsonl_log_reads_back_into_the_same_tree(server_factory, rlm_for):
    def root(req):
        if "CHILD" in req.question:
            return fence("FINAL(llm_query('inner'))")
        return [fence("r = rlm_query('CHILD q', context='ctx')\nprint(r)"),
                fence("print(llm_query_batched(['p1', 'p2']))"), "FINAL(all done)"][req.turn - 1]

    srv = server_factory(root=root, sub=lambda prompt, req: "sub-answer")
    result = rlm_for(srv).run("main question", context="main context")
    assert result.answer == "all done"
    lines = result.log_path.read_text().splitlines()
    assert all(json.loads(line)["type"] for line in lines)
    assert "scripted-key-123" not in result.log_path.read_text()
    rebuilt = read_trajectory(result.log_path)
    assert rebuilt.to_dict() == result.trajectory.to_dict()
    # A crash mid-write leaves a valid prefix that still reads back.
    broken = result.log_path.with_name("broken.jsonl")
    text = result.log_path.read_text()
    broken.write_text(text[: len(text) // 2])
    partial = read_trajectory(broken)
    assert partial.run_id == result.run_id


def test_infinite_loop_is_killed_and_next_cell_works(server_factory, rlm_for):
    srv = server_factory(root=[fence("keep = 1\nwhile True:\n    pass"),
                               fence("print('alive')"), "FINAL(done)"])
    started = time.monotonic()
    result = rlm_for(srv, cell_timeout_s=2).run("q", context="c")
    assert time.monotonic() - started < 30
    first, second = result.trajectory.turns[0].code[0], result.trajectory.turns[1].code[0]
    assert first.timed_out
    assert second.error is None and "alive" in second.stdout
    root_reqs = [r for r in srv.requests if any(m["role"] == "system" for m in r.messages)]
    assert re.search(r"(time limit|timed out|timeout)", last_user(root_reqs[1]), re.I)
    assert result.answer == "done"


def test_streaming_emits_chunks_and_events_form_a_tree(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(llm_query('x'))"), "FINAL(streamed answer)"],
                         sub=lambda p, r: "y")
    seen: list[ev.Event] = []
    result = rlm_for(srv, stream=True).run("q", context="c", on_event=seen.append)
    chunks = [e for e in seen if isinstance(e, ev.ModelChunk)]
    assert chunks and "".join(c.delta for c in chunks if c.turn == 2) == "FINAL(streamed answer)"
    started = next(e for e in seen if isinstance(e, ev.SubCallStarted))
    finished = next(e for e in seen if isinstance(e, ev.SubCallFinished))
    turn1 = next(e for e in seen if isinstance(e, ev.TurnStarted) and e.turn == 1)
    assert started.span_id == finished.span_id and started.parent_span_id == turn1.span_id
    assert result.usage[srv.model]["prompt_tokens"] > 0


def test_stream_api_yields_events_then_result(server_factory, rlm_for):
    srv = server_factory(root=["FINAL(yes)"])
    rlm = rlm_for(srv)
    types = [e.type for e in rlm.stream("q", context="c")]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert rlm.last_result.answer == "yes"


def test_arun_inside_a_running_event_loop(server_factory, rlm_for):
    import asyncio

    srv = server_factory(root="FINAL(async ok)")
    rlm = rlm_for(srv)

    async def main():
        sync_result = rlm.run("q", context="c")  # blocking run inside a running loop
        async_result = await rlm.arun("q", context="c")
        return sync_result, async_result

    a, b = asyncio.run(main())
    assert a.answer == b.answer == "async ok"


def test_cache_replays_without_calling_the_model(server_factory, rlm_for, tmp_path):
    script = [fence("print(llm_query_batched(['a', 'b']))"), "FINAL(cached answer)"]
    srv = server_factory(root=lambda req: script[req.turn - 1], sub=lambda p, r: "s")
    rlm = rlm_for(srv, temperature=0, cache_dir=str(tmp_path / "cache"))
    first = rlm.run("q", context="c")
    calls = len(srv.requests)
    second = rlm.run("q", context="c")
    assert second.answer == first.answer == "cached answer"
    assert len(srv.requests) == calls
    assert second.cost_usd == 0.0
    assert all(s.cached for s in second.trajectory.all_subcalls())
    assert second.usage[srv.model]["cached_calls"] == 4
    uncached = rlm_for(srv, temperature=0, cache=False, cache_dir=str(tmp_path / "cache"))
    uncached.run("q", context="c")
    assert len(srv.requests) == 2 * calls


def test_cancel_stops_a_running_cell(server_factory, rlm_for):
    srv = server_factory(root=[fence("while True:\n    pass"), "FINAL(never)"])
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    started = time.monotonic()
    result = rlm_for(srv, cell_timeout_s=60).run("q", context="c", cancel=cancel)
    assert time.monotonic() - started < 10
    assert result.status == "cancelled"
    assert isinstance(result.error, errors.RunCancelled)
    assert result.trajectory is not None


def test_extra_kwargs_pass_through_to_the_provider(server_factory, rlm_for):
    srv = server_factory(root=["FINAL(x)"])
    rlm_for(srv, temperature=0.3, cache=False).run("q", context="c")
    assert srv.requests[0].body.get("temperature") == 0.3


@pytest.mark.parametrize("context", [
    ["alpha", "beta", "gamma"],
    {"sales": "a,b\n1,2", "notes": ["x", "y"]},
], ids=["list", "named-contexts"])
def test_context_types(server_factory, rlm_for, context):
    srv = server_factory(root=[fence("kind = 'list' if isinstance(context, list) else 'dict'\nFINAL(kind + ':' + str(len(context)))")])
    result = rlm_for(srv).run("q", context=context)
    assert result.answer == f"{type(context).__name__}:{len(context)}"
    first_user = [m for m in srv.requests[0].messages if m["role"] == "user"][0]["content"]
    assert type(context).__name__ in first_user


def test_dataframe_context(server_factory, rlm_for):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"customer": ["a", "b", "c"], "churned": [True, False, True]})
    srv = server_factory(root=[fence("FINAL(int(context['churned'].sum()))")])
    result = rlm_for(srv).run("How many churned?", context=df)
    assert result.answer == "2"
    first_user = [m for m in srv.requests[0].messages if m["role"] == "user"][0]["content"]
    assert "DataFrame with 3 rows" in first_user and "churned" in first_user


def test_no_model_configured_is_a_clear_error():
    from rlm_jupyter import RLM

    with pytest.raises(errors.ConfigError, match="RLM_MODEL"):
        RLM().run("q", context="c")


def test_environment_supplies_defaults(monkeypatch, server_factory, tmp_path):
    from rlm_jupyter import RLM

    srv = server_factory(root=["FINAL(from env)"])
    monkeypatch.setenv("RLM_MODEL", srv.model)
    monkeypatch.setenv("RLM_API_BASE", srv.base_url)
    monkeypatch.setenv("RLM_API_KEY", "k")
    monkeypatch.setenv("RLM_LOG_DIR", str(tmp_path / "envlogs"))
    result = RLM().run("q", context="c")
    assert result.answer == "from env"
    assert str(result.log_path).startswith(str(tmp_path / "envlogs"))


def test_api_key_never_enters_the_sandbox(server_factory, rlm_for, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-should-not-leak")
    srv = server_factory(root=[fence(
        "seen = []\n"
        "for name in ['os', 'sys', 'subprocess']:\n"
        "    try:\n"
        "        m = __import__(name)\n"
        "        seen.append(name)\n"
        "    except Exception as e:\n"
        "        seen.append('blocked')\n"
        "print(seen)"), "FINAL(done)"])
    result = rlm_for(srv).run("q", context="c")
    dump = json.dumps([e.to_dict() for e in result.events])
    assert "sk-canary-should-not-leak" not in dump
    assert "scripted-key-123" not in dump


def test_final_text_beside_unseen_code_output_is_not_taken(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(41 + 1)") + "\nOutput: 42\nFINAL(a guess)",
                               "FINAL(42)"])
    result = rlm_for(srv).run("q", context="c")
    assert result.answer == "42"
    second = srv.requests.roots()[1]
    assert "FINAL(...) was ignored" in last_user(second)
    assert "Question: q" in last_user(second)  # the question is restated for small models


def test_a_repeated_reply_is_not_run_again_and_the_next_call_is_less_greedy(
        server_factory, rlm_for):
    srv = server_factory(root=[fence("print('same')")] * 3 + ["FINAL(done)", fence("print(1)")])
    result = rlm_for(srv, temperature=0).run("q", context="c")
    assert result.answer == "done"
    roots = srv.requests.roots()
    # The repeats are logged as not run, and left out of the history the model sees next...
    ran = [c for turn in result.trajectory.turns for c in turn.code]
    assert [c.stdout.strip() for c in ran] == ["same", "", ""]
    assert "already ran" in (ran[1].error or "")
    assert roots[3].messages == roots[2].messages
    assert roots[2].messages[:-1] == roots[1].messages[:-1]
    # ...which says so once, naming what to search for...
    nudge = "only repeated code that already ran"
    assert nudge not in last_user(roots[1])
    assert last_user(roots[2]).count(nudge) == 1 and last_user(roots[3]).count(nudge) == 1
    # ...and is sampled less greedily after each repeat in a row.
    assert [r.body.get("temperature") for r in roots] == [0, 0, 0.7, 1.0]


def test_the_first_message_shows_where_the_questions_key_words_occur(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(len(context))")] * 2 + ["FINAL(7)"])
    context = "filler line\n" * 40 + "the magic number for misty-glacier is 7\n" + "end\n" * 9
    rlm_for(srv).run("What is the magic number for misty-glacier in 'the log'?", context=context)
    roots = srv.requests.roots()
    first = [m for m in roots[0].messages if m["role"] == "user"][0]["content"]
    assert ('"misty-glacier" occurs 1 times in `context`. The first lines that contain it '
            '(a sample):\n    the magic number for misty-glacier is 7') in first
    assert '"the log" does not occur in `context`' in first
    assert first.count("filler line") <= 5  # still only a preview of the rest
    # A repeat is answered with a note naming what to search for.
    assert 'lines of `context` that contain "the log"' in last_user(roots[2])


def test_key_words_of_a_question():
    from rlm_jupyter.engine.prompts import key_terms

    assert key_terms("What is the number for misty-glacier?") == ["misty-glacier"]
    assert key_terms("How many records of user 3734 say 'feature request'?") == \
        ["feature request", "3734"]
    assert key_terms("Which customers churned after the March price change?") == ["March"]
    assert key_terms("How often does \u201cred fox\u201d appear?") == ["red fox"]
    assert key_terms("which label is most frequent?") == []


def test_what_the_model_wrote_after_its_code_is_left_out_of_the_history(
        server_factory, rlm_for):
    srv = server_factory(root=[fence("print(3056556)") + "\n\nThe number is 8375.",
                               "FINAL(3056556)"])
    result = rlm_for(srv).run("q", context="c")
    assert result.answer == "3056556"
    history = srv.requests.roots()[1].messages
    assert history[-2] == {"role": "assistant", "content": fence("print(3056556)")}
    assert "8375" not in str(history)
    assert "8375" in result.trajectory.turns[0].text  # the log keeps the reply as sent


def test_a_block_that_rebinds_context_is_refused(server_factory, rlm_for):
    srv = server_factory(root=[fence('context = """line 1\nline 2"""\nprint(len(context))'),
                               fence("print(len(context))"), "FINAL(done)"])
    result = rlm_for(srv).run("q", context="x" * 5000)
    assert result.answer == "done"
    roots = srv.requests.roots()
    assert "not run" in last_user(roots[1]) and "`context`" in last_user(roots[1])
    assert "5000" in last_user(roots[2])  # the real context is still there


def test_a_literal_final_block_beside_code_waits_for_the_output(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(6 * 9)") + "\n" + fence("FINAL(2)"), "FINAL(54)"])
    result = rlm_for(srv).run("q", context="c")
    assert result.answer == "54"
    assert "FINAL(...) was ignored" in last_user(srv.requests.roots()[1])


def test_an_error_asks_the_model_to_look_at_the_data(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(context.split('=')[5])"), "FINAL(done)"])
    rlm_for(srv).run("q", context="a: 1")
    feedback = last_user(srv.requests.roots()[1])
    assert "IndexError" in feedback and "exact format" in feedback


def test_out_of_turns_final_written_as_code_is_run(server_factory, rlm_for):
    srv = server_factory(root=[fence("total = 6 * 9\nprint('working')"),
                               fence("FINAL(str(total))")])
    result = rlm_for(srv, max_iterations=1).run("q", context="c")
    assert result.answer == "54"
    assert isinstance(result.error, errors.TurnLimitExceeded)


def test_string_context_preview_is_plain_lines(server_factory, rlm_for):
    srv = server_factory(root=["FINAL(ok)"])
    rlm_for(srv).run("q", context="alpha: 1\nbeta: 2\n" + "gamma\n" * 100)
    first_user = [m for m in srv.requests.roots()[0].messages if m["role"] == "user"][0]
    assert "    alpha: 1\n    beta: 2" in first_user["content"]
    assert "\\n" not in first_user["content"]


def test_cancel_abandons_calls_in_flight(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(llm_query_batched(['a', 'b', 'c']))"), "FINAL(x)"],
                         sub=lambda p, r: "slow")
    srv.inject("slow", times=3, delay_s=20, match="sub")
    cancel = threading.Event()
    cancelled_at: list[float] = []

    def cancel_when_all_subcalls_are_in_flight() -> None:
        # Not a fixed timer: a cold litellm import alone can take longer than one, and the
        # run would then be cancelled before any call was made.
        deadline = time.monotonic() + 60
        while len(srv.requests.subs()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        cancelled_at.append(time.monotonic())
        cancel.set()

    threading.Thread(target=cancel_when_all_subcalls_are_in_flight, daemon=True).start()
    result = rlm_for(srv).run("q", context="c", cancel=cancel)
    assert len(srv.requests.subs()) == 3  # the three sub-calls were sent and held (20 s each)
    assert time.monotonic() - cancelled_at[0] < 6  # abandoned, not waited for
    assert result.status == "cancelled"
    assert result.answer is None and len(srv.requests.roots()) == 1  # no second turn
    code = result.trajectory.turns[0].code
    assert code and "Cancelled" in (code[0].error or "")
    subcalls = result.trajectory.turns[0].subcalls
    assert len(subcalls) == 3 and all("cancelled" in (s.error or "") for s in subcalls)


@pytest.mark.parametrize("reply", ["FINAL(<the answer>)", "FINAL(your answer)",
                                   fence("FINAL('<answer>')")])
def test_placeholder_final_is_refused(server_factory, rlm_for, reply):
    srv = server_factory(root=[reply, "FINAL(real)"])
    result = rlm_for(srv).run("q", context="c")
    assert result.answer == "real"
    assert "placeholder" in last_user(srv.requests.roots()[1])


def test_invented_number_is_checked_against_the_outputs_once(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(24)"), "FINAL(2)", "FINAL(2)"])
    result = rlm_for(srv).run("q", context="c")
    assert result.answer == "2"  # refused once, accepted when the model insists
    assert "does not appear in any output" in last_user(srv.requests.roots()[2])
    grounded = server_factory(root=[fence("print('total:', 24)"), "FINAL(24)"])
    assert rlm_for(grounded).run("q", context="c").answer == "24"


def test_a_short_llm_query_over_a_large_context_gets_a_note(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(llm_query('What is the magic number?'))"),
                               fence("print(llm_query('Find it in: ' + context[:500]))"),
                               "FINAL(done)"], sub=lambda p, r: "12")
    rlm_for(srv).run("q", context="filler line\n" * 2000)
    roots = srv.requests.roots()
    assert "llm_query saw only the short prompt" in last_user(roots[1])
    assert "llm_query saw only the short prompt" not in last_user(roots[2])


def test_first_message_for_a_dataframe_asks_for_structure(server_factory, rlm_for):
    pd = pytest.importorskip("pandas")
    srv = server_factory(root=["FINAL(ok)"])
    rlm_for(srv).run("q", context=pd.DataFrame({"a": [1, 2]}))
    first_user = [m for m in srv.requests.roots()[0].messages if m["role"] == "user"][0]
    assert "structure of `context`" in first_user["content"]
    assert "key words" not in first_user["content"]


def test_a_missing_import_gets_the_exact_statement(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(Counter('aab').most_common(1))"),
                               fence("from collections import Counter\n"
                                     "print(Counter('aab').most_common(1))"), "FINAL(a)"])
    result = rlm_for(srv).run("q", context="c")
    assert result.answer == "a"
    feedback = last_user(srv.requests.roots()[1])
    assert "put `from collections import Counter` at the top of the block" in feedback


def test_a_last_reply_that_echoes_our_error_is_no_answer(server_factory, rlm_for):
    echo = ("Error:\nTraceback (most recent call last):\n  line 1\nNameError: name 'x' is not "
            "defined\n\nQuestion: q")
    srv = server_factory(root=[fence("print(x)"), echo])
    result = rlm_for(srv, max_iterations=1).run("q", context="c")
    assert isinstance(result.error, errors.TurnLimitExceeded)
    assert result.answer is None


def test_final_of_a_name_that_is_no_variable_is_the_word(server_factory, rlm_for):
    srv = server_factory(root=[fence("print('billing: 5, praise: 2')"), fence("FINAL(billing)")])
    result = rlm_for(srv).run("q", context="c")
    assert result.error is None and result.answer == "billing"


def test_final_of_a_variable_still_returns_its_value(server_factory, rlm_for):
    srv = server_factory(root=[fence("top = 'praise'\nprint(top)"), fence("FINAL(top)")])
    result = rlm_for(srv).run("q", context="c")
    assert result.answer == "praise"


def test_output_chars_caps_what_the_model_sees_per_block(server_factory, rlm_for):
    srv = server_factory(root=[fence("print('y' * 50_000)"), "FINAL(done)"])
    rlm_for(srv, output_chars=1_000).run("q", context="c")
    feedback = last_user(srv.requests.roots()[1])
    assert 1_000 <= feedback.count("y") < 1_100


def test_a_bad_output_chars_is_a_config_error():
    from rlm_jupyter import RLM

    with pytest.raises(errors.ConfigError, match="output_chars"):
        RLM(model="openai/x", output_chars=5)


def test_a_refused_finish_is_never_the_answer(server_factory, rlm_for):
    """Found by a newcomer: FINAL_VAR(result) with no `result`, every turn; out of turns the raw
    reply text became the answer. A finish the engine refused is never the answer."""
    srv = server_factory(root=lambda req: "The sub-calls found it.\nFINAL_VAR(result)")
    result = rlm_for(srv, max_iterations=3).run("q", context="c")
    assert isinstance(result.error, errors.TurnLimitExceeded)
    assert result.answer is None and result.error.partial_answer is None
    message = str(result.error)
    assert "no accepted answer" in message and "refused" in message and "result" in message
    finished = [e for e in result.events if e.type == "run_finished"][0]
    assert finished.answer is None
