"""``rlm``: run, doctor, logs, replay, demo and local-model commands from a terminal."""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path
from typing import Any


def _read_context(specs: list[str]) -> Any:
    """``--context FILE`` (globs allowed); several files become a dict of named texts."""
    paths: list[Path] = []
    for spec in specs:
        matches = sorted(glob.glob(spec)) or [spec]
        paths.extend(Path(m) for m in matches)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"rlm: no such file: {', '.join(missing)}")
    texts = {str(p): p.read_text(encoding="utf-8", errors="replace") for p in paths}
    if len(texts) == 1:
        return next(iter(texts.values()))
    return texts


def cmd_run(args: argparse.Namespace) -> int:
    from rlm_jupyter import RLM
    from rlm_jupyter.errors import ConfigError

    context = _read_context(args.context) if args.context else None
    try:
        rlm = RLM(model=args.model, sub_model=args.sub_model, sandbox=args.sandbox,
                  max_depth=args.max_depth, max_iterations=args.max_iterations,
                  budget_usd=args.budget, timeout_s=args.timeout)
        result = rlm.run(args.question, context=context, on_event=_printer(args.quiet))
    except ConfigError as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return 2
    print(result.answer or "")
    retries = sum(int(u.get("retries", 0)) for u in result.usage.values())
    print(f"-- {result.status}, {result.total_tokens:,} tokens, ${result.cost_usd:.4f}, "
          f"{result.elapsed_s:.1f}s" + (f", {retries} retries" if retries else "")
          + f", log: {result.log_path}", file=sys.stderr)
    if result.error is not None:
        print(f"-- {type(result.error).__name__}: {result.error}", file=sys.stderr)
        return 1
    return 0


def _printer(quiet: bool) -> Any:
    def show(event: Any) -> None:
        if quiet:
            return
        indent = "  " * event.depth
        if event.type == "turn_started":
            print(f"{indent}turn {event.turn}", file=sys.stderr, flush=True)
        elif event.type == "code_executed":
            status = "error" if event.error else "ok"
            print(f"{indent}  code {status} ({event.duration_s:.2f}s)", file=sys.stderr)
        elif event.type == "subcall_finished":
            print(f"{indent}  sub-call {event.model} {event.latency_s:.2f}s"
                  + (" (cached)" if event.cached else ""), file=sys.stderr)
        elif event.type == "llm_retry":
            print(f"{indent}  retry {event.call} call to {event.model} (attempt {event.attempt} "
                  f"failed: {event.error}; next in {event.wait_s:.1f}s)", file=sys.stderr)
    return show


def cmd_doctor(args: argparse.Namespace) -> int:
    from rlm_jupyter.doctor import run_checks

    checks = run_checks(ping=args.ping)
    for check in checks:
        print(check.line())
    return 0 if all(c.ok for c in checks if c.name in ("litellm", "RestrictedPython")) else 1


def cmd_logs(args: argparse.Namespace) -> int:
    from rlm_jupyter.config import Settings
    from rlm_jupyter.engine.trajectory import list_runs

    log_dir = args.log_dir or Settings.resolve().effective_log_dir
    rows = list_runs(log_dir, limit=args.limit)
    if not rows:
        print(f"No runs in {log_dir}.")
        return 0
    print(f"{'time':19}  {'run':12}  {'status':9}  {'turns':>5}  {'subs':>5}  {'tokens':>8}  "
          f"{'cost':>8}  {'retry':>5}  question")
    for r in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started))
        print(f"{stamp:19}  {r.run_id:12}  {r.status:9}  {r.turns:>5}  {r.subcalls:>5}  "
              f"{r.tokens:>8,}  {r.cost_usd:>8.4f}  {r.retries:>5}  {r.question[:60]}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from rlm_jupyter.config import Settings
    from rlm_jupyter.engine.trajectory import find_run, read_trajectory

    log_dir = args.log_dir or Settings.resolve().effective_log_dir
    try:
        root = read_trajectory(find_run(log_dir, args.run))
    except (FileNotFoundError, ValueError) as exc:
        print(f"rlm: {exc}", file=sys.stderr)
        return 2
    for run in root.walk():
        pad = "  " * run.depth
        print(f"{pad}run {run.run_id} [{run.status}] {run.question[:80]}")
        for turn in run.turns:
            retried = f" ({turn.retries} retries)" if turn.retries else ""
            print(f"{pad}  turn {turn.turn}{retried}: {turn.text[:200]!r}")
            for code in turn.code:
                print(f"{pad}    code -> {code.stdout[:200]!r}" + (f" error {code.error[:100]!r}" if code.error else ""))
            for sub in turn.subcalls:
                retried = f" ({sub.retries} retries)" if sub.retries else ""
                print(f"{pad}    sub-call{retried} -> {sub.response_preview[:100]!r}")
        print(f"{pad}  answer: {run.answer!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["local"]:
        from rlm_jupyter.local import cli_main

        return int(cli_main(argv[1:]) or 0)
    if argv[:1] == ["mcp"]:  # `rlm mcp`: the RLM as an MCP server (rlm_jupyter/mcp)
        return __import__("rlm_jupyter.mcp", fromlist=["main"]).main(argv[1:])
    if argv[:1] == ["demo"]:
        from rlm_jupyter.demo import main as demo_main

        return demo_main(argv[1:])
    parser = argparse.ArgumentParser(prog="rlm", description="Recursive Language Models.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="answer a question about files")
    run.add_argument("question")
    run.add_argument("--context", nargs="*", default=[], help="files or globs")
    run.add_argument("--model")
    run.add_argument("--sub-model")
    run.add_argument("--sandbox", choices=["local", "docker", "inprocess"])
    run.add_argument("--max-depth", type=int, default=1)
    run.add_argument("--max-iterations", type=int, default=20)
    run.add_argument("--budget", type=float, help="USD")
    run.add_argument("--timeout", type=float, help="seconds for the whole run")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(fn=cmd_run)
    doctor = sub.add_parser("doctor", help="check the environment, with fixes")
    doctor.add_argument("--ping", action="store_true", help="also make a one-token model call")
    doctor.set_defaults(fn=cmd_doctor)
    logs = sub.add_parser("logs", help="recent runs")
    logs.add_argument("--limit", type=int, default=20)
    logs.add_argument("--log-dir")
    logs.set_defaults(fn=cmd_logs)
    replay = sub.add_parser("replay", help="print a saved trajectory (no model is called)")
    replay.add_argument("run", help="run id (prefix) or path to a .jsonl log")
    replay.add_argument("--log-dir")
    replay.set_defaults(fn=cmd_replay)
    __import__("rlm_jupyter.batch_cli").batch_cli.add_command(sub)  # rlm map
    sub.add_parser("demo", help="the main job: answer a question about a large document")
    sub.add_parser("local", help="fetch, serve and inspect local llama.cpp models")
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
