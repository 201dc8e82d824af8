"""The data-science families (issue 18) know their exact answers: each is recomputed here from
the context text alone, the way a correct program would (fast, no model)."""

from __future__ import annotations

import csv
import io
import re

import pytest

from rlm_jupyter.evalkit import score
from rlm_jupyter.evalkit.families import (DEFAULT_CHARS, FAMILIES, MAKERS, as_frame,
                                          make_family)

_MONTHS = ["January", "February", "March", "April", "May", "June"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contexts_are_beyond_an_8k_window_and_reproducible(family, seed):
    task = make_family(family, seed=seed)
    assert 0.95 * DEFAULT_CHARS <= len(task.context) <= 1.05 * DEFAULT_CHARS
    assert len(task.context) / 4.0 > 8192  # beyond n_ctx 8192 at any tokenizer's ~4 chars
    again = make_family(family, seed=seed)
    assert (again.context, again.answer, again.question) == (task.context, task.answer,
                                                             task.question)
    assert make_family(family, seed=seed + 7).context != task.context
    assert task.family == family and task.task_id.startswith(family)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="records"):
        make_family("nope")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_records_answer_is_the_one_line_with_that_id(seed):
    t = make_family("records", seed=seed)
    cid = re.search(r"id (C-\d+)", t.question).group(1)
    lines = [ln for ln in t.context.splitlines() if ln.startswith(f"id={cid} ")]
    assert len(lines) == 1
    assert re.search(r"plan=(\w+)", lines[0]).group(1) == t.answer
    # Past the head a plain call sees in an 8k window (~29k chars at 3.6 chars a token).
    assert t.context.index(lines[0]) > 29_000


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_csv_answer_is_the_month_total(seed):
    t = make_family("csv", seed=seed)
    cat = re.search(r"category '(\w+)'", t.question).group(1)
    month = _MONTHS.index(re.search(r"in (\w+) 2026", t.question).group(1)) + 1
    rows = list(csv.DictReader(io.StringIO(t.context)))
    want = sum(int(r["amount"]) for r in rows
               if r["category"] == cat and r["date"].startswith(f"2026-{month:02d}-"))
    assert want == t.answer
    first_day = sum(int(r["amount"]) for r in rows
                    if r["category"] == cat and r["date"] == f"2026-{month:02d}-01")
    assert first_day != t.answer  # the wrong filter of issue 18 gives a wrong answer


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frame_answer_from_pandas(seed):
    t = make_family("frame", seed=seed)
    assert t.meta["as_frame"] and t.context_id == make_family("csv", seed=seed).context_id
    df = as_frame(t.context)
    m = t.meta
    want = df[(df.region == m["region"]) & (df.category == m["category"])
              & (df.date >= m["after"])].units.sum()
    assert int(want) == t.answer


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_needles_sum_three_codes_among_decoys(seed):
    t = make_family("needles", seed=seed)
    names = re.findall(r"[A-Z]+-\d", t.question)
    codes = dict(re.findall(r"vault ([A-Z]+-\d) is (\d+)", t.context))
    assert len(codes) == 7 and len(names) == 3  # 4 decoys
    assert sum(int(codes[n]) for n in names) == t.answer
    for n in names:
        assert t.context.count(f"vault {n} is") == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logs_count(seed):
    t = make_family("logs", seed=seed)
    service = re.search(r"from the (\w+) service", t.question).group(1)
    hour = int(re.search(r"after (\d\d):00", t.question).group(1))
    n = sum(1 for ln in t.context.splitlines()
            if f" ERROR [{service}] " in ln and int(ln[11:13]) >= hour)
    assert n == t.answer and n >= 3  # not guessable as 0 or 1


def test_scorers_on_the_new_kinds():
    t = make_family("csv")
    assert score(t.kind, f"The total is {t.answer:,}.", t.answer) == 1.0
    assert score(t.kind, str(t.answer + 50), t.answer) < 0.01
    r = make_family("records")
    assert score(r.kind, f"FINAL({r.answer})", r.answer) == 1.0
    assert score(r.kind, "none", r.answer) == 0.0
    assert set(MAKERS) == set(FAMILIES)
