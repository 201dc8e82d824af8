"""The MCP server behind ``rlm mcp`` (MCPServer from the official SDK, v2).

One ``RLM.run`` per ``rlm_run`` call, in a thread: its events become progress notifications
(a turn started, a cell ran, a sub-call or a child run finished), and the client's cancellation
(``notifications/cancelled``, which cancels the handler) sets the run's ``cancel`` event, so
model calls in flight are hung up and the sandbox closed; the run's log records it as
cancelled. Model, endpoint and key come from the usual ``RLM_*`` environment variables (the
MCP client's ``env`` block); a call may pick another model and tighter limits.

Paths: every context path is resolved (symlinks and ``..`` followed) and must fall inside one
of the roots; a relative path is taken from the first root. Anything else is a tool error that
names the roots and the flag that adds one.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

INSTRUCTIONS = (
    "Recursive Language Model: rlm_run answers a question about files (context_paths, under "
    "the server's roots) or a text (context_text) far larger than a context window; a model "
    "writes code in a sandbox to read them. rlm_logs lists recent runs; rlm_replay shows one.")
POLL_S = 0.05
#: How long a cancelled run may take to stop before the handler lets it go.
STOP_WAIT_S = 30.0
MAX_FILE_BYTES = 512 * 1024 * 1024


class Roots:
    """The folders the server may read from, resolved once at start."""

    def __init__(self, dirs: list[str | os.PathLike[str]]) -> None:
        resolved = []
        for d in dirs or [os.getcwd()]:
            path = Path(d).expanduser().resolve()
            if not path.is_dir():
                raise SystemExit(f"rlm mcp: --root {d}: not a directory")
            resolved.append(path)
        self.dirs = resolved

    def __str__(self) -> str:
        return ", ".join(str(d) for d in self.dirs)

    def inside(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.dirs)

    def resolve(self, raw: str) -> Path:
        """The real file ``raw`` names, or a ToolError: outside the roots, missing, a folder."""
        given = Path(raw).expanduser()
        candidate = given if given.is_absolute() else self.dirs[0] / given
        real = candidate.resolve()  # symlinks and '..' resolved before the check
        if not self.inside(real):
            raise ToolError(
                f"Refused: {raw} is outside the folders this server may read ({self}). Start "
                f"the server with --root DIR (repeatable) to allow another folder.")
        if not real.exists():
            raise ToolError(f"No such file: {raw} (resolved to {real}).")
        if not real.is_file():
            raise ToolError(f"{raw} is not a file: pass the files themselves.")
        if real.stat().st_size > MAX_FILE_BYTES:
            raise ToolError(f"{raw} is larger than {MAX_FILE_BYTES // 2**20} MiB.")
        return real

    def name(self, real: Path) -> str:
        """A file's name in a dict context: its path under its root (``notes/a.txt``)."""
        root = next(r for r in self.dirs if real == r or real.is_relative_to(r))
        return str(real.relative_to(root))

    def read_context(self, paths: list[str], text: str | None) -> Any:
        """One file -> its text; several -> {path under its root: text}; ``text`` alone ->
        itself, with files -> one more entry named ``context_text``."""
        files = [self.resolve(raw) for raw in paths]
        texts = {self.name(real): real.read_text(encoding="utf-8", errors="replace")
                 for real in files}
        if not texts:
            return text
        if text is not None:
            texts["context_text"] = text
        if len(texts) == 1:
            return next(iter(texts.values()))
        return texts


def _progress_message(event: Any) -> str | None:
    """One line for a progress notification, or None for events that are not progress."""
    who = "" if event.depth == 0 else f"child run (depth {event.depth}): "
    kind = event.type
    if kind == "turn_started":
        return f"{who}turn {event.turn} started"
    if kind == "code_executed":
        state = "error" if event.error else "ok"
        return f"{who}turn {event.turn}: code block {event.index + 1} ran ({state}, " \
               f"{event.duration_s:.2f}s)"
    if kind == "subcall_finished":
        state = f"failed: {event.error[:80]}" if event.error else f"{event.latency_s:.2f}s"
        return f"{who}turn {event.turn}: sub-call to {event.model} finished ({state})"
    if kind == "run_finished" and event.depth > 0:
        return f"{who}finished ({event.status})"
    if kind == "llm_retry":
        return f"{who}retrying a call to {event.model} (attempt {event.attempt} failed)"
    return None


def _summary(result: Any) -> str:
    retries = sum(int(u.get("retries", 0)) for u in result.usage.values())
    turns = next((e.turns for e in reversed(result.events)
                  if e.type == "run_finished" and e.depth == 0), 0)
    subcalls = sum(1 for e in result.events if e.type == "subcall_finished")
    text = (f"{result.status}: {turns} turns, {subcalls} sub-calls, "
            f"{result.total_tokens:,} tokens, ${result.cost_usd:.4f}, {result.elapsed_s:.1f}s")
    if retries:
        text += f", {retries} retries"
    if result.error is not None:
        text += f"; {type(result.error).__name__}: {result.error}"
    return text


def build_server(roots: Roots, **rlm_defaults: Any) -> MCPServer:
    """The server; ``rlm_defaults`` are RLM keyword arguments every run starts from."""
    from rlm_jupyter import RLM
    from rlm_jupyter.errors import ConfigError
    from rlm_jupyter.settings import Settings

    server = MCPServer("rlm", instructions=INSTRUCTIONS, log_level="WARNING")

    def log_dir() -> Path:
        return Settings.resolve(**{k: v for k, v in rlm_defaults.items()
                                   if k == "log_dir"}).effective_log_dir

    @server.tool()
    async def rlm_run(question: str, ctx: Context, context_paths: list[str] | None = None,
                      context_text: str | None = None, model: str | None = None,
                      max_iterations: int | None = None,
                      budget_usd: float | None = None) -> dict[str, Any]:
        """Answer a question about files or a long text with a Recursive Language Model.

        context_paths: files under the server's roots (relative paths start at the first
        root); several files become a dict of named texts. context_text: a text to use as the
        context (with files: one more entry). Returns the answer, a one-line summary, the run
        id (for rlm_replay), its status and cost. Progress arrives as turns, code cells and
        sub-calls finish; cancelling the call stops the run.
        """
        context = roots.read_context(list(context_paths or []), context_text)
        kwargs = dict(rlm_defaults)
        for key, value in (("model", model), ("max_iterations", max_iterations),
                           ("budget_usd", budget_usd)):
            if value is not None:
                kwargs[key] = value
        try:
            rlm = RLM(**kwargs)
        except ConfigError as exc:
            raise ToolError(str(exc)) from None
        return await _run(rlm, question, context, ctx)

    @server.tool()
    def rlm_logs(limit: int = 20) -> str:
        """The most recent runs (newest first): time, run id, status, turns, sub-calls,
        tokens, cost and question."""
        from rlm_jupyter.commands.logs import logs_text

        return logs_text(log_dir(), limit=max(1, min(int(limit), 500)))

    @server.tool()
    def rlm_replay(run_id: str) -> str:
        """One saved run as a tree of turns, code, outputs and sub-calls (no model is called).
        run_id: an id from rlm_run or rlm_logs, or its prefix."""
        from rlm_jupyter.engine.trajectory import find_run, read_trajectory

        try:
            root = read_trajectory(find_run(log_dir(), run_id))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise ToolError(f"No run {run_id!r} in {log_dir()}: {exc}") from None
        return replay_text(root)

    return server


async def _run(rlm: Any, question: str, context: Any, ctx: Context) -> dict[str, Any]:
    from rlm_jupyter.errors import ConfigError

    cancel = threading.Event()
    events: queue.SimpleQueue = queue.SimpleQueue()
    box: dict[str, Any] = {}
    finished = threading.Event()

    def on_event(event: Any) -> None:
        message = _progress_message(event)
        if message is not None:
            events.put(message)

    def work() -> None:
        try:
            box["result"] = rlm.run(question, context, on_event=on_event, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - reported to the client below
            box["error"] = exc
        finally:
            finished.set()

    thread = threading.Thread(target=work, name="rlm-mcp-run", daemon=True)
    thread.start()
    step = 0

    async def pump() -> None:
        nonlocal step
        while True:
            try:
                message = events.get_nowait()
            except queue.Empty:
                return
            step += 1
            await ctx.report_progress(step, None, message)

    try:
        while not finished.is_set():
            await pump()
            requested = getattr(ctx.request_context, "cancel_requested", None)
            if requested is not None and requested.is_set():  # a server in "signal" mode
                cancel.set()
            await anyio.sleep(POLL_S)
        await pump()
    except anyio.get_cancelled_exc_class():
        cancel.set()  # the client cancelled: stop the run, and let it write its log
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(thread.join, STOP_WAIT_S)
        raise
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, ConfigError):
            raise ToolError(str(exc))
        raise exc
    result = box["result"]
    return {
        "answer": result.answer,
        "summary": _summary(result),
        "run_id": result.run_id,
        "status": result.status,
        "error": str(result.error) if result.error is not None else None,
        "cost_usd": result.cost_usd,
        "total_tokens": result.total_tokens,
        "log_path": str(result.log_path) if result.log_path else None,
    }


def replay_text(root: Any) -> str:
    lines = []
    for run in root.walk():
        pad = "  " * run.depth
        lines.append(f"{pad}run {run.run_id} [{run.status}] {run.question[:200]}")
        for turn in run.turns:
            retried = f" ({turn.retries} retries)" if turn.retries else ""
            lines.append(f"{pad}  turn {turn.turn}{retried}: {turn.text[:500]!r}")
            for code in turn.code:
                lines.append(f"{pad}    code -> {code.stdout[:300]!r}"
                             + (f" error {code.error[:200]!r}" if code.error else ""))
            for sub in turn.subcalls:
                lines.append(f"{pad}    sub-call -> {sub.response_preview[:200]!r}")
        lines.append(f"{pad}  answer: {run.answer!r}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="rlm mcp", description="Serve the RLM over MCP (stdio by default).")
    p.add_argument("--root", action="append", default=[], metavar="DIR",
                   help="a folder rlm_run may read files from (repeatable; default: the "
                        "current directory)")
    p.add_argument("--http", type=int, metavar="PORT",
                   help="serve streamable HTTP on this port (path /mcp) instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="address for --http (default 127.0.0.1)")
    p.add_argument("--model", help="default model (else RLM_MODEL)")
    p.add_argument("--sandbox", choices=["local", "docker", "inprocess"],
                   help="where model-written code runs (else RLM_SANDBOX, else local)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    roots = Roots(args.root)
    defaults = {k: v for k, v in (("model", args.model), ("sandbox", args.sandbox)) if v}
    server = build_server(roots, **defaults)
    print(f"rlm mcp: serving {'http://%s:%d/mcp' % (args.host, args.http) if args.http else 'stdio'}"
          f"; roots: {roots}", file=sys.stderr, flush=True)
    if args.http:
        server.run("streamable-http", host=args.host, port=args.http)
    else:
        server.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
