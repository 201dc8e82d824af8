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

from rlm_jupyter.engine.trajectory import (CodeNode, RunNode, SubCallNode, Totals, Trajectory,
                                          TurnNode)

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
    if verbose and root.notes:
        # Session notes, typed-answer checks, guardrails that acted: why the run went as it did.
        lines.append("Notes:")
        lines.extend(f"  {one_line(note, 200)}" for note in root.notes)
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


# -- live view fragments -----------------------------------------------------------------------
# The widget (widget.py) folds events with the engine's Trajectory and sends these fragments;
# widget.js only places them. Each node is a *shell* (its element, created once in the browser,
# so a <details> keeps the user's open/closed state) holding ``data-part`` elements whose HTML is
# replaced on update and ``data-slot`` elements that receive child nodes. Classes are widget.css's.

def _attr(text: Any) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


def run_node_id(run: RunNode) -> str:
    return f"r:{run.run_id}"


def turn_node_id(run_id: str, turn: int) -> str:
    return f"t:{run_id}:{turn}"


def live_head_shell() -> str:
    return ("<div class='rlm-top' data-node='head'><div class='rlm-header'>"
            "<span class='rlm-logo'>RLM</span><span class='rlm-pills' data-part='pills'></span>"
            "<span class='rlm-bars' data-part='bars'></span></div>"
            "<div class='rlm-question' data-part='q'></div>"
            "<div class='rlm-meta' data-part='meta'></div></div>")


def live_head_parts(runs: list[RunNode], status: str, live: bool,
                    now: float | None = None) -> dict[str, str]:
    """Status, counters, budget bars, question and settings of the run (the header)."""
    root = runs[0] if runs else None
    t = totals(runs) if runs else Totals()
    elapsed = elapsed_s(root, now) if root is not None else 0.0
    ticking = "1" if live and status in ("running", "stopping") else "0"
    running = f" ({t.subcalls_running} running)" if t.subcalls_running else ""
    failed = sum(1 for run in runs for s in run.all_subcalls() if s.error) if t.subcalls else 0
    failed_s = f" · {failed} failed" if failed else ""
    pills = [f"<span class='rlm-pill rlm-status rlm-st-{_attr(status)}'>{_e(status)}</span>",
             f"<span class='rlm-pill rlm-c-elapsed' data-elapsed='{elapsed:.3f}' "
             f"data-ticking='{ticking}'>⏱ {fmt_secs(elapsed)}</span>",
             f"<span class='rlm-pill rlm-c-turns'>{t.turns} turns</span>",
             f"<span class='rlm-pill rlm-c-subcalls'>{t.subcalls} sub-calls{running}{failed_s}</span>",
             f"<span class='rlm-pill rlm-c-tokens'>{fmt_tokens(t.tokens)} tokens</span>",
             f"<span class='rlm-pill rlm-c-cost'>{fmt_cost(t.cost_usd)}</span>"]
    if t.retries:
        pills.append("<span class='rlm-pill rlm-c-retries' title='failed model attempts that "
                     f"were tried again'>{fmt_retries(t.retries)}</span>")
    if root is not None and root.replayed:
        pills.append(f"<span class='rlm-pill rlm-c-replayed' title='{_attr(REPLAYED_HELP)}'>"
                     f"{REPLAYED}</span>")
    bars = []
    if root is not None:
        for label, used, allowed in budget_bars(root, t, now):
            pct = max(0.0, min(100.0, 100.0 * used / allowed))
            level = " full" if pct >= 100 else (" warn" if pct >= 80 else "")
            bars.append(f"<span class='rlm-bar{level}' title='{_attr(label)}: {used:.4g} of "
                        f"{allowed:.4g}'><span class='rlm-bar-label'>{_e(label)}</span>"
                        f"<span class='rlm-track'><i style='width:{pct:.0f}%'></i></span></span>")
    question = meta = ""
    if root is not None:
        question = _e("Q: " + one_line(root.question, 400)) if root.question else ""
        bits = []
        if root.model:
            bits.append(f"model {root.model}")
        if root.sub_model and root.sub_model != root.model:
            bits.append(f"sub-model {root.sub_model}")
        if root.sandbox:
            bits.append(f"sandbox {root.sandbox}")
        if root.context_summary:
            bits.append(f"context {one_line(root.context_summary, 140)}")
        meta = _e(" · ".join(bits))
    return {"pills": "".join(pills), "bars": "".join(bars), "q": question, "meta": meta}


def live_run_shell(run: RunNode, is_root: bool) -> str:
    nid = _attr(run_node_id(run))
    if is_root:
        return (f"<div class='rlm-run' data-node='{nid}'><div class='rlm-turns' data-slot='turns'>"
                "</div><div class='rlm-kids' data-slot='kids'></div></div>")
    return (f"<details class='rlm-run rlm-child' open data-node='{nid}' data-key='{nid}'>"
            "<summary data-part='sum'></summary><div class='rlm-turns' data-slot='turns'></div>"
            "<div class='rlm-kids' data-slot='kids'></div>"
            "<div class='rlm-child-answer' data-part='ans'></div></details>")


def live_run_parts(run: RunNode, from_subcall: int | None = None) -> dict[str, str]:
    """A child run's summary line and answer (a root run has none: the header shows them)."""
    origin = f" · from sub-call #{from_subcall + 1}" if from_subcall is not None else ""
    summary = (f"<span class='rlm-tag'>child RLM</span> {_e(one_line(run.question, 90))} "
               f"<span class='rlm-dim'>{_e(run.status)}{origin}</span>")
    if run.answer is not None:
        answer = _e("↳ " + one_line(run.answer, 300))
    elif run.error:
        answer = _e(f"↳ {run.error_type or 'error'}: {one_line(run.error, 300)}")
    else:
        answer = ""
    return {"sum": summary, "ans": answer}


def live_turn_shell(node_id: str) -> str:
    nid = _attr(node_id)
    return (f"<details class='rlm-turn' open data-node='{nid}' data-key='{nid}'>"
            "<summary data-part='sum'></summary><pre class='rlm-text' data-part='text'></pre>"
            "<div class='rlm-codes' data-slot='codes'></div>"
            "<div class='rlm-tools' data-part='tools'></div>"
            f"<details class='rlm-subs' data-key='subs:{nid}' data-flag='subs'>"
            "<summary data-part='subsum'></summary>"
            "<div class='rlm-subs-body' data-slot='subs'></div></details>"
            "<div class='rlm-kids' data-slot='kids'></div></details>")


def live_turn_parts(turn: TurnNode) -> dict[str, str]:
    bits = []
    if turn.responded:
        bits += [f"{fmt_tokens(turn.prompt_tokens + turn.completion_tokens)} tok",
                 fmt_secs(turn.latency_s)]
    if turn.cached:
        bits.append("cached")
    if turn.streaming:
        bits.append("streaming…")
    if turn.code:
        bits.append(f"{len(turn.code)} code")
    if turn.subcalls:
        bits.append(f"{len(turn.subcalls)} sub-calls")
    summary = (f"<b>Turn {turn.turn}</b> <span class='rlm-dim'>{_e(' · '.join(bits))}"
               f"{_e(retry_note(turn))}</span>")
    text = turn.text if turn.streaming else collapse_fences(turn.text)
    subs = ""
    if turn.subcalls:
        done = failed = cached = retried = 0
        for s in turn.subcalls:
            done += s.finished
            failed += bool(s.error)
            cached += s.cached
            retried += s.retries
        extra = (f" · {failed} failed" if failed else "") + (f" · {cached} cached" if cached else "")
        extra += f" · {fmt_retries(retried)}" if retried else ""
        subs = _e(f"{len(turn.subcalls)} sub-calls · {done} done{extra}")
    tools = "".join(
        f"<div class='rlm-dim'>tool <code>{_e(tool.name)}</code> "
        f"{_e(one_line(tool.arguments_preview, 80))} · "
        f"{fmt_secs(tool.duration_s) if tool.finished else 'running'}</div>"
        f"<pre class='rlm-{'err' if tool.error else 'out'}'>"
        f"{_e(tool.error or tool.result_preview)}</pre>"
        for tool in getattr(turn, "tools", ()))
    return {"sum": summary, "text": _e(text), "subsum": subs, "tools": tools,
            # the streaming mark and empty blocks are styled by flags, not by the browser
            "@text": "streaming" if turn.streaming else ("" if text else "empty"),
            "@subs": "" if turn.subcalls else "empty"}


def live_code(node_id: str, code: CodeNode) -> str:
    """A code block as run (highlighted by Pygments), its output and error; final at once."""
    status = "timed out" if code.timed_out else ("error" if code.error else "ok")
    label = (f"code #{code.index + 1} · {status} · {fmt_secs(code.duration_s)}"
             + (" · sandbox restarted" if code.restarted else ""))
    out = [f"<div class='rlm-code' data-node='{_attr(node_id)}'><div class='rlm-dim'>{_e(label)}"
           f"</div><div class='rlm-src'>{highlight_python(clip(code.code, MAX_BLOCK_CHARS))}</div>"]
    if code.stdout:
        out.append(f"<pre class='rlm-out'>{_e(clip(code.stdout, MAX_BLOCK_CHARS))}</pre>")
    if code.error:
        out.append(f"<pre class='rlm-err'>{_e(clip(code.error, MAX_BLOCK_CHARS))}</pre>")
    out.append("</div>")
    return "".join(out)


def live_sub_shell(node_id: str) -> str:
    nid = _attr(node_id)
    return (f"<details class='rlm-sub' data-node='{nid}' data-key='{nid}'>"
            "<summary data-part='sum'></summary><div data-part='body'></div></details>")


def live_sub_parts(sub: SubCallNode, index: int) -> dict[str, str]:
    state = ("error" if sub.error else
             ("cached" if sub.cached else ("done" if sub.finished else "running")))
    toks = (f"{fmt_tokens(sub.prompt_tokens + sub.completion_tokens)} tok · "
            f"{fmt_secs(sub.latency_s)}") if sub.finished else ""
    retries = f" · {fmt_retries(sub.retries)}" if sub.retries else ""
    summary = (f"<span class='rlm-sub-n'>#{index + 1}</span> {_e(one_line(sub.prompt_preview, 80))}"
               f" <span class='rlm-dim'>{_e(toks + retries)}</span> "
               f"<span class='rlm-state rlm-{state}'>{state}</span>")
    if sub.finished and sub.response_preview:
        summary += f" <span class='rlm-dim'>→ {_e(one_line(sub.response_preview, 60))}</span>"
    body = [f"<div class='rlm-dim'>prompt ({sub.prompt_chars:,} chars)"
            f"{_e(' · ' + sub.model) if sub.model else ''}</div>"
            f"<pre class='rlm-out'>{_e(sub.prompt_preview)}</pre>"]
    if sub.retries:
        last = sub.retry_errors[-1] if sub.retry_errors else ""
        body.append(f"<div class='rlm-dim'>{_e(fmt_retries(sub.retries))} · last error: "
                    f"{_e(last)}</div>")
    response = sub.error or sub.response_preview or ("" if sub.finished else "…")
    body.append(f"<div class='rlm-dim'>response</div><pre class='rlm-{'err' if sub.error else 'out'}'>"
                f"{_e(response)}</pre>")
    return {"sum": summary, "body": "".join(body)}


def live_end_shell() -> str:
    return ("<div class='rlm-end' data-node='end'><div class='rlm-notes' data-part='notes'></div>"
            "<div class='rlm-answer' data-part='answer'></div></div>")


def live_end_parts(root: RunNode | None) -> dict[str, str]:
    """Warnings and errors of the root run, then its answer (Markdown) or its error."""
    if root is None:
        return {"notes": "", "answer": ""}
    notes = []
    for warning in root.warnings[-3:]:
        if root.error and warning.endswith(root.error):
            continue
        cls = "rlm-warn" if (" warning: " in warning or " exceeded: " in warning) else "rlm-err-line"
        notes.append(f"<div class='{cls}'>⚠ {_e(one_line(warning, 300))}</div>")
    answer = []
    if root.answer is not None:
        label = "Answer" if root.status == "ok" else "Partial answer"
        answer.append(f"<div class='rlm-final'><div class='rlm-answer-label'>{label}</div>"
                      f"<div class='rlm-md'>{_markdown_cached(root.answer)}</div></div>")
    if root.error:
        answer.append(f"<div class='rlm-final rlm-failed'><div class='rlm-err-line'>"
                      f"{_e(root.error_type or root.status)}: {_e(root.error)}</div></div>")
    return {"notes": "".join(notes), "answer": "".join(answer)}


_MD_CACHE: dict[str, str] = {}


def _markdown_cached(text: str) -> str:
    """The answer is re-rendered on every header refresh of a finished run: convert it once."""
    out = _MD_CACHE.get(text)
    if out is None:
        if len(_MD_CACHE) > 64:
            _MD_CACHE.clear()
        out = _MD_CACHE[text] = markdown_to_html(text)
    return out


def _register() -> None:
    """Results display through these views (the engine finds them here, never imports us)."""
    from rlm_jupyter.engine import result

    result.register_display(result_mimebundle)
    result.register_display(_map_mimebundle, "MapResult")


def _map_mimebundle(mapped: Any) -> dict[str, str]:
    """A MapResult's static table (the grid module is imported only when one is shown)."""
    from rlm_jupyter.jupyter.grid import map_mimebundle

    return map_mimebundle(mapped)


_register()
