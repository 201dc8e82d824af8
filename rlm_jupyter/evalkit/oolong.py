"""OOLONG-style aggregation and OOLONG-Pairs-style pair queries over labelled records.

Each context is a log of one-line records (id, date, user, label, free text). Questions need
every record, not one: counting a label, the most frequent label, a per-user count, a user's
most frequent label, and pairs of users that share a rare label. A plain call truncated to its
window sees only a prefix and must guess; an RLM can parse and aggregate the whole log in code.

Labels are written into each record, as in OOLONG's labelled variants; the original benchmark's
harder setting (the model must infer each label from the text) is out of scope for models that
run on a laptop CPU. All tasks built from one (size, seed) share ``context_id``.
"""

from __future__ import annotations

import datetime as _dt
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations

from .filler import RECORD_CHARS_PER_TOKEN, short_text
from .tasks import Task

LABELS = ("question", "complaint", "praise", "bug report", "feature request", "billing")
RARE_LABEL = "security incident"
RECORD_CHARS = 110  # average record length, used to plan the record count


@dataclass
class Dataset:
    context: str
    records: list[tuple[int, str, int, str, str]]  # (id, date, user, label, text)
    context_id: str
    size_tokens: int
    seed: int


def _record_line(rid: int, date: str, user: int, label: str, text: str) -> str:
    return f"Record {rid:06d} | date: {date} | user: {user} | label: {label} | text: {text}"


def build_dataset(size_tokens: int, seed: int = 0, *, n_users: int | None = None,
                  rare_users: int = 5) -> Dataset:
    """Records totalling about ``size_tokens`` tokens; label frequencies are skewed and a rare
    label is given to exactly ``rare_users`` users (spread across the whole log)."""
    rng = random.Random(f"oolong-{size_tokens}-{seed}")
    n_records = max(20, int(size_tokens * RECORD_CHARS_PER_TOKEN / RECORD_CHARS))
    n_users = n_users or max(8, min(60, n_records // 12))
    users = rng.sample(range(1000, 9999), n_users)
    # Skewed label weights with a unique maximum, shuffled so the winner varies with the seed.
    weights = [0.30, 0.22, 0.17, 0.13, 0.10, 0.08]
    order = list(LABELS)
    rng.shuffle(order)
    start = _dt.date(2024, 1, 1)
    records = []
    for i in range(n_records):
        date = (start + _dt.timedelta(days=i * 365 // n_records)).isoformat()
        user = rng.choice(users)
        label = rng.choices(order, weights=weights)[0]
        records.append([i + 1, date, user, label, short_text(rng)])
    # Rare label: one to three records for each chosen user, at random places in the log.
    chosen = rng.sample(users, min(rare_users, len(users)))
    for user in chosen:
        for _ in range(rng.randint(1, 3)):
            idx = rng.randrange(len(records))
            records[idx][2] = user
            records[idx][3] = RARE_LABEL
    recs = [tuple(r) for r in records]
    context = "\n".join(_record_line(*r) for r in recs)
    return Dataset(context=context, records=recs,  # type: ignore[arg-type]
                   context_id=f"oolong-{size_tokens}-s{seed}", size_tokens=size_tokens,
                   seed=seed)


def _unique_top(counter: Counter) -> str | None:
    top = counter.most_common(2)
    if not top or (len(top) > 1 and top[0][1] == top[1][1]):
        return None
    return str(top[0][0])


def make_oolong(size_tokens: int, seed: int = 0) -> list[Task]:
    """Four aggregation tasks (count, most frequent, per-user count, per-user most frequent)."""
    ds = build_dataset(size_tokens, seed)
    rng = random.Random(f"oolong-q-{size_tokens}-{seed}")
    labels = Counter(r[3] for r in ds.records)
    by_user: dict[int, Counter] = defaultdict(Counter)
    for r in ds.records:
        by_user[r[2]][r[3]] += 1
    common = dict(context=ds.context, context_id=ds.context_id, target_tokens=size_tokens)
    tasks: list[Task] = []
    label = rng.choice(LABELS)
    tasks.append(Task(
        task_id=f"{ds.context_id}-count", family="oolong", kind="number",
        question=f"How many records in the log have the label '{label}'? "
                 "Answer with a single integer.",
        answer=labels[label], meta={"label": label, "records": len(ds.records)}, **common))
    top = _unique_top(Counter({k: v for k, v in labels.items() if k != RARE_LABEL}))
    tasks.append(Task(
        task_id=f"{ds.context_id}-most-frequent", family="oolong", kind="exact",
        question="Which label occurs most often in the log? Answer with the label only.",
        answer=top, meta={"counts": dict(labels)}, **common))
    # Per-user questions: pick a busy user with a unique top label.
    candidates = [u for u, c in sorted(by_user.items()) if _unique_top(c)]
    user = rng.choice(candidates or sorted(by_user))
    ulabel = rng.choice(LABELS)
    tasks.append(Task(
        task_id=f"{ds.context_id}-user-count", family="oolong", kind="number",
        question=f"How many records from user {user} have the label '{ulabel}'? "
                 "Answer with a single integer.",
        answer=by_user[user][ulabel], meta={"user": user, "label": ulabel}, **common))
    tasks.append(Task(
        task_id=f"{ds.context_id}-user-top", family="oolong", kind="exact",
        question=f"Which label appears most often among the records of user {user}? "
                 "Answer with the label only.",
        answer=_unique_top(by_user[user]), meta={"user": user, "counts": dict(by_user[user])},
        **common))
    return [t for t in tasks if t.answer is not None]


def make_pairs(size_tokens: int, seed: int = 0) -> Task:
    """OOLONG-Pairs-style: every pair of users who both have a record with the rare label."""
    ds = build_dataset(size_tokens, seed)
    users = sorted({r[2] for r in ds.records if r[3] == RARE_LABEL})
    pairs = sorted(combinations(users, 2))
    return Task(
        task_id=f"{ds.context_id}-pairs", family="pairs", kind="pairs",
        question=(f"List every pair of user ids (a, b) with a < b such that both users have at "
                  f"least one record labelled '{RARE_LABEL}'. Answer with one pair per line, "
                  "written as a,b."),
        answer=[list(p) for p in pairs], context=ds.context, context_id=ds.context_id,
        target_tokens=size_tokens, meta={"users": users})


def make_all(size_tokens: int, seed: int = 0) -> list[Task]:
    """The aggregation tasks plus the pairs task, all over the same context."""
    return [*make_oolong(size_tokens, seed), make_pairs(size_tokens, seed)]


def make_shared(size_tokens: int, seed: int = 0) -> list[Task]:
    """Every family over ONE context: the OOLONG log with an S-NIAH needle line inserted.

    The needle line is not a record, so the OOLONG answers are unchanged. Sharing the context
    lets a runner pay for one long prompt per size (the server caches the prefix) when it asks
    the plain baseline all questions -- the difference between minutes and an hour on a CPU.
    """
    from .sniah import make_sniah

    tasks = make_all(size_tokens, seed)
    needle = make_sniah(size_tokens, seed, haystack=tasks[0].context,
                        context_id=tasks[0].context_id)
    for t in tasks:
        t.context = needle.context
    return [needle, *tasks]
