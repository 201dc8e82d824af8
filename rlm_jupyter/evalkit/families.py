"""Task families a data scientist meets (issue 18): each builds a context of about ``chars``
characters (beyond a small model's window at the default 48,000) and knows its exact answer.

- ``records``  -- a record lookup in structured ``key=value`` lines ("plan of customer C-48213").
- ``csv``      -- an aggregate over CSV text with a month and category filter.
- ``frame``    -- the same over a pandas DataFrame (``task.meta["as_frame"]``: the runner loads the
  CSV text into a DataFrame for the RLM; the plain call sees the CSV text, as a user would paste).
- ``needles``  -- a composition of several needles (the sum of three vaults' codes, among decoys).
- ``logs``     -- a filtered count over log lines (level, service and hour).

Numbers are integers so the answers are exact; the scorers are those of :mod:`.scoring`.
"""

from __future__ import annotations

import datetime as _dt
import random

from .filler import sentence
from .tasks import Task

DEFAULT_CHARS = 48_000
FAMILIES = ("records", "csv", "frame", "needles", "logs")

_FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
          "Kira", "Liam", "Mara", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara")
_LAST = ("Moreau", "Okafor", "Lindqvist", "Tanaka", "Silva", "Novak", "Haddad", "Kowalski",
         "Ferreira", "Brandt", "Costa", "Ivanova", "Mensah", "Rossi", "Schmidt", "Yilmaz")
_CITIES = ("Lyon", "Porto", "Gdansk", "Leeds", "Turin", "Ghent", "Bergen", "Brno", "Cork", "Graz")
PLANS = ("basic", "standard", "premium", "enterprise", "student", "nonprofit")
REGIONS = ("north", "south", "east", "west")
CATEGORIES = ("books", "toys", "garden", "kitchen", "sports", "music")
SERVICES = ("auth", "payments", "search", "billing", "gateway", "storage")
LEVELS = ("INFO", "DEBUG", "WARN", "ERROR")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def _rng(family: str, chars: int, seed: int) -> random.Random:
    return random.Random(f"{family}-{chars}-{seed}")


def make_records(chars: int = DEFAULT_CHARS, seed: int = 0) -> Task:
    """Customer records, one per line; the question asks one field of one id."""
    rng = _rng("records", chars, seed)
    lines: list[str] = []
    ids = rng.sample(range(10_000, 99_999), max(50, chars // 90))
    rows = []
    for cid in ids:
        row = {"id": f"C-{cid}", "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
               "city": rng.choice(_CITIES), "plan": rng.choice(PLANS),
               "since": (_dt.date(2018, 1, 1) + _dt.timedelta(days=rng.randrange(2900))).isoformat(),
               "seats": rng.randrange(1, 400)}
        rows.append(row)
        lines.append(" | ".join(f"{k}={v}" for k, v in row.items()))
        if sum(map(len, lines)) + len(lines) >= chars:
            break
    # The target sits past the middle, so a context cut to a small window never shows it.
    target = rows[rng.randrange(int(len(rows) * 0.6), len(rows))]
    return Task(task_id=f"records-{chars}-s{seed}", family="records", kind="exact",
                question=f"What plan is the customer with id {target['id']} on?",
                answer=target["plan"], context="\n".join(lines),
                context_id=f"records-{chars}-s{seed}", target_tokens=chars // 3,
                meta={"id": target["id"], "rows": len(rows), "labels": list(PLANS)})


def _sales(chars: int, seed: int) -> tuple[list[dict], str]:
    rng = _rng("sales", chars, seed)
    rows: list[dict] = []
    lines = ["date,region,category,units,amount"]
    size = len(lines[0])
    start = _dt.date(2026, 1, 1)
    while size < chars:
        row = {"date": (start + _dt.timedelta(days=rng.randrange(181))).isoformat(),
               "region": rng.choice(REGIONS), "category": rng.choice(CATEGORIES),
               "units": rng.randrange(1, 20), "amount": rng.randrange(5, 900)}
        rows.append(row)
        line = ",".join(str(v) for v in row.values())
        lines.append(line)
        size += len(line) + 1
    return rows, "\n".join(lines)


def make_csv(chars: int = DEFAULT_CHARS, seed: int = 0) -> Task:
    """Total amount of one category in one month (the filter a 1.5B model got wrong: the month,
    not its first day)."""
    rows, text = _sales(chars, seed)
    rng = _rng("csv-q", chars, seed)
    month, category = rng.randrange(1, 7), rng.choice(CATEGORIES)
    total = sum(r["amount"] for r in rows
                if r["category"] == category and r["date"].startswith(f"2026-{month:02d}-"))
    return Task(task_id=f"csv-{chars}-s{seed}", family="csv", kind="number",
                question=(f"In this CSV of sales, what is the total amount for category "
                          f"'{category}' in {_MONTHS[month - 1]} 2026?"),
                answer=total, context=text, context_id=f"sales-{chars}-s{seed}",
                target_tokens=chars // 3, meta={"month": month, "category": category})


def make_frame(chars: int = DEFAULT_CHARS, seed: int = 0) -> Task:
    """Total units of one region in one category over a DataFrame (same sales, other filter)."""
    rows, text = _sales(chars, seed)
    rng = _rng("frame-q", chars, seed)
    region, category = rng.choice(REGIONS), rng.choice(CATEGORIES)
    after = _dt.date(2026, rng.randrange(2, 5), 1).isoformat()
    total = sum(r["units"] for r in rows if r["region"] == region
                and r["category"] == category and r["date"] >= after)
    return Task(task_id=f"frame-{chars}-s{seed}", family="frame", kind="number",
                question=(f"`context` is a DataFrame of sales. What is the total number of units "
                          f"sold in region '{region}' for category '{category}' on or after "
                          f"{after}?"),
                answer=total, context=text, context_id=f"sales-{chars}-s{seed}",
                target_tokens=chars // 3,
                meta={"as_frame": True, "region": region, "category": category, "after": after})


def make_needles(chars: int = DEFAULT_CHARS, seed: int = 0) -> Task:
    """Three vault codes spread through prose, with decoy vaults; the answer is their sum."""
    rng = _rng("needles", chars, seed)
    names = rng.sample([f"{w}-{n}" for w in ("ALPHA", "BRAVO", "CEDAR", "DELTA", "EMBER",
                                              "FJORD", "GROVE", "HAVEN") for n in range(2, 10)],
                       7)
    codes = {name: rng.randrange(100, 999) for name in names}
    asked = names[:3]
    parts: list[str] = []
    size = 0
    while size < chars:
        s = sentence(rng)
        parts.append(s)
        size += len(s) + 1
    slots = sorted(rng.sample(range(len(parts) // 10, len(parts)), len(names)))
    order = names[:]
    rng.shuffle(order)
    for slot, name in zip(slots, order):
        parts[slot] = f"The access code for vault {name} is {codes[name]}."
    # Prose in lines of ~10 sentences, the needles each on their own line.
    lines, cur = [], []
    for p in parts:
        if p.startswith("The access code"):
            if cur:
                lines.append(" ".join(cur))
                cur = []
            lines.append(p)
        else:
            cur.append(p)
            if len(cur) == 10:
                lines.append(" ".join(cur))
                cur = []
    if cur:
        lines.append(" ".join(cur))
    return Task(task_id=f"needles-{chars}-s{seed}", family="needles", kind="number",
                question=(f"What is the sum of the access codes of vaults {asked[0]}, {asked[1]} "
                          f"and {asked[2]}?"),
                answer=sum(codes[n] for n in asked), context="\n".join(lines),
                context_id=f"needles-{chars}-s{seed}", target_tokens=chars // 5,
                meta={"codes": {n: codes[n] for n in asked}})


def make_logs(chars: int = DEFAULT_CHARS, seed: int = 0) -> Task:
    """Count of one level from one service from one hour of the day on."""
    rng = _rng("logs", chars, seed)
    day = _dt.date(2026, 3, rng.randrange(1, 28))
    lines: list[str] = []
    entries = []
    size = 0
    t = _dt.datetime.combine(day, _dt.time(6, 0))
    while size < chars:
        t += _dt.timedelta(seconds=rng.randrange(5, 40))
        level = rng.choices(LEVELS, weights=(6, 3, 2, 1))[0]
        service = rng.choice(SERVICES)
        msg = rng.choice(("request handled", "cache miss", "retrying upstream", "timeout",
                          "connection reset", "user session renewed", "slow query"))
        line = (f"{t.isoformat(timespec='seconds')} {level:<5} [{service}] {msg} "
                f"req={rng.randrange(10**5, 10**6)}")
        entries.append((t, level, service))
        lines.append(line)
        size += len(line) + 1
    hours = sorted({e[0].hour for e in entries})
    hour = hours[min(len(hours) - 1, 1 + rng.randrange(max(1, len(hours) // 3)))]
    service = rng.choice(SERVICES)
    count = sum(1 for (ts, lv, sv) in entries if lv == "ERROR" and sv == service
                and ts.hour >= hour)
    return Task(task_id=f"logs-{chars}-s{seed}", family="logs", kind="number",
                question=(f"How many ERROR lines from the {service} service are there at or "
                          f"after {hour:02d}:00:00?"),
                answer=count, context="\n".join(lines), context_id=f"logs-{chars}-s{seed}",
                target_tokens=chars // 3, meta={"hour": hour, "service": service})


MAKERS = {"records": make_records, "csv": make_csv, "frame": make_frame,
          "needles": make_needles, "logs": make_logs}


def make_family(family: str, chars: int = DEFAULT_CHARS, seed: int = 0) -> Task:
    try:
        return MAKERS[family](chars, seed)
    except KeyError:
        raise ValueError(f"Unknown family {family!r}; use one of {', '.join(MAKERS)}") from None


def as_frame(text: str):
    """The DataFrame a ``frame`` task's RLM gets (pandas is imported here only)."""
    import io

    import pandas as pd

    return pd.read_csv(io.StringIO(text))
