"""Run the evaluation kit: an RLM against the same model's plain call, on tasks with known answers.

Default: the local Qwen2.5-Coder-1.5B served by llama.cpp on this machine's CPU. Any litellm
model works too (``--litellm-model openai/gpt-4o-mini --window 128000``). Writes the table into
``benchmarks/RESULTS.md`` under "## Evaluation kit" (only that section) and every task's raw
outcome to ``artifacts/eval/``.

    python benchmarks/eval_local.py --sizes 4000,32000,128000 --families sniah,oolong,pairs
    python benchmarks/eval_local.py ds --help   # the data-science families, guardrails on/off,
                                                # prompt caching (benchmarks/_eval_ds.py)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-1.5b",
                   help="local registry name or .gguf path (served with llama.cpp)")
    p.add_argument("--litellm-model", default=None,
                   help="evaluate this litellm model instead of a local one")
    p.add_argument("--api-base", default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("--window", type=int, default=None,
                   help="the model's context window in tokens (local: the server's n_ctx)")
    p.add_argument("--n-ctx", type=int, default=8192,
                   help="context window to serve a local model with (default 8192 keeps the "
                        "plain baseline affordable on a CPU)")
    p.add_argument("--sizes", default="4000,32000,128000")
    p.add_argument("--families", default="sniah,oolong,pairs")
    p.add_argument("--oolong-questions", default="count,most-frequent,user-count,user-top",
                   help="which OOLONG questions to ask")
    p.add_argument("--separate-contexts", action="store_true",
                   help="S-NIAH in prose filler instead of sharing the OOLONG log (one more "
                        "long plain-call prompt per size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="plain,rlm")
    p.add_argument("--plain-from", default=None,
                   help="reuse the plain-call outcomes of an earlier raw file (artifacts/eval/"
                        "*.jsonl) instead of re-running them: they do not depend on the RLM "
                        "prompts and cost one long prompt per size")
    p.add_argument("--max-iterations", type=int, default=6)
    p.add_argument("--rlm-timeout", type=float, default=480.0, help="seconds per RLM run")
    p.add_argument("--sandbox", default="local")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    p.add_argument("--no-write", action="store_true", help="print the table, do not write it")
    return p.parse_args(argv)


def build_tasks(sizes: list[int], families: list[str], seed: int, questions: set[str],
                shared: bool = True) -> list:
    from rlm_jupyter.evalkit import make_oolong, make_pairs, make_shared, make_sniah

    tasks = []
    for size in sizes:
        if shared:
            for t in make_shared(size, seed):
                q = t.task_id.split(f"-s{seed}-", 1)[-1]
                if t.family in families and (t.family != "oolong" or q in questions):
                    tasks.append(t)
            continue
        if "sniah" in families:
            tasks.append(make_sniah(size, seed))
        if "oolong" in families:
            tasks += [t for t in make_oolong(size, seed)
                      if t.task_id.split(f"-s{seed}-", 1)[1] in questions]
        if "pairs" in families:
            tasks.append(make_pairs(size, seed))
    return tasks


def load_outcomes(path: Path, task_ids: set[str], method: str) -> list:
    """Outcomes of ``method`` for ``task_ids`` from a raw file written by an earlier run."""
    import json

    from rlm_jupyter.evalkit import Outcome

    fields = set(Outcome.__dataclass_fields__)
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("method") == method and row.get("task_id") in task_ids:
            out.append(Outcome(**{k: v for k, v in row.items() if k in fields}))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "ds":
        from _eval_ds import main as ds_main  # the data-science families (issue 18)

        return ds_main(argv[1:])
    args = _args(argv)
    from rlm_jupyter import RLM
    from rlm_jupyter.evalkit import (markdown_table, outcome_lines, replace_section, run_suite,
                                     save_jsonl)

    t_start = time.monotonic()
    if args.litellm_model:
        model, api_base, api_key = args.litellm_model, args.api_base, args.api_key
        window = args.window or 128_000
        server_note = f"`{model}` via litellm"
    else:
        from rlm_jupyter.local import serve

        info = serve(args.model, n_ctx=args.n_ctx, keep_alive=False,
                     progress=lambda m: print(m, file=sys.stderr, flush=True))
        model, api_base, api_key = info.litellm_model, info.api_base, "local"
        window = args.window or info.n_ctx
        server_note = (f"local `{info.alias}` (Q4_K_M GGUF) on llama-cpp-python's server, "
                       f"n_ctx={info.n_ctx}, {info.n_threads} CPU threads")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    families = [f for f in args.families.split(",") if f]
    tasks = build_tasks(sizes, families, args.seed, set(args.oolong_questions.split(",")),
                        shared=not args.separate_contexts)
    methods = tuple(m for m in args.methods.split(",") if m)
    # Printed output the model sees per block: a quarter of its window (at ~4 characters a
    # token), so a long print cannot push the history past the window (an HTTP 400 from
    # llama.cpp at n_ctx 8192 with the default 20,000 characters).
    rlm = RLM(model=model, api_base=api_base, api_key=api_key, sandbox=args.sandbox,
              max_iterations=args.max_iterations, timeout_s=args.rlm_timeout, temperature=0.0,
              cache=False, request_timeout_s=args.rlm_timeout,
              output_chars=min(20_000, window))

    def report(o) -> None:
        pred = (o.prediction or o.error or "")[:80].replace("\n", " ")
        print(f"[{time.monotonic() - t_start:6.0f}s] {o.task_id:32s} {o.method:5s} "
              f"score={o.score:.2f} tokens={o.tokens:6d} wall={o.wall_s:5.0f}s  "
              f"gold={o.answer!s:.30} pred={pred!r}", flush=True)

    reused = []
    if args.plain_from:
        reused = load_outcomes(Path(args.plain_from), {t.task_id for t in tasks}, "plain")
    by_id = {o.task_id: o for o in reused}
    for t in tasks:
        if t.task_id in by_id:
            t.meta["context_tokens"] = by_id[t.task_id].context_tokens
    have_plain = [t for t in tasks if t.task_id in by_id]
    need_plain = [t for t in tasks if t.task_id not in by_id]
    runner = dict(rlm=rlm if "rlm" in methods else None, model=model, api_base=api_base,
                  api_key=api_key, window=window, on_outcome=report)
    outcomes = reused + run_suite(need_plain, methods=methods, **runner)
    outcomes += run_suite(have_plain, methods=tuple(m for m in methods if m != "plain"), **runner)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = ROOT / "artifacts" / "eval" / f"eval-{stamp}.jsonl"
    save_jsonl(outcomes, raw)
    table = markdown_table(outcomes, window)
    elapsed = time.monotonic() - t_start
    body = "\n".join([
        f"Generated by `python benchmarks/eval_local.py {' '.join(argv or sys.argv[1:])}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()} "
        f"with {os.cpu_count()} cores shared with other work; total {elapsed / 60:.1f} min.",
        "",
        f"Model: {server_note}. Window used for the plain call: {window:,} tokens (the context is "
        "cut from the end to fit, then the question). RLM: the same model as root and sub-model, "
        f"`max_iterations={args.max_iterations}`, `timeout_s={args.rlm_timeout:.0f}`, "
        f"sandbox `{args.sandbox}`, temperature 0. "
        + (f"Plain-call rows of the tasks found in `{args.plain_from}` are reused from that "
           "earlier run (same model, server and tasks; temperature 0). " if args.plain_from else "")
        + "Scores: S-NIAH needle found (1/0); OOLONG "
        "counts 0.75^|error|, labels exact; pairs F1. Token counts are the model's own "
        "tokenizer (context) and the server's usage reports (calls). Local models cost $0. "
        + ("" if args.separate_contexts else "All tasks of one size share one context: the "
           "OOLONG-style log with the S-NIAH needle on its own line (the plain call then pays for "
           "one long prompt per size; the server reuses the cached prefix for the other "
           "questions)."),
        "",
        table,
        "",
        "<details><summary>Per task</summary>",
        "",
        outcome_lines(outcomes),
        "",
        "</details>",
        "",
        f"Raw outcomes: `{raw.relative_to(ROOT)}` (not committed).",
    ])
    print(body)
    if not args.no_write:
        replace_section(Path(args.results), body)
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
