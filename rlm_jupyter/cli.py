"""``rlm``: a thin adapter (parse, call, print) over the engine and ``rlm_jupyter/commands``.

``rlm run``'s flags are built from the settings table (``rlm_jupyter/settings.py``); ``logs``,
``replay``, ``models``, ``config`` and ``doctor`` parse with the same arguments as ``%rlm`` and
print what the same command returns, so the two front ends show the same thing. A mistake is
one ``rlm: ...`` line on stderr and exit status 2.

Adding a subcommand from another module: write ``add_command(subparsers)`` there, which calls
``subparsers.add_parser(NAME, help=...)``, adds its arguments and ``set_defaults(fn=...)`` (``fn``
takes the parsed arguments and returns the exit status), and list the module in
:data:`COMMAND_MODULES`. A subcommand that parses its own argv goes in :data:`PASSTHROUGH`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Callable

from rlm_jupyter.commands import HelpShown, arguments_for
from rlm_jupyter.commands._parser import CommandParser
from rlm_jupyter.errors import CommandError, ConfigError
from rlm_jupyter.settings import DEPRECATED_FLAGS, KNOBS, NO_MODEL, Settings, deprecated_name

#: Modules that each add subcommands with ``add_command(subparsers)`` (see the module docstring).
COMMAND_MODULES: list[str] = ["rlm_jupyter.batch_cli",  # rlm map
                              "rlm_jupyter.commands.export"]  # rlm export
#: Subcommands that parse their own arguments: NAME -> ``module:function(argv) -> int``.
PASSTHROUGH: dict[str, tuple[str, str]] = {
    "local": ("rlm_jupyter.local", "cli_main"),
    "mcp": ("rlm_jupyter.mcp", "main"),  # the RLM as an MCP server (rlm_jupyter/mcp)
    "demo": ("rlm_jupyter.demo", "main"),
    "mcp": ("rlm_jupyter.mcp", "main"),
}


# --------------------------------------------------------------------------- run
def add_knob_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per knob the CLI shows (``--no-X`` too for a ``bool`` knob), from the table."""
    for knob in KNOBS:
        if not knob.cli:
            continue
        parser.add_argument(*knob.cli, **knob.argparse_kwargs())
        if knob.type is bool:
            parser.add_argument("--no-" + knob.cli[0][2:], dest=knob.name, action="store_false",
                                default=None, help=f"turn {knob.cli[0]} off")
    for flag, new in DEPRECATED_FLAGS.items():
        parser.add_argument(flag, dest=flag[2:].replace("-", "_"), type=int, default=None,
                            help=f"deprecated: use --{new.replace('_', '-')}")


def knob_values(args: argparse.Namespace) -> dict[str, Any]:
    """The knobs given on the command line (deprecated flags renamed, with a warning)."""
    values = {k.name: getattr(args, k.name) for k in KNOBS
              if k.cli and getattr(args, k.name, None) is not None}
    for flag, new in DEPRECATED_FLAGS.items():
        old = getattr(args, flag[2:].replace("-", "_"), None)
        if old is not None:
            deprecated_name(flag[2:].replace("-", "_"))
            values.setdefault(new, old)
    return values


def cmd_run(args: argparse.Namespace) -> int:
    from rlm_jupyter import RLM
    from rlm_jupyter.commands.context import read_paths
    from rlm_jupyter.jupyter.progress import ProgressPrinter

    knobs = knob_values(args)
    if not (knobs.get("model") or Settings.resolve().model):
        raise CommandError(NO_MODEL)
    context = read_paths(args.context) if args.context else None
    rlm = RLM(**knobs)
    printer = ProgressPrinter(write=lambda line: print(line, file=sys.stderr, flush=True))

    def show(event: Any) -> None:  # a terminal has no cell to own: write as events come
        printer(event)
        printer.drain()

    result = rlm.run(args.question, context=context, on_event=None if args.quiet else show)
    print(result.answer or "")
    retries = sum(int(u.get("retries", 0)) for u in result.usage.values())
    print(f"-- {result.status}, {result.total_tokens:,} tokens, ${result.cost_usd:.4f}, "
          f"{result.elapsed_s:.1f}s" + (f", {retries} retries" if retries else "")
          + f", log: {result.log_path}", file=sys.stderr)
    if result.error is not None:
        print(f"-- {type(result.error).__name__}: {result.error}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- shared commands
def _log_dir(args: argparse.Namespace) -> Any:
    return Settings.resolve(log_dir=getattr(args, "log_dir", None)).effective_log_dir


def cmd_logs(args: argparse.Namespace) -> int:
    from rlm_jupyter.commands.logs import logs_text

    print(logs_text(_log_dir(args), limit=args.limit))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from rlm_jupyter.commands.replay import load_events
    from rlm_jupyter.jupyter.render import render_text

    print(render_text(load_events(_log_dir(args), args.run), verbose=True))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from rlm_jupyter.commands.models import models_text

    print(models_text(args.filter, limit=args.limit))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from rlm_jupyter.commands.config import config_text

    if args.items or args.reset:
        raise CommandError("`rlm config` only shows the settings: set them with RLM_* "
                           "environment variables or `rlm run` flags.")
    print("RLM settings (RLM_* environment variables, `rlm run` flags):")
    print(config_text((k.name, k, None) for k in KNOBS))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from rlm_jupyter.commands.doctor import essentials_ok, report, run_checks

    checks = run_checks(ping=args.ping)
    print(report(checks))
    return 0 if essentials_ok(checks) else 1


#: The built-in subcommands: NAME -> (help, handler). Their arguments come from
#: ``rlm_jupyter.commands`` (the same as ``%rlm NAME``), except ``run``'s.
BUILTIN: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "run": ("answer a question about files", cmd_run),
    "doctor": ("check the environment, with fixes", cmd_doctor),
    "logs": ("recent runs", cmd_logs),
    "replay": ("print a saved trajectory (no model is called)", cmd_replay),
    "models": ("models litellm knows, with context window and prices", cmd_models),
    "config": ("the settings and where each comes from", cmd_config),
}


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="rlm", description="Recursive Language Models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=CommandParser)
    for name, (help_text, fn) in BUILTIN.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == "run":
            command.add_argument("question")
            command.add_argument("--context", nargs="*", default=[], metavar="PATH",
                                 help="files, directories or globs to read")
            add_knob_flags(command)
            command.add_argument("--quiet", "-q", action="store_true",
                                 help="no progress log, only the answer")
        else:
            arguments_for(name)(command)
        command.set_defaults(fn=fn)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_command(sub)
    sub.add_parser("demo", help="the main job: answer a question about a large document")
    sub.add_parser("local", help="fetch, serve and inspect local llama.cpp models")
    sub.add_parser("mcp", help="serve the RLM to MCP clients (stdio or --http PORT)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in PASSTHROUGH:
        module, function = PASSTHROUGH[argv[0]]
        return int(getattr(importlib.import_module(module), function)(argv[1:]) or 0)
    try:
        parser = build_parser()
        # Parse with the subcommand's own parser, so a mistake shows that command's usage.
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command = commands.choices.get(argv[0]) if argv else None
        if command is not None:
            args = command.parse_args(argv[1:])
        else:
            args = parser.parse_args(argv)
        return int(args.fn(args))
    except HelpShown:
        return 0
    except (CommandError, ConfigError) as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
