"""The live trajectory view: an anywidget fed by the engine's event stream.

Why this shape:
- One fold, one renderer. Engine threads call ``widget(event)``; the widget folds the event
  with the engine's ``Trajectory`` and marks the nodes it touched. At most ``max_rate`` times a
  second a timer thread renders just those nodes to HTML fragments (``render.live_*``) and sends
  the fragments that changed as one numbered *delta*. ``widget.js`` only places fragments: it
  has no fold of events, no Markdown renderer and no highlighter.
- Each node is a shell created once in the browser (so a ``<details>`` keeps the user's
  open/closed state) plus parts replaced on update. The open/closed choices live in the
  ``open_state`` trait, so a view rebuilt from scratch (the end-of-run refresh, a reload, saved
  widget state) keeps them, and nothing is kept per page in a module-level map.
- A view that missed a delta (opened late, reloaded) asks for a snapshot of every node; when the
  run ends the snapshot is also synced once as the ``snapshot`` trait for later views.
- The Stop button sends a message that sets a ``threading.Event`` the engine watches; it works
  while the kernel is idle, i.e. for ``--background`` runs (a busy cell cannot receive clicks).
- ``display_static()`` puts a static view (render.py's HTML) beside the widget, filled when the
  run ends: nbconvert and GitHub show that one (they pick the widget view, which needs
  JavaScript, whenever widget state is saved), and the live widget hides it where it renders.
"""

from __future__ import annotations

import pathlib
import threading
import time
import uuid
from typing import Any, Iterable

import anywidget
import traitlets

from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.trajectory import RunNode, Trajectory, as_event
from rlm_jupyter.jupyter import render
from rlm_jupyter.jupyter._throttle import FlushTimer

_HERE = pathlib.Path(__file__).parent

#: Class of the static view placed beside a live widget; ``data-rlm-uid`` names the widget.
STATIC_CLASS = "rlm-static-beside"

# Render order within one delta: parents before children (a child run is one level deeper).
_RANK = {"run": 0, "turn": 1, "code": 2, "sub": 3}


class RunWidget(anywidget.AnyWidget):
    """Live, collapsible view of one RLM run (and its child runs)."""

    _esm = _HERE / "widget.js"
    _css = _HERE / "widget.css"

    uid = traitlets.Unicode().tag(sync=True)
    #: Every node as ``{"seq": n, "nodes": [...]}``: synced when the run ends (and for replays).
    snapshot = traitlets.Dict().tag(sync=True)
    #: The user's open/closed choice per ``<details>`` key, written by the browser.
    open_state = traitlets.Dict().tag(sync=True)
    live = traitlets.Bool(False).tag(sync=True)
    stop_requested = traitlets.Bool(False).tag(sync=True)

    def __init__(self, events: Iterable[Any] = (), *, live: bool = False,
                 cancel: threading.Event | None = None, max_rate: float = 10.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("uid", uuid.uuid4().hex)
        super().__init__(**kwargs)
        self.cancel = cancel if cancel is not None else threading.Event()
        self._lock = threading.RLock()        # dirty marks and timer
        self._flush_lock = threading.Lock()   # one render at a time; owns _frags and _seq
        self._tree = Trajectory()
        self._dirty: dict[str, tuple[Any, ...]] = {}  # node id -> what to render (ordered)
        self._frags: dict[str, dict[str, Any]] = {}   # node id -> last fragment sent
        self._sub_index: dict[str, int] = {}          # sub-call span -> its number in its turn
        self._seq = 0
        self._throttle = FlushTimer(self.flush, lambda: bool(self._dirty), self._lock, max_rate)
        self._static_id: str | None = None
        self.messages_sent = 0
        self.on_msg(self._on_frontend_msg)
        self.live = live
        initial = list(events)
        for event in initial:
            self._add(event)
        if initial:
            self._render_dirty()
            self.snapshot = self._snapshot()

    # -- feeding ---------------------------------------------------------------------------
    def __call__(self, event: Any) -> None:
        """Event subscriber (thread-safe); pass the widget as ``on_event``."""
        self.push(event)

    def push(self, event: Any) -> None:
        event = self._add(event)
        if isinstance(event, ev.RunFinished) and not event.parent_run_id:
            self.flush()
        else:
            self._schedule()

    def _add(self, item: Any) -> ev.Event:
        """Fold one event and mark the nodes it touched (rendering waits for the flush)."""
        event = as_event(item)
        self._tree.add(event)
        run_id = event.run_id
        run = self._tree.runs.get(run_id)
        marks: list[tuple[str, tuple[Any, ...]]] = []
        if isinstance(event, ev.RunStarted):
            marks.append((f"r:{run_id}", ("run", run_id)))
        elif isinstance(event, (ev.TurnStarted, ev.RunFinished)) and run is not None:
            # a new turn folds the earlier ones; the end stops every turn streaming
            marks.append((f"r:{run_id}", ("run", run_id)))
            marks += [(render.turn_node_id(run_id, t.turn), ("turn", run_id, t.turn))
                      for t in run.turns]
        elif isinstance(event, ev.CodeExecuted):
            turn = self._tree.turn_node(run_id, event.turn)
            if turn is not None and turn.code:
                i = len(turn.code) - 1
                marks.append((f"c:{run_id}:{event.turn}:{i}", ("code", run_id, event.turn, i)))
            marks.append((render.turn_node_id(run_id, event.turn), ("turn", run_id, event.turn)))
        elif isinstance(event, (ev.SubCallStarted, ev.SubCallFinished, ev.ModelRetry)):
            span = event.span_id
            if isinstance(event, ev.ModelRetry):
                span = event.parent_span_id or "" if event.call == "sub" else ""
            sub = self._tree.subcall_node(span) if span else None
            if sub is not None:
                if span not in self._sub_index:
                    turn = self._tree.turn_node(run_id, sub.turn)
                    self._sub_index[span] = len(turn.subcalls) - 1 if turn is not None else 0
                marks.append((f"s:{span}", ("sub", span, run_id, sub.turn)))
                marks.append((render.turn_node_id(run_id, sub.turn), ("turn", run_id, sub.turn)))
            else:
                marks.append((render.turn_node_id(run_id, event.turn),
                              ("turn", run_id, event.turn)))
        else:
            # Anything else folded into a turn (model text, tools, later kinds) redraws it;
            # the rest (budget, errors) shows in the header and the end, redrawn each flush.
            turn_n = getattr(event, "turn", None)
            if isinstance(turn_n, int) and self._tree.turn_node(run_id, turn_n) is not None:
                marks.append((render.turn_node_id(run_id, turn_n), ("turn", run_id, turn_n)))
        with self._lock:
            for key, what in marks:
                self._dirty[key] = what
            self._dirty["head"] = ("head",)
            self._dirty["end"] = ("end",)
        return event

    def _schedule(self) -> None:
        """Render and send on a timer thread, at most ``max_rate`` times a second, so the
        engine's thread only folds."""
        self._throttle.schedule()

    def flush(self) -> None:
        """Render the nodes touched since the last flush and send what changed as one delta."""
        with self._flush_lock:
            nodes = self._render_dirty()
            self._throttle.last = time.monotonic()
            if not nodes:
                return
            self._seq += 1
            try:
                self.send({"kind": "delta", "seq": self._seq, "nodes": nodes})
            except Exception:  # no frontend / closed comm: the snapshot still carries it
                pass
            self.messages_sent += 1

    def finish(self) -> None:
        """The run ended: send the last delta, then sync every node once (for later views),
        and fill the static view beside the widget if there is one."""
        self._throttle.cancel()
        with self._lock:
            self._dirty["head"] = ("head",)
        self.live = False
        self.flush()
        with self._flush_lock:
            self.snapshot = self._snapshot()
        self._update_static()

    # -- rendering (under _flush_lock) ---------------------------------------------------------
    def _render_dirty(self) -> list[dict[str, Any]]:
        with self._lock:
            dirty, self._dirty = self._dirty, {}
        tree = self._tree
        order = []
        for key, what in dirty.items():
            if what[0] in ("head", "end"):
                continue
            run = tree.runs.get(what[1] if what[0] != "sub" else what[2])
            order.append(((run.depth if run is not None else 0), _RANK[what[0]], key, what))
        order.sort(key=lambda item: item[:2])  # stable: creation order within a rank
        out = []
        if "head" in dirty or not self._frags:
            out.append(self._node("head", "", "head", render.live_head_shell(),
                                  render.live_head_parts(tree.roots, self.status, self.live)))
        for _depth, _rank, key, what in order:
            node = self._render_one(key, what)
            if node is not None:
                out.append(node)
        if "end" in dirty:
            out.append(self._node("end", "", "end", render.live_end_shell(),
                                  render.live_end_parts(tree.root)))
        return [n for n in out if n is not None]

    def _render_one(self, key: str, what: tuple[Any, ...]) -> dict[str, Any] | None:
        tree = self._tree
        kind = what[0]
        if kind == "run":
            run = tree.runs.get(what[1])
            if run is None:
                return None
            roots = tree.roots
            if run in roots:
                parent, slot = "", "body"
            else:
                parent, slot = self._run_place(run)
            sub_n = self._sub_index.get(run.parent_span_id or "")
            parts = {} if run in roots else render.live_run_parts(run, sub_n)
            return self._node(key, parent, slot, render.live_run_shell(run, run in roots), parts)
        if kind == "turn":
            run = tree.runs.get(what[1])
            turn = tree.turn_node(what[1], what[2])
            if run is None or turn is None:
                return None
            is_last = bool(run.turns) and run.turns[-1] is turn
            return self._node(key, f"r:{run.run_id}", "turns", render.live_turn_shell(key),
                              render.live_turn_parts(turn), open_=is_last)
        if kind == "code":
            turn = tree.turn_node(what[1], what[2])
            if turn is None or what[3] >= len(turn.code):
                return None
            if key in self._frags:  # a code block is final once run
                return None
            return self._node(key, render.turn_node_id(what[1], what[2]), "codes",
                              render.live_code(key, turn.code[what[3]]), {})
        if kind == "sub":
            sub = tree.subcall_node(what[1])
            if sub is None:
                return None
            return self._node(key, render.turn_node_id(what[2], what[3]), "subs",
                              render.live_sub_shell(key),
                              render.live_sub_parts(sub, self._sub_index.get(what[1], 0)))
        return None

    def _run_place(self, run: RunNode) -> tuple[str, str]:
        """A child run goes under the turn that started it, else under its parent run."""
        parent = self._tree.runs.get(run.parent_run_id or "")
        if parent is None:
            return "", "body"
        for turn in parent.turns:
            if any(child is run for child in turn.children):
                return render.turn_node_id(parent.run_id, turn.turn), "kids"
        return f"r:{parent.run_id}", "kids"

    def _node(self, key: str, parent: str, slot: str, shell: str, parts: dict[str, str],
              open_: bool | None = None) -> dict[str, Any] | None:
        """The delta for one node: everything when new, else only the parts that changed."""
        old = self._frags.get(key)
        if old is None:
            full = {"id": key, "parent": parent, "slot": slot, "shell": shell, "parts": parts}
            if open_ is not None:
                full["open"] = open_
            self._frags[key] = full
            return full
        changed = {k: v for k, v in parts.items() if old["parts"].get(k) != v}
        delta: dict[str, Any] = {"id": key}
        if changed:
            old["parts"] = {**old["parts"], **changed}
            delta["parts"] = changed
        if open_ is not None and old.get("open") != open_:
            old["open"] = delta["open"] = open_
        return delta if len(delta) > 1 else None

    def _snapshot(self) -> dict[str, Any]:
        return {"seq": self._seq, "nodes": list(self._frags.values())}

    # -- frontend messages -------------------------------------------------------------------
    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        if kind == "stop":
            self.stop()
        elif kind == "resync":
            with self._flush_lock:
                snap = self._snapshot()
            self.send({"kind": "snapshot", **snap})

    def stop(self) -> None:
        """Ask the engine to cancel the run (what the Stop button does)."""
        self.cancel.set()
        self.stop_requested = True
        with self._lock:
            self._dirty["head"] = ("head",)
        self._schedule()

    # -- static view beside the widget ---------------------------------------------------------
    def show(self) -> Any:
        """Display the widget and, beside it, its static view; the widget's display handle.
        For a finished run (a replay) the static view is complete at once."""
        from IPython.display import display

        self._static_id = f"rlm-static-{self.uid}"  # before the widget: its bundle then
        handle = display(self, display_id=True)     # leaves the HTML copy out
        self.display_static()
        return handle

    def display_static(self) -> None:
        """Display, beside the widget, a static view of the run that ``finish()`` fills in.

        nbconvert picks the widget view whenever widget state is saved, and that view needs
        JavaScript from a CDN; GitHub runs no JavaScript at all. This second output (plain
        text/html) is what they show. Where the live widget renders, its CSS hides it."""
        from IPython.display import display

        self._static_id = f"rlm-static-{self.uid}"
        display(self._static_bundle(), raw=True, display_id=self._static_id)

    def _static_bundle(self) -> dict[str, str]:
        root = self._tree.root
        marker = f"<div class='{STATIC_CLASS}' data-rlm-uid='{self.uid}'>"
        if root is None or self.live:
            return {"text/plain": "", "text/html": marker + "</div>"}
        return {"text/plain": render.render_text(self._tree),
                "text/html": marker + render.render_html(self._tree) + "</div>"}

    def _update_static(self) -> None:
        if self._static_id is None:
            return
        try:
            from IPython.display import update_display

            update_display(self._static_bundle(), raw=True, display_id=self._static_id)
        except Exception:  # no kernel any more: nothing to update
            pass

    # -- views -------------------------------------------------------------------------------
    @property
    def tree(self) -> Trajectory:
        """The engine's fold of the events so far (``.root`` is a ``RunNode``)."""
        return self._tree

    @property
    def status(self) -> str:
        root = self._tree.root
        if root is None:
            return "waiting"
        st = root.status
        if st == "running" and not self.live:
            return "incomplete"
        if st == "running" and self.stop_requested:
            return "stopping"
        return st

    def __repr__(self) -> str:
        t = self._tree.totals()
        return (f"<RLM live view: {self.status}, {t.turns} turns, {t.subcalls} sub-calls, "
                f"{render.fmt_tokens(t.tokens)} tokens>")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Widget view plus text fallbacks. The HTML/Markdown fallbacks are left out when a
        static view is displayed beside the widget (a frontend without widgets would show
        the run twice)."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict) and self._tree.root is not None and not self.live:
            data = dict(data)
            data["text/plain"] = repr(self)
            if self._static_id is None:
                data["text/html"] = render.render_html(self._tree)
                data["text/markdown"] = render.render_markdown(self._tree)
            return (data, bundle[1]) if isinstance(bundle, tuple) else data
        return bundle
