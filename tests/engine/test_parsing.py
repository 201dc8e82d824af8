from __future__ import annotations

import pytest

from rlm_jupyter.engine.parsing import FinalMarker, parse_reply, without_trailing_prose


@pytest.mark.parametrize("text,blocks", [
    ("Look:\n```repl\nprint(1)\n```\nthen", ["print(1)"]),
    ("```python\nx = 1\n```\n```repl\nprint(x)\n```", ["x = 1", "print(x)"]),
    ("```\nprint('bare fence')\n```", ["print('bare fence')"]),
    ("```repl\nprint('unclosed')", ["print('unclosed')"]),
    ("x = 1\nprint(x)\n```", ["x = 1\nprint(x)"]),
    ("```json\n{\"a\": 1}\n```", []),
    ("print(len(context))", ["print(len(context))"]),
    ("Just some thoughts, nothing to run.", []),
    ("~~~repl\nprint(2)\n~~~", ["print(2)"]),
])
def test_code_blocks_are_found_tolerantly(text, blocks):
    assert parse_reply(text).code_blocks == blocks


@pytest.mark.parametrize("text,final", [
    ("FINAL(42)", FinalMarker("text", "42")),
    ("Done.\nFINAL(The answer is (a) and (b).)\nBye", FinalMarker("text", "The answer is (a) and (b).")),
    ("FINAL(\"quoted\")", FinalMarker("text", "quoted")),
    ("FINAL_VAR(result)", FinalMarker("var", "result")),
    ("FINAL_VAR('result')", FinalMarker("var", "result")),
    ("**FINAL(bold)**", FinalMarker("text", "bold")),
    ("I will call FINAL(x) later", None),
    ("```repl\nFINAL(inside code)\n```", None),
    ("FINAL(multi\nline answer)", FinalMarker("text", "multi\nline answer")),
    ("FINAL(missing paren", FinalMarker("text", "missing paren")),
])
def test_final_markers_only_at_line_start_outside_code(text, final):
    assert parse_reply(text).final == final


def test_final_text_is_never_evaluated():
    parsed = parse_reply("FINAL(__import__('os').system('echo hacked'))")
    assert parsed.final == FinalMarker("text", "__import__('os').system('echo hacked')")
    assert parsed.code_blocks == []


def test_bare_fence_around_echoed_output_is_not_code():
    assert parse_reply("```\nOutput: 42 lines found\n```\nFINAL(42)").code_blocks == []
    assert parse_reply("```repl\nprint(1)\n```\n```\nx = 2\n```").code_blocks == ["print(1)", "x = 2"]


@pytest.mark.parametrize("value,placeholder", [
    ("<the answer>", True), ("your best answer", True), ("the actual answer", True), ("...", True),
    ("42", False), ("The answer is 42", False), ("billing", False),
])
def test_placeholders(value, placeholder):
    from rlm_jupyter.engine.parsing import is_placeholder

    assert is_placeholder(value) is placeholder


@pytest.mark.parametrize("text,value", [
    ("FINAL: 42", "42"), ("FINAL, (billing)", "billing"), ("**FINAL:** 'x y'", "x y"),
])
def test_loose_final_forms_from_small_models(text, value):
    assert parse_reply(text).final == FinalMarker("text", value)


@pytest.mark.parametrize("text,blocks,final", [
    ("```repl\nFINAL(54)\n```", [], FinalMarker("text", "54")),
    ("```repl\nFinal('billing')\n```", [], FinalMarker("text", "billing")),
    ("Final(54)", [], FinalMarker("text", "54")),
    ("```repl\nprint(1)\n```\n```repl\nFINAL(2)\n```", ["print(1)"], FinalMarker("text", "2")),
    ("```repl\nFINAL(count)\n```", ["FINAL(count)"], None),  # a variable: it must run
    ("```repl\nx = 1\nFINAL(2)\n```", ["x = 1\nFINAL(2)"], None),
])
def test_a_literal_final_written_as_code_is_read_as_an_answer(text, blocks, final):
    parsed = parse_reply(text)
    assert (parsed.code_blocks, parsed.final) == (blocks, final)


@pytest.mark.parametrize("code,rebinds", [
    ('context = """Record 1 ..."""', True), ("context += 'x'", True), ("del context", True),
    ("a, *context = [1, 2]", True), ("for context in []:\n    pass", True),
    ("if True:\n    context = 2", True), ("(context := 3)", True), ("import context", True),
    ("x = context.splitlines()", False), ("context['new'] = 1", False),
    ("def f():\n    context = 1", False), ("y = [context for context in range(3)]", False),
    ("this is not python", False),
])
def test_rebinding_context_is_detected(code, rebinds):
    from rlm_jupyter.engine.parsing import rebinds_name

    assert rebinds_name(code, "context") is rebinds


@pytest.mark.parametrize("text, kept", [
    ("```repl\nx = 1\n```\nThe answer is 5.", "```repl\nx = 1\n```"),
    ("Look:\n```python\nx = 1\n```\n```repl\ny = 2\n```\nso y is 2",
     "Look:\n```python\nx = 1\n```\n```repl\ny = 2\n```"),
    ("```repl\nx = 1\n```", "```repl\nx = 1\n```"),
    ("```repl\nx = 1\nno closing fence", "```repl\nx = 1\nno closing fence"),
    ("no code at all", "no code at all"),
])
def test_prose_after_the_last_block_is_dropped(text, kept):
    assert without_trailing_prose(text) == kept


@pytest.mark.parametrize("text,guarded", [
    ("x = 1\nprint(x)\n```", ("unfenced_code",)),          # the opening fence forgotten
    ("import re\nprint(re.escape('a.b'))", ("unfenced_code",)),  # no fence at all
    ("```repl\nFINAL(54)\n```", ("literal_final",)),
    ("```repl\nprint(1)\n```", ()),
    ("FINAL(54)", ()),
])
def test_a_parse_says_which_guardrails_changed_it(text, guarded):
    assert parse_reply(text).guarded == guarded
    # With those guardrails off, the parse is the bare one and says nothing.
    assert parse_reply(text, unfenced_code=False, literal_final=False).guarded == ()
