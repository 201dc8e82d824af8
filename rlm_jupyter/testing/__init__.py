"""A scripted OpenAI-compatible server, so tests exercise litellm's real HTTP path.

Instead of mocking the model, start a local server whose replies come from a script::

    import litellm
    from rlm_jupyter import RLM
    from rlm_jupyter.testing import ScriptedServer

    ROOT = [
        "```repl\\nparts = llm_query_batched([f'Find the key in: {c}' for c in context])\\n"
        "print(parts)\\n```",
        "FINAL(42)",
    ]

    def test_finds_the_key():
        with ScriptedServer(root=ROOT, sub=[(r"key=42", "42"), (r".", "NOT FOUND")]) as srv:
            result = RLM(**srv.client_kwargs).run("What is the key?", context=["a", "key=42"])
            assert result.answer == "42"
            assert len(srv.requests.subs()) == 2

Reach it from anything litellm-based with ``model=srv.model`` (``"openai/scripted"``),
``api_base=srv.base_url`` (``"http://127.0.0.1:PORT/v1"``) and ``api_key="scripted"``; or set
``srv.env()`` (RLM_MODEL, RLM_API_BASE, RLM_API_KEY) for a subprocess or notebook.

Scripts
    ``root=``: replies to root (RLM) turns, i.e. requests that carry a system message:
    a list consumed in order (items are str or ``fn(req)``), ``fn(req) -> str``, a constant str,
    or ``{question_substring: script}`` so child RLMs get their own script (first matching key
    wins, ``""`` is a fallback). ``None`` uses the demo policy.
    ``sub=``: replies to sub-calls (no system message, i.e. ``llm_query``): ``fn(prompt, req)``,
    a constant str, or rules ``[(regex, reply_or_fn), ...]`` searched in the prompt, falling back
    to :func:`answer_from_prompt` (quote the line sharing most keywords with the prompt's
    ``Question:``; ``"NOT FOUND"`` if none).
    ``req`` is a :class:`ScriptedRequest`: ``messages``, ``model``, ``kind``, ``question``,
    ``prompt`` (last user message), ``turn`` (1 + assistant messages), ``depth`` (hint from an
    ``X-RLM-Depth`` header), ``stream``, ``body``. ``classify=fn(req) -> "root" | "sub"``
    overrides the system-message rule. A script that runs out or raises answers HTTP 400 and,
    with ``strict=True`` (default), re-raises as :class:`ScriptError` when the block exits.

Inspection
    ``srv.requests`` (thread-safe log; ``.roots()``, ``.subs()``, items show ``reply``,
    ``status``, ``fault``), ``srv.counters`` (requests, root, sub, stream, faults, in_flight,
    max_in_flight, prompt_tokens, completion_tokens, ...), ``srv.errors``. Usage is realistic:
    prompt ~ chars/4 of all messages, completion ~ chars/4 of the reply (at least 1).

Faults and latency
    ``srv.inject("429" | "500" | "malformed" | "slow" | "disconnect", times=1, delay_s=None,
    match=None)`` hits the next matching requests (``match``: "root", "sub", a regex on the
    prompt, or ``fn(req)``); 429 carries ``Retry-After: delay_s`` (default 0.05 s).
    ``ScriptedServer(latency_s=0.2, tokens_per_s=50)`` simulates a provider (``latency_s`` may
    be ``fn(req) -> seconds``); 64+ requests are served concurrently, never serialised.

Demo
    ``ScriptedServer.demo()`` peeks at any context, maps ``llm_query_batched`` over 8-16 line
    chunks, and FINALs the chunks' findings. From a shell:
    ``python -m rlm_jupyter.testing serve --demo --port 8765`` prints the base URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "ScriptedServer", "ScriptedRequest", "ScriptError", "RequestLog", "Fault",
    "answer_from_prompt", "demo_root", "demo_sub", "keywords", "best_line", "NOT_FOUND",
]

_EXPORTS = {
    "ScriptedServer": "._server", "RequestLog": "._server",
    "ScriptedRequest": "._request", "ScriptError": "._script", "Fault": "._faults",
    "answer_from_prompt": "._demo", "demo_root": "._demo", "demo_sub": "._demo",
    "keywords": "._demo", "best_line": "._demo", "NOT_FOUND": "._demo",
}

if TYPE_CHECKING:
    from ._demo import NOT_FOUND, answer_from_prompt, best_line, demo_root, demo_sub, keywords
    from ._faults import Fault
    from ._request import ScriptedRequest
    from ._script import ScriptError
    from ._server import RequestLog, ScriptedServer


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (e.g. for its docstring) must not pull in http.server.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm_jupyter.testing' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
