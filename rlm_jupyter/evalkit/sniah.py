"""S-NIAH: one needle ("the special magic number for <key> is <7 digits>") in filler prose.

Single-needle retrieval is the easiest long-context task: a model that can see the needle finds
it. A plain call whose window is shorter than the context sees only the head, so it fails
whenever the needle lies beyond the cut; an RLM can search the whole context with code.
"""

from __future__ import annotations

import random

from .filler import CHARS_PER_TOKEN, prose
from .tasks import Task

SIZES = (8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000, 1_000_000, 2_000_000,
         4_000_000)

_KEYS = ("amber-falcon", "blue-orchid", "copper-lantern", "silent-harbor", "velvet-comet",
         "northern-maple", "crimson-otter", "hollow-pine", "golden-thistle", "misty-glacier")


def make_sniah(size_tokens: int, seed: int = 0, depth: float | None = None,
               haystack: str | None = None, context_id: str | None = None) -> Task:
    """A context of about ``size_tokens`` tokens with one needle at relative ``depth`` (0..1).

    ``depth`` defaults to a seeded value in [0.3, 0.95] so the needle usually lies beyond what
    a truncated plain call can see once the context exceeds the window. ``haystack`` replaces
    the generated prose with given text (the needle goes on its own line between two lines),
    e.g. an OOLONG log, so several task families can share one context.
    """
    rng = random.Random(f"sniah-{size_tokens}-{seed}")
    key = rng.choice(_KEYS)
    number = str(rng.randint(1_000_000, 9_999_999))
    if depth is None:
        depth = rng.uniform(0.3, 0.95)
    needle = f"The special magic number for {key} is {number}."
    sep = "\n" if haystack is not None else "\n\n"
    paragraphs = (haystack.split(sep) if haystack is not None
                  else prose(rng, int(size_tokens * CHARS_PER_TOKEN)))
    at = min(len(paragraphs), max(0, round(depth * len(paragraphs))))
    paragraphs.insert(at, needle)
    context = sep.join(paragraphs)
    question = (f"What is the special magic number for {key} mentioned in the context? "
                "Answer with the number only.")
    tid = f"sniah-{size_tokens}-s{seed}"
    return Task(task_id=tid, family="sniah", kind="needle", question=question, answer=number,
                context=context, context_id=context_id or tid, target_tokens=size_tokens,
                meta={"key": key, "depth": round(depth, 3), "needle": needle})
