"""One redactor for everything the engine sends or emits: known secrets become a marker.

Why: model-written code is untrusted, and in-process escaped code once found the API key in
kernel memory and printed it; the engine then sent it to the model in the next prompt and put
it in the events (only the log was scrubbed). The sandbox is the first defence; this is the
second: whatever reaches the engine's output paths (prompts to a model, events, the answer, the
log) passes through :meth:`Redactor.redact`, which replaces every *known* secret with
``[redacted: NAME]``.

Known secrets: the run's ``api_key``, ``RLM_API_KEY``, the values (8 characters or more, and
not a plain word of letters under 16) of environment variables whose names say key, token, secret, password or credential, and the key
attributes litellm holds when it is already imported (``litellm.api_key``, ``openai_key`` ...).
Only exact values are found: a key that code encodes, reverses or splits is not (nor a key
split across two streamed chunks); that is why it is a second line, not the first.

It must cost nothing a turn: the values are gathered once per run, the common case (no secret
in the text) is one C-level substring scan per secret, and a precompiled alternation only runs
when one is present.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Iterable, Mapping

#: Secrets shorter than this are not redacted: "true", a port or a region would turn every
#: output into noise (and are not secrets).
MIN_SECRET_CHARS = 8
#: A value of letters only shorter than this is a word, not a key (the scripted server's key
#: is "scripted", which is also in its model name "openai/scripted"): redacting it would
#: garble ordinary text. Real keys mix digits or symbols in, or are long.
MIN_WORD_SECRET_CHARS = 16


def looks_secret(value: str) -> bool:
    """Long enough, and not a plain word (see :data:`MIN_WORD_SECRET_CHARS`)."""
    return len(value) >= MIN_SECRET_CHARS and not (
        len(value) < MIN_WORD_SECRET_CHARS and value.isalpha())

#: Environment variable names whose values are secrets (``OPENAI_API_KEY``, ``HF_TOKEN``,
#: ``AWS_SECRET_ACCESS_KEY``, ``DB_PASSWORD``, ``VERTEX_CREDENTIALS``, ``WATSONX_APIKEY``...).
SECRET_NAME = re.compile(
    r"API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|(?:^|_)KEY$"
    r"|(?:^|_)PASS$", re.IGNORECASE)
#: ... except where the value names a place, not a secret (``HF_TOKEN_PATH``, ``*_KEY_FILE``).
NOT_SECRET_NAME = re.compile(r"_(?:FILE|PATH|DIR|URL|URI|ENDPOINT|HOST|PORT)$", re.IGNORECASE)

#: litellm's module-level key attributes (set by users as ``litellm.api_key = ...``).
_LITELLM_KEY_ATTR = re.compile(r"^(?:api_key|\w+_key|\w+_api_key|\w+_token)$")


def marker(name: str) -> str:
    """What a secret becomes: it says which secret, never any of its characters."""
    return f"[redacted: {name}]"


class Redactor:
    """Replaces known secret values in text with ``[redacted: NAME]``; immutable, thread-safe."""

    __slots__ = ("_values", "_markers", "_pattern")

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        """``secrets`` maps a secret's value to the name it is shown by."""
        kept = {value: name for value, name in (secrets or {}).items()
                if isinstance(value, str) and looks_secret(value)}
        # Longest first: a secret that contains another is replaced whole.
        self._values = tuple(sorted(kept, key=len, reverse=True))
        self._markers = {value: marker(kept[value]) for value in self._values}
        self._pattern = (re.compile("|".join(map(re.escape, self._values)))
                         if self._values else None)

    @classmethod
    def for_run(cls, api_key: str | None = None, extra: Iterable[str] = (),
                environ: Mapping[str, str] | None = None) -> "Redactor":
        """The secrets known to a run: its key, the environment's and litellm's keys."""
        return cls(known_secrets(api_key, extra=extra, environ=environ))

    def __bool__(self) -> bool:
        return bool(self._values)

    @property
    def names(self) -> list[str]:
        """The names secrets are shown by (never the values), for notes and tests."""
        return sorted({m[len("[redacted: "):-1] for m in self._markers.values()})

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced; the same object when none occurs."""
        if self._pattern is None or not text:
            return text
        for value in self._values:
            if value in text:
                break
        else:
            return text
        markers = self._markers
        return self._pattern.sub(lambda m: markers[m.group()], text)

    def redact_messages(self, messages: list[dict[str, str]], start: int = 0) -> None:
        """Redact the ``content`` of ``messages[start:]`` in place (a model's chat history)."""
        for i in range(start, len(messages)):
            content = messages[i].get("content")
            if isinstance(content, str):
                clean = self.redact(content)
                if clean is not content:
                    messages[i] = {**messages[i], "content": clean}


def known_secrets(api_key: str | None = None, *, extra: Iterable[str] = (),
                  environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """value -> name for every secret a run knows of (see the module docstring)."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for name, value in env.items():
        if (value and looks_secret(value) and SECRET_NAME.search(name)
                and not NOT_SECRET_NAME.search(name)):
            found.setdefault(value, name)
    rlm_key = env.get("RLM_API_KEY")
    if rlm_key:
        found.setdefault(rlm_key, "RLM_API_KEY")
    litellm = sys.modules.get("litellm")
    if litellm is not None:  # never imported here: that takes seconds
        for attr, value in list(vars(litellm).items()):
            if isinstance(value, str) and value and _LITELLM_KEY_ATTR.match(attr):
                found.setdefault(value, f"litellm.{attr}")
    for value in extra:
        if value:
            found.setdefault(value, "api_key")
    if api_key:
        found.setdefault(api_key, "api_key")  # named after its variable when it came from one
    return {value: name for value, name in found.items() if looks_secret(value)}
