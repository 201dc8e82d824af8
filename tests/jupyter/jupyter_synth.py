"""Synthetic event streams shaped exactly like the engine's (built with its Event classes).

Used to test displays without running a model: the widget, the renderers and the progress
printer consume events, so a realistic stream is all they need.
"""

from __future__ import annotations

from rlm_jupyter.engine import events as ev


def synthetic_run(n_subcalls: int = 3, *, finished: bool = True, child: bool = True,
                  answer: str = "The answer is **42**.", run_id: str = "root01") -> list[ev.Event]:
    t0 = 1_700_000_000.0
    out: list[ev.Event] = []

    def add(e: ev.Event) -> None:
        e.ts = t0 + len(out) * 0.01
        out.append(e)

    add(ev.RunStarted(run_id=run_id, question="What is the answer? {not a var}", model="openai/scripted",
                      sub_model="openai/scripted", sandbox="local", context_summary="str, 12,345 chars",
                      limits={"max_iterations": 20, "max_subcalls": max(10, n_subcalls * 2),
                              "budget_usd": 1.0}))
    add(ev.TurnStarted(run_id=run_id, turn=1))
    for piece in ("Let me look ", "at the context.\n```repl\nprint(len(context))\n```"):
        add(ev.ModelChunk(run_id=run_id, turn=1, delta=piece, span_id="resp1"))
    add(ev.ModelResponse(run_id=run_id, turn=1, text="Let me look at the context.\n```repl\n"
                         "print(len(context))\n```", model="openai/scripted", prompt_tokens=900,
                         completion_tokens=40, cost_usd=0.001, latency_s=0.4))
    add(ev.CodeExecuted(run_id=run_id, turn=1, index=0, code="print(len(context))", stdout="12345\n",
                        duration_s=0.01))
    add(ev.TurnStarted(run_id=run_id, turn=2))
    add(ev.ModelResponse(run_id=run_id, turn=2, text="```repl\nparts = llm_query_batched(chunks)\n```",
                         model="openai/scripted", prompt_tokens=1000, completion_tokens=30,
                         cost_usd=0.001, latency_s=0.3))
    for i in range(n_subcalls):
        add(ev.SubCallStarted(run_id=run_id, turn=2, span_id=f"sub{i}", model="openai/scripted",
                              prompt_preview=f"Summarise chunk {i}", prompt_chars=2000))
    for i in range(n_subcalls):
        add(ev.SubCallFinished(run_id=run_id, turn=2, span_id=f"sub{i}", model="openai/scripted",
                               response_preview=f"chunk {i} is about 42", prompt_tokens=500,
                               completion_tokens=10, cost_usd=0.0001, latency_s=0.05,
                               cached=(i % 7 == 3), error=("boom" if i == 1 else None)))
    if child:
        add(ev.RunStarted(run_id="child1", parent_run_id=run_id, parent_span_id="sub0", depth=1,
                          question="Dig into chunk 0", model="openai/scripted"))
        add(ev.TurnStarted(run_id="child1", parent_run_id=run_id, depth=1, turn=1))
        add(ev.ModelResponse(run_id="child1", parent_run_id=run_id, depth=1, turn=1,
                             text="FINAL(42)", prompt_tokens=100, completion_tokens=5))
        add(ev.RunFinished(run_id="child1", parent_run_id=run_id, depth=1, answer="42", turns=1))
    add(ev.CodeExecuted(run_id=run_id, turn=2, index=0, code="parts = llm_query_batched(chunks)",
                        stdout="", error="Traceback...\nValueError: one chunk failed", duration_s=0.5))
    if finished:
        add(ev.RunFinished(run_id=run_id, answer=answer, status="ok", turns=2, subcalls=n_subcalls,
                           usage={"openai/scripted": {"prompt_tokens": 1900, "completion_tokens": 70}},
                           cost_usd=0.002, elapsed_s=1.5))
    return out
