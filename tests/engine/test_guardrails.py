"""Guardrails (engine/guardrails.py): profiles, switches, and issue 18's new fixes over the
scripted server (confirm a blind finish, break fence-only loops, an answer on the last call is
ok, prompt caching fields and an append-only history)."""

from __future__ import annotations

import pytest

from rlm_jupyter import errors
from rlm_jupyter.engine import guardrails as gr


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


def last_user(req) -> str:
    users = [m for m in req.messages if m["role"] == "user"]
    return users[-1]["content"] if users else ""


# -- profiles -------------------------------------------------------------------------------------
@pytest.mark.parametrize("model,profile", [
    ("openai/qwen2.5-coder-1.5b", "small"), ("local/qwen2.5-coder-0.5b", "small"),
    ("openai/smollm2-135m", "small"), ("hosted_vllm/Phi-3-mini-4k", "small"),
    ("openai/gpt-4o-mini", "strong"), ("anthropic/claude-sonnet-4", "strong"),
    ("openai/scripted", "strong"), ("openai/llama-3.1-70b", "strong")])
def test_auto_picks_a_profile_by_model(model, profile):
    assert gr.resolve("auto", model).profile == profile
    assert gr.resolve(None, model).profile == profile


def test_profiles_switches_and_overrides():
    assert gr.resolve("off").enabled() == []
    assert gr.resolve("small").enabled() == [f for f in gr.FIXES if f != "confirm_final"]
    assert gr.resolve("small,+confirm_final").enabled() == list(gr.FIXES)
    strong = gr.resolve("strong")
    assert not any(strong.on(f) for f in gr.NEW_FIXES)
    assert all(strong.on(f) for f in gr.FIXES if f not in gr.NEW_FIXES)
    g = gr.resolve("small,+confirm_final")
    assert g.on("confirm_final") and g.on("loop_breaker")
    assert g.describe() == "small,+confirm_final"
    g = gr.resolve({"loop_breaker": False}, "openai/qwen2.5-coder-1.5b")
    assert g.profile == "small" and not g.on("loop_breaker") and not g.on("confirm_final")
    assert gr.resolve("off,+loop_breaker").enabled() == ["loop_breaker"]


@pytest.mark.parametrize("bad", ["smal", "small,confirm_final", {"nope": True},
                                 {"confirm_final": "yes"}, 3])
def test_a_bad_setting_is_a_config_error(bad):
    with pytest.raises(errors.ConfigError):
        gr.resolve(bad)


def test_helpers():
    assert gr.is_degenerate("```\nrepl\n```") and gr.is_degenerate("  ") and gr.is_degenerate(
        "```python\n```")
    assert not gr.is_degenerate(fence("print(1)")) and not gr.is_degenerate("FINAL(3)")
    assert gr.seen_in("23616", ["total 23,616.0"]) and gr.seen_in("gold", ["plan=gold |"])
    assert not gr.seen_in("42", ["41 rows"])
    assert gr.assigned_names("rows = [1]\ntotal = sum(rows)\nprint(total)") == ["total", "rows"]
    assert gr.is_local_server("http://127.0.0.1:8080/v1") and not gr.is_local_server(
        "https://api.openai.com/v1")


# -- evidence before the answer (confirm_final) ---------------------------------------------------
def test_a_finish_in_the_block_that_computes_it_is_shown_and_confirmed(server_factory, rlm_for):
    srv = server_factory(root=[
        fence("rows = [l for l in context.splitlines() if 'march' in l]\n"
              "print(len(rows))\nFINAL(len(rows))"),
        "FINAL(2)"])
    result = rlm_for(srv, guardrails="small,+confirm_final").run("How many march lines?",
                                                  context="march a\napril b\nmarch c\n")
    assert result.error is None and result.status == "ok" and result.answer == "2"
    roots = srv.requests.roots()
    assert len(roots) == 2
    feedback = last_user(roots[1])
    assert "Check before answering" in feedback and "FINAL(2)" in feedback
    assert "Output:\n2" in feedback  # the output it never saw


def test_confirm_is_asked_once_and_a_correction_is_taken(server_factory, rlm_for):
    srv = server_factory(root=[
        fence("total = sum(int(l.split(',')[1]) for l in context.splitlines()[:1])\n"
              "FINAL(total)"),
        fence("total = sum(int(l.split(',')[1]) for l in context.splitlines())\n"
              "print(total)\nFINAL(total)")])
    result = rlm_for(srv, guardrails="small,+confirm_final").run("total?", context="a,5\nb,7\n")
    # The second finish is also unseen, but the check is asked once per run.
    assert result.answer == "12" and result.status == "ok"
    assert len(srv.requests.roots()) == 2


def test_an_unprinted_prose_value_is_confirmed(server_factory, rlm_for):
    srv = server_factory(root=[fence("plan = context.split('=')[1]"), "FINAL(gold)",
                               "FINAL(gold)"])
    result = rlm_for(srv, guardrails="small,+confirm_final").run("plan?", context="plan=gold")
    assert result.answer == "gold" and result.status == "ok"
    assert "Check before answering" in last_user(srv.requests.roots()[2])


def test_confirm_final_off_accepts_the_blind_finish(server_factory, rlm_for):
    # Off in "small" (the 1.5B measurements), and off by name.
    for setting in ("small", "small,-confirm_final"):
        srv = server_factory(root=[fence("x = len(context)\nFINAL(x)"), "FINAL(never)"])
        result = rlm_for(srv, guardrails=setting).run("q", context="abc")
        assert result.answer == "3" and len(srv.requests.roots()) == 1
    srv = server_factory(root=[fence("x = len(context)\nFINAL(x)"), "FINAL(never)"])
    result = rlm_for(srv, guardrails="small,-confirm_final").run("q", context="abc")
    assert result.answer == "3" and len(srv.requests.roots()) == 1


def test_a_value_seen_earlier_is_accepted_at_once(server_factory, rlm_for):
    srv = server_factory(root=[fence("x = len(context)\nprint(x)"), fence("FINAL(x)")])
    result = rlm_for(srv, guardrails="small,+confirm_final").run("q", context="abc")
    assert result.answer == "3" and len(srv.requests.roots()) == 2


# -- no degenerate loops (loop_breaker) -----------------------------------------------------------
def test_fence_only_replies_get_a_concrete_step_then_the_run_ends(server_factory, rlm_for):
    srv = server_factory(root=[fence("hits = [l for l in context.splitlines() if 'KIWI' in l]\n"
                                     "print(hits)")] + ["```\nrepl\n```"] * 20)
    result = rlm_for(srv, guardrails="small", max_iterations=10).run(
        "What is the number for KIWI?", context="a\nKIWI is 7\nb\n")
    roots = srv.requests.roots()
    assert len(roots) == 1 + gr.LOOP_BOUND  # not the ten turns
    note = last_user(roots[2])
    assert "only a code fence" in note
    assert "KIWI is 7" in note  # what it found...
    assert "print('hits', repr(hits)[:300])" in note  # ...and a next step built from it
    assert result.status == "error" and isinstance(result.error, errors.TurnLimitExceeded)
    message = str(result.error)
    assert "in a row" in message and "KIWI is 7" in message
    # Nothing degenerate is kept in the history the model sees.
    assert not any(m["content"].strip() == "```\nrepl\n```" for m in roots[-1].messages)


def test_the_best_candidate_is_the_answer_when_the_loop_ends(server_factory, rlm_for):
    srv = server_factory(root=[fence("x = 6 * 7\nprint('computing')\nFINAL(x)")] +
                         [""] * 10)
    result = rlm_for(srv, guardrails="small,+confirm_final", max_iterations=10).run(
        "q", context="c")
    assert result.answer == "42" and result.status == "error"
    assert "best candidate" in str(result.error)


def test_a_stuck_model_that_recovers_finishes_ok(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(len(context))"), "```\nrepl\n```", "",
                               "FINAL(3)"])
    result = rlm_for(srv, guardrails="small").run("q", context="abc")
    assert result.answer == "3" and result.status == "ok"


def test_the_same_non_answer_twice_is_stuck(server_factory, rlm_for):
    srv = server_factory(root=["I think the answer is in the data."] * 10)
    result = rlm_for(srv, guardrails="small", max_iterations=10).run("q", context="c")
    # 1 prose reply (nudged), then 3 word-for-word repeats end the run.
    assert len(srv.requests.roots()) == 1 + gr.LOOP_BOUND
    assert "word for word" in last_user(srv.requests.roots()[2])
    assert result.status == "error"


def test_loop_breaker_off_keeps_the_old_behaviour(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(1)")] + ["```\nrepl\n```"] * 10)
    result = rlm_for(srv, guardrails="small,-loop_breaker", max_iterations=4).run(
        "q", context="c")
    assert len(srv.requests.roots()) == 5  # 4 turns and the out-of-turns call
    assert result.status == "error"


# -- an accepted answer is ok, whatever turn ------------------------------------------------------
def test_an_answer_on_the_out_of_turns_call_is_ok(server_factory, rlm_for):
    def root(req):
        if "out of turns" in last_user(req):
            return "FINAL(paris)"
        return fence(f"print('looking', {len(req.messages)})")

    srv = server_factory(root=root)
    result = rlm_for(srv, guardrails="small", max_iterations=2).run("q", context="c")
    assert result.answer == "paris" and result.status == "ok" and result.error is None
    # "strong" keeps the strict reading the engine tests pin (test_runs.py).
    srv2 = server_factory(root=root)
    result2 = rlm_for(srv2, guardrails="strong", max_iterations=2).run("q", context="c")
    assert result2.answer == "paris" and result2.status == "error"


def test_an_answer_on_the_last_allowed_turn_is_ok(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(1)"), fence("print(2)"), "FINAL(2)"])
    result = rlm_for(srv, guardrails="small", max_iterations=3).run("q", context="c")
    assert result.answer == "2" and result.status == "ok"


# -- prompt caching: llama.cpp's fields, and a history that is only appended to ------------------
def test_prompt_cache_fields_and_an_append_only_history(server_factory, rlm_for):
    srv = server_factory(root=["Let me think.", fence("print(llm_query('hi'))"), "FINAL(sub)"],
                         sub=lambda prompt, req: "sub")
    result = rlm_for(srv, guardrails="small").run("q", context="c")
    assert result.answer == "sub"
    roots = srv.requests.roots()
    for r in roots:
        assert r.body.get("cache_prompt") is True and r.body.get("id_slot") == 0
    subs = srv.requests.subs()
    assert subs and all("cache_prompt" not in r.body for r in subs)
    for before, after in zip(roots, roots[1:]):
        assert after.messages[:len(before.messages)] == before.messages


def test_strong_sends_no_cache_fields(server_factory, rlm_for):
    srv = server_factory(root=["FINAL(ok)"])
    rlm_for(srv).run("q", context="c")  # openai/scripted: auto -> strong
    assert "cache_prompt" not in srv.requests.roots()[0].body


def test_off_keeps_a_prose_reply_in_the_history(server_factory, rlm_for):
    srv = server_factory(root=["Let me think about it.", "FINAL(ok)"])
    rlm_for(srv, guardrails="off").run("q", context="c")
    second = srv.requests.roots()[1]
    assert any(m["role"] == "assistant" and "think about it" in m["content"]
               for m in second.messages)


def test_resending_the_finishing_block_confirms_it(server_factory, rlm_for):
    block = fence("n = len(context.split())\nFINAL(n)")
    srv = server_factory(root=[block, block])
    result = rlm_for(srv, guardrails="small,+confirm_final").run("how many words?",
                                                                context="a b c d")
    assert result.answer == "4" and result.status == "ok"
    assert "Check before answering" in last_user(srv.requests.roots()[1])


# -- empty_answer: a finish of 0 / empty is checked once against the data -------------------------
def test_an_empty_answer_is_questioned_once_then_a_repeat_confirms_it(server_factory, rlm_for):
    srv = server_factory(root=[
        fence("rows = [l for l in context.splitlines() if 'category: garden' in l]\n"
              "print(len(rows))"),
        "FINAL(0)", "FINAL(0)"])
    result = rlm_for(srv, guardrails="small").run("How many garden rows?",
                                                  context="date,category\n1,garden\n2,toys\n")
    roots = srv.requests.roots()
    assert len(roots) == 3
    assert "your answer is 0" in last_user(roots[2]) and "FINAL(0) alone" in last_user(roots[2])
    # Repeating FINAL(0) is the confirmation asked for, not a stuck repeat.
    assert result.answer == "0" and result.status == "ok"
    acted = [e.fix for e in result.events if e.type == "guardrail"]
    assert "empty_answer" in acted


def test_an_empty_answer_is_corrected(server_factory, rlm_for):
    srv = server_factory(root=[
        fence("n = len([l for l in context.splitlines() if 'Garden' in l])\nprint(n)\nFINAL(n)"),
        fence("n = len([l for l in context.splitlines() if 'garden' in l])\nprint(n)"),
        "FINAL(1)"])
    result = rlm_for(srv, guardrails="small,-confirm_final").run(
        "How many garden rows?", context="a,garden\nb,toys\n")
    assert result.answer == "1" and result.status == "ok"
    assert "your answer is 0" in last_user(srv.requests.roots()[1])


@pytest.mark.parametrize("value", ["0", "0.0", "[]", "None", "", "{}", "no rows found"])
def test_what_counts_as_an_empty_answer(value):
    assert gr.is_empty_answer(value)


@pytest.mark.parametrize("value", ["10", "0.5", "[1]", "none of them: 3", "garden"])
def test_what_is_not_an_empty_answer(value):
    assert not gr.is_empty_answer(value)


def test_empty_answer_off_accepts_zero(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(0)"), "FINAL(0)"])
    result = rlm_for(srv, guardrails="small,-empty_answer").run("q", context="abc")
    assert result.answer == "0" and len(srv.requests.roots()) == 2


# -- data_hints: how the data splits, from the data; the pandas precedence slip --------------------
def test_the_first_message_says_how_csv_text_splits(server_factory, rlm_for):
    csv_text = "date,region,units\n" + "".join(
        f"2026-0{1 + i % 9}-1{i % 10},{'north' if i % 2 else 'south'},{i}\n" for i in range(30))
    srv = server_factory(root=[
        fence("import csv\nrows = list(csv.DictReader(context.splitlines()))\n"
              "sel = [r for r in rows if r['region'] == 'north']\nprint(len(sel))"),
        "FINAL(15)"])
    result = rlm_for(srv, guardrails="small").run("How many north rows?", context=csv_text)
    first = srv.requests.roots()[0].messages[-1]["content"]
    assert "CSV text with a header row; its columns: date, region, units" in first
    assert "csv.DictReader(context.splitlines())" in first
    assert "r['date'].startswith('2026-01')" in first  # from the data's own first row
    # The hint's code really runs in the sandbox (the csv facade) and gives the right rows.
    assert result.answer == "15" and result.status == "ok"
    srv_off = server_factory(root=["FINAL(1)"])
    rlm_for(srv_off, guardrails="small,-data_hints").run("q", context=csv_text)
    assert "DictReader" not in srv_off.requests.roots()[0].messages[-1]["content"]


def test_a_pandas_filter_without_parentheses_gets_the_corrected_form(server_factory, rlm_for):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"region": ["north", "south", "north"], "units": [1, 2, 3]})
    srv = server_factory(root=[
        fence("print(context[context['region'] == 'north' & context['units'] > 1])"),
        fence("sel = context[(context['region'] == 'north') & (context['units'] > 1)]\n"
              "print(sel['units'].sum())"),
        "FINAL(3)"])
    result = rlm_for(srv, guardrails="small").run("units?", context=frame)
    first = srv.requests.roots()[0].messages[-1]["content"]
    assert "df[(df['region'] == 'north')]" in first
    assert "each comparison in its own parentheses" in last_user(srv.requests.roots()[1])
    assert result.answer == "3"


def test_every_guardrail_that_acts_is_an_event_in_the_trajectory(server_factory, rlm_for):
    srv = server_factory(root=["Let me look.", fence("print(1)"), fence("print(1)"),
                               "FINAL(your answer)", "n = 1\nprint(n)\n```",
                               fence("FINAL(1)"), "FINAL(1)"])
    result = rlm_for(srv, guardrails="small", max_iterations=8).run(
        "What is the 'kiwi' count?", context="kiwi 1\napple 2\n")
    acted = [e.fix for e in result.events if e.type == "guardrail"]
    for fix in ("key_word_lines", "prose_only", "repeat_ladder", "placeholder_final",
                "unfenced_code", "literal_final"):
        assert fix in acted, acted
    assert set(acted) <= set(gr.FIXES)
    assert any(n.startswith("guardrail prose_only (turn 1)") for n in result.trajectory.notes)
    from rlm_jupyter.jupyter.render import render_text  # what `rlm replay` prints

    assert "guardrail placeholder_final" in render_text(result.events, verbose=True)
    # With every switch off, nothing acts.
    srv_off = server_factory(root=["Let me look.", fence("print(1)"), "FINAL(1)"])
    off = rlm_for(srv_off, guardrails="off").run("What is the 'kiwi' count?",
                                                 context="kiwi 1\napple 2\n")
    assert not [e for e in off.events if e.type == "guardrail"]
