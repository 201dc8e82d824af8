"""``eval_local.py ds``: the data-science families (issue 18), guardrails on/off, prompt caching.

A queue of cells ``VARIANT@SEEDS[:FAMILIES]`` runs in order; every outcome is appended to a JSONL
file as soon as it is known, so a run cut short still reports what finished (``--report`` writes
the RESULTS.md subsection from one or more such files, without running anything).

VARIANT: a ``guardrails=`` value (``small``, ``off``, ``small,-confirm_final``...), ``plain``
(the same model's plain call over the context cut to the window), or ``flush`` (the ``small``
profile with the server's KV cache emptied before every call by a 1-token request: what a server
that does not reuse its cache costs; the prompt-caching baseline).

    python benchmarks/eval_local.py ds --cells "small@0,1,2 off@0 plain@0 flush@0:records,csv"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUBSECTION = "### Data-science families (issue 18)"
_PERF = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
#: llama-cpp-python's line when it reuses a cached prefix (the server runs with
#: PYTHONUNBUFFERED=1 so it reaches the log before the reply).
_REUSE = re.compile(r"prefix-match hit, remaining (\d+) prompt tokens to eval")


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="eval_local.py ds", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-1.5b")
    p.add_argument("--n-ctx", type=int, default=8192)
    p.add_argument("--chars", type=int, default=48_000, help="context size in characters")
    p.add_argument("--families", default="records,csv,frame,needles,logs")
    p.add_argument("--cells", default="small@0,1,2 plain@0 off@0",
                   help="space-separated VARIANT@SEEDS[:FAMILIES], run in this order")
    p.add_argument("--max-iterations", type=int, default=6)
    p.add_argument("--rlm-timeout", type=float, default=600.0)
    p.add_argument("--output-chars", type=int, default=3000)
    p.add_argument("--out", default=None, help="JSONL to append outcomes to (resumed)")
    p.add_argument("--report", nargs="*", default=None,
                   help="write the RESULTS.md subsection from these JSONL files and stop")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--note", default=None,
                   help="a Markdown file whose text follows the targets (what was not run, why)")
    return p.parse_args(argv)


def _cells(spec: str, families: list[str]) -> list[tuple[str, int, str]]:
    jobs = []
    for item in spec.split():
        variant, _, rest = item.partition("@")
        seeds, _, fams = rest.partition(":")
        for seed in [int(x) for x in seeds.split(",") if x]:
            for fam in (fams.split(",") if fams else families):
                jobs.append((variant, seed, fam))
    return jobs


class _Meter:
    """Per call: the prompt tokens the server evaluated and its prompt-eval time, read from the
    llama.cpp server's log (``llama_perf_context_print``); optionally flush the KV cache first."""

    def __init__(self, log_path: str, api_base: str) -> None:
        self.log_path, self.api_base = log_path, api_base
        self.flush = False
        self.calls: list[dict[str, Any]] = []

    def install(self) -> None:
        from rlm_jupyter.engine import llm

        original = llm.LLMClient.complete
        meter = self

        def complete(client, model, messages, *a, **kw):  # noqa: ANN001
            if meter.flush:
                meter._flush()
            start = os.path.getsize(meter.log_path)
            t0 = time.monotonic()
            reply = original(client, model, messages, *a, **kw)
            wall = time.monotonic() - t0
            with open(meter.log_path, "rb") as f:
                f.seek(start)
                new = f.read().decode(errors="replace")
            perf = _PERF.findall(new)
            reuse = _REUSE.findall(new)
            root = bool(messages) and messages[0].get("role") == "system"
            # Tokens the server evaluated: the remainder after its cached prefix, or (no prefix
            # reused) the whole prompt.
            evaluated = (int(reuse[-1]) if reuse else
                         sum(int(n) for _, n in perf) if perf else reply.prompt_tokens)
            meter.calls.append({"root": root, "wall_s": round(wall, 2),
                                "evaluated": evaluated, "reused": bool(reuse),
                                "eval_ms": sum(float(ms) for ms, _ in perf) if perf else None,
                                "prompt_tokens": reply.prompt_tokens})
            return reply

        llm.LLMClient.complete = complete

    def _flush(self) -> None:
        import httpx

        httpx.post(f"{self.api_base}/completions", json={"prompt": "flush", "max_tokens": 1},
                   timeout=120)


def run(args: argparse.Namespace) -> Path:
    from rlm_jupyter import RLM
    from rlm_jupyter.evalkit import run_plain, run_rlm
    from rlm_jupyter.evalkit.families import make_family
    from rlm_jupyter.evalkit.runner import TokenCounter
    from rlm_jupyter.local import serve

    info = serve(args.model, n_ctx=args.n_ctx, keep_alive=True,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    model, api_base = info.litellm_model, info.api_base
    out = Path(args.out or ROOT / "artifacts" / "eval" / f"ds-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done.add((row["variant"], row["task_id"]))
    meter = _Meter(info.log_path, api_base)
    meter.install()
    counter = TokenCounter(api_base)
    families = [f for f in args.families.split(",") if f]
    t_start = time.monotonic()
    for variant, seed, fam in _cells(args.cells, families):
        task = _kit_task(fam, seed) if fam.startswith("kit-") else make_family(fam, args.chars,
                                                                               seed)
        if (variant, task.task_id) in done:
            continue
        task.meta["context_tokens"] = counter.count(task.context)
        meter.calls = []
        meter.flush = variant == "flush"
        if variant == "plain":
            o = run_plain(task, model=model, api_base=api_base, api_key="local",
                          window=info.n_ctx, counter=counter)
        else:
            guard = "small,-prompt_cache" if variant == "flush" else variant
            rlm = RLM(model=model, api_base=api_base, api_key="local", sandbox="local",
                      max_iterations=args.max_iterations, timeout_s=args.rlm_timeout,
                      temperature=0.0, cache=False, request_timeout_s=args.rlm_timeout,
                      output_chars=args.output_chars, guardrails=guard)
            o = run_rlm(task, rlm)
        row = {**o.__dict__, "variant": variant, "seed": seed, "calls": list(meter.calls),
               "chars": len(task.context), "window": info.n_ctx, "acted": _acted(o)}
        with out.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        pred = (o.prediction or o.error or "")[:70].replace("\n", " ")
        print(f"[{time.monotonic() - t_start:6.0f}s] {variant:22s} {task.task_id:22s} "
              f"score={o.score:.2f} wall={o.wall_s:5.0f}s gold={o.answer!s:.20} pred={pred!r} "
              f"status={o.extra.get('status')}", flush=True)
    return out


#: The first kit's tasks (S-NIAH, OOLONG, pairs) beyond the window, by a short name: where
#: issue 18 sets the prompt-caching target (longer runs than the data-science families').
KIT_SIZE = 32_000
KIT_TASKS = {"kit-sniah": "sniah", "kit-count": "-count", "kit-user-top": "-user-top",
             "kit-pairs": "-pairs"}


def _kit_task(name: str, seed: int) -> Any:
    """One task of the evaluation kit at ``KIT_SIZE`` tokens (its context shared, as the kit
    builds it: the OOLONG-style log with the S-NIAH needle on its own line)."""
    from rlm_jupyter.evalkit import make_shared

    key = KIT_TASKS.get(name)
    if key is None:
        raise ValueError(f"Unknown kit task {name!r}; use one of {', '.join(KIT_TASKS)}")
    for task in make_shared(KIT_SIZE, seed):
        if (task.family == "sniah") if key == "sniah" else task.task_id.endswith(key):
            task.family = name
            return task
    raise ValueError(f"the kit has no {name!r} task")


def _acted(outcome: Any) -> dict[str, int]:
    """How often each guardrail acted in the run (its ``guardrail`` events, root and children),
    read from the run's JSONL log."""
    path = (outcome.extra or {}).get("log_path") if hasattr(outcome, "extra") else None
    counts: dict[str, int] = {}
    if path and Path(path).exists():
        for line in Path(path).read_text().splitlines():
            event = json.loads(line)
            if event.get("type") == "guardrail":
                counts[event["fix"]] = counts.get(event["fix"], 0) + 1
    return counts


# -- the report -------------------------------------------------------------------------------
def _mean_sd(xs: list[float]) -> str:
    if not xs:
        return "-"
    sd = statistics.pstdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}"


def _loop_run(row: dict) -> bool:
    """Whether the run ended in a loop: the loop breaker stopped it, or its last 3 root replies
    were the same text or empty / fence-only (read from the run's log when it is here)."""
    err = row.get("error") or ""
    if "stuck" in err or "replies in a row" in err:
        return True
    path = (row.get("extra") or {}).get("log_path")
    if not path or not Path(path).exists():
        return False
    from rlm_jupyter.engine.guardrails import is_degenerate

    texts = []
    for line in Path(path).read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "model_response" and not event.get("depth"):
            texts.append((event.get("text") or "").strip())
    body = texts[:-1] if len(texts) > 3 else texts  # the out-of-turns call is another prompt
    tail = body[-3:]
    return len(tail) == 3 and (len(set(tail)) == 1 or all(is_degenerate(t) for t in tail))


def report(paths: list[str]) -> str:
    rows = []
    for p in paths:
        rows += [json.loads(line) for line in Path(p).read_text().splitlines() if line.strip()]
    fams = [f for f in ("records", "csv", "frame", "needles", "logs")
            if any(r["family"] == f for r in rows)]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    lines = ["Score per family and variant: mean ± spread (population s.d.) over seeds; `n` is "
             "the number of runs (one per seed). A run counts as correct at score ≥ 0.99.", "",
             "| variant | " + " | ".join(fams) + " | all: correct | runs | median wall s | "
             "status ok | error, right answer | loop ends |",
             "|---|" + "---:|" * (len(fams) + 6)]
    for v in variants:
        vr = [r for r in rows if r["variant"] == v]
        cells = []
        for f in fams:
            xs = [r["score"] for r in vr if r["family"] == f]
            cells.append(f"{_mean_sd(xs)} (n={len(xs)})" if xs else "not run")
        correct = sum(1 for r in vr if r["score"] >= 0.99)
        ok = sum(1 for r in vr if (r.get("extra") or {}).get("status") == "ok")
        right_err = sum(1 for r in vr if r["score"] >= 0.99 and r.get("error"))
        loops = sum(1 for r in vr if _loop_run(r))
        wall = statistics.median(r["wall_s"] for r in vr)
        status = f"{ok}/{len(vr)}" if v != "plain" else "-"
        lines.append(f"| `{v}` | " + " | ".join(cells) +
                     f" | {correct}/{len(vr)} ({100 * correct / len(vr):.0f}%) | {len(vr)} | "
                     f"{wall:.0f} | {status} | {right_err if v != 'plain' else '-'} | "
                     f"{loops if v != 'plain' else '-'} |")
    # Prompt caching: root turns of the same tasks with and without.
    cache_lines = []
    with_rows = {r["task_id"]: r for r in rows if r["variant"] == "small"}
    flush_rows = [r for r in rows if r["variant"] == "flush"]
    if flush_rows:
        def turns(rs: list[dict], key: str) -> list[float]:
            return [c[key] for r in rs for c in r.get("calls", [])
                    if c.get("root") and c.get(key) is not None]
        paired = [with_rows[r["task_id"]] for r in flush_rows if r["task_id"] in with_rows]
        w_wall, f_wall = turns(paired, "wall_s"), turns(flush_rows, "wall_s")
        w_eval, f_eval = turns(paired, "evaluated"), turns(flush_rows, "evaluated")
        def later(rs: list[dict]) -> list[float]:
            return [c["wall_s"] for r in rs for c in [c for c in r.get("calls", [])
                                                      if c.get("root")][1:]]
        w_later, f_later = later(paired), later(flush_rows)
        if w_wall and f_wall:
            ratio = statistics.median(w_wall) / statistics.median(f_wall)
            cache_lines = [
                "", "**Prompt caching** (root turns of the same tasks; `flush` empties the "
                "server's KV cache before every call, as a server that does not reuse it would; "
                "tokens evaluated per call from llama-cpp-python's log: the remainder after its reused "
                "prefix, else the whole prompt):", "",
                "| | tasks | root turns | median prompt tokens evaluated | median root turn s |",
                "|---|---:|---:|---:|---:|",
                f"| with caching (`small`) | {len(paired)} | {len(w_wall)} | "
                f"{statistics.median(w_eval) if w_eval else '-'} | "
                f"{statistics.median(w_wall):.1f} |",
                f"| without (`flush`) | {len(flush_rows)} | {len(f_wall)} | "
                f"{statistics.median(f_eval) if f_eval else '-'} | "
                f"{statistics.median(f_wall):.1f} |",
                "", f"Median root turn with caching / without: **{ratio:.2f}x** (target ≤ 0.5x: "
                f"{'met' if ratio <= 0.5 else 'not met'}).",
            ]
            if w_later and f_later:
                cache_lines.append(
                    f"Root turns after a run's first ({len(w_later)} with, {len(f_later)} "
                    f"without; the first turn's question and hints are new to the server either "
                    f"way): median {statistics.median(w_later):.1f} s against "
                    f"{statistics.median(f_later):.1f} s, "
                    f"{statistics.median(w_later) / statistics.median(f_later):.2f}x.")
    # The targets, each met / not met / not measured.
    def share(v: str) -> tuple[int, int]:
        vr = [r for r in rows if r["variant"] == v]
        return sum(1 for r in vr if r["score"] >= 0.99), len(vr)

    rc, rn = share("small")
    pc, pn = share("plain")
    rlm_runs = [r for r in rows if r["variant"] not in ("plain",)]
    small_runs = [r for r in rows if r["variant"] in ("small", "flush")]
    loops = sum(1 for r in small_runs if _loop_run(r))
    right_err = sum(1 for r in small_runs if r["score"] >= 0.99 and r.get("error"))
    ratio_line = next((ln for ln in cache_lines if ln.startswith("Median root turn")), None)
    verdict = (lambda ok: "met" if ok else "not met")
    targets = ["", "**Targets of issue 18** (the `small` profile, the default for this model):", "",
               f"- RLM correct on ≥ 60% of the new families' runs: {rc}/{rn} "
               f"({100 * rc / rn:.0f}%): **{verdict(rc >= 0.6 * rn)}**." if rn else
               "- RLM ≥ 60%: not measured.",
               f"- Plain call ≤ 10%: {pc}/{pn} ({100 * pc / pn:.0f}%): "
               f"**{verdict(pc <= 0.1 * pn)}** (plain ran on {pn} of the cells only)." if pn else
               "- Plain call ≤ 10%: not measured.",
               f"- No run ends in a loop of empty or repeated replies: {loops} of "
               f"{len(small_runs)} `small`/`flush` runs were stuck (3 empty, fence-only or "
               f"repeated replies in a row; the loop breaker ended them there with their best "
               f"evidence instead of at the turn limit, but they count against the target): "
               f"**{verdict(loops == 0)}**.",
               f"- No right answer reported as an error: {right_err} of {len(small_runs)}: "
               f"**{verdict(right_err == 0)}**.",
               (f"- Root turn with caching ≤ 0.5x without: {ratio_line.split(': ', 1)[1]}"
                if ratio_line else "- Root turn with caching ≤ 0.5x without: not measured."),
               f"- All RLM runs in this table: {len(rlm_runs)}."]
    acted_lines: list[str] = []
    base = [r for r in rows if r["variant"] == "small" and "acted" in r]
    if base:
        from rlm_jupyter.engine.guardrails import FIXES

        ablated = {v.split(",-", 1)[1] for v in variants if v.startswith("small,-")}
        acted_lines = ["", f"**Where each fix acted** in the {len(base)} `small` runs (its "
                       "`guardrail` events; a fix that never acted cannot change a run, so it "
                       "is ablated only where it did):", "",
                       "| fix | runs where it acted | actions | ablated (`small,-fix`) |",
                       "|---|---:|---:|:-:|"]
        for fix in FIXES:
            n_runs = sum(1 for r in base if r["acted"].get(fix))
            n_act = sum(r["acted"].get(fix, 0) for r in base)
            acted_lines.append(f"| `{fix}` | {n_runs}/{len(base)} | {n_act} | "
                               f"{'yes' if fix in ablated else '-'} |")
    # Each fix off, on the tasks where it acted: paired with the `small` run of the same task.
    small_by_task = {r["task_id"]: r for r in rows if r["variant"] == "small"}
    ablations = [v for v in variants if v.startswith("small,-")]
    if ablations:
        acted_lines += ["", "**Each fix off, on the same tasks** (`small,-fix`, rerun on tasks "
                        "where the fix acted in the `small` run; `changed`: runs whose answer "
                        "differs):", "",
                        "| fix off | tasks | correct with the fix (`small`) | correct without "
                        "| changed | status ok with / without | loop ends with / without |",
                        "|---|---:|---:|---:|---:|---:|---:|"]
        for v in ablations:
            pairs = [(small_by_task[r["task_id"]], r) for r in rows
                     if r["variant"] == v and r["task_id"] in small_by_task]
            if not pairs:
                continue
            on = sum(1 for a, _ in pairs if a["score"] >= 0.99)
            off = sum(1 for _, b in pairs if b["score"] >= 0.99)
            changed = sum(1 for a, b in pairs if str(a.get("prediction")) != str(b.get("prediction")))
            ok_on = sum(1 for a, _ in pairs if (a.get("extra") or {}).get("status") == "ok")
            ok_off = sum(1 for _, b in pairs if (b.get("extra") or {}).get("status") == "ok")
            loops_on = sum(1 for a, _ in pairs if _loop_run(a))
            loops_off = sum(1 for _, b in pairs if _loop_run(b))
            acted_lines.append(f"| `{v.split(',-', 1)[1]}` | {len(pairs)} | {on}/{len(pairs)} | "
                               f"{off}/{len(pairs)} | {changed} | {ok_on} / {ok_off} | "
                               f"{loops_on} / {loops_off} |")
    per_task = ["", "<details><summary>Per run</summary>", "",
                "| variant | task | score | answer | prediction | status | turns | wall s |",
                "|---|---|---:|---|---|---|---:|---:|"]
    for r in rows:
        ex = r.get("extra") or {}
        pred = str(r.get("prediction") or r.get("error") or "")[:60].replace("\n", " ")
        per_task.append(f"| `{r['variant']}` | {r['task_id']} | {r['score']:.2f} | "
                        f"{json.dumps(r['answer'])[:30]} | {pred.replace('|', '/')} | "
                        f"{ex.get('status', '-')} | {ex.get('turns', '-')} | {r['wall_s']:.0f} |")
    per_task += ["", "</details>"]
    return "\n".join(lines + cache_lines + acted_lines + targets + per_task)


def write_subsection(path: Path, body: str) -> None:
    text = path.read_text()
    head, sep, rest = text.partition("## Evaluation kit")
    if not sep:
        text = text.rstrip() + "\n\n## Evaluation kit\n\n" + SUBSECTION + "\n\n" + body + "\n"
    else:
        nxt = re.search(r"^## ", rest[1:], re.M)
        section, tail = (rest[:nxt.start() + 1], rest[nxt.start() + 1:]) if nxt else (rest, "")
        if SUBSECTION in section:
            before, _, after = section.partition(SUBSECTION)
            m = re.search(r"^### ", after, re.M)
            after = after[m.start():] if m else ""
            section = before + SUBSECTION + "\n\n" + body + "\n\n" + after
        else:
            section = section.rstrip() + "\n\n" + SUBSECTION + "\n\n" + body + "\n\n"
        text = head + sep + section + tail
    path.write_text(text)


def main(argv: list[str]) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    args = _args(argv)
    paths = args.report if args.report else [str(run(args))]
    import platform

    rel = ", ".join(f"`{Path(p).resolve().relative_to(ROOT)}`" if str(Path(p).resolve()).startswith(
        str(ROOT)) else f"`{p}`" for p in paths)
    counts = [json.loads(line).get("context_tokens") or 0 for p in paths
              for line in Path(p).read_text().splitlines() if line.strip()]
    toks = f"{min(counts):,}-{max(counts):,}" if counts else "?"
    head = (f"Reproduce: `python benchmarks/eval_local.py ds --cells \"{args.cells}\" "
            f"--max-iterations {args.max_iterations} --chars {args.chars} --output-chars "
            f"{args.output_chars} --n-ctx {args.n_ctx}` (cells run in that order; a run cut "
            f"short keeps what finished). Model: local `{args.model}` (Q4_K_M GGUF) on "
            f"llama-cpp-python's server, n_ctx={args.n_ctx}, {platform.machine()} with "
            f"{os.cpu_count()} cores shared with other work; RLM: same model as root and "
            f"sub-model, temperature 0, `max_iterations={args.max_iterations}`, output shown "
            f"per block capped at {args.output_chars} characters. Contexts: "
            f"~{args.chars:,} characters ({toks} tokens with the model's tokenizer, beyond the "
            f"{args.n_ctx:,}-token window). The plain call gets the context cut to fit the window, then "
            f"the question. Raw outcomes: {rel} (not committed).\n\n")
    body = head + report(paths)
    if args.note:
        table, sep, details = body.partition("\n<details>")
        body = f"{table.rstrip()}\n\n{Path(args.note).read_text().strip()}\n{sep}{details}"
    print(body)
    if not args.no_write:
        write_subsection(Path(args.results), body)
    return 0
