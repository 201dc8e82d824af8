"""One hierarchy for every error a run can end with.

``RLM.run`` returns a :class:`~rlm_jupyter.engine.result.RunResult` with ``error`` set instead of
raising, so partial work is never lost; each error also carries ``partial_answer`` and
``trajectory`` for callers that re-raise it (``result.raise_for_error()``).
"""

from __future__ import annotations

from typing import Any


class RLMError(Exception):
    """Base class: something ended or prevented a run. The message says what to do next."""

    def __init__(self, message: str, *, partial_answer: str | None = None,
                 trajectory: Any = None) -> None:
        super().__init__(message)
        self.partial_answer = partial_answer
        self.trajectory = trajectory


class ConfigError(RLMError):
    """A setting is missing or invalid (no model, bad sandbox name, negative budget...)."""


class BudgetExceeded(RLMError):
    """A shared budget would be exceeded; the call was refused before it was sent."""

    limit: str = "budget"

    def __init__(self, message: str, *, used: float = 0.0, allowed: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.used = used
        self.allowed = allowed


class TurnLimitExceeded(BudgetExceeded):
    limit = "turns"


class SubcallLimitExceeded(BudgetExceeded):
    limit = "subcalls"


class TokenLimitExceeded(BudgetExceeded):
    limit = "tokens"


class CostLimitExceeded(BudgetExceeded):
    limit = "usd"


class TimeLimitExceeded(BudgetExceeded):
    limit = "time"


class LLMCallError(RLMError):
    """The model could not be reached or kept failing after retries."""


class RunCancelled(RLMError):
    """The run was stopped by the user (interrupt, Stop button, ``RLM.cancel``)."""


class SandboxFailure(RLMError):
    """The sandbox backend could not start or could not recover."""


class CommandError(RLMError):
    """A command cannot do what was asked (a bad option, an unknown run id, no such file).

    Both front ends show it as one line: ``%rlm`` fails the cell with it, ``rlm`` prints it
    and exits with status 2. The message says what to pass instead.
    """
