"""``%rlm sessions``: the notebook's open sessions as a table (name, asks, size, age, cost).

Sessions live in the kernel (``rlm_jupyter/jupyter/sessions.py`` keeps them); this module only
turns their figures into text, like the other commands.
"""

from __future__ import annotations

import time
from typing import Any, Iterable


def sessions_text(sessions: Iterable[Any], now: float | None = None) -> str:
    rows = list(sessions)
    if not rows:
        return "No open session: `%%rlm --session NAME` starts one, `%%rlm --continue` follows up."
    now = time.time() if now is None else now
    lines = [f"{'name':<16} {'asks':>4} {'variables':>9} {'age':>8} {'idle':>8} {'cost':>10}  state"]
    for s in rows:
        try:
            n_vars = len(s.variables()) if not s.closed else 0
        except Exception:  # noqa: BLE001 - a dead worker: the table still shows
            n_vars = 0
        state = f"closed ({s.closed_reason})" if s.closed else "open"
        lines.append(f"{str(s.name)[:16]:<16} {len(s.results):>4} {n_vars:>9} "
                     f"{_secs(now - s.created):>8} {_secs(s.idle_s):>8} "
                     f"${s.cost_usd:>9.4f}  {state}")
    return "\n".join(lines)


def _secs(s: float) -> str:
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"
