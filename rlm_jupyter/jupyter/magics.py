"""``%%rlm`` and ``%rlm``: argument parsing plus one call into the engine or a command
(watermark's shape).

The knobs (traitlets, ``%%rlm`` options) are built from ``rlm_jupyter/settings.py``; the
subcommands' work lives in ``rlm_jupyter/commands``; this module parses, calls and displays.
Loading must stay cheap (``%load_ext rlm`` <= 0.2 s, no litellm): the engine, the widget and
anywidget are imported only when a run starts. A mistake or a failed run fails the cell with
one ``UsageError: ...`` line (see :mod:`messages`), without a traceback wall.
"""

from __future__ import annotations

import os
import shlex
import threading
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, CFloat, CInt, Enum, TraitType, Unicode, Union, observe

from rlm_jupyter.jupyter import messages
from rlm_jupyter.jupyter.map_magic import map_options
from rlm_jupyter.jupyter.messages import CellFailure
from rlm_jupyter.settings import BY_NAME, KNOBS, Knob, deprecated_name

#: Session settings that are not knobs of a run: how the notebook shows one.
DISPLAY_MODES = ("auto", "widget", "text", "html")


def _fail(message: str) -> CellFailure:
    return CellFailure(message)


def _trait(knob: Knob) -> TraitType:
    """The traitlet for a knob: ``None`` (not set in this session) unless assigned."""
    if knob.choices is not None:
        trait: TraitType = Enum(knob.choices, None, allow_none=True, help=knob.help)
    elif knob.type is bool and knob.words:  # True/False or one of its words ("content")
        trait = Union([Bool(), Enum(knob.words)], default_value=None, allow_none=True,
                      help=knob.help)
    elif knob.type is bool:
        trait = Bool(None, allow_none=True, help=knob.help)
    elif knob.type is int:
        trait = CInt(None, allow_none=True, help=knob.help)
    elif knob.type is float:
        trait = CFloat(None, allow_none=True, help=knob.help)
    else:
        trait = Unicode(None, allow_none=True, help=knob.help)
    return trait.tag(config=True)


#: ``%config RLMMagics.NAME`` for every knob with a traitlet, built from the settings table.
_KNOB_TRAITS = {k.traitlet: _trait(k) for k in KNOBS if k.traitlet}
#: Traitlet name -> knob name (``budget`` -> ``budget_usd``).
TRAIT_KNOBS = {k.traitlet: k.name for k in KNOBS if k.traitlet}
#: What ``%rlm config`` shows and sets: every knob's traitlet, then the display mode.
CONFIG_NAMES = (*TRAIT_KNOBS, "display")
_KnobTraits = type(Magics)("_KnobTraits", (Magics,), dict(_KNOB_TRAITS))


def _knob_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one ``%%rlm`` option per knob that has one (a ``bool`` knob also gets ``--no-``)."""
    for knob in reversed([k for k in KNOBS if k.option]):
        if knob.type is bool:
            func = argument("--no-" + knob.option[0][2:], dest=knob.name, action="store_false",
                            default=None, help=f"Turn {knob.option[0]} off.")(func)
        func = argument(*knob.option, **knob.argparse_kwargs())(func)
    return func


@magics_class
class RLMMagics(_KnobTraits):  # type: ignore[misc, valid-type]
    """Session defaults for ``%%rlm``; every one is a traitlet (``%config RLMMagics.model = ...``).

    The knobs' traitlets come from ``rlm_jupyter/settings.py``. ``None`` means "not set here":
    the engine then uses its ``RLM_*`` environment variable or its own default. Options on a
    ``%%rlm`` line win over these.
    """

    display = Enum(DISPLAY_MODES, "auto",
                   help="Live view: widget in kernels, text in terminals (auto).").tag(config=True)
    max_tokens = CInt(None, allow_none=True,
                      help="Deprecated: use max_total_tokens.").tag(config=True)

    @observe("max_tokens")
    def _deprecated_max_tokens(self, change: Any) -> None:
        if change["new"] is not None:
            deprecated_name("max_tokens", stacklevel=5)
            self.max_total_tokens = change["new"]
            self.max_tokens = None

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.last_result: Any = None
        self.background: list[tuple[Any, Any]] = []  # (RunHandle, widget or None)
        self._ledger: Any = None
        self._demo_server: Any = None
        self._lock = threading.Lock()
        self._sessions: Any = None

    # ======================================================================= entry point
    @magic_arguments()
    @argument("--context", "-c", metavar="EXPR", default=None,
              help="Context: any notebook expression (str, list, dict, DataFrame), or a path, "
                   "directory or glob of files to read.")
    @argument("pairs", nargs="*", metavar="NAME=EXPR",
              help="Several named contexts; the sandbox sees them as a dict.")
    @argument("--out", "-o", metavar="NAME", default=None,
              help="Store the answer in NAME (the typed value with --output-type) and the "
                   "full result in NAME_run (the last result is always in `_rlm`).")
    @argument("--continue", dest="follow_up", action="store_true",
              help="Follow up in the last cell's session: the REPL keeps its variables and "
                   "the model sees the earlier questions (with --session NAME: that one).")
    @argument("--session", metavar="NAME", default=None,
              help="Ask in the named session (opened on first use; `%%rlm sessions`, "
                   "`%%rlm end NAME`).")
    @_knob_options
    @map_options
    @argument("--max-tokens", dest="max_tokens", type=int, default=None,
              help="Deprecated: use --max-total-tokens.")
    @argument("--background", "-b", action="store_true",
              help="Return at once; the live view's Stop button and `%%rlm stop` work.")
    @argument("--quiet", "-q", action="store_true", help="No live view; show only the answer.")
    @argument("--raw", action="store_true",
              help="Do not interpolate {var} in the question.")
    @no_var_expand
    @line_cell_magic
    def rlm(self, line: str, cell: str | None = None) -> Any:
        """Ask a Recursive Language Model; the question is the cell body.

        ``%%rlm --context doc --out answer`` then the question below. ``{name}`` in the
        question is replaced by the notebook variable ``name`` (``{{name}}`` keeps the braces;
        other braces, e.g. pasted code or JSON, are left untouched; ``--raw`` disables it).

        Line form: ``%rlm config|doctor|logs|replay|cost|models|stop|last|demo|help``.
        """
        if cell is None:
            return self._subcommand(line)
        return self._run_cell(line, cell)

    # ======================================================================= %%rlm
    def _parse(self, line: str) -> Any:
        from rlm_jupyter.commands.context import split_options

        try:
            return self.rlm.parser.parse_args(split_options(line))
        except UsageError as exc:
            raise _fail(messages.BAD_OPTION.format(message=str(exc).strip())) from None
        except ValueError as exc:  # an unclosed quote
            raise _fail(messages.BAD_OPTION.format(message=f"cannot parse options: {exc}")) from None

    def _settings(self, args: Any = None) -> dict[str, Any]:
        """Keyword arguments for ``RLM``: line options, then traitlets; None is left out."""
        values: dict[str, Any] = {}
        for trait, name in TRAIT_KNOBS.items():
            given = getattr(args, name, None) if args is not None else None
            values[name] = _first(given, getattr(self, trait))
        old = getattr(args, "max_tokens", None) if args is not None else None
        if old is not None:  # --max-tokens, the old name of --max-total-tokens
            deprecated_name("max_tokens")
            values["max_total_tokens"] = _first(values["max_total_tokens"], old)
        # In a notebook the cache is on unless turned off: re-running an unchanged cell
        # replays the same replies at $0 (marked "replayed from cache").
        values["cache"] = _first(values["cache"], True)
        return {k: v for k, v in values.items() if v is not None}

    def _make_rlm(self, args: Any, tools: Any = None) -> Any:
        kwargs = self._settings(args)
        if tools:
            kwargs["tools"] = tools
        try:
            from rlm_jupyter import RLM
            from rlm_jupyter.errors import RLMError
        except ImportError as exc:
            raise _fail(messages.ENGINE_MISSING.format(error=exc)) from None
        try:
            for name, value in kwargs.items():  # a bad option before "no model"
                BY_NAME[name].check(value)
            if not (kwargs.get("model") or os.environ.get("RLM_MODEL")):
                raise _fail(messages.NO_MODEL)
            return RLM(**kwargs)
        except RLMError as exc:
            raise _fail(str(exc)) from None

    # -- sessions, typed answers, tools (issue 15) ------------------------------------------
    @property
    def sessions(self) -> Any:
        if self._sessions is None:
            from rlm_jupyter.jupyter.sessions import NotebookSessions

            self._sessions = NotebookSessions()
        return self._sessions

    def _output_type(self, expr: str | None) -> Any:
        """``--output-type EXPR``: the type, evaluated in the notebook (``list[int]``, a model)."""
        if not expr:
            return None
        try:
            return self.shell.ev(expr)
        except Exception as exc:
            raise _fail(f"--output-type {expr}: {type(exc).__name__}: {exc}. Give a type the "
                        f"notebook knows, e.g. int, list[str], MyModel, pd.DataFrame.") from None

    def _tools(self, names: str | None) -> dict[str, Any] | None:
        """``--tools f,g``: notebook functions by name (the sandbox gets results, not them)."""
        if not names:
            return None
        tools = {}
        for name in (n.strip() for n in names.split(",")):
            fn = self.shell.user_ns.get(name)
            if not callable(fn):
                raise _fail(f"--tools {name}: no function named {name!r} in the notebook; "
                            f"define it first, or check the spelling.")
            tools[name] = fn
        return tools

    def _cmd_sessions(self, args: Any) -> None:
        from rlm_jupyter.commands.sessions import sessions_text

        print(sessions_text(self.sessions.all()))

    def _cmd_end(self, args: Any) -> None:
        try:
            session = self.sessions.end(args.name)
        except LookupError as exc:
            raise _fail(str(exc)) from None
        print(f"Session {session.name!r} closed ({len(session.results)} asks, "
              f"${session.cost_usd:.4f}); its variables are gone.")

    def _cmd_pull(self, args: Any) -> Any:
        from rlm_jupyter.errors import RLMError

        target = args.as_ or args.name
        if not target.isidentifier():
            raise _fail(f"--as needs a Python identifier, got {target!r}.")
        try:
            value = self.sessions.get(args.session).get(args.name, max_chars=args.max_chars)
        except (LookupError, RLMError) as exc:
            raise _fail(_first_line(str(exc))) from None
        self.shell.user_ns[target] = value
        print(f"{target} = {args.name} from the session ({type(value).__name__}, a copy).")

    def _cmd_export(self, args: Any) -> None:
        from rlm_jupyter.commands.export import EXPORTED, export_run

        path = export_run(self._log_dir(args.log_dir), args.runs, args.to, args.context_code)
        print(EXPORTED.format(path=path))

    def _display_mode(self, quiet: bool) -> str:
        if quiet:
            return "none"
        if self.display != "auto":
            return self.display
        return "widget" if getattr(self.shell, "kernel", None) is not None else "text"

    def _run_cell(self, line: str, cell: str) -> Any:
        from rlm_jupyter.commands.context import ContextError, interpolate, resolve_context
        from rlm_jupyter.jupyter._runner import RunHandle

        args = self._parse(line)
        if args.map is not None:  # %%rlm --map EXPR: jupyter/map_magic.py
            from rlm_jupyter.jupyter.map_magic import run_map_cell

            return run_map_cell(self, args, cell)
        ns = self.shell.user_ns
        question = (cell if args.raw else interpolate(cell, ns)).strip()
        if not question:
            raise _fail(messages.EMPTY_QUESTION)
        if args.out is not None and not args.out.isidentifier():
            raise _fail(messages.BAD_OUT_NAME.format(name=args.out))
        try:
            context = resolve_context(args.context, list(args.pairs), ns, evaluator=self.shell.ev)
        except ContextError as exc:
            raise _fail(str(exc)) from None
        rlm = self._make_rlm(args, tools=self._tools(args.tools))
        output_type = self._output_type(args.output_type)
        try:
            session = self.sessions.for_cell(rlm, context, name=args.session,
                                             follow_up=args.follow_up)
        except LookupError as exc:
            raise _fail(str(exc)) from None
        mode = self._display_mode(args.quiet)
        cancel = threading.Event()
        view, printer, handle_display = None, None, None
        subscribers: list[Callable[[Any], None]] = []
        if mode == "widget":
            from IPython.display import display

            from rlm_jupyter.jupyter.widget import RunWidget

            view = RunWidget(live=True, cancel=cancel)
            subscribers.append(view)
            handle_display = display(view, display_id=True)
            view.display_static()  # filled at the end: what nbconvert and GitHub show
        elif mode == "text" and not args.background:
            from rlm_jupyter.jupyter.progress import ProgressPrinter

            printer = ProgressPrinter()
            subscribers.append(printer)

        def fanout(event: Any) -> None:
            for fn in subscribers:
                fn(event)

        from rlm_jupyter.jupyter.sessions import SessionAsk

        handle = RunHandle(SessionAsk(session, output_type), question, context,
                           on_event=fanout, cancel=cancel)
        state = {"view": view, "display": handle_display, "out": args.out, "mode": mode,
                 "quiet": args.quiet}
        if args.background:
            handle.add_done_callback(lambda h: self._finish(h, state, background=True))
            with self._lock:
                self.background.append((handle, view))
            handle.start()
            target = f"`{args.out}`" if args.out else "`_rlm`"
            if mode != "widget":
                print(f"RLM run started in the background; the answer goes to {target} when it "
                      "ends; `%rlm stop` stops it.")
            return None

        tick = printer.drain if printer is not None else None
        handle.start()
        interrupted = False
        try:
            handle.wait(tick)
        except KeyboardInterrupt:
            interrupted = True
            if view is not None:
                view.stop()
            handle.stop(tick=tick)
        target = args.out + "_run" if args.out else "_rlm"
        if interrupted and not handle.done:
            # The engine is still closing sub-calls: do not hold the kernel; finish like a
            # background run (the partial result still lands in the variables).
            with self._lock:
                self.background.append((handle, view))
            handle.add_done_callback(lambda h: self._finish(h, state, background=True))
            raise _fail(messages.INTERRUPTED_PENDING.format(name=target))
        self._finish(handle, state, background=False)
        if interrupted:
            raise _fail(messages.INTERRUPTED.format(name=target))
        self._raise_for(handle)
        return None

    def _finish(self, handle: Any, state: dict[str, Any], background: bool) -> None:
        """Store results, update the display with static fallbacks, charge the ledger."""
        result = handle.result
        view = state["view"]
        if view is not None:
            view.finish()
            if state["display"] is not None:
                try:
                    state["display"].update(view)
                except Exception:
                    pass
        if background:
            with self._lock:
                self.background = [(h, v) for h, v in self.background if h is not handle]
        if result is None:
            return
        self.last_result = result
        ns = self.shell.user_ns
        ns["_rlm"] = result
        if state["out"]:
            typed = getattr(result, "output", None)
            ns[state["out"]] = typed if typed is not None else result.answer
            ns[state["out"] + "_run"] = result
        self.ledger.add(getattr(result, "usage", None))
        mode = state["mode"]
        if background:
            if mode != "widget":
                print(f"\nRLM background run {result.status}: "
                      f"{_first_line(result.answer or str(result.error or ''))}")
            return
        if mode == "text":
            if result.answer is not None:
                print(("Answer:\n" if result.status == "ok" else "Partial answer:\n") + result.answer)
        elif mode in ("none", "html") and result.answer is not None:
            self._show_answer(result, html=(mode == "html"))

    def _show_answer(self, result: Any, html: bool) -> None:
        if getattr(self.shell, "kernel", None) is None:
            print(result.answer)
            return
        from IPython.display import HTML, Markdown, display

        if html:
            from rlm_jupyter.jupyter import render

            display(HTML(render.render_html(render.result_events(result))))
        else:
            display(Markdown(result.answer))

    def _raise_for(self, handle: Any) -> None:
        exc = handle.exception
        if exc is not None:
            from rlm_jupyter.errors import RLMError

            if isinstance(exc, RLMError):
                raise _fail(_first_line(str(exc))) from None
            raise exc
        result = handle.result
        if result is not None and result.status != "ok":
            err = result.error
            kind = type(err).__name__ if err is not None else result.status
            raise _fail(messages.RUN_FAILED.format(
                status=kind, error=_first_line(str(err) if err is not None else result.status)))

    # ======================================================================= %rlm <sub>
    def _expand(self, line: str) -> str:
        """``$name`` / ``{expr}`` in subcommand lines (``%rlm replay $run.run_id``)."""
        from IPython.utils.text import DollarFormatter

        try:
            return DollarFormatter().vformat(line, args=[], kwargs=self.shell.user_ns)
        except Exception:
            return line

    def _subcommand(self, line: str) -> Any:
        """Parse ``%rlm NAME [options]`` with NAME's parser, then call ``_cmd_NAME(args)``."""
        from rlm_jupyter.commands import HelpShown, parser_for
        from rlm_jupyter.errors import CommandError

        try:
            words = shlex.split(self._expand(line))
        except ValueError as exc:
            raise _fail(messages.BAD_OPTION.format(message=f"cannot parse: {exc}")) from None
        if not words:
            words = ["help"]
        name, rest = words[0], words[1:]
        fn = getattr(self, f"_cmd_{name}", None)
        if name not in messages.SUBCOMMANDS or fn is None:
            raise _fail(messages.UNKNOWN_SUBCOMMAND.format(name=name))
        parser = parser_for(name, prog=f"%rlm {name}", help=messages.SUBCOMMANDS[name])
        if name == "demo":
            parser.add_argument("--force", action="store_true",
                                help="use the demo model even when RLM_MODEL is set")
        elif name == "end":
            parser.add_argument("name", metavar="NAME", help="the session to close")
        elif name == "pull":
            parser.add_argument("name", metavar="NAME", help="the sandbox variable to copy")
            parser.add_argument("--as", dest="as_", metavar="LOCAL", default=None,
                                help="the notebook variable to put it in (default: NAME)")
            parser.add_argument("--session", default=None,
                                help="which session (default: the last cell's)")
            parser.add_argument("--max-chars", type=int, default=2_000_000,
                                help="refuse values larger than this as JSON")
        try:
            args = parser.parse_args(rest)
            return fn(args)
        except HelpShown:
            return None
        except CommandError as exc:
            raise _fail(str(exc)) from None

    def _cmd_help(self, args: Any) -> None:
        print("%%rlm [options] + question in the cell body (see `%%rlm?`)")
        for name, (usage, text) in messages.SUBCOMMAND_USAGE.items():
            print(f"%rlm {name} {usage}".ljust(42) + text)

    def _log_dir(self, given: str | None = None) -> Any:
        from rlm_jupyter.settings import Settings

        return Settings.resolve(log_dir=given or self.log_dir).effective_log_dir

    def _cmd_config(self, args: Any) -> None:
        from rlm_jupyter.commands.config import config_text, parse_assignments, shown

        if args.reset and args.items:
            raise _fail("--reset takes no NAME=VALUE: reset first, then set what you need.")
        if args.reset:
            for name in CONFIG_NAMES:
                self.set_trait(name, self.trait_defaults(name))
            print("RLM settings reset to defaults.")
            return
        for key, value in parse_assignments(args.items, CONFIG_NAMES):
            try:
                self.set_trait(key, value)
            except Exception as exc:
                raise _fail(messages.BAD_CONFIG_VALUE.format(name=key,
                                                             error=_first_line(str(exc)))) from None
            knob = BY_NAME.get(TRAIT_KNOBS.get(key, ""))
            value = getattr(self, key)
            print(f"RLMMagics.{key} = {shown(value, knob) if knob and knob.secret else repr(value)}")
        if args.items:
            return
        print("RLM settings (`%rlm config NAME=VALUE` or `%config RLMMagics.NAME = ...`):")
        rows = [(t, BY_NAME[k], getattr(self, t)) for t, k in TRAIT_KNOBS.items()]
        rows.append(("display", None, self.display))
        print(config_text(rows))

    def _cmd_doctor(self, args: Any) -> None:
        from rlm_jupyter.commands.doctor import report, run_checks
        from rlm_jupyter.settings import Settings

        kwargs = self._settings()
        kwargs.pop("cache", None)
        try:
            settings = Settings.resolve(**kwargs)
        except Exception as exc:
            raise _fail(_first_line(str(exc))) from None
        print(report(run_checks(settings, ping=args.ping)))

    def _cmd_logs(self, args: Any) -> None:
        from rlm_jupyter.commands.logs import logs_text

        print(logs_text(self._log_dir(args.log_dir), limit=args.limit))

    def _cmd_replay(self, args: Any) -> None:
        from rlm_jupyter.commands.replay import load_events

        events = load_events(self._log_dir(args.log_dir), args.run)
        mode = self._display_mode(False)
        if mode == "widget":
            from rlm_jupyter.jupyter.widget import RunWidget

            RunWidget(events).show()  # with its static view: readable offline too
        elif mode == "html":
            from IPython.display import HTML, display

            from rlm_jupyter.jupyter import render

            display(HTML(render.render_html(events)))
        else:
            from rlm_jupyter.jupyter import render

            print(render.render_text(events, verbose=True))

    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            from rlm_jupyter.jupyter._runner import Ledger

            self._ledger = Ledger()
        return self._ledger

    def _cmd_cost(self, args: Any) -> None:
        from rlm_jupyter.commands.cost import cost_text

        print(cost_text(self.ledger.rows(), self.ledger.runs, self.ledger.total_usd))

    def _cmd_models(self, args: Any) -> None:
        from rlm_jupyter.commands.models import models_text

        print(models_text(args.filter, limit=args.limit))

    # -- stop / last / demo: the notebook's own --------------------------------------------
    def _cmd_stop(self, args: Any) -> None:
        with self._lock:
            active = [(h, v) for h, v in self.background if not h.done]
        if not active:
            print(messages.NO_BACKGROUND)
            return
        for handle, view in active:
            if view is not None:
                view.stop()
            handle.cancel.set()
        for handle, _ in active:
            handle.stop(grace_s=5.0)
        print(messages.STOPPED.format(n=len(active)))

    def _cmd_last(self, args: Any) -> Any:
        if self.last_result is None:
            raise _fail(messages.NO_LAST)
        return self.last_result

    def _cmd_demo(self, args: Any) -> "DemoStatus":
        """Use the scripted demo model unless a real one is configured; true when in use."""
        real = self.model or os.environ.get("RLM_MODEL")
        if real and not args.force and self._demo_server is None:
            print(messages.DEMO_REAL.format(model=real))
            return DemoStatus(False)
        if self._demo_server is None:
            try:
                from rlm_jupyter.testing import ScriptedServer
            except ImportError as exc:
                raise _fail(messages.ENGINE_MISSING.format(error=exc)) from None
            server = ScriptedServer.demo()
            server.start()
            self._demo_server = server
        server = self._demo_server
        self.model = server.model
        self.api_base = server.base_url
        self.api_key = "demo"
        # The Python API in the same notebook (RLM()) reads these too.
        os.environ["RLM_MODEL"] = server.model
        os.environ["RLM_API_BASE"] = server.base_url
        os.environ["RLM_API_KEY"] = "demo"
        print(messages.DEMO_ON.format(model=server.model, base_url=server.base_url))
        return DemoStatus(True)

    def close(self) -> None:
        """Stop background runs and the demo server (extension unload, kernel shutdown)."""
        with self._lock:
            active = list(self.background)
        for handle, _ in active:
            handle.stop(grace_s=2.0)
        if self._sessions is not None:
            self._sessions.close_all()
        if self._demo_server is not None:
            try:
                self._demo_server.stop()
            except Exception:
                pass
            self._demo_server = None


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _first_line(text: str, limit: int = 500) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# magic_arguments names the usage after the function (``%rlm``); the options belong to the
# cell form, so ``%%rlm?`` and option errors say ``%%rlm``.
RLMMagics.rlm.parser.prog = "%%rlm"
RLMMagics.rlm.__doc__ = (RLMMagics.rlm.__doc__ or "").replace("  %rlm [", "  %%rlm [", 1)


class DemoStatus:
    """What ``%rlm demo`` returns: true when the demo model is in use (``using_demo = %rlm
    demo``), and nothing as a cell's output: the line it printed already says which model."""

    def __init__(self, in_use: bool) -> None:
        self.in_use = in_use

    def __bool__(self) -> bool:
        return self.in_use

    def __repr__(self) -> str:
        return f"DemoStatus(in_use={self.in_use})"

    def _ipython_display_(self) -> None:
        """Display nothing (IPython calls this instead of showing the repr)."""


_LOADED: dict[int, RLMMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext rlm``: register the magics and make ``%config RLMMagics`` work."""
    if id(ipython) in _LOADED:
        return
    magics = RLMMagics(shell=ipython, parent=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    _LOADED[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    magics = _LOADED.pop(id(ipython), None)
    if magics is None:
        return
    magics.close()
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("rlm", None)


def get_magics(ipython: Any = None) -> RLMMagics | None:
    """The loaded ``RLMMagics`` instance (tests, and ``%rlm last`` from code)."""
    if ipython is None:
        try:
            from IPython import get_ipython

            ipython = get_ipython()
        except Exception:
            return None
    return _LOADED.get(id(ipython))


def last_result() -> Any:
    magics = get_magics()
    return magics.last_result if magics is not None else None


__all__ = ["RLMMagics", "load_ipython_extension", "unload_ipython_extension", "get_magics",
           "last_result"]
