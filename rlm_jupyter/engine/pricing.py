"""What a model call cost, in USD, exactly as litellm prices it.

Every call is priced by litellm's public ``cost_per_token`` (tiers above 200k tokens, cached and
reasoning tokens, per-second and per-character prices, provider discounts): we never re-derive a
price from the rate table ourselves, because a shortcut that agreed with litellm one release
priced tiered models at half their price the next.

Two things keep this off the critical path:

* a memo on the exact arguments (model, both token counts, and a fingerprint of the model's
  price entry so ``litellm.register_model`` takes effect at once): litellm's lookup costs
  0.1-0.3 ms, and sub-calls of one batch often repeat their counts;
* a model that litellm cannot price costs $0 (local models, a scripted server) and is
  recognised *without importing litellm* (a 3-6 s import) when litellm is not loaded yet: its
  name is looked up in the price table litellm ships as JSON. So the first run against a local
  OpenAI-compatible server never waits for litellm. A model the table knows imports litellm
  and is priced by it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
import threading
from typing import Any

#: The price table litellm ships, read when litellm is not imported (offline, as litellm reads
#: it with ``LITELLM_LOCAL_MODEL_COST_MAP=True``).
_PRICE_FILE = "model_prices_and_context_window_backup.json"

_unpriced: set[str] = set()
_table_lock = threading.Lock()
_table_names: frozenset[str] | None = None


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int,
             usage: Any = None) -> tuple[float, bool]:
    """USD for one call and whether the model has a price at all (unknown models cost 0).

    ``usage``: the provider's usage object when litellm parsed one, so cached and reasoning
    tokens are priced as litellm prices them (not memoised: the object carries more than two
    counts).
    """
    litellm = _loaded_litellm()
    if litellm is None:
        if not _maybe_priced(model):
            return 0.0, False
        from rlm_jupyter.engine.llm import get_litellm

        litellm = get_litellm()
    if model in _unpriced:
        if not _has_entry(litellm, model):
            return 0.0, False
        _unpriced.discard(model)  # registered since: ask litellm again
    if usage is not None:
        return _ask_litellm(litellm, model, prompt_tokens, completion_tokens, usage)
    return _memoised(model, int(prompt_tokens), int(completion_tokens),
                     _fingerprint(litellm, model))


@functools.lru_cache(maxsize=8192)
def _memoised(model: str, prompt_tokens: int, completion_tokens: int,
              fingerprint: tuple[int, str]) -> tuple[float, bool]:
    return _ask_litellm(sys.modules["litellm"], model, prompt_tokens, completion_tokens, None)


def _ask_litellm(litellm: Any, model: str, prompt_tokens: int, completion_tokens: int,
                 usage: Any) -> tuple[float, bool]:
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            usage_object=usage)
    except Exception:  # noqa: BLE001 - ModelNotMappedError and friends: litellm has no price
        _unpriced.add(model)
        return 0.0, False
    return float(prompt_cost + completion_cost), True


def _fingerprint(litellm: Any, model: str) -> tuple[int, str]:
    """Changes when the model's price entry (or the table's size) changes: a re-registered
    price must not be answered from the memo (~6 us)."""
    table = litellm.model_cost
    entry = table.get(model) or table.get(model.split("/", 1)[-1])
    return len(table), repr(entry)


def _has_entry(litellm: Any, model: str) -> bool:
    table = litellm.model_cost
    return model in table or model.split("/", 1)[-1] in table


def _loaded_litellm() -> Any:
    """litellm if it is already imported (fully), else None."""
    module = sys.modules.get("litellm")
    if module is None or not hasattr(module, "cost_per_token"):
        return None
    spec = getattr(module, "__spec__", None)
    if spec is not None and getattr(spec, "_initializing", False):
        return None  # a background import is half-way: do not wait for it here
    return module


def _maybe_priced(model: str) -> bool:
    """False only when the shipped price table cannot know ``model`` under any name litellm
    would look it up by; True (ask litellm) when in doubt."""
    if model.startswith("ft:") or ":ft" in model or "/ft:" in model:
        return True  # fine-tuned names are priced by their base model
    names = _shipped_names()
    if names is None:
        return True
    bare = model.split("/", 1)[-1]
    return model in names or bare in names or bare.lower() in names


def _shipped_names() -> frozenset[str] | None:
    global _table_names
    if _table_names is None:
        with _table_lock:
            if _table_names is None:
                _table_names = _read_shipped_names()
    return _table_names or None


def _read_shipped_names() -> frozenset[str]:
    try:
        spec = importlib.util.find_spec("litellm")  # finds the package, imports nothing
        locations = list(spec.submodule_search_locations or []) if spec else []
        for folder in locations:
            path = os.path.join(folder, _PRICE_FILE)
            if os.path.exists(path):
                with open(path, "rb") as fh:
                    table = json.load(fh)
                return frozenset(table) | frozenset(name.lower() for name in table)
    except (OSError, ValueError, ImportError):
        pass
    return frozenset()
