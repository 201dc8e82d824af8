"""The task record every generator returns and every scorer and runner consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Task:
    """One question over one context, with the exact answer the generator knows.

    ``kind`` selects the scorer (see :func:`rlm_jupyter.evalkit.scoring.score`): ``"exact"``
    (string match after normalization), ``"number"`` (0.75**|error|), ``"pairs"`` (F1 over
    unordered pairs) or ``"needle"`` (the gold value and no competing value).
    ``context_id`` is shared by tasks over the same context, so a runner can ask them back to
    back and reuse the model server's prompt cache.
    """

    task_id: str
    family: str  # "sniah" | "oolong" | "pairs"
    kind: str
    question: str
    answer: Any
    context: str = field(repr=False)
    context_id: str = ""
    target_tokens: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def context_chars(self) -> int:
        return len(self.context)
