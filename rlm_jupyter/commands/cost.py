"""``cost``: spend per model as one table (the notebook's session ledger feeds it)."""

from __future__ import annotations

from typing import Any, Iterable

from rlm_jupyter.commands import messages


def cost_text(rows: Iterable[tuple[str, dict[str, Any]]], runs: int, total_usd: float) -> str:
    """``rows`` are ``(model, usage)`` pairs as ``RunResult.usage`` holds them, summed."""
    rows = list(rows)
    if not rows:
        return messages.EMPTY_LEDGER
    lines = [f"{'model':40}  {'calls':>6}  {'cached':>6}  {'retries':>7}  {'prompt':>10}  "
             f"{'completion':>10}  {'cost':>9}"]
    for model, r in rows:
        lines.append(f"{model[-40:]:40}  {int(r.get('calls', 0)):>6}  "
                     f"{int(r.get('cached_calls', 0)):>6}  {int(r.get('retries', 0)):>7}  "
                     f"{int(r.get('prompt_tokens', 0)):>10,}  "
                     f"{int(r.get('completion_tokens', 0)):>10,}  ${r.get('cost_usd', 0.0):>8.4f}")
    lines.append(f"{runs} runs, total ${total_usd:.4f}")
    return "\n".join(lines)
