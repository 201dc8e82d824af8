"""The live trajectory view: an anywidget fed by the engine's event stream.

Why this shape:
- Engine threads call ``widget(event)`` for every event; the widget buffers them and sends
  *deltas* (only new events, in batches) at most ``max_rate`` times a second, so a run with
  thousands of sub-calls never floods the frontend or the kernel's IOPub channel.
- Streamed model chunks are merged while they wait in the buffer.
- When the run ends the full list is synced once as the ``final_events`` trait, so views opened
  later, page reloads and saved widget state show the whole run (and replays start there).
- The Python side folds the same events with the engine's ``Trajectory`` (for ``repr`` and the
  static HTML/Markdown fallbacks); the browser folds its copy in ``widget.js``.
- The Stop button sends a message that sets a ``threading.Event`` the engine watches; it works
  while the kernel is idle, i.e. for ``--background`` runs (a busy cell cannot receive clicks).
"""

from __future__ import annotations

import pathlib
import threading
import time
import uuid
from typing import Any, Iterable

import anywidget
import traitlets

from rlm_jupyter.engine.events import Event
from rlm_jupyter.engine.trajectory import Trajectory
from rlm_jupyter.jupyter import render

_HERE = pathlib.Path(__file__).parent


def event_dict(event: Any) -> dict[str, Any]:
    """The JSON shape the browser gets: an ``Event``'s ``to_dict()`` or a JSONL dict as is."""
    if isinstance(event, dict):
        return event
    if isinstance(event, Event):
        return event.to_dict()
    raise TypeError(f"not an RLM event: {event!r} (expected an Event or its to_dict() dict)")


class RunWidget(anywidget.AnyWidget):
    """Live, collapsible view of one RLM run (and its child runs)."""

    _esm = _HERE / "widget.js"
    _css = _HERE / "widget.css"

    uid = traitlets.Unicode().tag(sync=True)
    final_events = traitlets.List().tag(sync=True)
    live = traitlets.Bool(False).tag(sync=True)
    stop_requested = traitlets.Bool(False).tag(sync=True)

    def __init__(self, events: Iterable[Any] = (), *, live: bool = False,
                 cancel: threading.Event | None = None, max_rate: float = 10.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("uid", uuid.uuid4().hex)
        super().__init__(**kwargs)
        self.cancel = cancel if cancel is not None else threading.Event()
        self._lock = threading.RLock()
        self._events: list[dict[str, Any]] = []
        self._sent = 0
        self._interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self._last_flush = 0.0
        self._timer: threading.Timer | None = None
        self._tree = Trajectory()
        self.messages_sent = 0
        self.on_msg(self._on_frontend_msg)
        initial = [event_dict(e) for e in events]
        for d in initial:
            self._tree.add(d)
        if initial:
            self._events = initial
            self._sent = len(initial)
            self.final_events = list(initial)
        self.live = live

    # -- feeding ---------------------------------------------------------------------------
    def __call__(self, event: Any) -> None:
        """Event subscriber (thread-safe); pass the widget as ``on_event``."""
        self.push(event)

    def push(self, event: Any) -> None:
        d = event_dict(event)
        with self._lock:
            self._tree.add(event)
            last = self._events[-1] if len(self._events) > self._sent else None
            if (d.get("type") == "model_chunk" and last is not None
                    and last.get("type") == "model_chunk"
                    and last.get("span_id") == d.get("span_id")
                    and last.get("run_id") == d.get("run_id")):
                last["delta"] = (last.get("delta") or "") + (d.get("delta") or "")
            else:
                self._events.append(dict(d))
            finished = d.get("type") == "run_finished" and not d.get("parent_run_id")
        if finished:
            self.flush()
        else:
            self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            if self._timer is not None:
                return
            wait = self._interval - (time.monotonic() - self._last_flush)
            if wait <= 0:
                do_now = True
            else:
                do_now = False
                self._timer = threading.Timer(wait, self._timer_flush)
                self._timer.daemon = True
                self._timer.start()
        if do_now:
            self.flush()

    def _timer_flush(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def flush(self) -> None:
        """Send the events not yet sent as one batch message."""
        with self._lock:
            if self._sent >= len(self._events):
                return
            start = self._sent
            batch = self._events[start:]
            self._sent = len(self._events)
            self._last_flush = time.monotonic()
            try:
                self.send({"kind": "batch", "start": start, "events": batch})
            except Exception:  # no frontend / closed comm: the final sync still carries it
                pass
            self.messages_sent += 1

    def finish(self) -> None:
        """The run ended: flush, then sync the whole (compacted) list once."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self.flush()
        with self._lock:
            responded = {(e.get("run_id"), e.get("turn")) for e in self._events
                         if e.get("type") == "model_response"}
            compact = [e for e in self._events
                       if not (e.get("type") == "model_chunk"
                               and (e.get("run_id"), e.get("turn")) in responded)]
        self.final_events = compact
        self.live = False

    # -- frontend messages -------------------------------------------------------------------
    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        if kind == "stop":
            self.stop()
        elif kind == "resync":
            have = int(content.get("have") or 0)
            with self._lock:
                batch = self._events[have:self._sent]
            self.send({"kind": "batch", "start": have, "events": batch})

    def stop(self) -> None:
        """Ask the engine to cancel the run (what the Stop button does)."""
        self.cancel.set()
        self.stop_requested = True

    # -- views -------------------------------------------------------------------------------
    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    @property
    def tree(self) -> Trajectory:
        """The engine's fold of the events so far (``.root`` is a ``RunNode``)."""
        return self._tree

    @property
    def status(self) -> str:
        root = self._tree.root
        st = root.status if root is not None else "waiting"
        if st == "running" and not self.live:
            return "incomplete" if root is not None else "waiting"
        return st

    def __repr__(self) -> str:
        t = self._tree.totals()
        return (f"<RLM live view: {self.status}, {t.turns} turns, {t.subcalls} sub-calls, "
                f"{render.fmt_tokens(t.tokens)} tokens>")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Widget view plus static fallbacks, so nbconvert/GitHub show the run too."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict) and self._tree.root is not None and not self.live:
            data = dict(data)
            data["text/plain"] = repr(self)
            data["text/html"] = render.render_html(self._tree)
            data["text/markdown"] = render.render_markdown(self._tree)
            return (data, bundle[1]) if isinstance(bundle, tuple) else data
        return bundle
