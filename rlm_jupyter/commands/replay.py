"""``replay``: a saved run's events, found by run id (or a prefix) or by path; no model called.

The command returns the events; each front end draws them its own way (the CLI as text, the
notebook as the widget, HTML or text), all through ``rlm_jupyter/jupyter/render.py``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from rlm_jupyter.commands import messages
from rlm_jupyter.engine.trajectory import find_run, iter_events
from rlm_jupyter.errors import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_ID|PATH",
                        help="a run id (or its prefix) from `logs`, or a .jsonl log's path")
    parser.add_argument("--log-dir", default=None, help="look for the run id here")


def load_events(log_dir: str | os.PathLike[str], what: str) -> list[dict[str, Any]]:
    """The events of the run ``what`` names; a :class:`CommandError` when there is none."""
    try:
        events = list(iter_events(find_run(log_dir, what)))
    except (OSError, ValueError):
        raise CommandError(messages.NOT_FOUND_RUN.format(what=what)) from None
    if not events:
        raise CommandError(messages.NOT_FOUND_RUN.format(what=what))
    return events
