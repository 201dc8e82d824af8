"""What both front ends do, once: ``logs``, ``replay``, ``cost``, ``models``, ``config``,
``doctor`` and context resolution.

A command takes plain values and returns data or text; it never prints and never imports
IPython. ``rlm_jupyter/cli.py`` and ``rlm_jupyter/jupyter/magics.py`` are thin adapters: they
parse with :class:`CommandParser` and the command's ``add_arguments``, call the command, and
print or display what it returns, so ``rlm logs`` and ``%rlm logs`` show the same table. Drawing
a run (text, HTML, the widget) stays in ``rlm_jupyter/jupyter/render.py``, which the front ends
call: commands sit below the front ends and never import them.
"""

from __future__ import annotations

import argparse
from typing import Callable

from rlm_jupyter.commands._parser import CommandParser, HelpShown

#: The arguments of each shared subcommand, by name; both front ends build their parsers here.
ARGUMENTS: dict[str, str] = {
    "logs": "rlm_jupyter.commands.logs",
    "replay": "rlm_jupyter.commands.replay",
    "models": "rlm_jupyter.commands.models",
    "config": "rlm_jupyter.commands.config",
    "doctor": "rlm_jupyter.commands.doctor",
    "export": "rlm_jupyter.commands.export",
}


def arguments_for(name: str) -> Callable[[argparse.ArgumentParser], None]:
    """The ``add_arguments`` of shared subcommand ``name`` (a no-op for ``cost``)."""
    import importlib

    module = ARGUMENTS.get(name)
    if module is None:
        return lambda parser: None
    return importlib.import_module(module).add_arguments  # type: ignore[no-any-return]


def parser_for(name: str, prog: str, help: str | None = None) -> CommandParser:
    """A one-line-error parser for subcommand ``name``, shown as ``prog`` in its usage."""
    parser = CommandParser(prog=prog, description=help)
    arguments_for(name)(parser)
    return parser


__all__ = ["CommandParser", "HelpShown", "ARGUMENTS", "arguments_for", "parser_for"]
