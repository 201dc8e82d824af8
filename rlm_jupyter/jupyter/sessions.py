"""The notebook's sessions: ``%%rlm --continue``, ``--session NAME``, ``%rlm sessions|end|pull``.

Every ``%%rlm`` cell runs as an ask of a session, so that the next cell can follow up: a cell
without ``--session`` uses the notebook's *last* unnamed session (a new one each time, closing
the previous unnamed one, so at most one unnamed sandbox stays open); ``--session NAME`` opens
or continues a named one; ``--continue`` continues whichever session the last cell used. Named
sessions stay open until ``%rlm end NAME`` or their idle timeout (``session_idle_s``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable


class SessionAsk:
    """What ``RunHandle`` calls ``run`` on: one ask of ``session`` (typed when asked)."""

    def __init__(self, session: Any, output_type: Any = None) -> None:
        self.session = session
        self.output_type = output_type

    def run(self, question: str, context: Any = None, *,
            on_event: Callable[[Any], None] | None = None,
            cancel: threading.Event | None = None) -> Any:
        return self.session.ask(question, output_type=self.output_type, on_event=on_event,
                                cancel=cancel)


class NotebookSessions:
    """Open sessions by name, and which one the last cell used."""

    def __init__(self) -> None:
        self._named: dict[str, Any] = {}
        self._unnamed: Any = None
        self.last: Any = None
        self._lock = threading.Lock()

    def for_cell(self, rlm: Any, context: Any, *, name: str | None, follow_up: bool) -> Any:
        """The session a ``%%rlm`` cell asks in (opening one when needed)."""
        with self._lock:
            if follow_up:
                session = self._named.get(name) if name else self.last
                if session is None or session.closed:
                    why = (f"no open session named {name!r}" if name else
                           "no earlier %%rlm cell to follow up" if session is None else
                           f"the last session closed ({session.closed_reason})")
                    raise LookupError(f"--continue: {why}. Run a %%rlm cell first (with "
                                      f"--session NAME to keep it), then --continue.")
                if context is not None:
                    raise LookupError("--continue keeps the session's context: drop --context "
                                      "(start a new session for another context).")
            elif name:
                session = self._named.get(name)
                if session is not None and session.closed:
                    session = None
                if session is not None and context is not None:
                    raise LookupError(f"Session {name!r} already has its context: drop "
                                      f"--context, or `%rlm end {name}` and start again.")
                if session is None:
                    session = rlm.session(context=context, name=name)
                    self._named[name] = session
            else:
                if self._unnamed is not None:
                    self._unnamed.close()
                session = self._unnamed = rlm.session(context=context, name="(last)")
            self.last = session
            return session

    def get(self, name: str | None) -> Any:
        """A named session, or the last one used; a LookupError says which exist."""
        with self._lock:
            session = self._named.get(name) if name else self.last
        if session is None or session.closed:
            known = ", ".join(self.names()) or "none"
            what = f"no open session named {name!r}" if name else "no open session"
            raise LookupError(f"{what} (open: {known}); start one with `%%rlm --session NAME`.")
        return session

    def names(self) -> list[str]:
        with self._lock:
            return [n for n, s in self._named.items() if not s.closed]

    def all(self) -> list[Any]:
        with self._lock:
            sessions = list(self._named.values())
            if self._unnamed is not None:
                sessions.append(self._unnamed)
        return [s for s in sessions if not s.closed]

    def end(self, name: str) -> Any:
        with self._lock:
            session = self._named.pop(name, None)
            if session is None and name == "(last)":
                session, self._unnamed = self._unnamed, None
        if session is None:
            raise LookupError(f"no session named {name!r} (open: "
                              f"{', '.join(self.names()) or 'none'}).")
        session.close()
        return session

    def close_all(self) -> None:
        for session in self.all():
            session.close()
