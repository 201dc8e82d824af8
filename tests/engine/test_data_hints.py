"""data_hints: the parse line for the context's shape is taken from the data, and the code it
shows runs in the sandbox's policy and gives the rows it says."""

from __future__ import annotations

import re

import pytest

from rlm_jupyter.engine import data_hints as dh
from rlm_jupyter.sandbox.local import LocalSandbox

CSV = "day,shop,amount\n" + "".join(f"2025-0{1 + i % 9}-0{1 + i % 9},s{i % 3},{i}\n"
                                       for i in range(40))
RECORDS = "".join(f"id=K-{i} | team=t{i % 4} | joined=2024-0{1 + i % 9}-01 | score={i}\n"
                  for i in range(40))
LOGS = "".join(f"2026-05-0{1 + i % 3}T{10 + i % 10:02d}:00:00 {'WARN' if i % 2 else 'INFO'} "
               f"[svc{i % 3}] something happened id={i}\n" for i in range(40))
PROSE = "The harbour watched the hills while the bells rang. " * 400


def _code(hint: str) -> str:
    return re.search(r"```repl\n(.*?)\n```", hint, re.S).group(1)


@pytest.mark.parametrize("text,question,expect,kept", [
    (CSV, "What is the total amount for shop s1 in March 2025?",
     "r['shop'] == 's1' and r['day'].startswith('2025-03')", "print(sum(int(r['amount'])"),
    (RECORDS, "What is the score of K-17?", "r['id'] == 'K-17'", None),
    (LOGS, "How many WARN lines from svc2 at or after 12:30?",
     "f[1] == 'WARN' and f[2] == '[svc2]' and f[0][11:19] >= '12:30:00'", None),
])
def test_the_question_is_linked_to_the_data_and_the_code_runs(text, question, expect, kept):
    """Each shape is recognised; the question's words become conditions on the right fields
    (a value of a column, an id by its shape, a month, a time); the code runs in the sandbox
    and keeps exactly the rows a hand-written filter keeps."""
    hint = dh.text_hint(text, question)
    assert expect in hint, hint
    if kept:
        assert kept in hint
    box = LocalSandbox(context=text)
    try:
        result = box.execute(_code(hint), timeout_s=30)
    finally:
        box.close()
    assert result.error is None, result.error
    lines = [ln for ln in text.splitlines() if ln]
    if text is CSV:
        truth = [ln for ln in lines[1:] if ",s1," in ln and ln.startswith("2025-03")]
        assert result.stdout.splitlines()[-1] == str(sum(int(ln.split(",")[2]) for ln in truth))
    elif text is RECORDS:
        out = result.stdout.splitlines()
        assert out[-2].startswith("1 [{'id': 'K-17'") and out[-1] == "17"  # the named field
    else:
        truth = [ln for ln in lines if " WARN [svc2]" in ln and ln[11:19] >= "12:30:00"]
        assert result.stdout.splitlines()[0] == str(len(truth)) and truth


def test_without_a_link_only_the_parse_is_shown():
    hint = dh.text_hint(CSV, "Which shop sells most?")
    assert "csv.DictReader" in hint and "sel = " not in hint
    assert "never month names" in hint
    assert "sel = " not in dh.text_hint(LOGS, "")
    assert dh.text_hint(LOGS, "")  # the fields are still described


def test_before_and_after_pick_the_operator():
    assert "f[0][11:19] < '09:05:00'" in dh.text_hint(LOGS, "INFO lines before 9:05?")
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"when": ["2026-02-03", "2026-03-04"], "kind": ["ab", "bc"], "n": [1, 2]})
    assert "(df['when'] >= '2026-03-01')" in dh.frame_hint(df, "n of kind bc since 2026-03-01?")
    assert "(df['when'] < '2026-03-01')" in dh.frame_hint(df, "n of kind bc before 2026-03-01?")


@pytest.mark.parametrize("text", [PROSE, "", "a\nb\n", "x,y\n" * 3, "{" * 10_000])
def test_no_hint_where_no_shape_holds(text):
    assert dh.text_hint(text) == ""


def test_only_the_head_is_read():
    huge = CSV + "z" * 50_000_000  # 50 MB of one unsplit line after the head
    assert "CSV text" in dh.text_hint(huge)


def test_hostile_values_are_quoted_not_spliced():
    evil = "name,qty\n" + "".join(f"x');import os;print('{i},{i}\n" for i in range(10))
    hint = dh.text_hint(evil, "qty of x');import os;print('3?")
    code = _code(hint)
    # A value of the data (or the question) lands in the code only as a repr() literal.
    import ast
    tree = ast.parse(code)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                and n.names[0].name == "os"]


def test_frame_hint_and_error_hint():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"when": ["2026-02-03", "2026-03-04"], "kind": ["alpha", "beta"],
                       "who": ["xena", "yuri"], "n": [1, 2]})
    hint = dh.structure_hint(df)  # no question: the first row shows the form
    assert "df[(df['kind'] == 'alpha') & (df['who'] == 'xena')]" in hint
    linked = dh.structure_hint(df, "Total n for yuri in March 2026?")
    assert "df[(df['who'] == 'yuri') & (df['when'].str.startswith('2026-03'))]" in linked
    assert "print(sel['n'].sum())" in linked
    assert "df['when'].str.startswith('2026-02')" in hint
    assert dh.structure_hint(pd.DataFrame()) == ""
    assert dh.structure_hint({"a": 1}) == "" and dh.structure_hint(None) == ""
    assert dh.error_hint("TypeError: unsupported operand type(s) for &: 'str' and 'bool'")
    assert dh.error_hint("ValueError: The truth value of a Series is ambiguous.")
    assert dh.error_hint("NameError: name 'x' is not defined") is None
    hint = dh.error_hint("ValueError: invalid literal for int() with base 10: '969.'")
    assert "'969.'" in hint and "int(piece.strip('.,;:!?'))" in hint
    assert r"int(re.search(r'is (\d+)', line).group(1))" in hint
    assert dh.error_hint("ValueError: could not convert string to float: 'EUR 3.5'")
