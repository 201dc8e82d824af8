"""Scorers: exact match, 0.75**|error| for numbers, F1 for pair sets, needle retrieval.

Models wrap answers in prose, quotes, ``FINAL(...)`` or code fences; each scorer first extracts
what the question asked for, so formatting noise does not count as a wrong answer but a wrong
value (or several competing values) does.
"""

from __future__ import annotations

import re
from typing import Any

_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def normalize(text: Any) -> str:
    s = "" if text is None else str(text)
    s = re.sub(r"```\w*", " ", s)
    s = s.strip().lower()
    m = re.fullmatch(r"final(?:_var)?\((.*)\)", s, re.S)
    if m:
        s = m.group(1)
    s = re.sub(r"^(the )?(answer|label)( is)?[:\s]+", "", s)
    s = s.strip(" \t\n\"'`.,;:!()[]{}*")
    return re.sub(r"\s+", " ", s)


def score_exact(pred: Any, gold: Any, labels: list[str] | None = None) -> float:
    """1.0 when the normalized prediction equals the gold answer; also when the prediction is
    a short phrase containing the gold answer and no other candidate is given.

    ``labels``: the task's closed answer set (a plan, a category). A sentence of any length
    that names the gold label and no other label is right ("The customer is on a student
    plan."): it cannot mean another answer."""
    p, g = normalize(pred), normalize(gold)
    if not p:
        return 0.0
    if p == g:
        return 1.0
    named = re.search(rf"\b{re.escape(g)}\b", p)
    if named and labels:
        others = [normalize(x) for x in labels if normalize(x) != g]
        return 0.0 if any(re.search(rf"\b{re.escape(o)}\b", p) for o in others) else 1.0
    return 1.0 if (len(p) <= len(g) + 30 and named) else 0.0


def extract_number(pred: Any) -> float | None:
    """The number the prediction states (the last one: models put the conclusion last)."""
    s = "" if pred is None else str(pred).replace(",", "")
    nums = _NUM.findall(s)
    if not nums:
        return None
    return float(nums[-1])


def score_number(pred: Any, gold: Any) -> float:
    """OOLONG's numeric score: 0.75 ** |prediction - gold| (0 when no number is given)."""
    value = extract_number(pred)
    if value is None:
        return 0.0
    return float(0.75 ** abs(value - float(gold)))


def score_needle(pred: Any, gold: Any) -> float:
    """1.0 when the gold value appears and no other number of the same length competes."""
    s = "" if pred is None else str(pred).replace(",", "")
    g = str(gold)
    nums = re.findall(r"\d+", s)
    if g not in nums:
        return 0.0
    rivals = {n for n in nums if len(n) == len(g) and n != g}
    return 0.0 if rivals else 1.0


def parse_pairs(pred: Any) -> set[tuple[int, int]]:
    """Unordered integer pairs written as ``a,b``, ``(a, b)``, ``a - b`` or ``[a, b]``, the
    numbers quoted or not (``('4115', '9382')``, as Python prints a tuple of strings)."""
    s = "" if pred is None else re.sub(r"['\"]", "", str(pred))
    out = set()
    for a, b in re.findall(r"(\d+)\s*(?:,|-|and|&|/|\s)\s*(\d+)", s):
        x, y = int(a), int(b)
        if x != y:
            out.add((min(x, y), max(x, y)))
    return out


def score_pairs(pred: Any, gold: Any) -> float:
    """F1 between the predicted and gold sets of unordered pairs."""
    gold_set = {(min(a, b), max(a, b)) for a, b in gold}
    got = parse_pairs(pred)
    if not gold_set and not got:
        return 1.0
    if not got or not gold_set:
        return 0.0
    tp = len(got & gold_set)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(got), tp / len(gold_set)
    return 2 * precision * recall / (precision + recall)


SCORERS = {"exact": score_exact, "number": score_number, "needle": score_needle,
           "pairs": score_pairs}


def score(kind: str, pred: Any, gold: Any, labels: list[str] | None = None) -> float:
    """``labels``: a closed answer set, for ``exact`` tasks that have one."""
    try:
        fn = SCORERS[kind]
    except KeyError:
        raise ValueError(f"Unknown task kind {kind!r}; expected one of {sorted(SCORERS)}") from None
    return score_exact(pred, gold, labels) if kind == "exact" and labels else fn(pred, gold)
