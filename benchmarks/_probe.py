"""Where a turn's host time goes: exclusive (self) time per engine stage, measured by wrapping.

The wrappers time the engine's own functions in place for the length of a ``with Probe()``
block; nothing is replaced by a fake. Times are exclusive: a stage nested inside another (an
event emitted while the LLM call streams) counts for the inner stage only, so the stages add
up to the measured total.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from typing import Any, Callable

#: (module path, attribute path, stage name). Each is wrapped if it exists.
TARGETS = [
    ("rlm_jupyter.engine.llm", "LLMClient.complete", "llm_client"),
    ("rlm_jupyter.engine.loop", "parse_reply", "parsing"),
    ("rlm_jupyter.engine.events", "EventBus.emit", "events_and_log"),
    ("rlm_jupyter.engine.prompts", "execution_feedback", "prompts"),
]


class Probe:
    """Exclusive time per stage on the calling thread (the run's root thread)."""

    def __init__(self, thread: threading.Thread | None = None) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.inner_exec_s = 0.0            # what the sandbox says the code itself took
        self._local = threading.local()
        self._undo: list[Callable[[], None]] = []
        self._thread = thread
        #: totals when the second turn started (the first one waits for the sandbox to start)
        self.at_second_turn: dict[str, float] | None = None
        self.inner_at_second_turn = 0.0

    # -- wrapping -------------------------------------------------------------------------
    def _wrap(self, fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
        probe = self

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if stage == "events_and_log" and len(args) > 1:
                probe._watch(args[1])
            stack = getattr(probe._local, "stack", None)
            if stack is None:
                stack = probe._local.stack = []
            frame = [0.0]                   # time spent in nested probed stages
            stack.append(frame)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                stack.pop()
                probe.totals[stage] += spent - frame[0]
                probe.counts[stage] += 1
                if stack:
                    stack[-1][0] += spent

        return wrapper

    def _watch(self, event: Any) -> None:
        if (self.at_second_turn is None and getattr(event, "type", "") == "turn_started"
                and getattr(event, "turn", 0) == 2 and getattr(event, "depth", 0) == 0):
            self.at_second_turn = dict(self.totals)
            self.inner_at_second_turn = self.inner_exec_s

    def since_second_turn(self) -> tuple[dict[str, float], float]:
        """Stage totals and in-sandbox time from the second turn on."""
        base = self.at_second_turn or {}
        totals = {k: v - base.get(k, 0.0) for k, v in self.totals.items()}
        return totals, self.inner_exec_s - self.inner_at_second_turn

    def _patch(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)
        setattr(owner, name, self._wrap(original, stage))
        self._undo.append(lambda: setattr(owner, name, original))

    def __enter__(self) -> "Probe":
        import importlib

        for module_name, attr_path, stage in TARGETS:
            module = importlib.import_module(module_name)
            owner: Any = module
            parts = attr_path.split(".")
            try:
                for part in parts[:-1]:
                    owner = getattr(owner, part)
                getattr(owner, parts[-1])
            except AttributeError:
                continue
            self._patch(owner, parts[-1], stage)
        # The sandbox: wrap ``execute`` on every sandbox the engine opens.
        sandbox_mod = importlib.import_module("rlm_jupyter.sandbox")
        original_open = sandbox_mod.open_sandbox
        probe = self

        @functools.wraps(original_open)
        def open_and_wrap(*args: Any, **kwargs: Any) -> Any:
            sandbox = original_open(*args, **kwargs)
            execute = probe._wrap(sandbox.execute, "sandbox_round_trip")

            def execute_and_note(*a: Any, **k: Any) -> Any:
                result = execute(*a, **k)
                probe.inner_exec_s += float(getattr(result, "duration_s", 0.0) or 0.0)
                return result

            try:
                sandbox.execute = execute_and_note
            except AttributeError:
                pass
            return sandbox

        sandbox_mod.open_sandbox = open_and_wrap
        self._undo.append(lambda: setattr(sandbox_mod, "open_sandbox", original_open))
        return self

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()
