"""``models``: chat models litellm knows, with context window and prices, best matches first."""

from __future__ import annotations

import argparse
from typing import Any

from rlm_jupyter.commands import messages
from rlm_jupyter.commands._parser import count

DEFAULT_LIMIT = 30
_CHAT_MODES = (None, "chat", "completion", "responses")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("filter", nargs="?", default="", metavar="FILTER",
                        help="part of a model name, e.g. gpt-4o")
    parser.add_argument("-n", "--limit", type=count, default=DEFAULT_LIMIT, metavar="N",
                        help=f"how many to show (default {DEFAULT_LIMIT})")


def models_text(needle: str = "", limit: int = DEFAULT_LIMIT) -> str:
    """Imports litellm (its price map is the source): seconds the first time."""
    from rlm_jupyter.engine.llm import get_litellm

    needle = needle.lower()
    cost_map: dict[str, Any] = getattr(get_litellm(), "model_cost", {}) or {}
    rows = [(name, info) for name, info in cost_map.items()
            if isinstance(info, dict) and name != "sample_spec"
            and (not needle or needle in name.lower()) and info.get("mode") in _CHAT_MODES]
    # Best matches first: the bare name starts with the filter, then shorter names.
    rows.sort(key=lambda r: (not r[0].rsplit("/", 1)[-1].lower().startswith(needle),
                             len(r[0]), r[0]))
    if not rows:
        return messages.NO_MODELS.format(needle=needle)
    lines = [f"{'model':50}  {'provider':14}  {'context':>9}  {'$/1M in':>9}  {'$/1M out':>9}"]
    for name, info in rows[:limit]:
        ctx = info.get("max_input_tokens") or info.get("max_tokens") or 0
        pin = (info.get("input_cost_per_token") or 0) * 1e6
        pout = (info.get("output_cost_per_token") or 0) * 1e6
        lines.append(f"{name[:50]:50}  {str(info.get('litellm_provider', ''))[:14]:14}  "
                     f"{int(ctx):>9,}  {pin:>9.3f}  {pout:>9.3f}")
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more (narrow with a filter or raise -n)")
    return "\n".join(lines)
