"""Question interpolation and context resolution (pure functions behind the magic)."""

from __future__ import annotations

import pytest

from rlm_jupyter.commands.context import (ContextError, interpolate, resolve_context,
                                          split_options)


def test_interpolation_never_crashes_on_braces() -> None:
    ns = {"name": "Ada", "d": {"k": "v"}, "xs": [1, 2], "obj": type("O", (), {"a": 5})()}
    q = "Hi {name}, {d['k']} {xs[1]} {obj.a} {{name}} {missing} {'json': {1: 2}} {} {0} f'{x!r}' }{"
    out = interpolate(q, ns)
    assert out == "Hi Ada, v 2 5 {name} {missing} {'json': {1: 2}} {} {0} f'{x!r}' }{"


def test_interpolation_refuses_private_attributes() -> None:
    assert interpolate("{o.__class__}", {"o": object()}) == "{o.__class__}"


def test_context_expressions(tmp_path) -> None:
    ns = {"doc": "text", "n": 3}
    assert resolve_context("doc", [], ns) == "text"
    assert resolve_context("doc * n", [], ns) == "texttexttext"
    assert resolve_context(None, ["a=doc", "b=n"], ns) == {"a": "text", "b": 3}
    assert resolve_context(None, [], ns) is None


def test_context_files_and_globs(tmp_path, monkeypatch) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.md").write_text("gamma")
    monkeypatch.chdir(tmp_path)
    assert resolve_context("a.txt", [], {}) == "alpha"  # unquoted path
    assert resolve_context("'a.txt'", [], {}) == "alpha"  # quoted path
    got = resolve_context("*.txt", [], {})
    assert got == {"a.txt": "alpha", "b.txt": "beta"}
    got = resolve_context("p", [], {"p": tmp_path / "sub"})
    assert list(got.values()) == ["gamma"]


@pytest.mark.parametrize("spec,pairs,match", [
    ("nope", [], "unknown variable 'nope'"),
    ("nosuch.txt", [], "neither a notebook expression .* nor a file"),
    ("1/0", [], "ZeroDivisionError"),
    ("a b", [], "not a Python expression"),
    ("missing/*.txt", [], "nor a file, directory or glob"),
    ("x", ["a=x"], "either --context"),
    (None, ["=x"], "Expected NAME=EXPR"),
    (None, ["a="], "Expected NAME=EXPR"),
    ("  ", [], "empty"),
])
def test_context_errors_are_one_line(spec, pairs, match) -> None:
    with pytest.raises(ContextError, match=match) as info:
        resolve_context(spec, pairs, {"x": 1})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("line,words", [
    ('--context "b"', ["--context", "b"]),
    ("--context 'nosuch.txt'", ["--context", "nosuch.txt"]),
    ('--context df.query("x > 5") --out r', ["--context", 'df.query("x > 5")', "--out", "r"]),
    ('--context "df[df.x > 5]"', ["--context", "df[df.x > 5]"]),
    ("--context \"{'a': a, 'b': b}\"", ["--context", "{'a': a, 'b': b}"]),
    ("--context dict(a=a, b=b)", ["--context", "dict(a=a, b=b)"]),
    ("--context \"'some text'\"", ["--context", "'some text'"]),
    ("--context \"'a' + 'b'\"", ["--context", "'a' + 'b'"]),
    ("a='x y' b=z", ["a='x y'", "b=z"]),
])
def test_quotes_and_brackets_group_words_and_never_make_a_literal(line, words) -> None:
    assert split_options(line) == words


def test_an_unclosed_quote_is_an_error() -> None:
    with pytest.raises(ValueError, match="never closed"):
        split_options('--context "df')


def test_a_quoted_context_is_read_as_the_expression_or_the_path(tmp_path, monkeypatch) -> None:
    """The found bug: --context "b" ran on the one-character string 'b'."""
    (tmp_path / "notes.txt").write_text("from disk")
    monkeypatch.chdir(tmp_path)
    ns = {"b": [1, 2, 3], "a": "A"}
    assert resolve_context(split_options('--context "b"')[1], [], ns) == [1, 2, 3]
    assert resolve_context(split_options('--context "notes.txt"')[1], [], ns) == "from disk"
    assert resolve_context(split_options("--context \"dict(a=a, b=b)\"")[1], [], ns) == \
        {"a": "A", "b": [1, 2, 3]}
    assert resolve_context(split_options("--context \"'just text'\"")[1], [], ns) == \
        "just text"
    with pytest.raises(ContextError, match="neither a notebook expression"):
        resolve_context(split_options("--context 'nosuch.txt'")[1], [], ns)
    assert resolve_context(None, ["x='a'"], ns) == {"x": "A"}
