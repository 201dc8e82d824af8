"""Faults the server injects into the next matching requests, so retry paths get exercised."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union

from ._request import ROOT, SUB, ScriptedRequest

FAULT_KINDS = ("429", "500", "malformed", "slow", "disconnect")
Match = Union[None, str, re.Pattern[str], Callable[[ScriptedRequest], bool]]

DEFAULT_DELAY_S = {"429": 0.05, "slow": 1.0, "disconnect": 0.0}


def normalize_kind(kind: str | int) -> str:
    """"429", 429, "500", any 4xx/5xx status, or one of malformed/slow/disconnect."""
    text = str(kind).strip().lower()
    if text in FAULT_KINDS:
        return text
    if text.isdigit() and 400 <= int(text) <= 599:
        return text
    raise ValueError(f"Unknown fault {kind!r}: use one of {', '.join(FAULT_KINDS)} "
                     "or an HTTP status between 400 and 599.")


@dataclass
class Fault:
    """A pending fault. ``delay_s``: Retry-After for 429/503, the pause for slow/disconnect.

    ``match`` selects requests: None (any), "root" or "sub" (by kind), a regex searched in the
    request's prompt (last user message), or ``fn(req) -> bool``.
    """

    kind: str
    times: int = 1
    delay_s: float | None = None
    match: Match = None
    fired: int = 0
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.kind = normalize_kind(self.kind)
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if isinstance(self.match, re.Pattern):
            self._regex = self.match
        elif isinstance(self.match, str) and self.match not in (ROOT, SUB):
            self._regex = re.compile(self.match)

    @property
    def remaining(self) -> int:
        return self.times - self.fired

    @property
    def delay(self) -> float:
        if self.delay_s is not None:
            return float(self.delay_s)
        return DEFAULT_DELAY_S.get(self.kind, 0.0)

    def matches(self, req: ScriptedRequest) -> bool:
        if self.match is None:
            return True
        if self._regex is not None:
            return bool(self._regex.search(req.prompt))
        if self.match in (ROOT, SUB):
            return req.kind == self.match
        return bool(self.match(req))  # type: ignore[operator]


class FaultQueue:
    """First-in first-out: a request takes one shot from the oldest fault that matches it."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, req: ScriptedRequest) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(req):
                    fault.fired += 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
