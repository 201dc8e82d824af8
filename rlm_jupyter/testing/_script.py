"""Turning the user's ``root=`` / ``sub=`` arguments into reply functions.

Root scripts: a list of replies consumed in order, a callable, a constant string, or a dict
question-substring -> script (so child RLMs, which also send a system prompt, get their own).
Sub scripts: a callable ``fn(prompt, req)``, a constant string, or regex rules with the
"answer from the prompt's text" rule as the fallback.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from ._demo import answer_from_prompt, demo_root
from ._request import ScriptedRequest

RootFn = Callable[[ScriptedRequest], str]
SubFn = Callable[[str, ScriptedRequest], str]
RootScript = Union[None, str, RootFn, Sequence[Union[str, RootFn]], Mapping[str, Any]]
SubReply = Union[str, SubFn]
SubScript = Union[None, str, SubFn, Sequence[tuple[Any, SubReply]], Mapping[str, SubReply]]

EXHAUSTED_MODES = ("error", "repeat", "cycle")


class ScriptError(RuntimeError):
    """The script could not produce a reply (exhausted, no matching branch, or it raised).

    The server answers such a request with HTTP 400 (which clients do not retry), records the
    message in ``srv.errors``, and, when ``strict=True``, raises it again when the ``with``
    block exits so the test fails with the real cause.
    """


class ReplyList:
    """Replies handed out in order, thread-safe; items may be strings or ``fn(req)``."""

    def __init__(self, items: Sequence[str | RootFn], exhausted: str = "error",
                 label: str = "root") -> None:
        if exhausted not in EXHAUSTED_MODES:
            raise ValueError(f"exhausted={exhausted!r}: use one of {EXHAUSTED_MODES}")
        self.items = list(items)
        self.exhausted = exhausted
        self.label = label
        self.used = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        return max(0, len(self.items) - self.used)

    def __call__(self, req: ScriptedRequest) -> str:
        with self._lock:
            n = len(self.items)
            if self.used < n:
                item = self.items[self.used]
            elif n and self.exhausted == "repeat":
                item = self.items[-1]
            elif n and self.exhausted == "cycle":
                item = self.items[self.used % n]
            else:
                raise ScriptError(
                    f"The {self.label} script is exhausted: it has {n} replies and request "
                    f"#{req.index} (turn {req.turn}, question {req.question[:60]!r}) asked for "
                    "another. Add replies, pass a callable, or use exhausted='repeat'.")
            self.used += 1
        return item(req) if callable(item) else item


def _constant(text: str) -> Callable[..., str]:
    return lambda *args: text


def compile_root(spec: RootScript, exhausted: str = "error", label: str = "root") -> RootFn:
    if spec is None:
        return demo_root
    if isinstance(spec, str):
        return _constant(spec)
    if callable(spec):
        return spec
    if isinstance(spec, Mapping):
        branches = [(str(key).lower(), str(key), compile_root(value, exhausted,
                                                              f"root[{key!r}]"))
                    for key, value in spec.items()]

        def by_question(req: ScriptedRequest) -> str:
            question = req.question.lower()
            for needle, _, fn in branches:
                if needle in question:
                    return fn(req)
            keys = ", ".join(repr(original) for _, original, _ in branches)
            raise ScriptError(
                f"No root script matches the question {req.question[:80]!r} (keys: {keys}). "
                "Keys are matched as case-insensitive substrings of the question, in order; "
                "add a '' key as the fallback.")

        return by_question
    if isinstance(spec, Sequence):
        return ReplyList(spec, exhausted, label)
    raise TypeError(f"root= must be a list of replies, a callable, a str or a dict of those, "
                    f"not {type(spec).__name__}")


def _compile_rule(pattern: Any, reply: SubReply) -> tuple[re.Pattern[str], SubFn]:
    regex = pattern if isinstance(pattern, re.Pattern) else re.compile(str(pattern))
    if isinstance(reply, str):
        return regex, _constant(reply)
    if callable(reply):
        return regex, reply
    raise TypeError(f"sub rule {pattern!r}: the reply must be a str or fn(prompt, req)")


def compile_sub(spec: SubScript) -> SubFn:
    if spec is None:
        return answer_from_prompt
    if isinstance(spec, str):
        return _constant(spec)
    if callable(spec):
        return spec
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, Sequence):
        items = list(spec)
        if not all(isinstance(item, (tuple, list)) and len(item) == 2 for item in items):
            raise TypeError("sub= rules must be (regex, reply-or-fn(prompt, req)) pairs")
    else:
        raise TypeError(f"sub= must be a callable, a str, or regex rules, "
                        f"not {type(spec).__name__}")
    rules = [_compile_rule(pattern, reply) for pattern, reply in items]

    def by_rules(prompt: str, req: ScriptedRequest) -> str:
        for regex, fn in rules:
            if regex.search(prompt):
                return fn(prompt, req)
        return answer_from_prompt(prompt, req)

    return by_rules
