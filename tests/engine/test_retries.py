"""Retried attempts are visible: events, the JSONL log, usage and the trajectory.

Runs over the real scripted HTTP server with injected faults; nothing of ours is mocked.
"""

from __future__ import annotations

import json

import pytest

from rlm_jupyter import RLM, errors
from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.trajectory import read_trajectory


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


SCRIPT = [fence("print(llm_query_batched(['a', 'b', 'c']))"),
          fence("print(llm_query('d'))"), "FINAL(fine)"]


def every_third_request():
    """A fault on every third request: about a third of attempts fail, never two in a row,
    so each call succeeds within its retries (a deterministic stand-in for a 30% fault rate)."""
    seen = {"n": 0}

    def match(req) -> bool:
        seen["n"] += 1
        return seen["n"] % 3 == 1

    return match


def _rlm(srv, tmp_path, transport: str, **kwargs) -> RLM:
    return RLM(model=srv.model, api_base=srv.base_url, api_key="scripted-key-123",
               sandbox="inprocess", transport=transport, log_dir=str(tmp_path / "runs"),
               cell_timeout_s=20, **kwargs)


def _server(server_factory):
    return server_factory(root=lambda req: SCRIPT[req.turn - 1],
                          sub=lambda prompt, req: "pong:" + prompt)


@pytest.mark.parametrize("transport", ["http", "litellm"])
def test_retries_appear_in_events_log_usage_and_trajectory(server_factory, tmp_path, transport):
    srv = _server(server_factory)
    srv.inject("500", times=1000, match=every_third_request())
    result = _rlm(srv, tmp_path, transport).run("q", context="c")
    assert result.error is None, result.error
    assert result.answer == "fine"

    failed = sum(1 for r in srv.requests if r.status != 200)
    assert failed >= 2
    retries = [e for e in result.events if isinstance(e, ev.ModelRetry)]
    assert len(retries) == failed  # every failed attempt was retried, and said so
    for event in retries:
        assert event.model == srv.model and event.attempt >= 1 and event.wait_s > 0
        assert "\n" not in event.error and event.error
        assert event.call in ("root", "sub")

    # Each retry sits under its node: the turn's span for a root call, the sub-call's span.
    turn_spans = {e.span_id for e in result.events if isinstance(e, ev.TurnStarted)}
    sub_spans = {e.span_id for e in result.events if isinstance(e, ev.SubCallStarted)}
    for event in retries:
        assert event.parent_span_id in (turn_spans if event.call == "root" else sub_spans)

    usage = result.usage[srv.model]
    assert usage["retries"] == failed
    assert usage["attempts"] == usage["calls"] + usage["retries"] == len(srv.requests)
    assert usage["failed_calls"] == 0

    tree = result.trajectory
    folded = (sum(t.retries for t in tree.turns)
              + sum(s.retries for s in tree.all_subcalls()))
    assert folded == failed == tree.totals().retries
    assert any(t.retry_errors for t in tree.turns) or any(
        s.retry_errors for s in tree.all_subcalls())

    lines = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert sum(1 for d in lines if d["type"] == "llm_retry") == failed
    finished = [d for d in lines if d["type"] == "run_finished"][-1]
    assert finished["usage"][srv.model]["retries"] == failed
    assert read_trajectory(result.log_path).totals().retries == failed


def test_subcall_retry_lands_on_the_subcall(server_factory, tmp_path):
    srv = _server(server_factory)
    srv.inject("429", times=2, match="sub", delay_s=0.05)
    result = _rlm(srv, tmp_path, "http").run("q", context="c")
    assert result.error is None, result.error
    subs = result.trajectory.all_subcalls()
    assert sum(s.retries for s in subs) == 2
    assert all(t.retries == 0 for t in result.trajectory.turns)
    retry = next(e for e in result.events if isinstance(e, ev.ModelRetry))
    assert retry.call == "sub" and retry.wait_s >= 0.05
    assert "429" in retry.error or "RateLimit" in retry.error, retry.error


def test_no_faults_no_retries(server_factory, tmp_path):
    srv = _server(server_factory)
    result = _rlm(srv, tmp_path, "http").run("q", context="c")
    assert result.error is None, result.error
    usage = result.usage[srv.model]
    assert usage["retries"] == 0 and usage["attempts"] == usage["calls"] == len(srv.requests)
    assert not [e for e in result.events if isinstance(e, ev.ModelRetry)]
    assert result.trajectory.totals().retries == 0


def test_call_that_fails_for_good_is_counted(server_factory, tmp_path):
    srv = server_factory(root=["FINAL(x)"])
    srv.inject("500", times=100)
    result = _rlm(srv, tmp_path, "http", num_retries=1).run("q", context="c")
    assert isinstance(result.error, errors.LLMCallError)
    usage = result.usage[srv.model]
    assert usage == {**usage, "calls": 0, "retries": 1, "failed_calls": 1, "attempts": 2}
    assert len(srv.requests) == 2


def test_displays_show_retries(server_factory, tmp_path, capsys):
    from rlm_jupyter import cli
    from rlm_jupyter.jupyter import render
    from rlm_jupyter.jupyter._runner import Ledger

    srv = _server(server_factory)
    srv.inject("500", times=2, match="root")
    result = _rlm(srv, tmp_path, "http").run("q", context="c")
    assert result.error is None, result.error
    assert "2 retries" in render.summary_line(render.as_runs(result))
    assert "· 2 retries (last: " in render.render_text(result)
    assert "<span class='pill retries'>2 retries</span>" in render.render_html(result)
    ledger = Ledger()
    ledger.add(result.usage)
    assert ledger.rows()[0][1]["retries"] == 2
    assert cli.main(["logs", "--log-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "retry" in out.splitlines()[0] and result.run_id in out
