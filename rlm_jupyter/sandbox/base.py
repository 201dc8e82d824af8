"""The contract every sandbox backend keeps.

The engine talks to a sandbox only through :class:`Sandbox` and :class:`ExecResult`, so the
local worker, the Docker container and the in-process thread are interchangeable. Keep this
module free of heavy imports: every backend and the engine import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

#: Host callables sandboxed code may call, by name. Arguments and results cross as JSON in the
#: worker backends, so they must be JSON-compatible (str, int, float, bool, None, list, dict).
HostFunctions = Mapping[str, Callable[..., Any]]


@dataclass
class ExecResult:
    """What one cell produced.

    ``final`` is set when the code called ``FINAL(x)`` or ``FINAL_VAR(name)`` successfully: it
    is always an exact ``str`` (size-capped by the worker). ``answer`` mirrors the sandbox's
    ``answer`` dict after the cell (``{"content": str, "ready": bool}``) so the engine can finish
    when ``answer["ready"]`` is true. ``restarted`` means the worker was killed and started again
    (timeout, crash, memory kill): every variable except ``context`` is gone and the model must
    be told.
    """

    stdout: str = ""
    error: str | None = None
    timed_out: bool = False
    restarted: bool = False
    duration_s: float = 0.0
    final: str | None = None
    answer: dict[str, Any] = field(default_factory=lambda: {"content": "", "ready": False})
    #: Free-form notes for the model, e.g. "output truncated" or "worker restarted: state reset".
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out


@runtime_checkable
class Sandbox(Protocol):
    """A persistent REPL namespace holding ``context``, driven one cell at a time."""

    kind: str

    def execute(self, code: str, timeout_s: float | None = None) -> ExecResult:
        """Run ``code`` in the persistent namespace; never raises for errors in ``code``."""

    def get_variable(self, name: str) -> str | None:
        """``str()`` of a sandbox variable (size-capped), or None when it does not exist.

        Used for ``FINAL_VAR(name)`` written as text outside code fences.
        """

    def variables(self) -> dict[str, str]:
        """User variable names mapped to their type names (what ``SHOW_VARS()`` prints)."""

    def close(self) -> None:
        """Stop the backend and free everything; safe to call twice."""

    def __enter__(self) -> "Sandbox": ...

    def __exit__(self, *exc: object) -> None: ...


def checked_functions(functions: HostFunctions | None) -> dict[str, Callable[..., Any]]:
    """A private copy of ``functions``; names must be public identifiers, as sandboxed code
    cannot reach names starting with ``_``."""
    checked = dict(functions or {})
    for name in checked:
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"host function name {name!r} must be a public identifier")
    return checked


class SandboxError(RuntimeError):
    """The sandbox backend itself failed (not the user's code): it could not start, or died
    and could not be restarted. The message says what to do next."""
