"""Score an RLM and the same model's plain call side by side on generated tasks.

The plain call is the baseline a user would otherwise run: the context, truncated from the end
to fit the model's window, followed by the question, in one request. The RLM gets the whole
context in its REPL. Both use the same model and server, so the difference is the method.

Tasks that share a context are run back to back (plain calls first): a llama.cpp server reuses
the KV cache of a repeated prompt prefix, so the 2nd..nth plain call over one context costs
seconds instead of minutes on a CPU.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .scoring import score
from .tasks import Task

PLAIN_SYSTEM = ("You answer questions about the text the user gives you. Read it carefully and "
                "answer briefly and exactly as the question asks.")
PLAIN_TEMPLATE = "Context:\n{context}\n\nQuestion: {question}"
TRUNCATION_NOTE = "\n[... context truncated to fit the model's window ...]"


@dataclass
class Outcome:
    """One method on one task."""

    task_id: str
    family: str
    method: str  # "rlm" | "plain"
    target_tokens: int
    context_tokens: int
    answer: Any
    prediction: str | None
    score: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    cost_usd: float = 0.0
    error: str | None = None
    truncated_to: int | None = None  # tokens of context the plain call saw
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# -- token counting ---------------------------------------------------------------------------
class TokenCounter:
    """Counts tokens with the serving model's own tokenizer when the server exposes one
    (llama-cpp-python: ``POST /extras/tokenize``), else with a chars-per-token estimate."""

    def __init__(self, api_base: str | None = None, chars_per_token: float = 3.6) -> None:
        self.url = None
        if api_base:
            root = api_base.rstrip("/")
            root = root[: -len("/v1")] if root.endswith("/v1") else root
            self.url = f"{root}/extras/tokenize"
        self.chars_per_token = chars_per_token

    def count(self, text: str) -> int:
        if self.url:
            try:
                req = urllib.request.Request(self.url, data=json.dumps({"input": text}).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=120) as r:
                    return len(json.load(r)["tokens"])
            except (OSError, ValueError, KeyError):
                self.url = None  # no tokenizer endpoint: fall back for the rest of the run
        return int(len(text) / self.chars_per_token) + 1


def truncate_to_tokens(text: str, max_tokens: int, counter: TokenCounter) -> tuple[str, int]:
    """The longest head of ``text`` (cut at a line break when possible) within ``max_tokens``."""
    total = counter.count(text)
    if total <= max_tokens:
        return text, total
    ratio = len(text) / max(total, 1)
    chars = int(max_tokens * ratio * 0.98)
    for _ in range(8):
        head = text[:chars]
        cut = head.rfind("\n")
        if cut > chars * 0.9:
            head = head[:cut]
        n = counter.count(head)
        if n <= max_tokens:
            return head, n
        chars = int(chars * max_tokens / n * 0.97)
    return head, n


# -- the two methods -------------------------------------------------------------------------
def run_plain(task: Task, *, model: str, api_base: str | None = None, api_key: str | None = None,
              window: int, max_output_tokens: int = 256, counter: TokenCounter | None = None,
              timeout_s: float = 1800.0, **litellm_kwargs: Any) -> Outcome:
    """One completion over the head of the context that fits the window."""
    from rlm_jupyter.engine.llm import get_litellm

    litellm = get_litellm()  # lazy: heavy import

    counter = counter or TokenCounter(api_base)
    overhead = counter.count(PLAIN_SYSTEM + PLAIN_TEMPLATE.format(context="", question=task.question)
                             + TRUNCATION_NOTE) + 32  # chat template tokens
    budget = window - max_output_tokens - overhead
    context_tokens = task.meta.get("context_tokens") or counter.count(task.context)
    task.meta["context_tokens"] = context_tokens
    ctx, seen = truncate_to_tokens(task.context, budget, counter)
    if seen < context_tokens:
        ctx += TRUNCATION_NOTE
    messages = [{"role": "system", "content": PLAIN_SYSTEM},
                {"role": "user", "content": PLAIN_TEMPLATE.format(context=ctx,
                                                                  question=task.question)}]
    t0 = time.monotonic()
    pred, err, usage, cost = None, None, None, 0.0
    try:
        resp = litellm.completion(model=model, messages=messages, api_base=api_base,
                                  api_key=api_key, max_tokens=max_output_tokens, temperature=0,
                                  timeout=timeout_s, max_retries=0, **litellm_kwargs)
        pred = resp.choices[0].message.content
        usage = getattr(resp, "usage", None)
        try:
            cost = float(litellm.completion_cost(completion_response=resp) or 0.0)
        except Exception:  # noqa: BLE001 - unpriced (local) models are free
            cost = 0.0
    except Exception as exc:  # noqa: BLE001 - a failed call scores 0 and is reported
        err = f"{type(exc).__name__}: {exc}"[:500]
    wall = time.monotonic() - t0
    return Outcome(
        task_id=task.task_id, family=task.family, method="plain",
        target_tokens=task.target_tokens, context_tokens=context_tokens, answer=task.answer,
        prediction=pred, score=score(task.kind, pred, task.answer, task.meta.get("labels")),
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        wall_s=wall, cost_usd=cost, error=err, truncated_to=seen)


def run_rlm(task: Task, rlm: Any) -> Outcome:
    """``rlm.run(question, context)``; tokens and cost summed over every call of the run."""
    t0 = time.monotonic()
    pred, err, prompt_t, compl_t, cost, extra = None, None, 0, 0, 0.0, {}
    roots: list[dict[str, Any]] = []

    def on_event(event: Any) -> None:
        # Root turns' latency and prompt size, for the prompt-caching figures.
        if getattr(event, "type", "") == "model_response" and not getattr(event, "depth", 0):
            roots.append({"latency_s": round(float(event.latency_s or 0.0), 3),
                          "prompt_tokens": int(event.prompt_tokens or 0)})

    try:
        context: Any = task.context
        if task.meta.get("as_frame"):
            from .families import as_frame

            context = as_frame(task.context)
        result = rlm.run(task.question, context=context, on_event=on_event)
        pred = result.answer
        for u in (result.usage or {}).values():
            prompt_t += int(u.get("prompt_tokens", 0) or 0)
            compl_t += int(u.get("completion_tokens", 0) or 0)
        cost = float(result.cost_usd or 0.0)
        if result.error is not None:
            err = f"{type(result.error).__name__}: {result.error}"[:500]
        extra = {"status": result.status, "log_path": str(result.log_path or ""),
                 "turns": _count_turns(result), "usage": result.usage, "root_calls": roots}
    except Exception as exc:  # noqa: BLE001 - reported, scored 0
        err = f"{type(exc).__name__}: {exc}"[:500]
    wall = time.monotonic() - t0
    return Outcome(
        task_id=task.task_id, family=task.family, method="rlm", target_tokens=task.target_tokens,
        context_tokens=int(task.meta.get("context_tokens") or 0), answer=task.answer,
        prediction=pred, score=score(task.kind, pred, task.answer, task.meta.get("labels")), prompt_tokens=prompt_t,
        completion_tokens=compl_t, wall_s=wall, cost_usd=cost, error=err, extra=extra)


def _count_turns(result: Any) -> int | None:
    node = getattr(result, "trajectory", None)
    for attr in ("iterations", "turns"):
        value = getattr(node, attr, None)
        if isinstance(value, list):
            return len(value)
        if isinstance(value, int):
            return value
    return None


def run_suite(tasks: Iterable[Task], *, rlm: Any | None, model: str, api_base: str | None,
              api_key: str | None, window: int, methods: tuple[str, ...] = ("plain", "rlm"),
              on_outcome: Callable[[Outcome], None] | None = None,
              **plain_kwargs: Any) -> list[Outcome]:
    """Run every method on every task, grouped by context so prompt caches are reused."""
    counter = TokenCounter(api_base)
    groups: dict[str, list[Task]] = {}
    for t in tasks:
        groups.setdefault(t.context_id or t.task_id, []).append(t)
    outcomes: list[Outcome] = []
    for group in groups.values():
        n = counter.count(group[0].context)
        for t in group:
            t.meta["context_tokens"] = n
        for method in methods:
            for t in group:
                if method == "plain":
                    o = run_plain(t, model=model, api_base=api_base, api_key=api_key,
                                  window=window, counter=counter, **plain_kwargs)
                elif rlm is not None:
                    o = run_rlm(t, rlm)
                else:
                    continue
                outcomes.append(o)
                if on_outcome is not None:
                    on_outcome(o)
    return outcomes


# -- reporting --------------------------------------------------------------------------------
def summarize(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """One row per (family, size, method): mean score, total tokens, wall time, cost."""
    rows: dict[tuple, dict[str, Any]] = {}
    for o in outcomes:
        key = (o.family, o.target_tokens, o.method)
        r = rows.setdefault(key, {"family": o.family, "target_tokens": o.target_tokens,
                                  "context_tokens": o.context_tokens, "method": o.method,
                                  "n": 0, "score": 0.0, "tokens": 0, "wall_s": 0.0,
                                  "cost_usd": 0.0, "errors": 0})
        r["n"] += 1
        r["score"] += o.score
        r["tokens"] += o.tokens
        r["wall_s"] += o.wall_s
        r["cost_usd"] += o.cost_usd
        r["errors"] += 1 if o.error else 0
    out = []
    for r in rows.values():
        r["score"] = r["score"] / r["n"]
        out.append(r)
    order = {"sniah": 0, "oolong": 1, "pairs": 2}
    out.sort(key=lambda r: (order.get(r["family"], 9), r["target_tokens"], r["method"]))
    return out


def markdown_table(outcomes: list[Outcome], window: int) -> str:
    lines = ["| task | context tokens | > window | method | n | score | tokens | wall s | cost $ |",
             "|---|---:|:-:|---|---:|---:|---:|---:|---:|"]
    for r in summarize(outcomes):
        over = "yes" if r["context_tokens"] > window else "no"
        err = f" ({r['errors']} err)" if r["errors"] else ""
        lines.append(f"| {r['family']} | {r['context_tokens']:,} | {over} | {r['method']} | "
                     f"{r['n']} | {r['score']:.2f}{err} | {r['tokens']:,} | {r['wall_s']:.0f} | "
                     f"{r['cost_usd']:.4f} |")
    return "\n".join(lines)


def outcome_lines(outcomes: list[Outcome]) -> str:
    """Per-task detail: what each method answered against the gold answer."""
    lines = ["| task | method | score | answer | prediction | tokens | wall s |",
             "|---|---|---:|---|---|---:|---:|"]
    for o in outcomes:
        pred = (o.prediction or (o.error or ""))[:70].replace("\n", " ").replace("|", "/")
        gold = json.dumps(o.answer)[:50].replace("|", "/")
        lines.append(f"| {o.task_id} | {o.method} | {o.score:.2f} | {gold} | {pred} | "
                     f"{o.tokens:,} | {o.wall_s:.0f} |")
    return "\n".join(lines)


SECTION = "## Evaluation kit"


def replace_section(path: Path, body: str, heading: str = SECTION) -> None:
    """Write ``heading`` + ``body`` into a markdown file, replacing only that section (up to
    the next ``## `` heading) so other sections written by other tools stay as they are."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == heading), None)
    new = [heading, "", *body.strip("\n").splitlines(), ""]
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", *new]
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")),
                   len(lines))
        lines[start:end] = new
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def save_jsonl(outcomes: list[Outcome], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for o in outcomes:
            f.write(json.dumps(asdict(o), default=str) + "\n")
