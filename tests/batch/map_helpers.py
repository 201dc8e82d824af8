"""The map tests' scripted model: two root turns per item (a batch of sub-calls, then
FINAL_VAR). Imported by conftest.py and the tests (a unique name, unlike ``conftest``).

Each item's context holds ``code is N`` somewhere; the sub-calls find N; the answer is N.
A question that names ``bad`` makes the model's server answer HTTP 400 (a failing item).
"""

from __future__ import annotations

import re

CODE_RE = re.compile(r"code is (\d+)")

TURN_1 = ("```repl\n"
          "text = str(context)\n"
          "chunks = [text[i:i + 40] for i in range(0, len(text), 40)] or ['']\n"
          "found = [a for a in llm_query_batched(["
          "f'Find the code in: {c}' for c in chunks]) if a != 'NONE']\n"
          "result = found[0] if found else 'NONE'\n"
          "print(result)\n```")


def map_root(req) -> str:
    if "bad" in req.question:
        raise RuntimeError("scripted failure for a 'bad' item")
    return TURN_1 if req.turn <= 1 else "FINAL_VAR(result)"


def map_sub(prompt: str, req) -> str:
    match = CODE_RE.search(prompt)
    return match.group(1) if match else "NONE"


def doc(n: int) -> str:
    return f"Report {n}. Nothing here.\nThe code is {n}.\nEnd of report."
