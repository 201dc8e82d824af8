"""Static views of a run for frontends without widgets: plain text, Markdown and HTML.

Why: a saved notebook is read on GitHub, in nbconvert output, in editors and in terminal IPython,
none of which run our widget. These renderers take the same event stream as the widget (live or
replayed from JSONL), need neither IPython nor a kernel, and the HTML is self-contained
(inline styles, collapsible ``<details>``), so the engine's result object can delegate its
``_repr_mimebundle_`` here. The tree comes from the engine's own fold
(:class:`~rlm_jupyter.engine.trajectory.Trajectory`), so what these views show is exactly what
``RunResult.trajectory`` and ``read_trajectory`` hold.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any, Iterable

from rlm_jupyter.engine.trajectory import RunNode, SubCallNode, Totals, Trajectory

#: Sub-calls listed per turn in static output; the rest are summarised (a run may make thousands).
MAX_SUBCALLS_LISTED = 25
#: Characters of stdout / model text kept per block in static output.
MAX_BLOCK_CHARS = 4000


def fold(events: Iterable[Any]) -> Trajectory:
    """The engine's fold of ``events`` (``Event`` objects or JSONL dicts)."""
    trajectory = Trajectory()
    for event in events:
        trajectory.add(event)
    return trajectory


def as_runs(source: Any) -> list[RunNode]:
    """The top-level runs to show, from a ``RunNode`` (or a list of them), a ``Trajectory``, an
    iterable of events/dicts, or an object with ``events`` (a result, a widget)."""
    if isinstance(source, RunNode):
        return [source]
    if isinstance(source, Trajectory):
        return source.roots
    if isinstance(source, list) and source and all(isinstance(r, RunNode) for r in source):
        return source
    events = getattr(source, "events", None)
    if events is not None and not isinstance(source, (list, tuple)):
        return fold(events).roots
    return fold(source).roots


def totals(runs: list[RunNode]) -> Totals:
    return sum((run.totals() for run in runs), Totals())


def elapsed_s(run: RunNode, now: float | None = None) -> float:
    """Final for a finished run; for a live one, the time since it started."""
    if run.status != "running":
        return float(run.elapsed_s)
    if not run.started_ts:
        return 0.0
    return max(0.0, (now if now is not None else time.time()) - run.started_ts)


def budget_bars(root: RunNode, sums: Totals | None = None,
                now: float | None = None) -> list[tuple[str, float, float]]:
    """(label, used, allowed) for every limit the root run declared."""
    sums = sums if sums is not None else root.totals()
    lim = root.limits

    def pick(*names: str) -> float | None:
        for name in names:
            value = lim.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
        return None

    root_turns = len([t for t in root.turns if t.turn > 0]) or len(root.turns)
    checks = [
        ("turns", pick("max_iterations", "turns", "max_turns"), float(root_turns)),
        ("sub-calls", pick("max_subcalls", "subcalls"), float(sums.subcalls)),
        ("tokens", pick("max_tokens", "tokens"), float(sums.tokens)),
        ("cost $", pick("budget_usd", "usd", "max_usd"), sums.cost_usd),
        ("time s", pick("timeout_s", "time", "max_time_s"), elapsed_s(root, now)),
    ]
    return [(label, used, allowed) for label, allowed, used in checks if allowed]


# -- small formatting helpers ---------------------------------------------------------------
def fmt_tokens(n: int | float) -> str:
    n = int(n)
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def fmt_cost(usd: float) -> str:
    if usd <= 0:
        return "$0"
    if usd < 0.01:
        return f"${usd:.4f}"
    return f"${usd:.2f}"


def fmt_secs(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def one_line(text: str, limit: int = 80) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


#: The mark of a run answered entirely from the response cache (a re-run cell).
REPLAYED = "replayed from cache"
REPLAYED_HELP = "no model was called and nothing was paid; --no-cache asks the model again"


def fmt_retries(n: int) -> str:
    """"3 retries" (or "" for none): failed model attempts that were tried again."""
    return f"{n} retr{'y' if n == 1 else 'ies'}" if n else ""


def retry_note(node: Any) -> str:
    """" · 2 retries (last: RateLimitError: ...)" for a turn or sub-call, "" when none."""
    if not node.retries:
        return ""
    last = node.retry_errors[-1] if node.retry_errors else ""
    return f" · {fmt_retries(node.retries)}" + (f" (last: {one_line(last, 80)})" if last else "")


def summary_line(runs: list[RunNode], now: float | None = None) -> str:
    t = totals(runs)
    root = runs[0]
    retries = f" · {fmt_retries(t.retries)}" if t.retries else ""
    replayed = f" · {REPLAYED}" if root.replayed else ""
    return (f"{root.status} · {fmt_secs(elapsed_s(root, now))} · {t.turns} turns · "
            f"{t.subcalls} sub-calls · {fmt_tokens(t.tokens)} tokens · {fmt_cost(t.cost_usd)}"
            f"{retries}{replayed}")


# -- plain text ------------------------------------------------------------------------------
def render_text(source: Any, *, verbose: bool = False) -> str:
    """A compact text trajectory (what terminal IPython and ``text/plain`` show)."""
    runs = as_runs(source)
    if not runs:
        return "RLM run (no events yet)"
    root = runs[0]
    lines = [f"RLM run {root.run_id} · {summary_line(runs)}"]
    if root.question:
        lines.append(f"Q: {one_line(root.question, 100)}")
    for run in runs:
        _text_run(run, lines, indent="", verbose=verbose)
    if root.answer is not None:
        lines.append("Answer:")
        lines.extend("  " + ln for ln in clip(root.answer, MAX_BLOCK_CHARS).splitlines() or [""])
    elif root.error:
        lines.append(f"Error ({root.error_type or root.status}): {one_line(root.error, 200)}")
    return "\n".join(lines)


def _text_run(run: RunNode, lines: list[str], indent: str, verbose: bool) -> None:
    for turn in run.turns:
        toks = turn.prompt_tokens + turn.completion_tokens
        head = f"{indent}turn {turn.turn}"
        if turn.responded:
            head += f" · {fmt_tokens(toks)} tok · {fmt_secs(turn.latency_s)}"
            if turn.cached:
                head += " · cached"
        head += retry_note(turn)
        lines.append(head)
        if verbose and turn.text:
            lines.extend(f"{indent}  | {ln}" for ln in clip(turn.text, 800).splitlines())
        for code in turn.code:
            status = "timed out" if code.timed_out else ("error" if code.error else "ok")
            n_out = len(code.stdout.splitlines())
            lines.append(f"{indent}  code #{code.index + 1}: {len(code.code.splitlines())} lines,"
                         f" {status}, {n_out} output lines, {fmt_secs(code.duration_s)}")
            if code.error:
                lines.append(f"{indent}    {one_line(code.error.strip().splitlines()[-1], 120)}")
        if turn.subcalls:
            done = sum(1 for s in turn.subcalls if s.finished)
            errs = sum(1 for s in turn.subcalls if s.error)
            cached = sum(1 for s in turn.subcalls if s.cached)
            extra = f", {errs} failed" if errs else ""
            extra += f", {cached} cached" if cached else ""
            retried = sum(s.retries for s in turn.subcalls)
            extra += f", {fmt_retries(retried)}" if retried else ""
            lines.append(f"{indent}  sub-calls: {done}/{len(turn.subcalls)} done{extra}")
        for tool in turn.tools:
            outcome = f"error: {one_line(tool.error, 100)}" if tool.error else one_line(
                tool.result_preview, 100)
            lines.append(f"{indent}  tool {tool.name}({one_line(tool.arguments_preview, 60)})"
                         f" -> {outcome} · {fmt_secs(tool.duration_s)}")
        for child in turn.children:
            _text_child(child, lines, indent, verbose)
    for child in _loose_children(run):
        _text_child(child, lines, indent, verbose)


def _text_child(child: RunNode, lines: list[str], indent: str, verbose: bool) -> None:
    lines.append(f"{indent}  child RLM {child.run_id}: {one_line(child.question, 60)}"
                 f" → {child.status}")
    _text_run(child, lines, indent + "    ", verbose)


def _loose_children(run: RunNode) -> list[RunNode]:
    """Child runs not placed under any turn (their parent span is not in the stream)."""
    if not run.children:
        return []
    placed = {id(c) for turn in run.turns for c in turn.children}
    return [c for c in run.children if id(c) not in placed]


# -- Markdown --------------------------------------------------------------------------------
def render_markdown(source: Any) -> str:
    """Markdown: a summary, one section per root turn with code blocks, and the answer."""
    runs = as_runs(source)
    if not runs:
        return "*RLM run: no events yet*"
    root = runs[0]
    out = [f"**RLM run** `{root.run_id}` — {summary_line(runs)}", ""]
    if root.question:
        out += [f"> {one_line(root.question, 300)}", ""]
    for turn in root.turns:
        out.append(f"**Turn {turn.turn}** ({fmt_tokens(turn.prompt_tokens + turn.completion_tokens)}"
                   f" tokens, {fmt_secs(turn.latency_s)})")
        out.append("")
        for code in turn.code:
            out += ["```python", clip(code.code, MAX_BLOCK_CHARS), "```", ""]
            if code.stdout or code.error:
                out += ["```text", clip((code.stdout or "") + (code.error or ""), 1500), "```", ""]
        if turn.subcalls:
            out += [f"*{len(turn.subcalls)} sub-calls*", ""]
    if root.answer is not None:
        out += ["**Answer**", "", root.answer]
    elif root.error:
        out += [f"**{root.error_type or 'Error'}**: {root.error}"]
    return "\n".join(out)


# -- HTML ------------------------------------------------------------------------------------
_CSS = """
.rlm-static{font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px;line-height:1.45;color:#1f2328;max-width:100%}
.rlm-static .hdr{display:flex;flex-wrap:wrap;gap:.4em;align-items:center;margin-bottom:.4em}
.rlm-static .pill{border-radius:9px;padding:0 .55em;background:#eef1f4;font-size:12px}
.rlm-static .ok{background:#dafbe1}.rlm-static .error{background:#ffebe9}.rlm-static .cancelled{background:#fff8c5}
.rlm-static details{border-left:2px solid #d0d7de;margin:.2em 0 .2em .3em;padding-left:.6em}
.rlm-static summary{cursor:pointer}
.rlm-static pre{background:#f6f8fa;padding:.5em;overflow-x:auto;margin:.3em 0;white-space:pre-wrap;font-size:12px}
.rlm-static .err{color:#cf222e}.rlm-static .dim{color:#656d76}
.rlm-static .answer{border:1px solid #d0d7de;border-radius:6px;padding:.2em .8em;margin-top:.5em}
.rlm-static .bar{display:inline-block;width:60px;height:6px;background:#d0d7de;border-radius:3px;vertical-align:middle;overflow:hidden}
.rlm-static .bar i{display:block;height:6px;background:#54aeff}
"""


_FENCE = re.compile(r"```repl[^\n]*\n.*?```", re.DOTALL)


def collapse_fences(text: str) -> str:
    """Model text with its ```repl blocks replaced by markers (the code is shown below it)."""
    counter = iter(range(1, 10_000))
    return _FENCE.sub(lambda m: f"⟨code #{next(counter)} below⟩", text or "").strip()


def _e(text: Any) -> str:
    return html.escape(str(text if text is not None else ""))


def highlight_python(code: str) -> str:
    """Inline-styled highlighted HTML (Pygments ships with IPython); escaped text otherwise."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except Exception:
        return f"<pre>{_e(code)}</pre>"
    return highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nowrap=False,
                                                        style="default"))


def markdown_to_html(text: str) -> str:
    """Markdown → HTML with mistune when installed (it comes with nbconvert), escaped otherwise."""
    try:
        import mistune

        md = mistune.create_markdown(escape=True)  # model output is untrusted: no raw HTML
        return str(md(text))
    except Exception:
        return f"<pre>{_e(text)}</pre>"


def render_html(source: Any, *, open_turns: bool = False) -> str:
    """Self-contained HTML with collapsible turns, code, output, sub-calls and the answer."""
    runs = as_runs(source)
    if not runs:
        return "<div class='rlm-static'><i>RLM run: no events yet</i></div>"
    root = runs[0]
    t = totals(runs)
    status = _e(root.status)
    parts = [f"<style>{_CSS}</style><div class='rlm-static'>", "<div class='hdr'>",
             f"<b>RLM</b><span class='pill {status}'>{status}</span>",
             f"<span class='pill'>{fmt_secs(elapsed_s(root))}</span>",
             f"<span class='pill'>{t.turns} turns</span>",
             f"<span class='pill'>{t.subcalls} sub-calls</span>",
             f"<span class='pill'>{fmt_tokens(t.tokens)} tokens</span>",
             f"<span class='pill'>{fmt_cost(t.cost_usd)}</span>"]
    if t.retries:
        parts.append(f"<span class='pill retries'>{fmt_retries(t.retries)}</span>")
    if root.replayed:
        parts.append(f"<span class='pill' title='{_e(REPLAYED_HELP)}'>{REPLAYED}</span>")
    for label, used, allowed in budget_bars(root, t):
        pct = max(0.0, min(100.0, 100.0 * used / allowed))
        parts.append(f"<span class='pill'>{_e(label)} <span class='bar'><i style='width:{pct:.0f}%'>"
                     f"</i></span> {used:.4g}/{allowed:.4g}</span>")
    parts.append("</div>")
    if root.question:
        parts.append(f"<div class='dim'>Q: {_e(one_line(root.question, 300))}</div>")
    if root.model:
        parts.append(f"<div class='dim'>model {_e(root.model)}"
                     + (f" · sub-model {_e(root.sub_model)}" if root.sub_model else "")
                     + (f" · sandbox {_e(root.sandbox)}" if root.sandbox else "")
                     + (f" · context {_e(one_line(root.context_summary, 140))}"
                        if root.context_summary else "")
                     + "</div>")
    for run in runs:
        _html_run(run, parts, open_turns)
    if root.answer is not None:
        parts.append(f"<div class='answer'><b>Answer</b>{markdown_to_html(root.answer)}</div>")
    elif root.error:
        parts.append(f"<div class='answer err'><b>{_e(root.error_type or root.status)}</b>: "
                     f"{_e(root.error)}</div>")
    parts.append("</div>")
    return "".join(parts)


def _html_run(run: RunNode, parts: list[str], open_turns: bool) -> None:
    for turn in run.turns:
        toks = fmt_tokens(turn.prompt_tokens + turn.completion_tokens)
        flag = " open" if open_turns else ""
        cached = " · cached" if turn.cached else ""
        parts.append(f"<details{flag}><summary>Turn {turn.turn} <span class='dim'>{toks} tokens · "
                     f"{fmt_secs(turn.latency_s)}{cached} · {len(turn.code)} code · "
                     f"{len(turn.subcalls)} sub-calls{_e(retry_note(turn))}</span></summary>")
        text = collapse_fences(turn.text)
        if text:
            parts.append(f"<div class='dim'>model:</div><pre>{_e(clip(text, MAX_BLOCK_CHARS))}</pre>")
        for code in turn.code:
            parts.append(highlight_python(clip(code.code, MAX_BLOCK_CHARS)))
            if code.stdout:
                parts.append(f"<pre>{_e(clip(code.stdout, MAX_BLOCK_CHARS))}</pre>")
            if code.error:
                parts.append(f"<pre class='err'>{_e(clip(code.error, MAX_BLOCK_CHARS))}</pre>")
        if turn.subcalls:
            parts.append(f"<details><summary>{len(turn.subcalls)} sub-calls</summary>")
            for sub in turn.subcalls[:MAX_SUBCALLS_LISTED]:
                _html_subcall(sub, parts)
            if len(turn.subcalls) > MAX_SUBCALLS_LISTED:
                parts.append(f"<div class='dim'>… {len(turn.subcalls) - MAX_SUBCALLS_LISTED} more"
                             " sub-calls (see the live view or the JSONL log)</div>")
            parts.append("</details>")
        for tool in turn.tools:
            outcome = tool.error or tool.result_preview
            parts.append(f"<div class='dim'>tool <code>{_e(tool.name)}</code> "
                         f"{_e(one_line(tool.arguments_preview, 80))} · "
                         f"{fmt_secs(tool.duration_s)}</div>"
                         f"<pre{' class=err' if tool.error else ''}>{_e(outcome)}</pre>")
        for child in turn.children:
            _html_child(child, parts, open_turns)
        parts.append("</details>")
    for child in _loose_children(run):
        _html_child(child, parts, open_turns)


def _html_subcall(sub: SubCallNode, parts: list[str]) -> None:
    toks = fmt_tokens(sub.prompt_tokens + sub.completion_tokens)
    state = ("error" if sub.error else
             ("cached" if sub.cached else ("done" if sub.finished else "running")))
    parts.append(f"<details><summary>{_e(one_line(sub.prompt_preview, 70))} <span class='dim'>"
                 f"{toks} tok · {fmt_secs(sub.latency_s)} · {state}{_e(retry_note(sub))}"
                 "</span></summary>"
                 f"<div class='dim'>prompt ({sub.prompt_chars:,} chars)</div>"
                 f"<pre>{_e(sub.prompt_preview)}</pre><div class='dim'>response</div>"
                 f"<pre{' class=err' if sub.error else ''}>{_e(sub.error or sub.response_preview)}"
                 "</pre></details>")


def _html_child(child: RunNode, parts: list[str], open_turns: bool) -> None:
    parts.append(f"<details><summary>child RLM <code>{_e(child.run_id)}</code> "
                 f"{_e(one_line(child.question, 60))} <span class='dim'>{_e(child.status)}"
                 "</span></summary>")
    _html_run(child, parts, open_turns)
    if child.answer is not None:
        parts.append(f"<div class='dim'>answer: {_e(one_line(child.answer, 300))}</div>")
    parts.append("</details>")


def mimebundle(source: Any) -> dict[str, str]:
    """text/plain + text/markdown + text/html, for ``_repr_mimebundle_`` of results."""
    runs = as_runs(source)
    return {"text/plain": render_text(runs), "text/markdown": render_markdown(runs),
            "text/html": render_html(runs)}


def result_events(result: Any) -> list[Any]:
    """A result's events: kept in memory by the engine, else read back from its JSONL log."""
    events = list(getattr(result, "events", None) or [])
    if not events and getattr(result, "log_path", None):
        try:
            from rlm_jupyter.engine.trajectory import iter_events

            events = list(iter_events(result.log_path))
        except (OSError, ValueError):
            events = []
    return events


def result_mimebundle(result: Any) -> dict[str, str]:
    """``RunResult._repr_mimebundle_`` delegates here: the answer first, the trajectory below."""
    tree = getattr(result, "trajectory", None)
    source: Any = tree if isinstance(tree, RunNode) else result_events(result)
    if not source:
        text = repr(result)
        return {"text/plain": text, "text/html": f"<pre>{_e(text)}</pre>"}
    bundle = mimebundle(source)
    bundle["text/plain"] = repr(result) + "\n" + bundle["text/plain"]
    return bundle


def render_events(events: Iterable[Any], fmt: str = "text") -> str:
    """Convenience for the CLI: ``fmt`` in text | markdown | html."""
    runs = fold(events).roots
    return {"text": render_text, "markdown": render_markdown, "html": render_html}[fmt](runs)
