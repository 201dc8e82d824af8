"""A batch over all of a 50 MB context works on every backend (found: an undocumented 8 MiB cap on
host-function arguments made it fail, and the demo on 50 MB answered "I could not find it")."""

from __future__ import annotations

import pytest

from rlm_jupyter.sandbox.protocol import message_limit

MB = 1_000_000
CODE = """```repl
pieces = [context[i:i + {size}] for i in range(0, len(context), {size})]
replies = llm_query_batched(['Find the code. ' + p for p in pieces])
print(len(pieces), len(replies), replies.count('ok'))
```"""


@pytest.mark.slow
@pytest.mark.parametrize("piece_chars", [1_000_000, 100_000])  # 50 or 500 pieces
def test_a_batch_over_all_of_a_50_mb_context(server_factory, rlm_for, piece_chars):
    context = ("a line of report text, nothing to see here\n" * (50 * MB // 43))[:50 * MB]
    srv = server_factory(root=[CODE.format(size=piece_chars), "FINAL(done)"], sub="ok")
    result = rlm_for(srv, transport="http", cell_timeout_s=120).run("q", context=context)
    assert result.error is None, result.error
    cells = [e for e in result.events if e.type == "code_executed"]
    n = 50 * MB // piece_chars
    assert cells[0].error is None and cells[0].stdout.split() == [str(n), str(n), str(n)]
    assert len(srv.requests.subs()) == n


def test_the_bound_is_far_above_the_context_and_says_what_to_do(server_factory, rlm_for,
                                                                sandbox_kind):
    """A worker's bound stays (a runaway loop must not exhaust the kernel), far above the context: four
    times its size, at least 64 MiB; going over it is an error in the cell, not a dead worker."""
    assert message_limit(0) == 64 * 1024 * 1024
    assert message_limit(50 * MB) >= 4 * 50 * MB
    code = "```repl\nprint(llm_query('x' * (70 * 1024 * 1024)))\n```"
    srv = server_factory(root=[code, "FINAL(done)"], sub="ok")
    result = rlm_for(srv, transport="http").run("q", context="small")
    cell = [e for e in result.events if e.type == "code_executed"][0]
    said = (cell.error or "") + cell.stdout
    if sandbox_kind == "inprocess":  # no line to bound: the engine's prompt cap answers
        assert "too long: split the text into chunks" in said
    else:
        assert "over this sandbox's limit" in said and "send fewer or smaller pieces" in said
    assert result.answer == "done" and not cell.restarted


@pytest.mark.slow
def test_the_demo_finds_its_answer_in_50_mb(tmp_path, monkeypatch):
    """Found: the project's own demo on a 50 MB document ended 'ok' with "I could not find it"
    (its chunks were over the per-prompt cap, so the batch failed)."""
    from rlm_jupyter.demo import run_demo

    monkeypatch.delenv("RLM_MODEL", raising=False)
    monkeypatch.setenv("RLM_LOG_DIR", str(tmp_path))
    result = run_demo(size_chars=50_000_000, quiet=True)
    assert result.status == "ok" and "4921-ALPHA" in (result.answer or "")
