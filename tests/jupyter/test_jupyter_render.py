"""Static renderers and the terminal printer, fed with engine-shaped events."""

from __future__ import annotations

import json

from rlm_jupyter.engine.events import Event
from rlm_jupyter.jupyter import render
from rlm_jupyter.engine.trajectory import Trajectory, read_trajectory
from rlm_jupyter.jupyter.progress import ProgressPrinter

from jupyter_synth import synthetic_run


def test_displays_fold_with_the_engine_trajectory() -> None:
    tree = render.fold(synthetic_run(5))
    root = tree.root
    assert root is not None and root.status == "ok"
    assert [t.turn for t in root.turns] == [1, 2]
    assert len(root.turns[1].subcalls) == 5
    totals = tree.totals()
    assert totals.subcalls == 5 and totals.subcalls_running == 0 and totals.child_runs == 1
    child = root.turns[1].children[0]  # nested under sub-call "sub0", i.e. under turn 2
    assert child.run_id == "child1" and child.answer == "42" and root.children == [child]
    assert root.turns[0].text.startswith("Let me look") and root.turns[0].responded
    assert root.turns[1].subcalls[0].prompt_chars == 2000
    assert totals.cost_usd > 0
    assert {b[0] for b in render.budget_bars(root, totals)} == {"turns", "sub-calls", "cost $"}
    assert tree.roots == [root]


def test_tree_accepts_jsonl_dicts_and_streaming_before_response() -> None:
    events = [json.loads(json.dumps(e.to_dict())) for e in synthetic_run(2, finished=False)]
    tree = render.fold(events[:4])  # run, turn, two chunks: text streamed so far
    assert tree.root.turns[0].streaming and not tree.root.turns[0].responded
    assert tree.root.turns[0].text == "Let me look at the context.\n```repl\nprint(len(context))\n```"
    tree = render.fold(events)
    assert tree.root.status == "running" and not tree.root.turns[0].streaming
    assert Event.from_dict(events[0]).type == "run_started"


def test_log_starting_mid_run_still_renders() -> None:
    events = synthetic_run(3)
    tail = [e for e in events if e.type != "run_started"]  # no RunStarted for root or child
    tree = Trajectory()
    for e in tail:
        tree.add(e.to_dict())
    assert [r.run_id for r in tree.roots] == ["root01"]
    assert tree.root.children[0].run_id == "child1"
    text = render.render_text(tree)
    assert "child RLM child1" in text and "Answer" in text


def test_renderers_take_a_run_node(tmp_path) -> None:
    log = tmp_path / "run.jsonl"
    log.write_text("\n".join(json.dumps(e.to_dict()) for e in synthetic_run(3)) + "\n")
    node = read_trajectory(log)
    assert render.render_text(node) == render.render_text(synthetic_run(3))
    assert "<strong>42</strong>" in render.render_html(node)


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


def test_engine_imports_no_display_and_a_script_result_has_a_text_repr() -> None:
    """No engine module imports jupyter/ (issue 13.3): a RunResult made in a plain script
    displays as its repr; once the Jupyter layer is imported it displays the trajectory."""
    import pkgutil
    import subprocess
    import sys

    import rlm_jupyter.engine as engine_pkg

    modules = [f"rlm_jupyter.engine.{m.name}" for m in pkgutil.iter_modules(engine_pkg.__path__)]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "up = sorted(m for m in sys.modules if m.startswith(('rlm_jupyter.jupyter', 'IPython')))\n"
        "assert not up, up\n"
        "from rlm_jupyter.engine.result import RunResult\n"
        "r = RunResult(question='q', answer='forty-two', run_id='r1', status='ok')\n"
        "assert r._repr_mimebundle_() == {'text/plain': repr(r)}, r._repr_mimebundle_()\n"
        "assert \"answer='forty-two'\" in repr(r) and \"status='ok'\" in repr(r)\n"
        "import rlm_jupyter.jupyter.render\n"
        "from rlm_jupyter.engine.trajectory import Trajectory\n"
        "from rlm_jupyter.engine import events as ev\n"
        "r.events = [ev.RunStarted(run_id='r1', question='q'), "
        "ev.RunFinished(run_id='r1', answer='forty-two')]\n"
        "b = r._repr_mimebundle_()\n"
        "assert 'forty-two' in b['text/html'] and b['text/plain'].startswith(repr(r)), b\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
