"""The scripted "models" of the benchmarks, by name, so the server can run in its own process.

A real model server is another process; running the scripted one inside the benchmark's own
interpreter would let its HTTP threads compete with the engine for the GIL and bill their work
to rlm-jupyter (and not to rlms, whose driver is a separate process anyway). So the server runs
in ``_serve.py`` and builds its policy here from a name and JSON parameters.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable

REPL = "```repl\n{}\n```"

# -- needle in a haystack (benchmark 6) ------------------------------------------------------

KEY = "KEY-4821"
VALUE = "VALUE-7f3a91"
QUESTION = f"What is the value for key {KEY}?"
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()
NEEDLE_RE = re.compile(r"The value for key (KEY-\d+) is (\S+)\.")


def haystack(lines: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    out = []
    needle_at = lines * 2 // 3
    for i in range(lines):
        if i == needle_at:
            out.append(f"record {i:07d}: The value for key {KEY} is {VALUE}.")
        else:
            out.append(f"record {i:07d}: " + " ".join(rng.choice(WORDS) for _ in range(10)))
    return "\n".join(out)


def needle_cells(chunks: int) -> list[str]:
    """The root model's three cells; plain Python both systems run unchanged."""
    return [
        REPL.format("print(len(context))\nprint(context[:300])"),
        REPL.format(
            "lines = context.splitlines()\n"
            f"size = (len(lines) + {chunks - 1}) // {chunks}\n"
            "chunks = ['\\n'.join(lines[i:i + size]) for i in range(0, len(lines), size)]\n"
            f"prompts = ['Question: what is the value for key {KEY}? Reply with the value only,"
            " or NONE.\\nChunk:\\n' + c for c in chunks]\n"
            "replies = llm_query_batched(prompts)\n"
            "hits = [r for r in replies if r.strip() != 'NONE']\n"
            "print(len(chunks), hits)"),
        REPL.format("answer['content'] = hits[0] if hits else 'not found'\n"
                    "answer['ready'] = True"),
    ]


def needle(chunks: int) -> tuple[Callable[..., str], Callable[..., str]]:
    cells = needle_cells(chunks)

    def root(req: Any) -> str:
        return cells[min(req.turn, len(cells)) - 1]

    def sub(prompt: str, req: Any) -> str:
        for key, value in NEEDLE_RE.findall(prompt):
            if key == KEY:
                return value
        return "NONE"

    return root, sub


# -- engine benchmarks (1, 2, 4) --------------------------------------------------------------

def batch(n: int) -> tuple[Any, Any]:
    code = REPL.format(
        f'replies = llm_query_batched([f"item {{i}}" for i in range({n})])\n'
        f'print(len(replies), replies[0])\n'
        f'FINAL(str(len(replies)))')
    return (lambda req: code), "ok"


def turns(n: int) -> tuple[Any, Any]:
    def root(req: Any) -> str:
        if req.turn <= n:
            return REPL.format(f"x = {req.turn}")
        return "FINAL(done)"

    return root, "ok"


def cache(n: int) -> tuple[Any, Any]:
    code = REPL.format(
        f'replies = llm_query_batched([f"summarise part {{i}}" for i in range({n})])\n'
        f'FINAL(str(len(replies)))')
    return (lambda req: code), (lambda prompt, req: "summary of " + prompt[-8:])


POLICIES: dict[str, Callable[..., tuple[Any, Any]]] = {
    "needle": needle, "batch": batch, "turns": turns, "cache": cache,
}
