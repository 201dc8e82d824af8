"""The anywidget view: deltas, throttling, final sync, Stop, repr, and scale."""

from __future__ import annotations

import threading
import time

from rlm_jupyter.engine import events as ev
from rlm_jupyter.jupyter.widget import RunWidget

from jupyter_synth import synthetic_run


class Recorder(RunWidget):
    """Captures what would go over the comm (no frontend in tests)."""

    def __init__(self, *args, **kwargs) -> None:
        self.sent: list[dict] = []
        self.sent_at: list[float] = []  # time.monotonic() of each send
        super().__init__(*args, **kwargs)

    def send(self, content, buffers=None) -> None:  # noqa: D102 - comm stand-in
        self.sent.append(content)
        self.sent_at.append(time.monotonic())


def replay_deltas(messages: list[dict]) -> dict[str, dict]:
    """What a browser view holds after applying ``messages`` in order (widget.js's rules:
    a node is created once from its shell, then only its parts change)."""
    nodes: dict[str, dict] = {}
    for m in messages:
        for n in m["nodes"]:
            if n["id"] not in nodes:
                assert "shell" in n, f"update for a node never created: {n['id']}"
                nodes[n["id"]] = {**n, "parts": dict(n["parts"])}
            else:
                assert "shell" not in n, f"node created twice: {n['id']}"
                nodes[n["id"]]["parts"].update(n.get("parts", {}))
                if "open" in n:
                    nodes[n["id"]]["open"] = n["open"]
    return nodes


def test_deltas_are_numbered_and_carry_only_changes() -> None:
    w = Recorder(live=True, max_rate=10)
    for e in synthetic_run(300):
        w(e)
    w.finish()
    assert [m["seq"] for m in w.sent] == list(range(1, len(w.sent) + 1))  # no gaps, no resends
    assert all(m["kind"] == "delta" for m in w.sent)
    assert len(w.sent) <= 3  # fed in a burst: throttled into a few messages
    view = replay_deltas(w.sent)
    snap = {n["id"]: n for n in w.snapshot["nodes"]}
    assert w.snapshot["seq"] == w.sent[-1]["seq"] and view.keys() == snap.keys()
    for key, node in snap.items():  # the deltas add up to exactly the final snapshot
        assert view[key]["parts"] == node["parts"] and view[key].get("open") == node.get("open")
    assert sum(1 for k in snap if k.startswith("s:")) == 300
    assert w.live is False
    head = snap["head"]["parts"]["pills"]
    assert ">ok<" in head and "300 sub-calls · 1 failed" in head and "3 turns" in head
    answer = snap["end"]["parts"]["answer"]
    assert "<strong>42</strong>" in answer and "Answer" in answer  # Markdown, by mistune
    code = snap["c:root01:1:0"]["shell"]
    assert "rlm-src" in code and "<span" in code  # highlighted by Pygments
    child = snap["r:child1"]
    assert child["parent"] == "t:root01:2" and child["slot"] == "kids"
    assert "from sub-call #1" in child["parts"]["sum"] and "42" in child["parts"]["ans"]
    assert snap["t:root01:1"]["open"] is False and snap["t:root01:2"]["open"] is True


def test_an_update_sends_only_the_nodes_and_parts_that_changed() -> None:
    w = Recorder(live=True, max_rate=0)
    events = synthetic_run(3, finished=False)
    for e in events:
        w(e)
    w.flush()
    before = len(w.sent)
    w(ev.SubCallStarted(run_id="root01", turn=2, span_id="late", prompt_preview="one more"))
    w.flush()
    delta = w.sent[before:]
    ids = {n["id"] for m in delta for n in m["nodes"]}
    assert ids <= {"head", "end", "s:late", "t:root01:2"}, ids
    new = [n for m in delta for n in m["nodes"] if n["id"] == "s:late"][0]
    assert "one more" in new["parts"]["sum"] and "#4" in new["parts"]["sum"]
    turn = [n for m in delta for n in m["nodes"] if n["id"] == "t:root01:2"][0]
    assert set(turn["parts"]) == {"sum", "subsum"}  # the model text did not change: not resent


def test_events_the_fold_puts_in_a_turn_redraw_it() -> None:
    """A tool call (or any later kind the Trajectory folds into a turn) reaches the view with
    no change to widget.js: the turn is redrawn from the fold."""
    w = Recorder(live=True, max_rate=0)
    for e in synthetic_run(1, finished=False):
        w(e)
    w(ev.ToolStarted(run_id="root01", turn=2, span_id="tool1", name="lookup_price",
                     arguments_preview='{"sku": "A-1"}'))
    w(ev.ToolFinished(run_id="root01", turn=2, span_id="tool1", name="lookup_price",
                      result_preview="12.50", duration_s=0.2))
    w.flush()
    tools = replay_deltas(w.sent)["t:root01:2"]["parts"]["tools"]
    assert "lookup_price" in tools and "12.50" in tools and "sku" in tools


def test_header_pills_retries_replayed_and_budget() -> None:
    w = Recorder(live=True, max_rate=0)
    events = synthetic_run(3, finished=False)
    for e in events:
        w(e)
    w(ev.ModelRetry(run_id="root01", turn=2, call="sub", parent_span_id="sub2",
                    error="RateLimitError: slow down"))
    w(ev.ModelRetry(run_id="root01", turn=2, call="root", error="APIError: 502"))
    w(ev.RunFinished(run_id="root01", answer="42", status="ok", elapsed_s=1.5, usage={
        "openai/scripted": {"calls": 5, "cached_calls": 5, "prompt_tokens": 1}}))
    w.finish()
    view = replay_deltas(w.sent)
    pills, bars = view["head"]["parts"]["pills"], view["head"]["parts"]["bars"]
    assert "2 retries" in pills and "replayed from cache" in pills and ">ok<" in pills
    assert "sub-calls" in bars and "cost $" in bars and "turns" in bars  # budget bars
    sub = view["s:sub2"]["parts"]
    assert "1 retry" in sub["sum"] and "RateLimitError: slow down" in sub["body"]
    assert "1 retry" in view["t:root01:2"]["parts"]["sum"]
    assert "APIError: 502" in view["t:root01:2"]["parts"]["sum"]


def test_errors_and_partial_answers_show_at_the_end() -> None:
    w = Recorder(live=True, max_rate=0)
    for e in synthetic_run(1, finished=False):
        w(e)
    w(ev.BudgetWarning(run_id="root01", limit="cost", used=0.9, allowed=1.0))
    w(ev.RunFinished(run_id="root01", answer="half of it", status="error",
                     error="turn limit reached", error_type="TurnLimitExceeded"))
    w.finish()
    end = replay_deltas(w.sent)["end"]["parts"]
    assert "cost warning" in end["notes"]
    assert "Partial answer" in end["answer"] and "half of it" in end["answer"]
    assert "TurnLimitExceeded: turn limit reached" in end["answer"]


def test_rate_limit_over_time() -> None:
    w = Recorder(live=True, max_rate=10)
    events = synthetic_run(40)
    start = time.monotonic()
    for e in events:
        w(e)
        time.sleep(0.01)
    elapsed = time.monotonic() - start
    time.sleep(0.15)
    assert len(w.sent) <= elapsed * 10 + 2
    assert replay_deltas(w.sent)["end"]["parts"]["answer"]  # and nothing was lost
    # The view was updated while the run went on (not only at its end)...
    assert len(w.sent) >= 3, f"{len(w.sent)} messages over {elapsed:.2f} s"
    # ...never faster than 10 a second; only the root run's end is sent at once.
    live_gaps = [b - a for a, b in zip(w.sent_at[:-2], w.sent_at[1:-1])]
    assert live_gaps and min(live_gaps) >= 0.09, live_gaps


def test_streamed_text_reaches_the_view_merged() -> None:
    w = Recorder(live=True, max_rate=1)
    events = synthetic_run(1)
    for e in events[:4]:  # run, turn, two chunks of the same reply
        w(e)
    w.flush()
    view = replay_deltas(w.sent)
    turn = view["t:root01:1"]["parts"]
    assert turn["text"].startswith("Let me look at the context.") and turn["@text"] == "streaming"
    assert "streaming…" in turn["sum"]
    for e in events[4:]:
        w(e)
    w.finish()
    turn = replay_deltas(w.sent)["t:root01:1"]["parts"]
    assert turn["@text"] == "" and "⟨code #1 below⟩" in turn["text"]


def test_resync_and_stop_messages() -> None:
    cancel = threading.Event()
    w = Recorder(live=True, cancel=cancel)
    for e in synthetic_run(3, finished=False):
        w(e)
    w.flush()
    w._on_frontend_msg(w, {"kind": "resync"}, [])
    snap = w.sent[-1]
    assert snap["kind"] == "snapshot" and snap["seq"] == w.sent[-2]["seq"]
    assert {n["id"] for n in snap["nodes"]} == set(replay_deltas(w.sent[:-1]))
    assert all("shell" in n for n in snap["nodes"])
    w._on_frontend_msg(w, {"kind": "stop"}, [])
    assert cancel.is_set() and w.stop_requested
    w.flush()
    assert ">stopping<" in replay_deltas(w.sent[:-2] + w.sent[-1:])["head"]["parts"]["pills"]


def test_repr_is_stable_and_bundle_has_fallbacks() -> None:
    w = RunWidget(synthetic_run(3))
    assert repr(w) == "<RLM live view: ok, 3 turns, 3 sub-calls, 3.6k tokens>"
    data = w._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "<details" in data["text/html"] and data["text/plain"] == repr(w)
    assert w.snapshot["nodes"]  # a replayed run is complete for any view at once
    live = RunWidget(live=True)
    assert repr(live) == "<RLM live view: waiting, 0 turns, 0 sub-calls, 0 tokens>"


def test_static_view_beside_the_widget() -> None:
    """The static view is an empty marker while the run is live and the full static HTML when
    it ends; the widget's own bundle then leaves HTML out (no second copy without widgets)."""
    w = Recorder(live=True)
    w._static_id = "rlm-static-test"  # what display_static() sets once displayed
    assert w._static_bundle()["text/html"] == (
        f"<div class='rlm-static-beside' data-rlm-uid='{w.uid}'></div>")
    for e in synthetic_run(3):
        w(e)
    w.finish()
    static = w._static_bundle()
    assert static["text/html"].startswith(f"<div class='rlm-static-beside' data-rlm-uid='{w.uid}'>")
    assert "<strong>42</strong>" in static["text/html"] and "<details" in static["text/html"]
    assert "Answer" in static["text/plain"]
    data = w._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert "text/html" not in data and data["text/plain"] == repr(w)


def test_two_thousand_subcalls_stay_cheap() -> None:
    w = Recorder(live=True)
    events = synthetic_run(2000)
    start = time.perf_counter()
    for e in events:
        w(e)
    w.finish()
    assert time.perf_counter() - start < 5.0
    assert w.tree.totals().subcalls == 2000
    assert repr(w).startswith("<RLM live view: ok, 3 turns, 2000 sub-calls")
    assert sum(1 for n in w.snapshot["nodes"] if n["id"].startswith("s:")) == 2000


def test_widget_assets_ship() -> None:
    from pathlib import Path

    import rlm_jupyter.jupyter as pkg

    here = Path(pkg.__file__).parent
    js = (here / "widget.js").read_text()
    assert "export default" in js and "import " not in js.split("export default")[0][:200]
    assert (here / "widget.css").stat().st_size > 0


def test_widget_js_only_places_fragments() -> None:
    """Render once: no fold of events, no Markdown renderer, no highlighter in the browser,
    and no module-level state that outlives a view."""
    import re
    from pathlib import Path

    import rlm_jupyter.jupyter as pkg

    js = (Path(pkg.__file__).parent / "widget.js").read_text()
    for event_type in ("run_started", "turn_started", "model_chunk", "model_response",
                       "code_executed", "subcall_started", "subcall_finished", "llm_retry",
                       "run_finished", "budget_warning"):
        assert event_type not in js, event_type
    for renderer in ("renderMarkdown", "highlight", "inlineMd", "fmtTokens", "fmtCost", "<strong>",
                     "<em>", "<code>"):
        assert renderer not in js, renderer
    module_level = js.split("function render(")[0]
    assert not re.search(r"\bnew (Map|Set|WeakMap)\b|\blet\b|\bvar\b", module_level)
    assert "return () =>" in js.split("function render(")[1]  # the view cleans up after itself


def test_a_widget_cell_carries_the_static_view_beside_the_widget(shell) -> None:
    """What a %%rlm cell publishes in a real shell: the widget, then a static-view placeholder
    with its own display id, filled by an update when the run ends (nbconvert keeps that
    update); the widget's own bundle then has no HTML copy."""
    from IPython.utils.capture import capture_output

    from jupyter_helpers import use_server
    from rlm_jupyter.testing import ScriptedServer

    shell.magics.display = "widget"
    shell["doc"] = "x"
    with ScriptedServer(root=lambda req: "FINAL(static **ok**)") as srv:
        use_server(shell, srv)
        with capture_output() as cap:
            assert shell.run("%%rlm --context doc -o res\nQ?").success
    first = [o.data for o in cap.outputs]
    assert "application/vnd.jupyter.widget-view+json" in first[0]
    assert "rlm-static-beside" in first[1]["text/html"] and "static" not in first[1]["text/plain"]
    statics = [d for d in first[2:] if "rlm-static-beside" in d.get("text/html", "")]
    assert statics and "<strong>ok</strong>" in statics[-1]["text/html"]
    assert "static **ok**" in statics[-1]["text/plain"]
    widgets = [d for d in first[2:] if "application/vnd.jupyter.widget-view+json" in d]
    assert widgets and "text/html" not in widgets[-1]


def test_show_displays_a_finished_run_with_its_static_view(shell) -> None:
    from IPython.utils.capture import capture_output

    w = RunWidget(synthetic_run(3))
    with capture_output() as cap:
        w.show()
    datas = [o.data for o in cap.outputs]
    assert "application/vnd.jupyter.widget-view+json" in datas[0]
    assert "text/html" not in datas[0]  # one static copy, beside it
    assert "<strong>42</strong>" in datas[1]["text/html"] and w.uid in datas[1]["text/html"]
