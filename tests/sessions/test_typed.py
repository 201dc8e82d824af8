"""Typed answers (output_type=T) and llm_query(json=True) over the scripted server."""

from __future__ import annotations

import dataclasses
import json
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

import pandas as pd
import pydantic
import pytest

from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.output import OutputValidationError


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


class Invoice(pydantic.BaseModel):
    number: str
    total: float


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Row(TypedDict):
    name: str
    count: int


KINDS = [
    (Invoice, "{'number': 'A-7', 'total': 12.5}", Invoice(number="A-7", total=12.5)),
    (Point, "{'x': 1, 'y': 2}", Point(1, 2)),
    (Row, "{'name': 'a', 'count': 3}", {"name": "a", "count": 3}),
    (int, "42", 42),
    (float, "2.5", 2.5),
    (bool, "True", True),
    (str, "'north'", "north"),
    (list[int], "[3, 1, 2]", [3, 1, 2]),
    (dict[str, float], "{'a': 1.5, 'b': 2}", {"a": 1.5, "b": 2.0}),
    (list[Row], "[{'name': 'a', 'count': 1}]", [{"name": "a", "count": 1}]),
]


@pytest.mark.parametrize("output_type,literal,expected", KINDS,
                         ids=[str(k[0]).replace(" ", "") for k in KINDS])
def test_each_kind_of_type(server_factory, rlm_for, output_type, literal, expected):
    srv = server_factory(root=[fence(f"value = {literal}\nprint(value)") + "\nFINAL_VAR(value)"])
    result = rlm_for(srv).run("Give the value.", context="abc", output_type=output_type)
    assert result.error is None, result.error
    assert result.output == expected
    assert type(result.output) is type(expected)
    assert isinstance(result.answer, str)
    first = srv.requests[0].messages[-1]["content"]
    assert "FINAL_VAR('name_of_that_variable')" in first


def test_dataframe_output(server_factory, rlm_for):
    frame = pd.DataFrame({"region": ["n", "s", "n"], "amount": [1, 2, 3]})
    srv = server_factory(root=[fence(
        "top = context.groupby('region', as_index=False)['amount'].sum()") + "\nFINAL_VAR(top)"])
    result = rlm_for(srv).run("Totals by region", context=frame, output_type=pd.DataFrame)
    assert result.error is None, result.error
    assert isinstance(result.output, pd.DataFrame)
    assert result.output.to_dict("records") == [{"region": "n", "amount": 4},
                                                {"region": "s", "amount": 2}]
    assert str(result.output["amount"].dtype) == "int64"


def test_a_wrong_value_gets_a_repair_turn(server_factory, rlm_for):
    srv = server_factory(root=[
        fence("value = {'number': 7}") + "\nFINAL_VAR(value)",
        fence("value = {'number': 'A-7', 'total': 3}") + "\nFINAL_VAR(value)",
    ])
    result = rlm_for(srv).run("The invoice?", context="abc", output_type=Invoice)
    assert result.error is None, result.error
    assert result.output == Invoice(number="A-7", total=3.0)
    checks = [e for e in result.events if isinstance(e, ev.OutputChecked)]
    assert [c.ok for c in checks] == [False, True]
    repair = srv.requests[1].messages[-1]["content"]
    assert "Your final value was refused: it is not Invoice" in repair
    assert "total" in repair and "Field required" in repair
    assert any("refused (repair 1)" in n for n in result.trajectory.notes)


def test_the_error_after_the_bound(server_factory, rlm_for):
    srv = server_factory(root=fence("value = 'not a number'") + "\nFINAL_VAR(value)")
    result = rlm_for(srv).run("How many?", context="abc", output_type=int, max_repairs=1)
    assert isinstance(result.error, OutputValidationError)
    assert "after 1 repair turn(s)" in str(result.error)
    assert result.error.value == "not a number"
    assert result.output is None and result.status == "error"
    assert len(srv.requests.roots()) == 2


def test_final_text_is_validated_too(server_factory, rlm_for):
    srv = server_factory(root=[fence("print(6 * 7)"), "FINAL(42)"])
    result = rlm_for(srv).run("How many?", context="abc", output_type=int)
    assert result.error is None and result.output == 42


def test_a_session_ask_can_be_typed(server_factory, rlm_for):
    srv = server_factory(root=[fence("xs = [1, 2, 3]"), "FINAL(ok)",
                               fence("total = sum(xs)") + "\nFINAL_VAR(total)"])
    with rlm_for(srv).session(context="abc") as s:
        s.ask("make xs")
        result = s.ask("sum them", output_type=int)
    assert result.output == 6


def test_llm_query_json_parses_and_repairs_once(server_factory, rlm_for):
    replies = iter(["Sure! here it is: not json at all", '```json\n{"city": "Oslo", "n": 2}\n```',
                    '{"ok": true}'])
    srv = server_factory(
        root=[fence("d = llm_query('Give the city as JSON', json=True)\nprint(d['city'], d['n'] + 1)"
                    "\ne = llm_query('Another', json=True)\nprint(type(e).__name__, e)"),
              "FINAL(done)"],
        sub=lambda prompt, req: next(replies))
    result = rlm_for(srv).run("q", context="abc")
    assert result.error is None, result.error
    out = result.trajectory.turns[0].code[0].stdout
    assert "Oslo 3" in out and "dict {'ok': True}" in out
    subs = srv.requests.subs()
    assert len(subs) == 3
    assert "not valid JSON" in subs[1].prompt and "Reply with JSON only" in subs[0].prompt
    # litellm lists response_format for an openai/ model: JSON mode is on.
    assert all(r.body.get("response_format") == {"type": "json_object"} for r in subs)


def test_llm_query_json_on_the_direct_http_path(server_factory, rlm_for):
    srv = server_factory(root=[fence("d = llm_query('x', json=True)\nprint(d)"), "FINAL(done)"],
                         sub='[1, 2]')
    result = rlm_for(srv, transport="http").run("q", context="abc")
    assert "[1, 2]" in result.trajectory.turns[0].code[0].stdout
    assert srv.requests.subs()[0].body["response_format"] == {"type": "json_object"}


def test_llm_query_json_gives_up_with_a_clear_error(server_factory, rlm_for):
    srv = server_factory(root=[fence("try:\n    llm_query('x', json=True)\nexcept Exception as e:"
                                     "\n    print('ERR', e)"), "FINAL(done)"], sub="no json")
    result = rlm_for(srv).run("q", context="abc")
    assert "not JSON after one repair" in result.trajectory.turns[0].code[0].stdout
    assert json.dumps(result.answer) == '"done"'
