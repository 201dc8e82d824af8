"""Sessions over real HTTP (the scripted server) on every sandbox: follow-ups keep the REPL's
variables and the conversation, sessions are isolated, idle sessions close, values copy out."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from rlm_jupyter import errors
from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.output import ValueTransferError
from rlm_jupyter.engine.session import SessionClosed

TEXT = "\n".join(f"order {i} region {'north' if i % 3 else 'south'} amount {i * 10}"
                 for i in range(1, 31))


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


def roots(srv):
    return [r for r in srv.requests if any(m["role"] == "system" for m in r.messages)]


def test_followup_uses_a_variable_from_the_first_ask(server_factory, rlm_for):
    srv = server_factory(root=[
        fence("south = [ln for ln in context.splitlines() if 'south' in ln]\nprint(len(south))"),
        fence("n_south = len(south)") + "\nFINAL_VAR(n_south)",
        # the follow-up reuses `south` without recomputing it
        fence("total = sum(int(ln.split('amount ')[1]) for ln in south)\nprint(total)"),
        fence("answer_total = total") + "\nFINAL_VAR(answer_total)",
    ])
    rlm = rlm_for(srv)
    with rlm.session(context=TEXT) as s:
        first = s.ask("How many orders are in the south region?")
        second = s.ask("What is their total amount?")
        assert first.error is None and first.answer == "10"
        assert second.error is None, second.error
        assert second.answer == str(sum(i * 10 for i in range(1, 31) if i % 3 == 0))
        assert "south" in s.variables() and "total" in s.variables()
        assert first.session_id == second.session_id == s.session_id
        assert s.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)
        calls = s.usage[srv.model]["calls"]
        assert calls == first.usage[srv.model]["calls"] + second.usage[srv.model]["calls"]
    # The follow-up's first request carries the first ask's question and the session note.
    followup = roots(srv)[2]
    text = "\n".join(m["content"] for m in followup.messages)
    assert "How many orders are in the south region?" in text
    assert "follow-up question in the same session" in text and "south" in text
    assert followup.messages[0]["role"] == "system"
    assert [e.kind for e in second.events if isinstance(e, ev.SessionNote)] == ["followup"]
    assert first.run_id != second.run_id and s.closed


def test_two_sessions_do_not_see_each_others_variables(server_factory, rlm_for):
    probe = "try:\n    print('secret is', secret)\nexcept NameError:\n    print('no secret here')"
    srv = server_factory(root=[
        fence("secret = 41\nprint(secret)"), "FINAL(set)",
        fence(probe), "FINAL(probed)",
    ])
    rlm = rlm_for(srv)
    with rlm.session(context="a", name="one") as one, rlm.session(context="b", name="two") as two:
        assert one.ask("set it").answer == "set"
        result = two.ask("probe it")
        assert result.answer == "probed"
        assert "no secret here" in result.trajectory.turns[0].code[0].stdout
        assert "secret" in one.variables() and "secret" not in two.variables()


def test_an_idle_session_closes_and_says_so(server_factory, rlm_for):
    srv = server_factory(root=[fence("x = 1\nprint(x)"), "FINAL(one)"])
    rlm = rlm_for(srv)
    s = rlm.session(context="abc", idle_timeout_s=0.5)
    assert s.ask("q").answer == "one"
    deadline = time.monotonic() + 10
    while not s.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s.closed and s.closed_reason == "idle"
    with pytest.raises(SessionClosed, match="closed after 0.5 s without a question"):
        s.ask("again?")
    with pytest.raises(SessionClosed):
        s.get("x")


def test_a_lost_worker_is_told_to_the_model_and_the_user(server_factory, rlm_for,
                                                         sandbox_kind):
    srv = server_factory(root=[fence("x = 1\nprint(x)"), "FINAL(one)",
                               fence("print('again')"), "FINAL(two)"])
    rlm = rlm_for(srv)
    with rlm.session(context="abc") as s:
        s.ask("q1")
        s._sandbox.close()  # what a crash, a kill or a cancelled ask leave behind
        second = s.ask("q2")
        assert second.answer == "two"
        assert any("variable the model made is gone" in n for n in second.notes)
        assert any("state_lost" in n for n in second.trajectory.notes)
    text = "\n".join(m["content"] for m in roots(srv)[2].messages)
    assert "the REPL was restarted since the last question" in text


def test_old_turns_are_summarised_to_fit_the_window(server_factory, rlm_for):
    srv = server_factory(root=[fence("a = 'x' * 10\nprint(a)"), "FINAL(first)",
                               fence("b = 2\nprint(b)"), "FINAL(second)",
                               "FINAL(third)"])
    rlm = rlm_for(srv)
    with rlm.session(context="abc", history_tokens=200) as s:
        s.ask("first question")
        s.ask("second question")
        third = s.ask("third question")
    notes = [e for e in third.events if isinstance(e, ev.SessionNote)]
    assert [n.kind for n in notes][:1] == ["followup"]
    compacted = [n for n in notes if n.kind == "history_compacted"]
    assert compacted and "summarised" in compacted[0].message
    text = "\n".join(m["content"] for m in roots(srv)[-1].messages)
    assert "Earlier questions in this session (summarised):" in text
    assert "Question: first question" in text


def test_get_copies_a_dataframe_by_value_and_caps_its_size(server_factory, rlm_for):
    frame = pd.DataFrame({"region": ["north", "south", "north"], "amount": [10, 20, 30]})
    srv = server_factory(root=[
        fence("by_region = context.groupby('region', as_index=False)['amount'].sum()\n"
              "print(by_region)"), "FINAL(done)"])
    rlm = rlm_for(srv)
    with rlm.session(context=frame) as s:
        result = s.ask("total by region")
        got = s.get("by_region")
        assert isinstance(got, pd.DataFrame)
        assert got.to_dict("records") == [{"region": "north", "amount": 40},
                                          {"region": "south", "amount": 20}]
        assert result.get("by_region").equals(got)
        with pytest.raises(ValueTransferError, match="over the 10 limit"):
            s.get("by_region", max_chars=10)
        with pytest.raises(ValueTransferError, match="no variable named 'nope'"):
            s.get("nope")
    with pytest.raises(ValueTransferError, match="is closed"):
        result.get("by_region")


def test_get_refuses_code_and_live_objects(server_factory, rlm_for):
    srv = server_factory(root=[fence("def f(x):\n    return x\nclass K:\n    pass\nk = K()"),
                               "FINAL(done)"])
    with rlm_for(srv).session(context="abc") as s:
        s.ask("make things")
        for name in ("f", "k"):
            with pytest.raises(ValueTransferError, match="only plain data"):
                s.get(name)


def test_one_shot_run_result_get_says_what_to_do(server_factory, rlm_for):
    srv = server_factory(root=[fence("x = [1, 2]"), "FINAL(done)"])
    result = rlm_for(srv).run("q", context="abc")
    assert result.session_id
    with pytest.raises(ValueTransferError, match=r"output_type=\.\.\., or run the question in "
                                                 r"rlm.session"):
        result.get("x")


def test_async_session(server_factory, rlm_for):
    import asyncio

    srv = server_factory(root=[fence("x = 20"), "FINAL(one)", fence("print(x + 1)"),
                               "FINAL(21)"])
    rlm = rlm_for(srv)

    async def main():
        async with rlm.session(context="abc") as s:
            first = await s.aask("q1")
            second = await s.aask("q2")
            return first, second, s

    first, second, s = asyncio.run(main())
    assert (first.answer, second.answer) == ("one", "21")
    assert "21" in second.trajectory.turns[0].code[0].stdout
    assert s.closed


def test_a_session_has_one_context(server_factory, rlm_for):
    srv = server_factory(root=["FINAL(x)"])
    with rlm_for(srv).session(context="abc") as s:
        with pytest.raises(errors.ConfigError, match="one context"):
            s.ask("q", context="other")
