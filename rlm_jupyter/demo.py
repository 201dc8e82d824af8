"""The main job: answer a question about a large generated document.

With ``RLM_MODEL`` (and the provider's key) set it uses that model; otherwise it starts the
scripted demo server from :mod:`rlm_jupyter.testing` and says so plainly, so a newcomer sees the
whole machinery (sandbox, batched sub-calls, budget, log) run without any key.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from typing import Any

NEEDLE = "The access code for the vault in building 7 is 4921-ALPHA."
QUESTION = "What is the access code for the vault in building 7?"

_SUBJECTS = ["The morning shift", "Our supplier", "The quarterly review", "A customer",
             "The warehouse team", "The marketing plan", "The new intern", "Finance"]
_VERBS = ["discussed", "approved", "postponed", "reviewed", "summarised", "questioned",
          "celebrated", "archived"]
_OBJECTS = ["the delivery schedule", "a pricing update", "the holiday rota", "spare parts",
            "the onboarding notes", "a budget line", "the coffee machine", "travel plans"]


def make_document(target_chars: int = 5_000_000, seed: int = 7) -> str:
    """Filler meeting notes with one needle line somewhere in the middle."""
    rng = random.Random(seed)
    lines: list[str] = []
    size = 0
    day = 0
    while size < target_chars:
        day += 1
        line = (f"Entry {day:07d}: {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} "
                f"{rng.choice(_OBJECTS)} and noted item {rng.randint(1000, 9999)}.")
        lines.append(line)
        size += len(line) + 1
    lines.insert(int(len(lines) * 0.62), NEEDLE)
    return "\n".join(lines)


def run_demo(size_chars: int = 5_000_000, quiet: bool = False) -> Any:
    from rlm_jupyter import RLM

    document = make_document(size_chars)
    server = None
    kwargs: dict[str, Any] = {}
    if not os.environ.get("RLM_MODEL"):
        from rlm_jupyter.testing import ScriptedServer

        server = ScriptedServer.demo()
        server.start()
        kwargs = {"model": server.model, "api_base": server.base_url, "api_key": "demo"}
        print("No RLM_MODEL configured: using the scripted DEMO model (no real LLM, no key).\n"
              "Set RLM_MODEL=openai/gpt-4o-mini and OPENAI_API_KEY=... to use a real model.\n")
    try:
        rlm = RLM(max_iterations=8, **kwargs)
        print(f"Question: {QUESTION}")
        print(f"Context: a generated document of {len(document):,} characters\n")

        def progress(event: Any) -> None:
            if quiet:
                return
            kind = event.type
            if kind == "turn_started":
                print(f"  turn {event.turn} ...", flush=True)
            elif kind == "code_executed":
                print(f"    ran code ({event.duration_s:.2f}s)"
                      + (f", error: {event.error.splitlines()[-1]}" if event.error else ""))

        result = rlm.run(QUESTION, context=document, on_event=progress)
    finally:
        if server is not None:
            server.stop()
    print()
    print(f"Answer: {result.answer}")
    subcalls = len(result.trajectory.all_subcalls()) if result.trajectory else 0
    print(f"Turns: {len(result.trajectory.turns) if result.trajectory else 0}, "
          f"sub-calls: {subcalls}, tokens: {result.total_tokens:,}, "
          f"cost: ${result.cost_usd:.4f}, time: {result.elapsed_s:.1f}s")
    if result.error is not None:
        print(f"Ended early: {result.error}")
    print(f"Log: {result.log_path}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlm_jupyter.demo", description=__doc__)
    parser.add_argument("--size", type=int, default=5_000_000, help="document size in characters")
    parser.add_argument("--script", action="store_true",
                        help="run the plain Python example instead of the quickstart notebook")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not args.script:
        try:
            from rlm_jupyter.jupyter.demo_notebook import run_quickstart
        except ImportError:
            run_quickstart = None
        if run_quickstart is not None:
            answer = run_quickstart()
            return 0 if answer else 1
    result = run_demo(args.size, quiet=args.quiet)
    return 0 if result.answer and result.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
