"""``RLM``: the public entry point, usable from scripts, tests, the CLI and the magics alike."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator

from rlm_jupyter import errors, telemetry
from rlm_jupyter.settings import KNOBS, Settings
from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine.budget import Budget
from rlm_jupyter.engine.cache import ResponseCache
from rlm_jupyter.engine.llm import LLMClient, get_litellm
from rlm_jupyter.engine.loop import Run, RunTree
from rlm_jupyter.engine.preflight import check_context, check_credentials
from rlm_jupyter.engine.result import RunResult
from rlm_jupyter.engine.trajectory import JsonlWriter, Trajectory, log_path_for

if TYPE_CHECKING:
    from rlm_jupyter.engine.batch import MapResult

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
                 tracing: bool | str | None = None,
                 **litellm_kwargs: Any) -> None:
        # The signature is explicit for users and IDEs; tests/test_settings_table.py keeps it
        # equal to the knobs in rlm_jupyter/settings.py. ``max_tokens=`` (the old name of
        # max_total_tokens) arrives in litellm_kwargs and is renamed there with a warning.
        given = dict(locals())
        knobs = {name: given[name] for name in KNOB_NAMES}
        self.settings = Settings.resolve(**knobs, litellm_kwargs=litellm_kwargs)
        self.last_result: RunResult | None = None

    def __repr__(self) -> str:
        s = self.settings
        return f"RLM(model={s.model!r}, sub_model={s.sub_model!r}, sandbox={s.sandbox!r})"

    # -- running ------------------------------------------------------------------------------
    def run(self, question: str, context: Any = None, *,
            on_event: Callable[[ev.Event], None] | None = None,
            cancel: threading.Event | None = None, _budget: Budget | None = None,
            _gate: Any = None) -> RunResult:
        """Run to the end and return the result; never raises for a failed run (see ``error``).

        Blocking and synchronous, so it is safe inside a running event loop (Jupyter): no
        ``asyncio.run`` is involved. ``cancel`` stops the run from another thread.
        ``_budget``/``_gate`` are for :meth:`map`: a budget that also charges the map's total,
        and the 429 gate all of the map's items share.
        """
        if not isinstance(question, str) or not question.strip():
            raise errors.ConfigError("The question is empty: pass the question as a string.")
        settings = self._resolved_settings()
        model = settings.require_model()
        check_context(context, settings.sandbox)
        for name in {model, settings.sub_model or model}:
            check_credentials(name, transport=settings.effective_transport,
                              api_base=settings.api_base, api_key=settings.api_key)
        if settings.effective_transport == "litellm":
            # Import litellm (seconds) while the sandbox starts and loads the context. The
            # direct HTTP path needs no litellm at all for a model litellm cannot price.
            threading.Thread(target=get_litellm, daemon=True, name="rlm-import-litellm").start()
        cancel = cancel or threading.Event()
        budget = _budget if _budget is not None else Budget(
            max_subcalls=settings.max_subcalls, max_tokens=settings.max_total_tokens,
                        budget_usd=settings.budget_usd, timeout_s=settings.timeout_s)
        cache = ResponseCache(settings.effective_cache_dir) if settings.cache_enabled else None
        client = LLMClient(api_base=settings.api_base, api_key=settings.api_key,
                           num_retries=settings.num_retries,
                           request_timeout_s=settings.request_timeout_s,
                           litellm_kwargs=settings.request_params, cache=cache,
                           concurrency=settings.concurrency, cancel=cancel,
                           transport=settings.effective_transport)
        if _gate is not None:
            client.gate = _gate
        bus = ev.EventBus()
        tree = RunTree(settings=settings, budget=budget, bus=bus, client=client, cancel=cancel,
                       stream_root=settings.stream and on_event is not None)
        collected: list[ev.Event] = []
        bus.subscribe(collected.append)
        builder = Trajectory()
        bus.subscribe(builder.add)
        notes: list[str] = []
        telemetry.attach(bus, settings, tree.redactor, notes)  # OpenTelemetry spans, when on
        root = Run(tree, question, context, model=settings.require_model())
        writer = self._open_log(root.run_id, settings, notes)
        if writer is not None:
            bus.subscribe(writer)
        if on_event is not None:
            bus.subscribe(on_event)
        done = threading.Event()
        watcher = threading.Thread(target=_close_on_cancel, args=(tree, done), daemon=True,
                                   name="rlm-cancel-watch")
        watcher.start()
        try:
            outcome = root.execute()
        finally:
            done.set()
            client.close()
            if writer is not None:
                writer.close()
        if budget.unpriced_models:
            notes.append("No price known for " + ", ".join(sorted(budget.unpriced_models))
                         + ": counted as $0 (register prices with litellm.register_model).")
        trajectory = builder.root
        if outcome.error is not None:
            outcome.error.trajectory = trajectory
        result = RunResult(question=question, answer=outcome.answer, run_id=outcome.run_id,
                           status=outcome.status, usage=budget.usage_dict(),
                           cost_usd=budget.cost_usd, elapsed_s=budget.elapsed_s(),
                           trajectory=trajectory, log_path=writer.path if writer else None,
                           error=outcome.error, notes=notes, events=collected)
        self.last_result = result
        return result

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

        thread = threading.Thread(target=target, daemon=True, name="rlm-stream")
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

    def _open_log(self, run_id: str, settings: Settings, notes: list[str]) -> JsonlWriter | None:
        secrets = [settings.api_key or ""]
        try:
            return JsonlWriter(log_path_for(settings.effective_log_dir, run_id), secrets=secrets)
        except OSError as exc:
            notes.append(f"Run log disabled: cannot write to {settings.effective_log_dir} "
                         f"({exc}); set RLM_LOG_DIR to a writable folder.")
            return None


def _close_on_cancel(tree: RunTree, done: threading.Event) -> None:
    """Stop what runs when the user cancels: hang up the model calls in flight (the direct
    HTTP path waits on them on the run's own threads) and close the sandboxes, which kills a
    running cell."""
    while not done.is_set():
        if tree.cancel.wait(0.05):
            tree.client.abort_in_flight()
            tree.close_all_sandboxes()
            return


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
