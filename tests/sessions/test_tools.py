"""User tools: host functions the sandbox calls by name (sync, async, raising), seen in the
events, the trajectory, the static views and the budget."""

from __future__ import annotations

import asyncio

import pytest

from rlm_jupyter import RLM, errors
from rlm_jupyter.engine import events as ev
from rlm_jupyter.jupyter.render import render_html, render_text

CALLS: list[tuple] = []


def lookup(key: str, default: int = 0) -> dict:
    """Look a customer up in the CRM by key.

    More text that the prompt does not show."""
    CALLS.append(("lookup", key, default))
    return {"key": key, "tier": "gold"}


async def fetch_rate(currency: str) -> float:
    """Today's exchange rate to EUR."""
    await asyncio.sleep(0.01)
    return {"USD": 0.9}.get(currency, 1.0)


def broken() -> None:
    """Always fails."""
    raise ValueError("the CRM is down")


CODE = """\
print(lookup('c-42', default=3))
print(fetch_rate('USD'))
try:
    broken()
except Exception as e:
    print('ERR', e)
"""


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


def test_sync_async_and_raising_tools(server_factory, rlm_for):
    CALLS.clear()
    srv = server_factory(root=[fence(CODE), "FINAL(done)"])
    rlm = rlm_for(srv, tools=[lookup, fetch_rate, broken])
    result = rlm.run("q", context="abc")
    assert result.error is None, result.error
    out = result.trajectory.turns[0].code[0].stdout
    assert "{'key': 'c-42', 'tier': 'gold'}" in out
    assert "0.9" in out
    assert "ERR" in out and "ValueError: the CRM is down" in out
    assert CALLS == [("lookup", "c-42", 3)]
    # The root prompt lists each tool's signature and first docstring line only.
    system = srv.requests[0].messages[0]["content"]
    assert "`lookup(key: str, default: int = 0) -> dict`: Look a customer up in the CRM by key." \
        in system
    assert "`fetch_rate(currency: str) -> float`: Today's exchange rate to EUR." in system
    assert "More text" not in system
    # Events, trajectory nodes, the call count.
    started = [e for e in result.events if isinstance(e, ev.ToolStarted)]
    finished = [e for e in result.events if isinstance(e, ev.ToolFinished)]
    assert [e.name for e in started] == ["lookup", "fetch_rate", "broken"]
    assert '"c-42"' in started[0].arguments_preview and '"default": 3' in started[0].arguments_preview
    assert [f.span_id for f in finished] == [s.span_id for s in started]
    assert finished[2].error == "ValueError: the CRM is down"
    assert finished[1].result_preview == "0.9" and finished[1].duration_s >= 0.01
    tools = result.trajectory.turns[0].tools
    assert [(t.name, t.finished, bool(t.error)) for t in tools] == [
        ("lookup", True, False), ("fetch_rate", True, False), ("broken", True, True)]
    assert result.tool_calls == 3
    assert "tool lookup(" in render_text(result.trajectory)
    assert "tool <code>fetch_rate</code>" in render_html(result.trajectory)


def test_async_tool_runs_on_the_callers_loop_in_aask(server_factory, rlm_for):
    seen = []

    async def where() -> str:
        """Which loop runs me."""
        seen.append(asyncio.get_running_loop())
        return "ok"

    srv = server_factory(root=[fence("print(where())"), "FINAL(done)"])
    rlm = rlm_for(srv, tools={"where": where})

    async def main():
        async with rlm.session(context="abc") as s:
            await s.aask("q")
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert seen == [loop]


def test_tools_get_plain_data_only(server_factory, rlm_for):
    received = []

    def keep(value):
        """Keep a value."""
        received.append(value)
        return object()  # not plain data: the sandbox must not get it

    srv = server_factory(root=[fence(
        "class K:\n    pass\ntry:\n    keep(K())\nexcept Exception as e:\n    print('ARG', e)\n"
        "try:\n    keep([1, {'a': 2}])\nexcept Exception as e:\n    print('RES', e)"),
        "FINAL(done)"])
    result = rlm_for(srv, tools=[keep]).run("q", context="abc")
    out = result.trajectory.turns[0].code[0].stdout
    assert "ARG" in out and "JSON" in out
    assert "RES" in out and "plain JSON data" in out
    assert received == [[1, {"a": 2}]]


def test_tool_names_are_checked():
    with pytest.raises(errors.ConfigError, match="taken by the sandbox"):
        RLM(model="openai/x", tools={"llm_query": lookup})
    with pytest.raises(errors.ConfigError, match="public Python identifier"):
        RLM(model="openai/x", tools={"_hidden": lookup})
    with pytest.raises(errors.ConfigError, match="not callable"):
        RLM(model="openai/x", tools={"x": 3})


def test_tool_calls_respect_the_time_budget(server_factory, rlm_for):
    import time

    def slow() -> str:
        """Slow."""
        time.sleep(1.2)
        return "late"

    srv = server_factory(root=[fence("for i in range(5):\n    print(slow())"), "FINAL(done)"])
    result = rlm_for(srv, tools=[slow], timeout_s=2).run("q", context="abc")
    assert isinstance(result.error, errors.TimeLimitExceeded)
    assert result.tool_calls <= 3
