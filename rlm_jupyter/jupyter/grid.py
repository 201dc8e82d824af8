"""The live progress grid of ``RLM.map``: one cell per item, a total line, Stop.

Why this shape (the same as the single-run widget, widget.py):
- The map's driver thread calls ``grid(event)`` with map events (engine/batch.py); the grid
  only records the item's state and marks it dirty. At most ``max_rate`` times a second a
  timer thread sends the cells that changed plus the total line as one numbered delta, so a
  map of 1,000 items costs the browser at most ten small messages a second.
- When the map ends every cell is synced once as the ``snapshot`` trait (reloads, saved
  widget state); a view that missed a delta asks for a snapshot.
- Clicking a cell asks the kernel for that item's trajectory, rendered by render.py's static
  HTML; it arrives when the kernel is idle (after the map, or during a ``--background`` one).
- The Stop button sets the map's cancel flag: running items stop, the rest end cancelled.
- ``display_static()`` puts a text/HTML view beside the widget for nbconvert and GitHub;
  grid.js hides it wherever the live grid renders.
"""

from __future__ import annotations

import html
import pathlib
import threading
import time
import uuid
from typing import Any

import anywidget
import traitlets

from rlm_jupyter.engine import batch
from rlm_jupyter.jupyter._throttle import FlushTimer

_HERE = pathlib.Path(__file__).parent

STATIC_CLASS = "rlm-map-static-beside"
#: Items whose trajectories the static view embeds (the rest: their rows only).
STATIC_TRAJECTORIES = 50

STATES = ("queued", "running", "ok", "error", "cancelled")


class MapGrid(anywidget.AnyWidget):
    """Live grid of a map: state, tokens, cost and time per item; click for the trajectory."""

    _esm = _HERE / "grid.js"
    _css = _HERE / "grid.css"

    uid = traitlets.Unicode().tag(sync=True)
    question = traitlets.Unicode("").tag(sync=True)
    item_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)  # not `keys`: ipywidgets' own
    snapshot = traitlets.Dict().tag(sync=True)
    live = traitlets.Bool(False).tag(sync=True)
    stop_requested = traitlets.Bool(False).tag(sync=True)

    def __init__(self, *, live: bool = False, cancel: threading.Event | None = None,
                 max_rate: float = 10.0, **kwargs: Any) -> None:
        kwargs.setdefault("uid", uuid.uuid4().hex)
        super().__init__(**kwargs)
        self.cancel = cancel if cancel is not None else threading.Event()
        self.live = live
        self.cells: list[dict[str, Any]] = []
        self.results: dict[int, batch.ItemResult] = {}
        self.result: batch.MapResult | None = None
        self.started_at = time.time()
        self.executor = ""
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._dirty: set[int] = set()
        self._seq = 0
        self._throttle = FlushTimer(self.flush, lambda: bool(self._dirty), self._lock, max_rate)
        self._static_id: str | None = None
        self.messages_sent = 0
        self.on_msg(self._on_frontend_msg)

    # -- feeding (the map's driver thread) ---------------------------------------------------
    def __call__(self, event: Any) -> None:
        self.push(event)

    def push(self, event: Any) -> None:
        with self._lock:
            if isinstance(event, batch.MapStarted):
                self.started_at = event.ts
                self.executor = event.executor
                self.cells = [{"s": "queued", "t": 0, "c": 0.0, "e": 0.0, "st": None}
                              for _ in event.keys]
                self._dirty = set(range(len(self.cells)))
                keys, question = list(event.keys), event.question
            elif isinstance(event, batch.ItemStarted) and event.index < len(self.cells):
                cell = self.cells[event.index]
                if cell["s"] == "queued":
                    cell.update(s="running", st=event.ts)
                    self._dirty.add(event.index)
            elif isinstance(event, batch.ItemProgress) and event.index < len(self.cells):
                cell = self.cells[event.index]
                if cell["s"] in ("queued", "running"):
                    cell.update(s="running", t=event.tokens, c=event.cost_usd)
                    cell["st"] = cell["st"] or event.ts
                    self._dirty.add(event.index)
            elif isinstance(event, batch.ItemFinished) and event.result is not None:
                r = event.result
                if r.index < len(self.cells):
                    self.results[r.index] = r
                    self.cells[r.index].update(s=r.status, t=r.total_tokens, c=r.cost_usd,
                                               e=r.elapsed_s, r=1 if r.resumed else 0)
                    self._dirty.add(r.index)
            elif isinstance(event, batch.MapFinished):
                self.result = event.result
        if isinstance(event, batch.MapStarted):
            self.question = question
            self.item_keys = keys  # synced once; cells travel in deltas
        if isinstance(event, batch.MapFinished):
            self.finish()
        else:
            self._schedule()

    def _schedule(self) -> None:
        self._throttle.schedule()

    def flush(self) -> None:
        """Send the cells that changed since the last flush, and the total line."""
        with self._flush_lock:
            with self._lock:
                dirty, self._dirty = sorted(self._dirty), set()
                cells = {str(i): dict(self.cells[i]) for i in dirty}
                total = self.totals()
            self._throttle.last = time.monotonic()
            self._seq += 1
            try:
                self.send({"kind": "delta", "seq": self._seq, "cells": cells, "total": total})
            except Exception:  # no frontend: the snapshot carries it
                pass
            self.messages_sent += 1

    def finish(self) -> None:
        self._throttle.cancel()
        self.live = False
        self.flush()
        with self._flush_lock:
            self.snapshot = self._snapshot()
        self._update_static()

    def _snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"seq": self._seq, "cells": [dict(c) for c in self.cells],
                    "total": self.totals()}

    # -- the total line ----------------------------------------------------------------------
    def totals(self) -> dict[str, Any]:
        with self._lock:
            counts = dict.fromkeys(STATES, 0)
            tokens, cost = 0, 0.0
            for cell in self.cells:
                counts[cell["s"]] = counts.get(cell["s"], 0) + 1
                tokens += int(cell["t"])
                cost += float(cell["c"])
        n = len(self.cells)
        finished = counts["ok"] + counts["error"] + counts["cancelled"]
        elapsed = max(0.0, time.time() - self.started_at)
        eta = None
        if self.live and 0 < finished < n and not self.cancel.is_set():
            eta = elapsed / finished * (n - finished)
        return {"n": n, **counts, "done": finished, "tokens": tokens, "cost": cost,
                "elapsed": elapsed, "eta": eta, "live": bool(self.live),
                "stopping": bool(self.stop_requested and self.live)}

    def total_line(self) -> str:
        return total_line(self.totals())

    # -- frontend messages -------------------------------------------------------------------
    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        if kind == "stop":
            self.stop()
        elif kind == "resync":
            self.send({"kind": "snapshot", **self._snapshot()})
        elif kind == "open":
            index = content.get("index")
            if isinstance(index, int):
                self.send({"kind": "trajectory", "index": index,
                           "html": self.trajectory_html(index)})

    def trajectory_html(self, index: int) -> str:
        """One item's trajectory as render.py's static HTML (or why there is none yet)."""
        result = self.results.get(index)
        key = self.item_keys[index] if index < len(self.item_keys) else str(index)
        head = f"<div class='rlm-map-traj-head'><b>{html.escape(key)}</b></div>"
        if result is None:
            return head + "<div class='rlm-dim'>Still running: the trajectory opens when it " \
                          "ends.</div>"
        return head + item_html(result)

    def stop(self) -> None:
        """Ask the map to stop (the Stop button)."""
        self.cancel.set()
        self.stop_requested = True
        self._schedule()

    # -- static view beside the widget -------------------------------------------------------
    def display_static(self) -> None:
        from IPython.display import display

        self._static_id = f"rlm-map-static-{self.uid}"
        display(self._static_bundle(), raw=True, display_id=self._static_id)

    def _static_bundle(self) -> dict[str, str]:
        marker = f"<div class='{STATIC_CLASS}' data-rlm-uid='{self.uid}'>"
        if self.result is None or self.live:
            return {"text/plain": "", "text/html": marker + "</div>"}
        bundle = map_mimebundle(self.result)
        return {"text/plain": bundle["text/plain"],
                "text/html": marker + bundle["text/html"] + "</div>"}

    def _update_static(self) -> None:
        if self._static_id is None:
            return
        try:
            from IPython.display import update_display

            update_display(self._static_bundle(), raw=True, display_id=self._static_id)
        except Exception:  # no kernel any more
            pass

    def __repr__(self) -> str:
        return f"<RLM map grid: {self.total_line()}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict) and self.result is not None and not self.live:
            data = dict(data)
            data["text/plain"] = repr(self)
            if self._static_id is None:
                data["text/html"] = map_mimebundle(self.result)["text/html"]
            return (data, bundle[1]) if isinstance(bundle, tuple) else data
        return bundle


# -- static views (nbconvert, GitHub, terminals) --------------------------------------------------
def total_line(t: dict[str, Any]) -> str:
    from rlm_jupyter.jupyter.render import fmt_cost, fmt_secs, fmt_tokens

    parts = [f"{t['done']}/{t['n']} done", f"{t['ok']} ok", f"{t['error']} failed"]
    if t.get("cancelled"):
        parts.append(f"{t['cancelled']} cancelled")
    if t.get("running"):
        parts.append(f"{t['running']} running")
    parts += [f"{fmt_tokens(t['tokens'])} tokens", fmt_cost(t["cost"]), fmt_secs(t["elapsed"])]
    if t.get("eta") is not None:
        parts.append(f"ETA {fmt_secs(t['eta'])}")
    return " · ".join(parts)


def _result_totals(result: batch.MapResult) -> dict[str, Any]:
    c = result.counts()
    return {"n": len(result), "ok": c["ok"], "error": c["error"],
            "cancelled": c["cancelled"], "running": 0, "done": len(result),
            "tokens": result.total_tokens, "cost": result.cost_usd,
            "elapsed": result.elapsed_s, "eta": None}


def item_html(result: batch.ItemResult) -> str:
    from rlm_jupyter.jupyter import render

    parts = []
    if result.error:
        parts.append(f"<div class='rlm-err'>{html.escape(result.error_type or 'error')}: "
                     f"{html.escape(result.error)}</div>")
    if result.resumed:
        parts.append("<div class='rlm-dim'>Done in an earlier run (resumed): nothing spent "
                     "this time.</div>")
    trajectory = result.load_trajectory()
    if trajectory is not None:
        parts.append(render.render_html(trajectory))
    elif result.answer is not None:
        parts.append(f"<pre>{html.escape(result.answer)}</pre>")
    return "".join(parts) or "<div class='rlm-dim'>No trajectory.</div>"


def map_mimebundle(result: batch.MapResult) -> dict[str, str]:
    """Text and static HTML of a finished map: the total line, a table, trajectories."""
    from rlm_jupyter.jupyter.render import fmt_cost, fmt_secs, fmt_tokens

    line = total_line(_result_totals(result))
    text = [f"RLM map: {line}"]
    rows = []
    for r in result:
        state = r.status + (" (resumed)" if r.resumed else "")
        shown = (r.answer or r.error or "").replace("\n", " ")
        text.append(f"  [{state}] {r.key}: {shown[:100]}")
        traj = ""
        if r.index < STATIC_TRAJECTORIES:
            traj = (f"<details><summary>trajectory</summary>{item_html(r)}</details>")
        rows.append(
            f"<tr class='rlm-map-row rlm-map-{r.status}'><td>{html.escape(str(r.key))}</td>"
            f"<td><span class='rlm-map-state rlm-map-s-{r.status}'>{html.escape(state)}</span>"
            f"</td><td>{html.escape(shown[:300])}</td><td>{fmt_tokens(r.total_tokens)}</td>"
            f"<td>{fmt_cost(r.cost_usd)}</td><td>{fmt_secs(r.elapsed_s)}</td><td>{traj}</td>"
            "</tr>")
    if len(result) > STATIC_TRAJECTORIES:
        rows.append(f"<tr><td colspan='7' class='rlm-dim'>Trajectories of the first "
                    f"{STATIC_TRAJECTORIES} items only; every run's log is in the log_path "
                    "column of to_pandas().</td></tr>")
    page = (f"<div class='rlm-map-static'><div><b>RLM map</b> · {html.escape(line)}</div>"
            f"<div><i>{html.escape(result.question)}</i></div>"
            "<table><thead><tr><th>key</th><th>status</th><th>answer / error</th>"
            "<th>tokens</th><th>cost</th><th>time</th><th></th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")
    return {"text/plain": "\n".join(text), "text/html": page}
