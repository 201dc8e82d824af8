"""``%%rlm`` and ``%rlm``: argument parsing plus one call into the engine (watermark's shape).

Loading must stay cheap (``%load_ext rlm`` <= 0.2 s, no litellm): the engine, the widget and
anywidget are imported only when a run starts. Every user mistake becomes one
``RLMUsageError`` line (see :mod:`messages`) that fails the cell without a traceback wall.
"""

from __future__ import annotations

import ast
import os
import shlex
import threading
import time
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, CFloat, CInt, Enum, Unicode

from rlm_jupyter.jupyter import messages
from rlm_jupyter.jupyter.messages import RLMUsageError

_SANDBOXES = ("local", "docker", "inprocess")
_SETTINGS = ("model", "sub_model", "sandbox", "max_depth", "max_iterations", "max_subcalls",
             "max_tokens", "budget", "timeout", "concurrency", "api_base", "api_key", "log_dir",
             "cache", "display")


def _fail(message: str) -> RLMUsageError:
    return RLMUsageError(message)


@magics_class
class RLMMagics(Magics):
    """Session defaults for ``%%rlm``; every one is a traitlet (``%config RLMMagics.model = ...``).

    ``None`` means "not set here": the engine then uses its ``RLM_*`` environment variable or
    its own default. Options on a ``%%rlm`` line win over these.
    """

    model = Unicode(None, allow_none=True, help="Root model (litellm name).").tag(config=True)
    sub_model = Unicode(None, allow_none=True, help="Model for llm_query sub-calls.").tag(config=True)
    sandbox = Enum(_SANDBOXES, None, allow_none=True, help="local | docker | inprocess").tag(config=True)
    max_depth = CInt(None, allow_none=True, help="Recursion depth for rlm_query.").tag(config=True)
    max_iterations = CInt(None, allow_none=True, help="Root turns.").tag(config=True)
    max_subcalls = CInt(None, allow_none=True, help="Sub-calls per run tree.").tag(config=True)
    max_tokens = CInt(None, allow_none=True, help="Tokens per run tree.").tag(config=True)
    budget = CFloat(None, allow_none=True, help="USD per run tree.").tag(config=True)
    timeout = CFloat(None, allow_none=True, help="Seconds per run.").tag(config=True)
    concurrency = CInt(None, allow_none=True, help="Parallel sub-calls.").tag(config=True)
    api_base = Unicode(None, allow_none=True, help="OpenAI-compatible base URL.").tag(config=True)
    api_key = Unicode(None, allow_none=True, help="API key (never shown).").tag(config=True)
    log_dir = Unicode(None, allow_none=True, help="Where run logs (JSONL) go.").tag(config=True)
    cache = Bool(None, allow_none=True,
                 help="Response cache: on unless False (re-running an unchanged cell is free)."
                 ).tag(config=True)
    display = Enum(("auto", "widget", "text", "html"), "auto",
                   help="Live view: widget in kernels, text in terminals (auto).").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.last_result: Any = None
        self.background: list[tuple[Any, Any]] = []  # (RunHandle, widget or None)
        self._ledger: Any = None
        self._demo_server: Any = None
        self._lock = threading.Lock()

    # ======================================================================= entry point
    @magic_arguments()
    @argument("--context", "-c", metavar="EXPR", default=None,
              help="Context: any notebook expression (str, list, dict, DataFrame), or a path, "
                   "directory or glob of files to read.")
    @argument("pairs", nargs="*", metavar="NAME=EXPR",
              help="Several named contexts; the sandbox sees them as a dict.")
    @argument("--out", "-o", metavar="NAME", default=None,
              help="Store the answer in NAME and the full result in NAME_run "
                   "(the last result is always in `_rlm`).")
    @argument("--model", "-m", default=None, help="Root model (litellm name).")
    @argument("--sub-model", default=None, help="Model for llm_query sub-calls.")
    @argument("--sandbox", default=None, help="local (default), docker or inprocess.")
    @argument("--max-depth", type=int, default=None, help="Recursion depth for rlm_query.")
    @argument("--max-iterations", type=int, default=None, help="Root turns.")
    @argument("--max-subcalls", type=int, default=None, help="Sub-calls per run tree.")
    @argument("--max-tokens", type=int, default=None, help="Tokens per run tree.")
    @argument("--budget", type=float, default=None, metavar="USD", help="Cost cap in USD.")
    @argument("--timeout", type=float, default=None, metavar="S", help="Wall-time cap in seconds.")
    @argument("--background", "-b", action="store_true",
              help="Return at once; the live view's Stop button and `%%rlm stop` work.")
    @argument("--quiet", "-q", action="store_true", help="No live view; show only the answer.")
    @argument("--no-cache", dest="cache", action="store_false", default=None,
              help="Ask the model again. By default re-running an unchanged cell replays "
                   "its replies from the response cache ($0, marked 'replayed from cache').")
    @argument("--cache", dest="cache", action="store_true", default=None,
              help="Use the response cache (the default in a notebook; `%%rlm config "
                   "cache=False` turns the default off).")
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
        from rlm_jupyter.jupyter._context import split_options

        try:
            return self.rlm.parser.parse_args(split_options(line))
        except UsageError as exc:
            raise _fail(messages.BAD_OPTION.format(message=str(exc).strip())) from None
        except ValueError as exc:  # an unclosed quote
            raise _fail(messages.BAD_OPTION.format(message=f"cannot parse options: {exc}")) from None

    def _settings(self, args: Any = None) -> dict[str, Any]:
        """Keyword arguments for ``RLM``: line options, then traitlets; None is left out."""
        pick = (lambda name: getattr(args, name, None)) if args is not None else (lambda name: None)
        values = {
            "model": pick("model") or self.model,
            "sub_model": pick("sub_model") or self.sub_model,
            "sandbox": pick("sandbox") or self.sandbox,
            "max_depth": _first(pick("max_depth"), self.max_depth),
            "max_iterations": _first(pick("max_iterations"), self.max_iterations),
            "max_subcalls": _first(pick("max_subcalls"), self.max_subcalls),
            "max_tokens": _first(pick("max_tokens"), self.max_tokens),
            "budget_usd": _first(pick("budget"), self.budget),
            "timeout_s": _first(pick("timeout"), self.timeout),
            "concurrency": self.concurrency,
            "api_base": self.api_base,
            "api_key": self.api_key,
            "log_dir": self.log_dir,
            # In a notebook the cache is on unless turned off: re-running an unchanged cell
            # replays the same replies at $0 (marked "replayed from cache").
            "cache": _first(pick("cache"), self.cache, True),
        }
        return {k: v for k, v in values.items() if v is not None}

    def _make_rlm(self, args: Any) -> Any:
        kwargs = self._settings(args)
        if kwargs.get("sandbox") and kwargs["sandbox"] not in _SANDBOXES:
            raise _fail(messages.BAD_SANDBOX.format(name=kwargs["sandbox"]))
        if not (kwargs.get("model") or os.environ.get("RLM_MODEL")):
            raise _fail(messages.NO_MODEL)
        try:
            from rlm_jupyter import RLM
            from rlm_jupyter.errors import RLMError
        except ImportError as exc:
            raise _fail(messages.ENGINE_MISSING.format(error=exc)) from None
        try:
            return RLM(**kwargs)
        except RLMError as exc:
            raise _fail(str(exc)) from None

    def _display_mode(self, quiet: bool) -> str:
        if quiet:
            return "none"
        if self.display != "auto":
            return self.display
        return "widget" if getattr(self.shell, "kernel", None) is not None else "text"

    def _run_cell(self, line: str, cell: str) -> Any:
        from rlm_jupyter.jupyter._context import ContextError, interpolate, resolve_context
        from rlm_jupyter.jupyter._runner import RunHandle

        args = self._parse(line)
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
        rlm = self._make_rlm(args)
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
        elif mode == "text" and not args.background:
            from rlm_jupyter.jupyter.progress import ProgressPrinter

            printer = ProgressPrinter()
            subscribers.append(printer)

        def fanout(event: Any) -> None:
            for fn in subscribers:
                fn(event)

        handle = RunHandle(rlm, question, context, on_event=fanout, cancel=cancel)
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
            ns[state["out"]] = result.answer
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
        try:
            words = shlex.split(self._expand(line))
        except ValueError as exc:
            raise _fail(messages.BAD_OPTION.format(message=f"cannot parse: {exc}")) from None
        if not words:
            return self._cmd_help([])
        name, rest = words[0], words[1:]
        fn = getattr(self, f"_cmd_{name}", None)
        if name not in messages.SUBCOMMANDS or fn is None:
            raise _fail(messages.UNKNOWN_SUBCOMMAND.format(name=name))
        return fn(rest)

    def _cmd_help(self, rest: list[str]) -> None:
        print("%%rlm [options] + question in the cell body (see `%%rlm?`)\n"
              "%rlm config [NAME=VALUE ...] [--reset]   show or set session defaults\n"
              "%rlm doctor [--ping]                     check the setup, each problem with a fix\n"
              "%rlm logs [-n N]                         recent runs\n"
              "%rlm replay RUN_ID|PATH                  show a saved run (no model called)\n"
              "%rlm cost                                this session's spend per model\n"
              "%rlm models [FILTER] [-n N]              models with context window and prices\n"
              "%rlm stop                                stop background runs\n"
              "%rlm last                                the last result\n"
              "%rlm demo [--force]                      use the scripted demo model (no key)")

    # -- config ----------------------------------------------------------------------------
    def _cmd_config(self, rest: list[str]) -> None:
        if rest == ["--reset"]:
            for name in _SETTINGS:
                self.set_trait(name, self.trait_defaults(name))
            print("RLM settings reset to defaults.")
            return
        for item in rest:
            key, sep, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep:
                raise _fail(f"Expected NAME=VALUE, got {item!r} (e.g. `%rlm config model=openai/gpt-4o-mini`).")
            if key not in _SETTINGS:
                raise _fail(messages.BAD_CONFIG_KEY.format(name=key, names=", ".join(_SETTINGS)))
            value = _parse_value(raw)
            try:
                self.set_trait(key, value)
            except Exception as exc:
                raise _fail(messages.BAD_CONFIG_VALUE.format(name=key, error=_first_line(str(exc)))) from None
            shown = "***" if key == "api_key" and value else getattr(self, key)
            print(f"RLMMagics.{key} = {shown!r}")
        if rest:
            return
        env = {"model": "RLM_MODEL", "sub_model": "RLM_SUB_MODEL", "sandbox": "RLM_SANDBOX",
               "api_base": "RLM_API_BASE", "api_key": "RLM_API_KEY", "log_dir": "RLM_LOG_DIR"}
        print("RLM settings (`%rlm config NAME=VALUE` or `%config RLMMagics.NAME = ...`):")
        for name in _SETTINGS:
            value = getattr(self, name)
            source = "set"
            if value is None and os.environ.get(env.get(name, "")):
                value, source = os.environ[env[name]], f"from {env[name]}"
            elif value is None:
                source = "engine default"
            if name == "api_key" and value:
                value = "***"
            shown = "-" if value is None else value
            print(f"  {name:15} {shown!s:40} {source}")

    # -- doctor ----------------------------------------------------------------------------
    def _cmd_doctor(self, rest: list[str]) -> None:
        from rlm_jupyter.config import Settings
        from rlm_jupyter.doctor import run_checks

        kwargs = self._settings()
        kwargs.pop("cache", None)
        try:
            settings = Settings.resolve(**kwargs)
        except Exception as exc:
            raise _fail(_first_line(str(exc))) from None
        checks = run_checks(settings, ping="--ping" in rest)
        for check in checks:
            print(check.line())
        failed = sum(1 for c in checks if not c.ok)
        print(f"{len(checks) - failed} ok, {failed} to fix" if failed else "All checks passed.")

    # -- logs / replay -----------------------------------------------------------------------
    def _log_dir(self) -> Any:
        from rlm_jupyter.config import Settings

        return Settings.resolve(**({"log_dir": self.log_dir} if self.log_dir else {})).effective_log_dir

    def _cmd_logs(self, rest: list[str]) -> None:
        from rlm_jupyter.engine.trajectory import list_runs

        limit = 20
        if rest[:1] in (["-n"], ["--limit"]) and len(rest) > 1:
            try:
                limit = int(rest[1])
            except ValueError:
                raise _fail(f"-n needs a number, got {rest[1]!r}.") from None
        elif rest:
            raise _fail(f"Unexpected {' '.join(rest)!r}: use `%rlm logs [-n N]`.")
        log_dir = self._log_dir()
        rows = list_runs(log_dir, limit=limit)
        if not rows:
            print(f"No runs in {log_dir} yet.")
            return
        print(f"{'time':19}  {'run':12}  {'status':9}  {'model':18}  {'turns':>5}  {'subs':>5}  "
              f"{'tokens':>8}  {'cost':>8}  question")
        for r in rows:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started or 0))
            q = " ".join((r.question or "").split())[:50]
            print(f"{stamp:19}  {r.run_id:12}  {r.status:9}  {(r.model or '')[-18:]:18}  "
                  f"{r.turns:>5}  {r.subcalls:>5}  {r.tokens:>8,}  {r.cost_usd:>8.4f}  {q}")

    def _cmd_replay(self, rest: list[str]) -> Any:
        if len(rest) != 1:
            raise _fail("Usage: `%rlm replay RUN_ID|PATH` (run ids are listed by `%rlm logs`).")
        from rlm_jupyter.engine.trajectory import find_run, iter_events

        try:
            path = find_run(self._log_dir(), rest[0])
            events = list(iter_events(path))
        except (OSError, ValueError):
            raise _fail(messages.NOT_FOUND_RUN.format(what=rest[0])) from None
        if not events:
            raise _fail(messages.NOT_FOUND_RUN.format(what=rest[0]))
        mode = self._display_mode(False)
        if mode == "widget":
            from IPython.display import display

            from rlm_jupyter.jupyter.widget import RunWidget

            display(RunWidget(events))
        elif mode == "html":
            from IPython.display import HTML, display

            from rlm_jupyter.jupyter import render

            display(HTML(render.render_html(events)))
        else:
            from rlm_jupyter.jupyter import render

            print(render.render_text(events, verbose=True))
        return None

    # -- cost / models -----------------------------------------------------------------------
    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            from rlm_jupyter.jupyter._runner import Ledger

            self._ledger = Ledger()
        return self._ledger

    def _cmd_cost(self, rest: list[str]) -> None:
        rows = self.ledger.rows()
        if not rows:
            print("No runs in this session yet: the ledger is empty.")
            return
        print(f"{'model':40}  {'calls':>6}  {'cached':>6}  {'retries':>7}  {'prompt':>10}  "
              f"{'completion':>10}  {'cost':>9}")
        for model, r in rows:
            print(f"{model[-40:]:40}  {int(r['calls']):>6}  {int(r['cached_calls']):>6}  "
                  f"{int(r.get('retries', 0)):>7}  "
                  f"{int(r['prompt_tokens']):>10,}  {int(r['completion_tokens']):>10,}  "
                  f"${r['cost_usd']:>8.4f}")
        print(f"{self.ledger.runs} runs, total ${self.ledger.total_usd:.4f}")

    def _cmd_models(self, rest: list[str]) -> None:
        limit, needle = 30, ""
        items = list(rest)
        while items:
            item = items.pop(0)
            if item in ("-n", "--limit") and items:
                try:
                    limit = int(items.pop(0))
                except ValueError:
                    raise _fail("-n needs a number.") from None
            else:
                needle = item.lower()
        from rlm_jupyter.engine.llm import get_litellm

        cost_map = getattr(get_litellm(), "model_cost", {}) or {}
        rows = []
        for name, info in sorted(cost_map.items()):
            if not isinstance(info, dict) or name == "sample_spec":
                continue
            if needle and needle not in name.lower():
                continue
            if info.get("mode") not in (None, "chat", "completion", "responses"):
                continue
            rows.append((name, info))
        # Best matches first: the bare name starts with the filter, then shorter names.
        rows.sort(key=lambda r: (not r[0].rsplit("/", 1)[-1].lower().startswith(needle), len(r[0]), r[0]))
        if not rows:
            print(f"No models match {needle!r} in litellm's price map.")
            return
        print(f"{'model':50}  {'provider':14}  {'context':>9}  {'$/1M in':>9}  {'$/1M out':>9}")
        for name, info in rows[:limit]:
            ctx = info.get("max_input_tokens") or info.get("max_tokens") or 0
            pin = (info.get("input_cost_per_token") or 0) * 1e6
            pout = (info.get("output_cost_per_token") or 0) * 1e6
            print(f"{name[:50]:50}  {str(info.get('litellm_provider', ''))[:14]:14}  "
                  f"{int(ctx):>9,}  {pin:>9.3f}  {pout:>9.3f}")
        if len(rows) > limit:
            print(f"... {len(rows) - limit} more (narrow with a filter or raise -n)")

    # -- stop / last / demo ------------------------------------------------------------------
    def _cmd_stop(self, rest: list[str]) -> None:
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

    def _cmd_last(self, rest: list[str]) -> Any:
        if self.last_result is None:
            raise _fail(messages.NO_LAST)
        return self.last_result

    def _cmd_demo(self, rest: list[str]) -> "DemoStatus":
        """Use the scripted demo model unless a real one is configured; true when in use."""
        force = "--force" in rest
        real = self.model or os.environ.get("RLM_MODEL")
        if real and not force and self._demo_server is None:
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


def _parse_value(raw: str) -> Any:
    raw = raw.strip()
    if raw.lower() in ("none", "null", ""):
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


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
