"""What a run returns: the answer plus everything needed to trust, debug and replay it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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
    #: The typed answer when the run was given ``output_type`` (validated by pydantic), else
    #: None; ``answer`` stays the text.
    output: Any = None
    #: The session this run was an ask of (``RLM.run`` makes a session of one ask).
    session_id: str | None = None
    #: User tool calls made by the run tree (``RLM(tools=...)``).
    tool_calls: int = 0
    _session: Any = field(default=None, repr=False, compare=False)

    def get(self, name: str, **kwargs: Any) -> Any:
        """Copy the sandbox variable ``name`` into the caller, by value (plain data and
        DataFrames; see ``Session.get``). Works while this run's session is open: for an ask
        of ``rlm.session(...)``, until the session closes. ``RLM.run`` closes its sandbox when
        it returns, so there use ``output_type=`` for the value you want, or a session."""
        session = self._session() if self._session is not None else None
        if session is None or session.closed:
            from rlm_jupyter.engine.output import ValueTransferError

            raise ValueTransferError(
                f"Cannot get {name!r}: the sandbox of run {self.run_id} is closed (RLM.run "
                f"closes it when it returns). Ask for the value with output_type=..., or run "
                f"the question in rlm.session(context=...) and call s.get({name!r}).")
        return session.get(name, **kwargs)

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
        """The registered display (the Jupyter front end's static views), else the repr.

        The engine never imports a display: ``rlm_jupyter.jupyter.render`` registers itself
        here when it is imported (by the extension, a run's widget, or the package's public
        API inside IPython), so a script gets the text repr and a notebook the trajectory."""
        return rich_display(self)


#: Class name (``"RunResult"``, ``"MapResult"``) -> ``obj -> mimebundle``, set by a front end
#: with :func:`register_display`: the engine's results find their notebook views here and never
#: import a front end.
_displays: dict[str, Callable[[Any], dict[str, str]]] = {}


def register_display(fn: Callable[[Any], dict[str, str]] | None,
                     kind: str = "RunResult") -> None:
    """Make ``fn`` the rich display of every result of class ``kind`` (None: back to the
    repr)."""
    if fn is None:
        _displays.pop(kind, None)
    else:
        _displays[kind] = fn


def rich_display(obj: Any) -> dict[str, str]:
    """The registered display of ``obj``, or its text repr when no front end registered one."""
    fn = _displays.get(type(obj).__name__)
    return fn(obj) if fn is not None else {"text/plain": repr(obj)}
