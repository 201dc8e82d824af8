"""``llm_query(prompt, json=True)``: ask for JSON the way the provider supports, parse it.

JSON mode (``response_format={"type": "json_object"}``) is sent only where it is known to work:
through litellm when litellm lists ``response_format`` among the model's supported parameters,
and on the direct HTTP path, whose OpenAI-compatible servers (llama.cpp, vLLM, Ollama's /v1)
accept it. A server that still refuses it gets the request again without it (loop.py), so
asking for JSON never costs more than one failed call.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

JSON_OBJECT = {"response_format": {"type": "json_object"}}
_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.S)


def json_mode_params(client: Any, model: str) -> dict[str, Any] | None:
    """The sampling override that turns on JSON mode for ``model``, or None."""
    if getattr(client, "transport", "litellm") == "http":
        return JSON_OBJECT
    return JSON_OBJECT if _litellm_supports(model) else None


@lru_cache(maxsize=64)
def _litellm_supports(model: str) -> bool:
    try:
        from rlm_jupyter.engine.llm import get_litellm

        litellm = get_litellm()
        params = litellm.get_supported_openai_params(model=model) or []
    except Exception:  # noqa: BLE001 - an unknown model: ask in words only
        return False
    return "response_format" in params


def parse_json_reply(text: str) -> Any:
    """The JSON value in a reply: the whole text, a fenced block, or the first {...}/[...]
    span. Raises ValueError with the parser's message."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start:end + 1])
    first_error: ValueError | None = None
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return json.loads(candidate)
        except ValueError as exc:
            first_error = first_error or exc
    raise ValueError(str(first_error) if first_error else "the reply is empty")
