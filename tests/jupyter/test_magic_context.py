"""Question interpolation and context resolution (pure functions behind the magic)."""

from __future__ import annotations

import pytest

from rlm_jupyter.jupyter._context import ContextError, interpolate, resolve_context


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
    ("nope", [], "Unknown variable 'nope'"),
    ("1/0", [], "ZeroDivisionError"),
    ("a b", [], "not a Python expression"),
    ("missing/*.txt", [], "No files match"),
    ("x", ["a=x"], "either --context"),
    (None, ["=x"], "Expected NAME=EXPR"),
    (None, ["a="], "Expected NAME=EXPR"),
    ("  ", [], "empty"),
])
def test_context_errors_are_one_line(spec, pairs, match) -> None:
    with pytest.raises(ContextError, match=match) as info:
        resolve_context(spec, pairs, {"x": 1})
    assert "\n" not in str(info.value)
