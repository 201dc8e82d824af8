"""``export``: a saved run as a notebook that re-runs its code without a model.

``rlm export RUN_ID --to FILE.ipynb`` and ``%rlm export RUN_ID [--to FILE.ipynb]`` both call
:func:`export_run`; the work is in ``rlm_jupyter/export.py``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rlm_jupyter.errors import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_ID|PATH",
                        help="a run id (or its prefix) from `logs`, or a .jsonl log's path; "
                             "several for a session's asks, in order")
    parser.add_argument("--to", default=None, metavar="FILE.ipynb",
                        help="the notebook to write (default: rlm-RUN_ID.ipynb here)")
    parser.add_argument("--context-code", default=None, metavar="CODE",
                        help="the first cell, which sets `context` (default: a cell to fill in)")
    parser.add_argument("--log-dir", default=None, help="look for the run ids here")


def export_run(log_dir: str | os.PathLike[str], runs: list[str], to: str | None = None,
               context_code: str | None = None) -> Path:
    """Write the notebook and return its path; a :class:`CommandError` says what is wrong."""
    from rlm_jupyter.export import export_notebook

    target = Path(to) if to else Path(f"rlm-{Path(runs[-1]).stem}.ipynb")
    if target.suffix != ".ipynb":
        raise CommandError(f"--to {target} should end in .ipynb")
    try:
        return export_notebook(runs, target, context_code=context_code, log_dir=log_dir)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot export {' '.join(runs)}: {exc}") from None


EXPORTED = ("Wrote {path}: the run's code as cells that re-run without a model (fill in the "
            "first cell with the context unless --context-code gave it).")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``rlm export`` (registered by cli.COMMAND_MODULES)."""
    help_text = "a saved run as a notebook that re-runs without a model"
    command = subparsers.add_parser("export", help=help_text, description=help_text)
    add_arguments(command)
    command.set_defaults(fn=_cli)


def _cli(args: argparse.Namespace) -> int:
    from rlm_jupyter.settings import Settings

    log_dir = Settings.resolve(log_dir=args.log_dir).effective_log_dir
    print(EXPORTED.format(path=export_run(log_dir, args.runs, args.to, args.context_code)))
    return 0
