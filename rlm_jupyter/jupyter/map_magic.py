"""``%%rlm --map EXPR --out df``: the same question over many contexts, with a live grid.

The magic stays a thin adapter: magics.py parses the line (the options below are added to
``%%rlm`` by :func:`map_options`) and calls :func:`run_map_cell`, which runs ``RLM.map`` in a
worker thread and waits in short joins, so the kernel's interrupt (■) stops the map cleanly
(running items cancelled, their sandboxes closed, every row kept), exactly as for one run.

``--out NAME`` stores the rows as a DataFrame in ``NAME`` and the ``MapResult`` in
``NAME_map``; the last map is always in ``_rlm_map``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any, Callable

from IPython.core.magic_arguments import argument

from rlm_jupyter.jupyter._runner import POLL_S, STOP_GRACE_S

_FIELD_RE = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")


def map_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The ``%%rlm`` options of a map (a decorator, so magics.py needs one line)."""
    for decorator in reversed([
        argument("--map", metavar="EXPR", default=None,
                 help="Ask the question of every item: a list, dict, Series, DataFrame (rows; "
                      "{column} in the question) or a path glob/directory; {key} names the "
                      "item. Shows a live grid; --out NAME gets one row per item."),
        argument("--map-concurrency", dest="map_concurrency", type=int, default=8,
                 metavar="N", help="With --map: at most N items at once (default 8)."),
        argument("--map-budget", dest="map_budget", type=float, default=None, metavar="USD",
                 help="With --map: the most the whole map may spend (--budget is per item)."),
        argument("--executor", default=None, metavar="EXPR",
                 help="With --map: a dask.distributed.Client (or any Executor) to run items "
                      "on; default: threads here."),
        argument("--resume", action="store_true",
                 help="With --map: skip items a previous run of this map finished."),
    ]):
        func = decorator(func)
    return func


class MapHandle:
    """``RLM.map`` on a daemon thread, with a cancel flag and completion callbacks."""

    def __init__(self, rlm: Any, question: str, contexts: Any, kwargs: dict[str, Any],
                 on_event: Callable[[Any], None], cancel: threading.Event) -> None:
        self.rlm, self.question, self.contexts, self.kwargs = rlm, question, contexts, kwargs
        self.on_event, self.cancel = on_event, cancel
        self.result: Any = None
        self.exception: BaseException | None = None
        self._done = threading.Event()
        self._callbacks: list[Callable[[MapHandle], None]] = []
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._target, name="rlm-map-cell", daemon=True)

    def _target(self) -> None:
        try:
            self.result = self.rlm.map(self.question, self.contexts, on_event=self.on_event,
                                       cancel=self.cancel, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the cell
            self.exception = exc
        finally:
            # Callbacks (storing the rows in the notebook) run before the cell's wait ends,
            # so the next cell sees them.
            with self._lock:
                callbacks, self._callbacks = self._callbacks, []
            for fn in callbacks:
                try:
                    fn(self)
                except Exception:  # noqa: BLE001
                    pass
            with self._lock:
                self._done.set()

    def add_done_callback(self, fn: Callable[[MapHandle], None]) -> None:
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def start(self) -> MapHandle:
        self.thread.start()
        return self

    def wait(self, tick: Callable[[], None] | None = None) -> None:
        while not self._done.wait(POLL_S):
            if tick is not None:
                tick()
        if tick is not None:
            tick()

    def stop(self, grace_s: float = STOP_GRACE_S * 5) -> bool:
        self.cancel.set()
        deadline = time.monotonic() + grace_s
        while not self._done.is_set() and time.monotonic() < deadline:
            try:
                self._done.wait(POLL_S)
            except KeyboardInterrupt:
                continue
        return self._done.is_set()


class _TextProgress:
    """Terminal IPython: one line per finished item, then the total."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        if getattr(event, "type", "") == "item_finished" and event.result is not None:
            r = event.result
            shown = (r.answer or r.error or "").replace("\n", " ")[:80]
            with self._lock:
                self.lines.append(f"[{r.status}] {r.key}: {shown}")

    def drain(self) -> None:
        with self._lock:
            lines, self.lines = self.lines, []
        for line in lines:
            print(line, flush=True)


def resolve_map_contexts(expr: str, magics: Any) -> Any:
    """``--map EXPR``: a notebook expression, else a path glob / directory as written."""
    from rlm_jupyter.jupyter.magics import _fail

    text = expr.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
        return text  # a quoted literal is a path or glob
    try:
        return magics.shell.ev(text)
    except Exception as exc:  # noqa: BLE001 - a path is not a Python expression
        if any(ch in text for ch in "*?/") or os.path.exists(os.path.expanduser(text)):
            return text
        raise _fail(f"--map {expr}: not a notebook expression ({type(exc).__name__}: {exc}) "
                    "and not a path, directory or glob. Pass a list, dict, Series or "
                    "DataFrame variable, or files like 'docs/*.txt'.") from None


def _interpolate(cell: str, ns: dict[str, Any], raw: bool) -> str:
    """Notebook ``{var}`` interpolation, keeping ``{key}`` and ``{column}`` for the map."""
    if raw:
        return cell
    try:
        from rlm_jupyter.commands.context import interpolate
    except ImportError:
        from rlm_jupyter.jupyter._context import interpolate  # type: ignore[no-redef]
    return _keep_fields(cell, ns, interpolate)


def _keep_fields(cell: str, ns: dict[str, Any], interpolate: Callable[..., str]) -> str:
    # {name} for a notebook variable is filled now; any other {name} ({key}, a column) is
    # left for the map to fill per item.
    def protect(match: re.Match[str]) -> str:
        name = match.group(1)
        return match.group(0) if name in ns and name != "key" else "{{" + name + "}}"

    return interpolate(_FIELD_RE.sub(protect, cell), ns)


def run_map_cell(magics: Any, args: Any, cell: str) -> None:
    """The body of ``%%rlm --map EXPR``: build the RLM, run the map, show the grid."""
    from rlm_jupyter.jupyter.magics import _fail

    ns = magics.shell.user_ns
    question = _interpolate(cell, ns, bool(getattr(args, "raw", False))).strip()
    if not question:
        raise _fail("The question is empty: write it in the cell body below %%rlm --map.")
    out = args.out
    if out is not None and not out.isidentifier():
        raise _fail(f"--out {out}: not a valid variable name.")
    contexts = resolve_map_contexts(args.map, magics)
    executor = None
    if args.executor:
        try:
            executor = magics.shell.ev(args.executor)
        except Exception as exc:  # noqa: BLE001
            raise _fail(f"--executor {args.executor}: {type(exc).__name__}: {exc}") from None
    rlm = magics._make_rlm(args)
    kwargs: dict[str, Any] = {"concurrency": args.map_concurrency, "executor": executor,
                              "budget_usd": args.map_budget,
                              "resume": True if args.resume else None}
    mode = magics._display_mode(args.quiet)
    cancel = threading.Event()
    subscribers: list[Callable[[Any], None]] = []
    grid, printer = None, None
    if mode == "widget":
        from IPython.display import display

        from rlm_jupyter.jupyter.grid import MapGrid

        grid = MapGrid(live=True, cancel=cancel)
        subscribers.append(grid)
        display(grid)
        grid.display_static()
    elif mode == "text" and not args.background:
        printer = _TextProgress()
        subscribers.append(printer)

    def fanout(event: Any) -> None:
        for fn in subscribers:
            fn(event)

    handle = MapHandle(rlm, question, contexts, kwargs, fanout, cancel)

    def store(h: MapHandle) -> None:
        if h.result is None:
            return
        ns["_rlm_map"] = h.result
        if out:
            ns[out] = h.result.to_pandas()
            ns[out + "_map"] = h.result

    handle.add_done_callback(store)
    if args.background:
        with magics._lock:
            magics.background.append((handle, grid))
        handle.start()
        if mode != "widget":
            print(f"RLM map started in the background; rows go to `{out or '_rlm_map'}` when "
                  "it ends; `%rlm stop` stops it.")
        return None
    handle.start()
    tick = printer.drain if printer is not None else None
    try:
        handle.wait(tick)
    except KeyboardInterrupt:
        if grid is not None:
            grid.stop()
        finished = handle.stop()
        target = out or "_rlm_map"
        if not finished:
            with magics._lock:
                magics.background.append((handle, grid))
            raise _fail(f"Interrupted: the map is still stopping its items; the rows land in "
                        f"`{target}` when it has.") from None
        raise _fail(f"Interrupted: the map stopped; finished rows are in `{target}` (the "
                    "others say cancelled). Re-run with --resume to finish only the rest.") \
            from None
    if handle.exception is not None:
        from rlm_jupyter.errors import RLMError

        if isinstance(handle.exception, RLMError):
            raise _fail(str(handle.exception)) from None
        raise handle.exception
    result = handle.result
    if printer is not None:
        from rlm_jupyter.jupyter.grid import total_line, _result_totals

        print("RLM map: " + total_line(_result_totals(result)))
    elif mode == "none":
        c = result.counts()
        print(f"RLM map: {c['ok']} ok, {c['error']} failed, {c['cancelled']} cancelled; "
              f"rows in `{out or '_rlm_map'}`.")
    return None
