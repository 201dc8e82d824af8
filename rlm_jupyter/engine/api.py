"""``RLM``: the public entry point, usable from scripts, tests, the CLI and the magics alike."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator

from rlm_jupyter import errors
from rlm_jupyter.settings import KNOBS, Settings
from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.budget import Budget
from rlm_jupyter.engine.result import RunResult
from rlm_jupyter.engine.tools import tool_table

if TYPE_CHECKING:
    from rlm_jupyter.engine.batch import MapResult
    from rlm_jupyter.engine.session import Session

LOCAL_PREFIX = "local/"
#: The keyword arguments of RLM() that are knobs (every other one goes to the model call).
KNOB_NAMES = tuple(k.name for k in KNOBS if k.kwarg)


class RLM:
    """A Recursive Language Model: the context lives in a sandboxed REPL, the model writes code.

    Every argument left as None falls back to an ``RLM_*`` environment variable, then to the
    default. Extra keyword arguments (``temperature``, ``reasoning_effort``...) go to litellm.
    """

    def __init__(self, model: str | None = None, sub_model: str | None = None,
                 sandbox: str | None = None, max_depth: int = 1, max_iterations: int = 20,
                 max_subcalls: int | None = None, max_total_tokens: int | None = None,
                 max_reply_tokens: int | None = None,
                 budget_usd: float | None = None, timeout_s: float | None = None,
                 concurrency: int = 16, api_base: str | None = None, api_key: str | None = None,
                 log_dir: str | None = None, cache: bool | None = None,
                 cache_dir: str | None = None, stream: bool = True,
                 cell_timeout_s: float = 60.0, memory_mb: int | None = None,
                 num_retries: int = 3, request_timeout_s: float = 120.0,
                 transport: str | None = None, output_chars: int = 20_000,
                 tracing: bool | str | None = None, guardrails: str | dict = "auto",
                 session_idle_s: float | None = None,
                 tools: Any = None, **litellm_kwargs: Any) -> None:
        # The signature is explicit for users and IDEs; tests/test_settings_table.py keeps it
        # equal to the knobs in rlm_jupyter/settings.py. ``max_tokens=`` (the old name of
        # max_total_tokens) arrives in litellm_kwargs and is renamed there with a warning.
        given = dict(locals())
        knobs = {name: given[name] for name in KNOB_NAMES}
        self.settings = Settings.resolve(**knobs, litellm_kwargs=litellm_kwargs)
        self.last_result: RunResult | None = None
        #: Host functions sandboxed code may call by name (engine/tools.py; SECURITY.md).
        self.tools = tool_table(tools)

    def __repr__(self) -> str:
        s = self.settings
        return f"RLM(model={s.model!r}, sub_model={s.sub_model!r}, sandbox={s.sandbox!r})"

    # -- running ------------------------------------------------------------------------------
    def run(self, question: str, context: Any = None, *,
            on_event: Callable[[ev.Event], None] | None = None,
            cancel: threading.Event | None = None, output_type: Any = None,
            max_repairs: int = 2, _budget: Budget | None = None,
            _gate: Any = None) -> RunResult:
        """Run to the end and return the result; never raises for a failed run (see ``error``).

        A run is a session of one question (:meth:`session`): its sandbox closes at the end.
        ``output_type=T`` (a pydantic model, dataclass, TypedDict, int/float/bool/str,
        list[...]/dict[str, ...] of those, or pandas.DataFrame) makes the answer typed:
        ``result.output`` holds the validated value; ``max_repairs`` bounds the repair turns.

        Blocking and synchronous, so it is safe inside a running event loop (Jupyter): no
        ``asyncio.run`` is involved. ``cancel`` stops the run from another thread.
        ``_budget``/``_gate`` are for :meth:`map`: a budget that also charges the map's total,
        and the 429 gate all of the map's items share.
        """
        if not isinstance(question, str) or not question.strip():
            raise errors.ConfigError("The question is empty: pass the question as a string.")
        with self.session(context=context) as session:
            result = session.ask(question, output_type=output_type, max_repairs=max_repairs,
                                 on_event=on_event, cancel=cancel, _budget=_budget,
                                 _gate=_gate)
        self.last_result = result
        return result

    def session(self, context: Any = None, *, name: str | None = None,
                idle_timeout_s: float | None = None, history_tokens: int | None = None
                ) -> "Session":
        """A sandbox and a conversation for several questions (follow-ups keep variables)::

            with rlm.session(context=df) as s:
                s.ask("Which region sells most?")
                s.ask("Now split that by month.")

        Closes after ``idle_timeout_s`` without a question (default 1800 s, or
        ``RLM_SESSION_IDLE_S``); see rlm_jupyter/engine/session.py.
        """
        from rlm_jupyter.engine.session import DEFAULT_HISTORY_TOKENS, Session

        return Session(self, context, name=name, idle_timeout_s=idle_timeout_s,
                       history_tokens=history_tokens or DEFAULT_HISTORY_TOKENS)

    def map(self, question: str, contexts: Any, **kwargs: Any) -> "MapResult":
        """One run per item of ``contexts`` under one total budget and one 429 gate.

        ``contexts``: a list, a dict (keys name the rows), a pandas Series, a DataFrame (one
        item per row; the question may use ``{column}``) or a path glob / directory (one item
        per file); the question may use ``{key}``. Keywords: ``concurrency=8``,
        ``executor=None`` (threads) or a ``dask.distributed.Client`` or any
        ``concurrent.futures.Executor``, ``budget_usd`` / ``max_total_tokens`` (the whole
        map), ``resume`` (True or a path), ``on_event``, ``cancel``. A failing item never stops
        the others. See rlm_jupyter/engine/batch.py.
        """
        from rlm_jupyter.engine.batch import run_map

        return run_map(self, question, contexts, **kwargs)

    async def arun(self, question: str, context: Any = None, **kwargs: Any) -> RunResult:
        """``run`` in a worker thread, for async code."""
        return await asyncio.to_thread(self.run, question, context, **kwargs)

    def stream(self, question: str, context: Any = None, *,
               cancel: threading.Event | None = None) -> Iterator[ev.Event]:
        """Yield events as they happen; the result is in ``self.last_result`` afterwards.

        Closing the generator early (``break``) cancels the run.
        """
        q: queue.Queue[ev.Event | None] = queue.Queue()
        cancel = cancel or threading.Event()
        failure: list[BaseException] = []

        def target() -> None:
            try:
                self.run(question, context, on_event=q.put, cancel=cancel)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
            finally:
                q.put(None)

        # Context variables (an OpenTelemetry span current in the caller) follow the run.
        thread = threading.Thread(target=contextvars.copy_context().run, args=(target,),
                                  daemon=True, name="rlm-stream")
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    break
                yield item
        finally:
            if thread.is_alive():
                cancel.set()
                thread.join()
        if failure:
            raise failure[0]

    # -- helpers ------------------------------------------------------------------------------
    def _resolved_settings(self) -> Settings:
        settings = self.settings
        settings.require_model()
        if settings.model and settings.model.startswith(LOCAL_PREFIX):
            settings = _resolve_local(settings)
        return settings


def _resolve_local(settings: Settings) -> Settings:
    """``local/<name>`` starts (or reuses) the bundled llama.cpp server for that model."""
    from rlm_jupyter.local import ensure_server

    name = settings.model[len(LOCAL_PREFIX):] if settings.model else ""
    model, api_base = ensure_server(name)
    sub = settings.sub_model
    if sub is None or sub == settings.model:
        sub = model
    return settings.with_(model=model, sub_model=sub, api_base=api_base,
                          api_key=settings.api_key or "local")
