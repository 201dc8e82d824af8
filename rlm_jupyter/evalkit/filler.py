"""Deterministic filler prose: the haystack for needles and the text of records.

Generated from a seed with a fixed vocabulary, so datasets of any size are reproducible without
shipping data files, and no sentence can accidentally contain a needle or a label.
"""

from __future__ import annotations

import random

# Planning estimates measured with the Qwen2.5 tokenizer (runners report measured counts):
# this prose is ~5.1 characters per token; records full of digits are ~2.6.
CHARS_PER_TOKEN = 5.1
RECORD_CHARS_PER_TOKEN = 2.6

_SUBJECTS = ("the committee", "a traveller", "the old bridge", "our neighbour", "the river",
             "a quiet village", "the museum", "the garden", "an engineer", "the library",
             "the market", "a small boat", "the mountain road", "the orchestra", "a farmer",
             "the lighthouse", "the new school", "a painter", "the harbour", "the forest")
_VERBS = ("described", "remembered", "visited", "repaired", "ignored", "celebrated", "measured",
          "painted", "followed", "discussed", "crossed", "opened", "studied", "planted",
          "carried", "watched", "built", "sold", "found", "forgot")
_OBJECTS = ("the morning light", "a wooden table", "the autumn harvest", "an empty street",
            "the northern hills", "a faded map", "the evening train", "a basket of apples",
            "the stone wall", "a long letter", "the winter coat", "a quiet afternoon",
            "the copper kettle", "the last chapter", "a narrow path", "the spring festival",
            "a broken clock", "the wide field", "a silver spoon", "the distant coast")
_TAILS = ("before the rain began", "after a long day", "with great care", "without a word",
          "near the old well", "for the first time", "in the late summer", "as usual",
          "despite the wind", "while the bells rang", "under a grey sky", "at dawn",
          "with a few friends", "on a slow Sunday", "by the open window", "again and again")


def sentence(rng: random.Random) -> str:
    s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    if rng.random() < 0.7:
        s += f" {rng.choice(_TAILS)}"
    return s[0].upper() + s[1:] + "."


def paragraph(rng: random.Random, sentences: int | None = None) -> str:
    n = sentences or rng.randint(3, 7)
    return " ".join(sentence(rng) for _ in range(n))


def prose(rng: random.Random, target_chars: int) -> list[str]:
    """Paragraphs whose total length (joined by blank lines) is about ``target_chars``."""
    out: list[str] = []
    total = 0
    while total < target_chars:
        p = paragraph(rng)
        out.append(p)
        total += len(p) + 2
    return out


def short_text(rng: random.Random, words: int = 8) -> str:
    """A short free-text field for records."""
    vocab = [w for part in (_SUBJECTS, _VERBS, _OBJECTS) for item in part for w in item.split()]
    return " ".join(rng.choice(vocab) for _ in range(words)).capitalize()
