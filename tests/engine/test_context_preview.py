"""Where the question's key words occur: counted over all of the text, lines cut and bounded."""

from __future__ import annotations

from rlm_jupyter.engine.context import lines_containing


def test_counts_every_occurrence_and_shows_whole_lines():
    text = "alpha\n" + "x needle y\n" * 30 + "needle at the end"
    count, lines = lines_containing(text, "needle", limit=10)
    assert count == 31
    assert lines == ["x needle y"] * 10


def test_a_hit_on_the_first_or_last_line_and_long_lines():
    text = "needle first\nmiddle\n" + "z" * 500 + " needle"
    count, lines = lines_containing(text, "needle", limit=5, width=20)
    assert count == 2
    assert lines == ["needle first", "z" * 20 + "..."]


def test_two_hits_on_one_line_show_the_line_once():
    count, lines = lines_containing("a needle and a needle\nb needle", "needle")
    assert count == 3 and lines == ["a needle and a needle", "b needle"]


def test_no_hit():
    assert lines_containing("nothing here", "needle") == (0, [])
