"""Context resolution and question interpolation, for ``%%rlm`` and ``rlm run`` alike.

No IPython here (the magic passes the user namespace in), so both are easy to test and reuse.
``%%rlm --context TEXT`` reads TEXT as a notebook expression, else as files
(:func:`resolve_context`); ``rlm run --context SPEC ...`` has no namespace, so each SPEC is a
path, directory or glob (:func:`read_paths`). Both read files with :func:`read_files`.

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

from rlm_jupyter.commands import messages
from rlm_jupyter.errors import CommandError

_REF = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[(?:-?\d+|'[^'\]]*'|\"[^\"\]]*\")\])*"
_PATTERN = re.compile(r"\{\{(" + _REF + r")\}\}|\{(" + _REF + r")\}")

#: Files read for one context; a glob that matches more is cut with a clear error.
MAX_FILES = 2000
#: Largest string value that is still considered as a possible path.
_MAX_PATH_LEN = 4096


class ContextError(CommandError, ValueError):
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


def split_options(line: str) -> list[str]:
    """Split a magic's option line into words: quotes group, brackets group, nothing else.

    Unlike a shell (and IPython's ``arg_split``, which keeps the quotes), quotes only group
    words: ``--context "df[df.x > 5]"`` passes the expression ``df[df.x > 5]``, never the
    string. Brackets group too, so ``--context df.query("x > 5")`` needs no quoting. A word
    that is wholly one quoted string loses that one pair of quotes; a literal string context is
    written as a Python literal inside them (``--context "'some text'"``) or as a variable.
    """
    words: list[str] = []
    buf: list[str] = []
    depth = 0
    quote = ""
    escaped = False
    for ch in line:
        if quote:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            buf.append(ch)
        elif ch in "([{":
            depth += 1
            buf.append(ch)
        elif ch in ")]}":
            depth = max(0, depth - 1)
            buf.append(ch)
        elif ch.isspace() and depth == 0:
            if buf:
                words.append("".join(buf))
                buf.clear()
        else:
            buf.append(ch)
    if quote:
        raise ValueError(f"the quote {quote} is never closed")
    if buf:
        words.append("".join(buf))
    return [unquote(w) for w in words]


def unquote(word: str) -> str:
    """``"x y"`` -> ``x y`` when the whole word is one quoted string; anything else as is."""
    if len(word) < 2 or word[0] not in "'\"" or word[-1] != word[0]:
        return word
    quote, escaped = word[0], False
    for i, ch in enumerate(word[1:-1], start=1):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == quote:
            return word  # closes before the end: 'a' + 'b' is an expression, not one string
    return word[1:-1]


def _looks_like_path(text: str) -> bool:
    if not text or len(text) > _MAX_PATH_LEN or "\n" in text:
        return False
    if glob.has_magic(text):
        return True
    return os.path.exists(os.path.expanduser(text))


def _files_match(text: str) -> bool:
    """A path, directory or glob that names at least one existing thing."""
    if not _looks_like_path(text):
        return False
    expanded = os.path.expanduser(text)
    return os.path.exists(expanded) or (glob.has_magic(expanded)
                                        and any(glob.iglob(expanded, recursive=True)))


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
        raise ContextError(messages.TOO_MANY_FILES.format(pattern=pattern, count=len(paths),
                                                          limit=MAX_FILES))
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
        raise ContextError(messages.EMPTY_CONTEXT.format(where=where))
    try:
        if evaluator is not None:
            value = evaluator(expr)
        else:
            value = eval(expr, dict(ns))  # noqa: S307 - the user's own notebook expression
    except NameError as exc:
        if _files_match(expr):
            return read_files(expr, where)
        name = getattr(exc, "name", None) or expr
        raise ContextError(messages.NEITHER_READING.format(
            where=where, expr=expr, why=f"unknown variable {name!r}")) from None
    except SyntaxError:
        if _files_match(expr):
            return read_files(expr, where)
        raise ContextError(messages.NEITHER_READING.format(
            where=where, expr=expr, why="not a Python expression")) from None
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
        pairs.append((name.strip(), unquote(expr.strip())))
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


def read_paths(specs: list[str], where: str = "--context") -> Any:
    """``rlm run --context SPEC ...``: each SPEC a path, directory or glob.

    One plain file gives its text; anything more gives ``{path: text}`` for every file read.
    """
    if len(specs) == 1:
        return read_files(specs[0], where)
    texts: dict[str, str] = {}
    for spec in specs:
        value = read_files(spec, where)
        texts.update(value if isinstance(value, dict) else {os.path.expanduser(spec): value})
    return texts
