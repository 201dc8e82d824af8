"""Pure helpers behind ``%%rlm``: question interpolation and context resolution.

No IPython here (the magic passes the user namespace in), so both are easy to test and reuse.

Interpolation rules (why: questions often contain pasted code or JSON, whose braces must never
crash the cell, unlike ``str.format``):

- ``{name}`` or ``{name.attr}`` / ``{name[0]}`` / ``{name["key"]}`` is replaced by the value
  when ``name`` is a variable in the notebook; anything else in braces is left exactly as written.
- ``{{name}}`` keeps a literal ``{name}`` even when ``name`` is a variable.
- ``--raw`` turns interpolation off entirely.
"""

from __future__ import annotations

import ast
import glob
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from rlm_jupyter.jupyter import messages

_REF = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[(?:-?\d+|'[^'\]]*'|\"[^\"\]]*\")\])*"
_PATTERN = re.compile(r"\{\{(" + _REF + r")\}\}|\{(" + _REF + r")\}")

#: Files read for one context; a glob that matches more is cut with a clear error.
MAX_FILES = 2000
#: Largest string value that is still considered as a possible path.
_MAX_PATH_LEN = 4096


class ContextError(ValueError):
    """A user mistake in the context or question; the message is one actionable line."""


def _lookup(ref: str, ns: Mapping[str, Any]) -> tuple[bool, Any]:
    """Resolve ``name.attr[0]`` without ``eval``: attributes and literal subscripts only."""
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", ref)
    assert m is not None
    name = m.group(0)
    if name not in ns:
        return False, None
    value = ns[name]
    rest = ref[m.end():]
    for part in re.finditer(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([^\]]*)\]", rest):
        try:
            if part.group(1) is not None:
                if part.group(1).startswith("_"):
                    return False, None
                value = getattr(value, part.group(1))
            else:
                value = value[ast.literal_eval(part.group(2))]
        except Exception:
            return False, None
    return True, value


def interpolate(question: str, ns: Mapping[str, Any]) -> str:
    """Replace ``{var}`` references to notebook variables; never raises on other braces."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:  # {{name}} -> literal {name}
            return "{" + m.group(1) + "}"
        found, value = _lookup(m.group(2), ns)
        return str(value) if found else m.group(0)

    return _PATTERN.sub(sub, question)


def _looks_like_path(text: str) -> bool:
    if not text or len(text) > _MAX_PATH_LEN or "\n" in text:
        return False
    if glob.has_magic(text):
        return True
    return os.path.exists(os.path.expanduser(text))


def read_files(pattern: str, where: str = "--context") -> Any:
    """A path, a directory (all files below it) or a glob → str (one file) or {path: text}."""
    expanded = os.path.expanduser(pattern)
    if os.path.isdir(expanded):
        paths = sorted(str(p) for p in Path(expanded).rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.parts))
    elif glob.has_magic(expanded):
        paths = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
    else:
        paths = [expanded] if os.path.isfile(expanded) else []
    if not paths:
        raise ContextError(messages.NO_FILES.format(pattern=pattern, where=where))
    if len(paths) > MAX_FILES:
        raise ContextError(f"{pattern!r} matches {len(paths):,} files (more than {MAX_FILES}): "
                           "narrow the glob.")
    texts = {p: Path(p).read_text(encoding="utf-8", errors="replace") for p in paths}
    if len(texts) == 1 and not glob.has_magic(expanded) and not os.path.isdir(expanded):
        return next(iter(texts.values()))
    return texts


def evaluate(expr: str, ns: Mapping[str, Any], where: str = "--context",
             evaluator: Callable[[str], Any] | None = None) -> Any:
    """Evaluate a notebook expression; unquoted paths and globs also work.

    A string value that names an existing file, directory or a glob is read from disk;
    ``Path`` values too. Everything else (str, list, dict, DataFrame...) is passed as is.
    """
    expr = expr.strip()
    if not expr:
        raise ContextError(f"{where} is empty: pass a variable, an expression or a path.")
    try:
        if evaluator is not None:
            value = evaluator(expr)
        else:
            value = eval(expr, dict(ns))  # noqa: S307 - the user's own notebook expression
    except NameError as exc:
        if _looks_like_path(expr):
            return read_files(expr, where)
        name = getattr(exc, "name", None) or expr
        raise ContextError(messages.UNKNOWN_VARIABLE.format(name=name, where=where)) from None
    except SyntaxError:
        if _looks_like_path(expr):
            return read_files(expr, where)
        raise ContextError(messages.BAD_EXPRESSION.format(
            where=where, expr=expr, error="not a Python expression or an existing path")) from None
    except Exception as exc:  # the user's expression failed: one line, their error
        raise ContextError(messages.BAD_EXPRESSION.format(
            where=where, expr=expr, error=f"{type(exc).__name__}: {exc}")) from None
    if isinstance(value, Path):
        return read_files(str(value), where)
    if isinstance(value, str) and _looks_like_path(value):
        return read_files(value, where)
    return value


def split_pairs(items: list[str]) -> list[tuple[str, str]]:
    """``NAME=EXPR`` tokens → pairs; the name must be an identifier."""
    pairs = []
    for item in items:
        name, sep, expr = item.partition("=")
        if not sep or not name.strip().isidentifier() or not expr.strip():
            raise ContextError(messages.BAD_PAIR.format(text=item))
        pairs.append((name.strip(), expr))
    return pairs


def resolve_context(spec: str | None, pairs: list[str], ns: Mapping[str, Any],
                    evaluator: Callable[[str], Any] | None = None) -> Any:
    """``--context EXPR`` → its value; ``NAME=EXPR ...`` → {NAME: value}; neither → None."""
    if spec and pairs:
        raise ContextError(messages.CONTEXT_CONFLICT)
    if spec:
        return evaluate(spec, ns, "--context", evaluator)
    if pairs:
        return {name: evaluate(expr, ns, f"context {name}", evaluator)
                for name, expr in split_pairs(pairs)}
    return None
