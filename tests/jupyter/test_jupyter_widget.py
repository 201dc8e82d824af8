"""The anywidget view: deltas, throttling, final sync, Stop, repr, and scale."""

from __future__ import annotations

import threading
import time

from rlm_jupyter.jupyter.widget import RunWidget

from jupyter_synth import synthetic_run


class Recorder(RunWidget):
    """Captures what would go over the comm (no frontend in tests)."""

    def __init__(self, *args, **kwargs) -> None:
        self.sent: list[dict] = []
        super().__init__(*args, **kwargs)

    def send(self, content, buffers=None) -> None:  # noqa: D102 - comm stand-in
        self.sent.append(content)


def test_batches_are_contiguous_deltas() -> None:
    w = Recorder(live=True, max_rate=10)
    events = synthetic_run(300)
    for e in events:
        w(e)
    w.finish()
    starts = [m["start"] for m in w.sent]
    assert starts[0] == 0
    total = 0
    for m in w.sent:
        assert m["start"] == total  # each batch starts where the last ended: no resends
        total += len(m["events"])
    assert total == len(w.events)
    assert len(w.sent) <= 3  # fed in a burst: throttled into a few messages
    assert w.live is False and len(w.final_events) <= len(w.events)
    assert not any(e["type"] == "model_chunk" for e in w.final_events)


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


def test_chunks_merge_while_waiting() -> None:
    w = Recorder(live=True, max_rate=1)
    events = synthetic_run(1)
    w(events[0])  # flushes at once (first event)
    w(events[1])
    w(events[2])
    w(events[3])  # two chunks of the same span
    chunks = [e for e in w.events if e["type"] == "model_chunk"]
    assert len(chunks) == 1 and chunks[0]["delta"].startswith("Let me look at the context.")


def test_resync_and_stop_messages() -> None:
    cancel = threading.Event()
    w = Recorder(live=True, cancel=cancel)
    for e in synthetic_run(3, finished=False):
        w(e)
    w.flush()
    w._on_frontend_msg(w, {"kind": "resync", "have": 2}, [])
    assert w.sent[-1]["start"] == 2
    w._on_frontend_msg(w, {"kind": "stop"}, [])
    assert cancel.is_set() and w.stop_requested


def test_repr_is_stable_and_bundle_has_fallbacks() -> None:
    w = RunWidget(synthetic_run(3))
    assert repr(w) == "<RLM live view: ok, 3 turns, 3 sub-calls, 3.6k tokens>"
    data = w._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "<details" in data["text/html"] and data["text/plain"] == repr(w)
    live = RunWidget(live=True)
    assert repr(live) == "<RLM live view: waiting, 0 turns, 0 sub-calls, 0 tokens>"


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


def test_widget_assets_ship() -> None:
    from pathlib import Path

    import rlm_jupyter.jupyter as pkg

    here = Path(pkg.__file__).parent
    js = (here / "widget.js").read_text()
    assert "export default" in js and "import " not in js.split("export default")[0][:200]
    assert (here / "widget.css").stat().st_size > 0
