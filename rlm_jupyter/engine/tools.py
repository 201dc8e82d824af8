"""User tools: host functions that sandboxed code calls by name, exactly like ``llm_query``.

A tool runs in the kernel with the kernel's rights (see SECURITY.md). What keeps the sandbox
contained is the channel: the sandbox sends a name and JSON arguments, the host runs the
function and sends back a JSON result. So a tool never receives a sandbox object by reference,
and the sandbox never receives the tool (nor anything the tool returns but plain data).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from rlm_jupyter import errors

#: Names the sandbox already gives a meaning to: a tool may not take them.
RESERVED = frozenset({
    "llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched", "FINAL", "FINAL_VAR",
    "SHOW_VARS", "answer", "context", "print",
})
#: The largest JSON text a tool's arguments or result may be (characters).
MAX_JSON_CHARS = 1_000_000
PREVIEW_CHARS = 200


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[..., Any]
    signature: str
    doc: str

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def prompt_line(self) -> str:
        line = f"- `{self.name}{self.signature}`"
        return f"{line}: {self.doc}" if self.doc else line


def tool_table(tools: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]] | None
               ) -> dict[str, Tool]:
    """``[fn, ...]`` (named by ``__name__``) or ``{name: fn}`` as checked :class:`Tool` s."""
    if not tools:
        return {}
    pairs = list(tools.items()) if isinstance(tools, Mapping) else \
        [(getattr(fn, "__name__", ""), fn) for fn in tools]
    table: dict[str, Tool] = {}
    for name, fn in pairs:
        if not callable(fn):
            raise errors.ConfigError(f"tool {name!r} is not callable: pass functions, e.g. "
                                     f"tools=[my_function] or tools={{'name': fn}}.")
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise errors.ConfigError(f"tool name {name!r} must be a public Python identifier; "
                                     f"pass tools={{'good_name': fn}}.")
        if name in RESERVED:
            raise errors.ConfigError(f"tool name {name!r} is taken by the sandbox; pass "
                                     f"tools={{'another_name': fn}}.")
        signature = _signature(fn)
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        table[name] = Tool(name, fn, signature, doc[0].strip() if doc else "")
    return table


def _signature(fn: Callable[..., Any]) -> str:
    """``(key: str, n: int = 0) -> dict``; string annotations (``from __future__ import
    annotations``) are resolved so the prompt shows types, not quoted names."""
    for eval_str in (True, False):
        try:
            return str(inspect.signature(fn, eval_str=eval_str))
        except Exception:  # noqa: BLE001 - an unresolvable annotation: try without
            continue
    return "(...)"


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def plain_json(value: Any, what: str) -> Any:
    """A JSON copy of ``value`` (cuts every reference), size-capped; raises TypeError/ValueError
    with what to return instead."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be plain JSON data (str, int, float, bool, None, list, "
                        f"dict): {exc}") from None
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"{what} is {len(text):,} characters as JSON, over the "
                         f"{MAX_JSON_CHARS:,} limit: pass or return less")
    return json.loads(text)


def invoke(tool: Tool, args: list[Any], kwargs: dict[str, Any],
           loop: asyncio.AbstractEventLoop | None = None) -> Any:
    """Call the tool with plain-data copies of the arguments; await it if it is async (on
    ``loop`` when the session was started from async code, else on a fresh loop); return a
    plain-data copy of its result."""
    args = plain_json(list(args), f"the arguments to {tool.name}()")
    kwargs = plain_json(dict(kwargs), f"the arguments to {tool.name}()")
    result = tool.fn(*args, **kwargs)
    if inspect.isawaitable(result):
        if loop is not None and loop.is_running():
            result = asyncio.run_coroutine_threadsafe(_awaited(result), loop).result()
        else:
            result = asyncio.run(_awaited(result))
    return plain_json(result, f"the result of {tool.name}()")


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
