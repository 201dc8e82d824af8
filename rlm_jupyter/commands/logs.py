"""``logs``: the recent runs as one table, the same in ``rlm logs`` and ``%rlm logs``."""

from __future__ import annotations

import argparse
import os
import time
from typing import Iterable

from rlm_jupyter.commands import messages
from rlm_jupyter.commands._parser import count
from rlm_jupyter.engine.trajectory import RunSummary, list_runs

DEFAULT_LIMIT = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--limit", type=count, default=DEFAULT_LIMIT, metavar="N",
                        help=f"how many runs, newest first (default {DEFAULT_LIMIT})")
    parser.add_argument("--log-dir", default=None, help="read logs from here")


def logs_text(log_dir: str | os.PathLike[str], limit: int = DEFAULT_LIMIT) -> str:
    """The table of the newest ``limit`` runs in ``log_dir``, or a line saying there are none."""
    rows = list_runs(log_dir, limit=limit)
    if not rows:
        return messages.NO_RUNS.format(log_dir=log_dir)
    return table(rows)


def table(rows: Iterable[RunSummary]) -> str:
    lines = [f"{'time':19}  {'run':12}  {'status':9}  {'model':24}  {'turns':>5}  {'subs':>5}  "
             f"{'tokens':>8}  {'cost':>8}  {'retry':>5}  question"]
    for r in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started or 0))
        question = " ".join((r.question or "").split())[:60]
        lines.append(f"{stamp:19}  {r.run_id:12}  {r.status:9}  {(r.model or '')[-24:]:24}  "
                     f"{r.turns:>5}  {r.subcalls:>5}  {r.tokens:>8,}  {r.cost_usd:>8.4f}  "
                     f"{r.retries:>5}  {question}")
    return "\n".join(lines)
