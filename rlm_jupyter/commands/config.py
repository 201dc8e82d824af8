"""``config``: show the settings and where each value comes from; parse ``NAME=VALUE`` edits.

The notebook shows its session defaults (the ``RLMMagics`` traitlets) over the environment and
the table's defaults; ``rlm config`` shows the environment over the defaults. Both print the same
table, built here from :data:`rlm_jupyter.settings.KNOBS`.
"""

from __future__ import annotations

import argparse
import ast
import os
from typing import Any, Iterable, Mapping

from rlm_jupyter.commands import messages
from rlm_jupyter.errors import CommandError
from rlm_jupyter.settings import DEPRECATED, Knob, deprecated_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="*", metavar="NAME=VALUE", help="settings to change")
    parser.add_argument("--reset", action="store_true", help="back to the defaults")


def parse_value(raw: str) -> Any:
    """``2`` -> 2, ``0.5`` -> 0.5, ``False`` -> False, ``None``/empty -> None, else the text."""
    raw = raw.strip()
    if raw.lower() in ("none", "null", ""):
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def parse_assignments(items: Iterable[str], names: Iterable[str]) -> list[tuple[str, Any]]:
    """``NAME=VALUE`` words -> ``(name, value)``; a one-line :class:`CommandError` otherwise.

    Dashes may stand for underscores; a deprecated name is renamed with a warning.
    """
    names = list(names)
    pairs = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise CommandError(messages.BAD_ASSIGNMENT.format(item=item))
        if key in DEPRECATED and DEPRECATED[key] in names:
            key = deprecated_name(key)
        if key not in names:
            raise CommandError(messages.BAD_CONFIG_KEY.format(name=key, names=", ".join(names)))
        pairs.append((key, parse_value(raw)))
    return pairs


def shown(value: Any, knob: Knob | None) -> str:
    if knob is not None and knob.secret and value:
        return "***"
    return "-" if value is None else str(value)


def config_text(rows: Iterable[tuple[str, Knob | None, Any]],
                environ: Mapping[str, str] | None = None) -> str:
    """One line per setting: ``(label, knob, value set here or None)`` -> name, value, source.

    The source is ``set`` (here), ``from RLM_...`` (the environment) or ``default``.
    """
    environ = os.environ if environ is None else environ
    lines = []
    for label, knob, value in rows:
        source = "set"
        if value is None and knob is not None:
            if knob.env and environ.get(knob.env):
                value, source = environ[knob.env], f"from {knob.env}"
            else:
                value, source = knob.default, "default"
        lines.append(f"  {label:18} {shown(value, knob):40} {source}")
    return "\n".join(lines)
