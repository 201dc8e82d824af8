"""What a run returns: the answer plus everything needed to trust, debug and replay it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_jupyter.engine.events import Event
from rlm_jupyter.engine.trajectory import RunNode
from rlm_jupyter.errors import RLMError


@dataclass
class RunResult:
    """The outcome of ``RLM.run``.

    ``run`` never raises for a failed or over-budget run: ``error`` holds the typed error that
    ended it and ``answer`` holds the best answer found so far (possibly None), so the work and
    the money already spent are never lost. Call :meth:`raise_for_error` to get exceptions.
    """

    question: str
    answer: str | None
    run_id: str
    status: str  # "ok" | "error" | "cancelled"
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    trajectory: RunNode | None = None
    log_path: Path | None = None
    error: RLMError | None = None
    notes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total_tokens(self) -> int:
        return sum(int(u.get("total_tokens", 0)) for u in self.usage.values())

    def raise_for_error(self) -> "RunResult":
        if self.error is not None:
            raise self.error
        return self

    def __str__(self) -> str:
        return self.answer or ""

    def __repr__(self) -> str:
        answer = (self.answer or "")[:60].replace("\n", " ")
        return (f"RunResult(status={self.status!r}, answer={answer!r}, "
                f"tokens={self.total_tokens}, cost_usd={self.cost_usd:.4f}, "
                f"elapsed_s={self.elapsed_s:.1f}, run_id={self.run_id!r})")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        try:
            from rlm_jupyter.jupyter.render import result_mimebundle
        except ImportError:
            return {"text/plain": repr(self)}
        return result_mimebundle(self)
