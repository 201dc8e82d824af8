"""Generators know their answers and scorers grade them as documented (fast, no model)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from rlm_jupyter.evalkit import (SNIAH_SIZES, Outcome, TokenCounter, build_dataset, make_all,
                                 make_pairs, make_sniah, markdown_table, parse_pairs,
                                 replace_section, score, score_exact, score_needle,
                                 score_number, score_pairs, truncate_to_tokens)
from rlm_jupyter.evalkit.oolong import RARE_LABEL


def _records(context: str) -> list[dict[str, str]]:
    pat = re.compile(r"user: (\d+) \| label: ([a-z ]+) \|")
    return [{"user": m.group(1), "label": m.group(2)} for m in pat.finditer(context)]


def test_sniah_needle_is_in_context_once_and_answer_matches() -> None:
    task = make_sniah(8_000, seed=3)
    assert task.context.count(task.meta["needle"]) == 1
    found = re.findall(rf"magic number for {task.meta['key']} is (\d+)", task.context)
    assert found == [task.answer]
    # Size is planned at ~5.1 chars per token (Qwen2.5 tokenizer on this prose).
    assert 0.9 * 40_800 < len(task.context) < 1.2 * 40_800


def test_sniah_is_deterministic_and_seed_dependent() -> None:
    a, b, c = make_sniah(8_000, 1), make_sniah(8_000, 1), make_sniah(8_000, 2)
    assert a.context == b.context and a.answer == b.answer
    assert a.context != c.context


def test_sniah_depth_places_needle() -> None:
    early = make_sniah(16_000, depth=0.0)
    late = make_sniah(16_000, depth=1.0)
    assert early.context.index(early.meta["needle"]) < 100
    assert late.context.rindex(late.meta["needle"]) > len(late.context) - 200


def test_sniah_sizes_cover_8k_to_4m() -> None:
    assert SNIAH_SIZES[0] == 8_000 and SNIAH_SIZES[-1] == 4_000_000


@pytest.mark.slow
def test_sniah_4m_builds() -> None:
    task = make_sniah(4_000_000)
    assert len(task.context) > 15_000_000 and task.answer in task.context


def test_oolong_answers_match_an_independent_count() -> None:
    tasks = {t.task_id.rsplit("-s0-", 1)[1]: t for t in make_all(16_000, seed=0)}
    recs = _records(tasks["count"].context)
    labels = Counter(r["label"] for r in recs)
    count = tasks["count"]
    assert count.answer == labels[count.meta["label"]]
    top = tasks["most-frequent"]
    assert top.answer == max((k for k in labels if k != RARE_LABEL), key=labels.__getitem__)
    uc = tasks["user-count"]
    assert uc.answer == sum(1 for r in recs
                            if r["user"] == str(uc.meta["user"]) and r["label"] == uc.meta["label"])
    ut = tasks["user-top"]
    user_labels = Counter(r["label"] for r in recs if r["user"] == str(ut.meta["user"]))
    assert ut.answer == user_labels.most_common(1)[0][0]
    assert len({t.context_id for t in tasks.values()}) == 1


def test_pairs_answer_is_every_pair_of_rare_label_users() -> None:
    task = make_pairs(16_000, seed=1)
    users = sorted({int(r["user"]) for r in _records(task.context) if r["label"] == RARE_LABEL})
    expected = [[a, b] for i, a in enumerate(users) for b in users[i + 1:]]
    assert task.answer == expected and len(users) == 5


def test_dataset_size_scales() -> None:
    small, big = build_dataset(8_000), build_dataset(64_000)
    assert 6 < len(big.context) / len(small.context) < 10


@pytest.mark.parametrize("pred, gold, expected", [
    ("billing", "billing", 1.0),
    ("  Billing.", "billing", 1.0),
    ("FINAL(bug report)", "bug report", 1.0),
    ("The label is: praise", "praise", 1.0),
    ("praise", "billing", 0.0),
    ("", "billing", 0.0),
    (None, "billing", 0.0),
    ("billing, praise, question and complaint are all common here", "billing", 0.0),
])
def test_score_exact(pred: object, gold: str, expected: float) -> None:
    assert score_exact(pred, gold) == expected


def test_score_exact_with_a_closed_label_set() -> None:
    plans = ["basic", "student", "premium"]
    long = "The customer with id C-78273 is on a student plan, as its record line says."
    assert score_exact(long, "student") == 0.0  # too long without the label set
    assert score_exact(long, "student", plans) == 1.0
    assert score_exact("student or premium, the record is unclear", "student", plans) == 0.0
    assert score_exact("basic", "student", plans) == 0.0
    assert score("exact", long, "student", plans) == 1.0


def test_score_number_is_075_power_error() -> None:
    assert score_number("42", 42) == 1.0
    assert score_number("There are 44 records.", 42) == pytest.approx(0.75 ** 2)
    assert score_number("1,024", 1024) == 1.0
    assert score_number("no idea", 42) == 0.0
    assert score_number(None, 3) == 0.0


def test_score_needle_rejects_competing_values() -> None:
    assert score_needle("7634547", "7634547") == 1.0
    assert score_needle("The number is 7,634,547.", "7634547") == 1.0
    assert score_needle("7634547 or 1234567", "7634547") == 0.0
    assert score_needle("1234567", "7634547") == 0.0


def test_pairs_parsing_and_f1() -> None:
    assert parse_pairs("1,2\n(3, 4)\n[6 - 5]") == {(1, 2), (3, 4), (5, 6)}
    assert parse_pairs("[('4115', '9382'), (\"7\", \"8\")]") == {(4115, 9382), (7, 8)}
    gold = [[1, 2], [1, 3], [2, 3], [3, 4]]
    assert score_pairs("1,2\n1,3\n2,3\n3,4", gold) == 1.0
    assert score_pairs("2,1\n3,1", gold) == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert score_pairs("9,8", gold) == 0.0
    assert score_pairs("", gold) == 0.0
    assert score("pairs", "1,2", gold) == score_pairs("1,2", gold)
    with pytest.raises(ValueError, match="Unknown task kind"):
        score("nope", "x", "y")


def test_truncate_to_tokens_keeps_the_head_within_budget() -> None:
    counter = TokenCounter(None, chars_per_token=4.0)
    text = "\n".join(f"line {i} " + "x" * 30 for i in range(2_000))
    head, n = truncate_to_tokens(text, 1_000, counter)
    assert n <= 1_000 and text.startswith(head) and len(head) > 3_500
    same, _ = truncate_to_tokens("short", 1_000, counter)
    assert same == "short"


def test_replace_section_only_touches_its_section(tmp_path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n## Speed\n\nfast\n\n## Evaluation kit\n\nold\n\n## Memory\n\nlow\n")
    replace_section(path, "new table")
    text = path.read_text()
    assert "old" not in text and "new table" in text
    assert "## Speed\n\nfast" in text and "## Memory\n\nlow" in text
    replace_section(tmp_path / "fresh.md", "body")
    assert "## Evaluation kit\n\nbody" in (tmp_path / "fresh.md").read_text()


def test_markdown_table_marks_tasks_over_the_window() -> None:
    o = Outcome(task_id="t", family="sniah", method="rlm", target_tokens=32_000,
                context_tokens=30_000, answer="1", prediction="1", score=1.0, prompt_tokens=10,
                completion_tokens=5, wall_s=2.0)
    table = markdown_table([o], window=8_192)
    assert "| sniah | 30,000 | yes | rlm | 1 | 1.00 | 15 |" in table


def test_shared_context_keeps_every_answer_valid() -> None:
    from rlm_jupyter.evalkit import make_shared

    tasks = make_shared(16_000, seed=2)
    assert {t.family for t in tasks} == {"sniah", "oolong", "pairs"}
    assert len({t.context_id for t in tasks}) == 1 and len({id(t.context) for t in tasks}) == 1
    needle = tasks[0]
    assert needle.meta["needle"] in needle.context.splitlines()
    by_id = {t.task_id.split("-s2-", 1)[-1]: t for t in tasks}
    recs = _records(needle.context)
    count = by_id["count"]
    assert count.answer == sum(1 for r in recs if r["label"] == count.meta["label"])
