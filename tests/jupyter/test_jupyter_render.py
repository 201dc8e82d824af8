"""Static renderers and the terminal printer, fed with engine-shaped events."""

from __future__ import annotations

import json

from rlm_jupyter.engine.events import Event
from rlm_jupyter.jupyter import render
from rlm_jupyter.jupyter._tree import RunTree
from rlm_jupyter.jupyter.progress import ProgressPrinter

from jupyter_synth import synthetic_run


def test_tree_folds_turns_subcalls_children() -> None:
    tree = RunTree(synthetic_run(5))
    root = tree.root
    assert root is not None and root.status == "ok"
    assert [t.turn for t in root.turns] == [1, 2]
    assert len(root.turns[1].subcalls) == 5
    assert tree.totals.subcalls == 5 and tree.totals.subcalls_running == 0
    child = root.turns[1].subcalls[0].children[0]
    assert child.run_id == "child1" and child.answer == "42"
    assert root.turns[0].text.startswith("Let me look")
    assert tree.totals.cost_usd > 0
    assert {b[0] for b in tree.budget_bars()} == {"turns", "sub-calls", "cost $"}


def test_tree_accepts_jsonl_dicts_and_streaming_before_response() -> None:
    events = [json.loads(json.dumps(e.to_dict())) for e in synthetic_run(2, finished=False)]
    tree = RunTree(events[:4])  # run, turn, two chunks: text streamed so far
    assert tree.root.turns[0].streaming
    assert tree.root.turns[0].text == "Let me look at the context.\n```repl\nprint(len(context))\n```"
    tree = RunTree(events)
    assert tree.status == "running"
    assert Event.from_dict(events[0]).type == "run_started"


def test_text_markdown_html() -> None:
    events = synthetic_run(40)
    text = render.render_text(events)
    assert "ok" in text and "sub-calls: 40/40 done, 1 failed" in text and "**42**" in text
    md = render.render_markdown(events)
    assert "```python" in md and "**Answer**" in md
    html = render.render_html(events)
    assert html.count("<details") >= 3 and "<strong>42</strong>" in html
    assert "15 more sub-calls" in html  # capped list
    assert "<script" not in html
    bundle = render.mimebundle(events)
    assert set(bundle) == {"text/plain", "text/markdown", "text/html"}


def test_html_escapes_model_output() -> None:
    events = synthetic_run(1, answer="<script>alert(1)</script>")
    html = render.render_html(events)
    assert "<script>alert" not in html


def test_render_empty_and_partial() -> None:
    assert "no events" in render.render_text([])
    assert "no events" in render.render_html([])
    partial = synthetic_run(3, finished=False)
    assert "running" in render.render_text(partial)


def test_result_mimebundle_reads_events_or_log(tmp_path) -> None:
    class Result:
        events = synthetic_run(2)
        log_path = None

        def __repr__(self) -> str:
            return "RunResult(...)"

    bundle = render.result_mimebundle(Result())
    assert bundle["text/plain"].startswith("RunResult(...)")
    log = tmp_path / "run.jsonl"
    log.write_text("\n".join(json.dumps(e.to_dict()) for e in synthetic_run(2)) + "\n{trunc")

    class Logged:
        events: list = []
        log_path = log

    assert "Answer" in render.result_mimebundle(Logged())["text/html"]


def test_progress_printer_is_compact() -> None:
    lines: list[str] = []
    printer = ProgressPrinter(lines.append, subcall_every_s=3600)
    for e in synthetic_run(500):
        printer(e)
    printer.drain()
    assert len(lines) < 20  # 500 sub-calls do not print 500 lines
    assert lines[0].startswith("▶ RLM")
    assert lines[-1].startswith("■ ok")
    assert any("sub-calls 500/500 done, 1 failed" in ln for ln in lines)
