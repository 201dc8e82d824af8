"""What the script sees of one chat-completion request, and the text helpers that build it.

Kept free of HTTP so scripts, the demo policy and tests can build requests by hand.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

ROOT = "root"
SUB = "sub"

_SYSTEM_ROLES = ("system", "developer")

# "Question: ...", "**Question:** ...", "## Question: ..." at the start of a line.
_QUESTION_LINE = re.compile(
    r"^[ \t>*#_`-]*(?:the\s+|user'?s?\s+)?question[ \t]*(?:\*\*|__)?[ \t]*[:：][ \t]*(?:\*\*|__)?[ \t]*(.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_QUESTION_TAG = re.compile(r"<question>\s*(.*?)\s*</question>", re.IGNORECASE | re.DOTALL)


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whether ``content`` is a string or a list of typed parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return str(content)


def has_system_message(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("role") in _SYSTEM_ROLES for m in messages)


def find_question(text: str) -> str | None:
    """The question stated in ``text`` ("Question: ..." line or <question> tag), else None.

    A "Question:" line with nothing after it takes the following lines up to a blank line.
    """
    tag = _QUESTION_TAG.search(text)
    if tag and tag.group(1).strip():
        return tag.group(1).strip()
    match = _QUESTION_LINE.search(text)
    if not match:
        return None
    rest = text[match.end():]
    lines = [match.group(1)]
    for line in rest.split("\n")[1:]:
        if not line.strip():
            break
        lines.append(line)
    question = "\n".join(line.rstrip() for line in lines).strip()
    if not question:
        return None
    return question.strip("*_`\"' \t") or question


def extract_question(messages: list[dict[str, Any]]) -> str:
    """The run's question: from the user messages before the first assistant reply.

    Tolerant by design: a "Question:" line (or <question> tag) in any of them wins; otherwise
    the first user message is taken as the question itself (its last line ending in "?" when
    it is long, since then it probably also carries a context preview).
    """
    users: list[str] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            break
        if role == "user":
            users.append(message_text(message))
    for text in users:
        question = find_question(text)
        if question:
            return question
    if not users:
        return ""
    first = users[0].strip()
    if len(first) <= 2000:
        return first
    asks = [line.strip() for line in first.splitlines() if line.strip().endswith("?")]
    return asks[-1] if asks else first.splitlines()[0].strip()


def estimate_tokens(text_chars: int) -> int:
    """Token counts as a real tokenizer roughly gives for English: chars / 4, at least 1."""
    return max(1, text_chars // 4)


@dataclass
class ScriptedRequest:
    """One chat-completion request, as scripts receive it and as ``srv.requests`` logs it.

    ``question`` is the run's question (parsed from the first user message), ``prompt`` the text
    of the last user message (for a sub-call: what ``llm_query`` was asked), ``turn`` is 1 + the
    number of assistant messages so far, and ``depth`` a hint taken from an ``X-RLM-Depth``
    header when the client sends one (else None). ``reply``, ``status``, ``fault`` and
    ``elapsed_s`` are filled in once the server has answered.
    """

    messages: list[dict[str, Any]]
    model: str = "scripted"
    kind: str = ROOT
    question: str = ""
    prompt: str = ""
    turn: int = 1
    depth: int | None = None
    stream: bool = False
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    index: int = 0
    received_at: float = field(default_factory=time.time)
    reply: str | None = None
    status: int | None = None
    fault: str | None = None
    elapsed_s: float | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any], headers: dict[str, str] | None = None,
                  index: int = 0) -> "ScriptedRequest":
        """Parse an OpenAI chat-completions body; the kind defaults to root iff a system
        message is present (the engine's RLM turns carry one, ``llm_query`` calls do not)."""
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            raise ValueError("'messages' must be a list of {role, content} objects")
        messages = [m for m in messages if isinstance(m, dict)]
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        last_user = ""
        for message in reversed(messages):
            if message.get("role") == "user":
                last_user = message_text(message)
                break
        depth: int | None = None
        try:
            depth = int(headers["x-rlm-depth"]) if "x-rlm-depth" in headers else None
        except ValueError:
            depth = None
        kind = ROOT if has_system_message(messages) else SUB
        question = extract_question(messages) if kind == ROOT else (find_question(last_user)
                                                                    or last_user)
        return cls(
            messages=messages,
            model=str(body.get("model") or "scripted"),
            kind=kind,
            question=question,
            prompt=last_user,
            turn=1 + sum(1 for m in messages if m.get("role") == "assistant"),
            depth=depth,
            stream=bool(body.get("stream")),
            body=body,
            headers=headers,
            index=index,
        )

    def reclassify(self, kind: str) -> None:
        """Set the kind (after a custom ``classify=``) and re-derive the question to match."""
        if kind not in (ROOT, SUB):
            raise ValueError(f"classify= must return 'root' or 'sub', not {kind!r}")
        if kind != self.kind:
            self.kind = kind
            self.question = (extract_question(self.messages) if kind == ROOT
                             else find_question(self.prompt) or self.prompt)

    @property
    def system(self) -> str | None:
        """The system prompt's text, or None for a sub-call."""
        for message in self.messages:
            if message.get("role") in _SYSTEM_ROLES:
                return message_text(message)
        return None

    @property
    def raw(self) -> dict[str, Any]:
        """The request body as sent (alias of ``body``)."""
        return self.body

    @property
    def prompt_chars(self) -> int:
        return sum(len(message_text(m)) for m in self.messages)

    @property
    def is_root(self) -> bool:
        return self.kind == ROOT
