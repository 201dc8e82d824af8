"""``rlm map "question" --contexts 'dir/*.txt' --out results.csv``: one run per file.

A thin adapter over ``RLM.map`` (engine/batch.py): parse, call, print. Progress goes to stderr
(one line per finished item, then the total); the rows go to ``--out`` (.csv, .jsonl or
.json, chosen by the extension) or, without it, to stdout as CSV. Exit status 0 when every
item succeeded, 1 when some failed, 2 for a usage mistake.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any


def add_command(subparsers: Any) -> None:
    """Register ``rlm map`` (called by cli.py's parser builder)."""
    help_text = "ask the same question of many files (one run per file), with a results table"
    cmd = subparsers.add_parser("map", help=help_text, description=help_text)
    cmd.add_argument("question", help="the question; {key} is the file's path")
    cmd.add_argument("--contexts", nargs="+", required=True, metavar="PATH",
                     help="files, directories or globs: one item per file")
    cmd.add_argument("--out", "-o", metavar="FILE", default=None,
                     help="write the rows here (.csv, .jsonl or .json); default: CSV on stdout")
    cmd.add_argument("--map-concurrency", dest="map_concurrency", type=int, default=8,
                     metavar="N", help="at most N items at once (default 8)")
    cmd.add_argument("--total-budget", dest="total_budget", type=float, default=None,
                     metavar="USD", help="the most the whole map may spend")
    cmd.add_argument("--total-tokens", dest="total_tokens", type=int, default=None,
                     metavar="N", help="the most tokens the whole map may use")
    cmd.add_argument("--resume", nargs="?", const=True, default=None, metavar="FILE",
                     help="skip items a previous run finished (its results file, or FILE)")
    cmd.add_argument("--dask", metavar="ADDRESS", default=None,
                     help="run items on a Dask cluster (scheduler address, e.g. "
                          "tcp://host:8786); needs rlm-jupyter[dask]")
    cmd.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    _knob_flags(cmd)
    cmd.set_defaults(fn=cmd_map)


def _knob_flags(cmd: argparse.ArgumentParser) -> None:
    try:  # the settings table's flags, as `rlm run` has them
        from rlm_jupyter.cli import add_knob_flags
    except ImportError:
        add_knob_flags = None
    if add_knob_flags is not None:
        add_knob_flags(cmd)
        return
    for flag, kind in (("--model", str), ("--sub-model", str), ("--sandbox", str),
                       ("--api-base", str), ("--max-iterations", int), ("--budget", float),
                       ("--timeout", float)):
        cmd.add_argument(flag, type=kind, default=None)


def _rlm_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from rlm_jupyter.cli import knob_values
    except ImportError:
        names = {"model": "model", "sub_model": "sub_model", "sandbox": "sandbox",
                 "api_base": "api_base", "max_iterations": "max_iterations",
                 "budget": "budget_usd", "timeout": "timeout_s"}
        return {new: getattr(args, old) for old, new in names.items()
                if getattr(args, old, None) is not None}
    return knob_values(args)


def _contexts(specs: list[str]) -> Any:
    from rlm_jupyter.engine.batch import _files

    if len(specs) == 1:
        return specs[0]
    files: dict[str, Path] = {}
    for spec in specs:
        for path in _files(spec):
            files.setdefault(str(path), path)
    return files


def _progress(quiet: bool) -> Any:
    def show(event: Any) -> None:
        if quiet or event.type != "item_finished" or event.result is None:
            return
        r = event.result
        shown = (r.answer or r.error or "").replace("\n", " ")[:100]
        note = " (resumed)" if r.resumed else ""
        print(f"[{r.status}{note}] {r.key}: {shown}", file=sys.stderr, flush=True)

    return show


def write_rows(df: Any, out: str | None) -> None:
    if out is None:
        df.to_csv(sys.stdout, index=False)
        return
    suffix = Path(out).suffix.lower()
    if suffix == ".jsonl":
        df.to_json(out, orient="records", lines=True)
    elif suffix == ".json":
        df.to_json(out, orient="records", indent=1)
    else:
        df.to_csv(out, index=False)


def cmd_map(args: argparse.Namespace) -> int:
    from rlm_jupyter import RLM
    from rlm_jupyter.errors import ConfigError

    client = None
    try:
        rlm = RLM(**_rlm_kwargs(args))
        if args.dask:
            try:
                from distributed import Client
            except ImportError:
                raise ConfigError("--dask needs Dask: pip install 'rlm-jupyter[dask]'.") from None
            client = Client(args.dask)
        cancel = threading.Event()
        try:
            result = rlm.map(args.question, _contexts(args.contexts),
                             concurrency=args.map_concurrency, executor=client,
                             budget_usd=args.total_budget, max_total_tokens=args.total_tokens,
                             resume=args.resume, on_event=_progress(args.quiet), cancel=cancel)
        except KeyboardInterrupt:
            print("rlm: interrupted; finished rows are kept: re-run with --resume to finish "
                  "the rest.", file=sys.stderr)
            return 130
    except ConfigError as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return 2
    finally:
        if client is not None:
            client.close()
    write_rows(result.to_pandas(), args.out)
    c = result.counts()
    print(f"-- {len(result)} items: {c['ok']} ok, {c['error']} failed, {c['cancelled']} "
          f"cancelled; {result.total_tokens:,} tokens, ${result.cost_usd:.4f}, "
          f"{result.elapsed_s:.1f}s; results file: {result.results_path}"
          + (f"; rows: {args.out}" if args.out else ""), file=sys.stderr)
    return 0 if c["error"] == 0 and c["cancelled"] == 0 else 1
