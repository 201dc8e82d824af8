"""One budget shared by the whole run tree.

Children charge the same object as the root, so a depth-2 run cannot spend more than the user
allowed at the top. Every model call asks :meth:`Budget.reserve_call` first and is refused
before it is sent when a limit would be broken; the refusal is sticky (``exceeded``) so the loop
ends the run after the current cell instead of letting code keep retrying.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from rlm_jupyter import errors

WARN_FRACTION = 0.8


@dataclass
class ModelUsage:
    """One model's share of a run tree.

    ``calls`` are answered calls (cache hits included); ``retries`` are failed attempts that
    were tried again, ``failed_calls`` calls that failed for good. Every attempt is one of
    these, so ``attempts = calls + retries + failed_calls``: retries cost wall time (and,
    with some providers, money) that the answered calls alone would hide.
    """

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached_calls: int = 0
    retries: int = 0
    failed_calls: int = 0

    @property
    def attempts(self) -> int:
        return self.calls + self.retries + self.failed_calls

    def as_dict(self) -> dict[str, float | int]:
        return {
            "calls": self.calls,
            "attempts": self.attempts,
            "retries": self.retries,
            "failed_calls": self.failed_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "cached_calls": self.cached_calls,
        }


@dataclass
class Budget:
    max_subcalls: int | None = None
    max_tokens: int | None = None
    budget_usd: float | None = None
    timeout_s: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    subcalls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    usage: dict[str, ModelUsage] = field(default_factory=dict)
    exceeded: errors.BudgetExceeded | None = None
    unpriced_models: set[str] = field(default_factory=set)
    _warned: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    def remaining_s(self) -> float | None:
        if self.timeout_s is None:
            return None
        return max(0.0, self.timeout_s - self.elapsed_s())

    def reserve_call(self, *, subcall: bool, estimated_prompt_tokens: int = 0) -> None:
        """Refuse (raise) before sending a call that would break a limit; count sub-calls."""
        with self._lock:
            if self.exceeded is not None:
                raise self.exceeded
            if self.timeout_s is not None and self.elapsed_s() >= self.timeout_s:
                self._fail(errors.TimeLimitExceeded, "time", self.elapsed_s(), self.timeout_s,
                           "The run's time limit was reached: raise timeout_s (or --timeout).")
            if self.max_tokens is not None and self.tokens + estimated_prompt_tokens > self.max_tokens:
                self._fail(errors.TokenLimitExceeded, "tokens",
                           self.tokens + estimated_prompt_tokens, self.max_tokens,
                           "The token budget would be exceeded: raise max_total_tokens "
                           "(--max-total-tokens).")
            if self.budget_usd is not None and self.cost_usd >= self.budget_usd:
                self._fail(errors.CostLimitExceeded, "usd", self.cost_usd, self.budget_usd,
                           "The USD budget is spent: raise budget_usd (or --budget).")
            if subcall:
                if self.max_subcalls is not None and self.subcalls + 1 > self.max_subcalls:
                    self._fail(errors.SubcallLimitExceeded, "subcalls", self.subcalls + 1,
                               self.max_subcalls,
                               "The sub-call limit was reached: raise max_subcalls.")
                self.subcalls += 1

    def charge(self, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float,
               *, cached: bool = False) -> list[tuple[str, float, float]]:
        """Record a finished call; returns the limits that just crossed the warning line."""
        with self._lock:
            usage = self.usage.setdefault(model, ModelUsage())
            usage.calls += 1
            usage.prompt_tokens += prompt_tokens
            usage.completion_tokens += completion_tokens
            if cached:
                usage.cached_calls += 1
            else:
                usage.cost_usd += cost_usd
                self.cost_usd += cost_usd
            self.tokens += prompt_tokens + completion_tokens
            return self._new_warnings()

    def record_retry(self, model: str) -> None:
        """Count a failed attempt of ``model`` that is about to be tried again."""
        with self._lock:
            self.usage.setdefault(model, ModelUsage()).retries += 1

    def record_failure(self, model: str) -> None:
        """Count a call of ``model`` that failed after its last attempt."""
        with self._lock:
            self.usage.setdefault(model, ModelUsage()).failed_calls += 1

    @property
    def retries(self) -> int:
        """Retried attempts over every model (a figure for headers and summaries)."""
        with self._lock:
            return sum(u.retries for u in self.usage.values())

    def _new_warnings(self) -> list[tuple[str, float, float]]:
        out = []
        for name, used, allowed in (
            ("tokens", self.tokens, self.max_tokens),
            ("usd", self.cost_usd, self.budget_usd),
            ("subcalls", self.subcalls, self.max_subcalls),
        ):
            if allowed and name not in self._warned and used >= WARN_FRACTION * allowed:
                self._warned.add(name)
                out.append((name, float(used), float(allowed)))
        return out

    def _fail(self, cls: type[errors.BudgetExceeded], limit: str, used: float, allowed: float,
              hint: str) -> None:
        self.exceeded = cls(f"Budget exceeded ({limit}: {used:g} of {allowed:g}). {hint}",
                            used=used, allowed=allowed)
        raise self.exceeded

    def limits(self) -> dict[str, float | int | None]:
        return {"max_subcalls": self.max_subcalls, "max_tokens": self.max_tokens,
                "budget_usd": self.budget_usd, "timeout_s": self.timeout_s}

    def usage_dict(self) -> dict[str, dict[str, float | int]]:
        with self._lock:
            return {model: u.as_dict() for model, u in self.usage.items()}
