"""Reading the model's reply: code blocks to run and FINAL markers.

Small models are sloppy, so parsing is tolerant: ```repl, ```python and bare fences all count,
an unclosed fence runs to the end of the reply, a lone closing fence after code (the opening one
forgotten) still yields the code, and FINAL may appear mid-reply as long as it starts a line
outside code. Nothing here evaluates what the model wrote: ``ast.parse`` only checks shape.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

CODE_LANGS = {"repl", "python", "py", "python3", "ipython", ""}
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)\s*$")
# ``Final(54)`` counts too: small models write it, and no other reply starts a line with it.
_FINAL_LINE = re.compile(r"^\s*(?:\*\*)?(FINAL_VAR|FINAL|Final_var|Final)\s*\(", re.MULTILINE)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FinalMarker:
    """``kind`` is "text" (FINAL(...): ``value`` is the answer) or "var" (FINAL_VAR(name))."""

    kind: str
    value: str


@dataclass
class ParsedReply:
    code_blocks: list[str] = field(default_factory=list)
    final: FinalMarker | None = None
    prose: str = ""
    #: The reply up to the end of its last closed code block (see :func:`without_trailing_prose`).
    history: str = ""
    #: The guardrails that changed this parse ("unfenced_code", "literal_final"): the loop
    #: reports them as ``guardrail`` events without parsing the reply a second time.
    guarded: tuple[str, ...] = ()


def parse_reply(text: str, *, unfenced_code: bool = True,
                literal_final: bool = True) -> ParsedReply:
    """Split a model reply into runnable code blocks, prose, and a FINAL marker (if any).

    ``unfenced_code`` / ``literal_final``: the guardrails of those names (engine/guardrails.py):
    recover code written without fences; read a block that is only ``FINAL(literal)`` as prose.
    """
    blocks, prose_lines, history, recovered = _split_fences(text, recover=unfenced_code)
    if unfenced_code and not blocks and "```" not in text and "~~~" not in text:
        candidate = text.strip()
        is_final = _FINAL_LINE.match(candidate) or _FINAL_LOOSE.match(candidate)
        if candidate and not is_final and _looks_like_code(candidate):
            blocks, prose_lines, recovered = [candidate], [], True
    # ``FINAL(54)`` alone in a block is an answer written as code; treat it like the same line
    # in prose, so the checks on prose answers (not before the output is seen, grounded, not a
    # placeholder) apply. ``FINAL(count)`` names a variable and still runs as code.
    literal = [b for b in blocks if _literal_final(b)] if literal_final else []
    if literal:
        blocks = [b for b in blocks if not _literal_final(b)]
        prose_lines = [*prose_lines, *literal]
    prose = "\n".join(prose_lines)
    guarded = (("unfenced_code",) if recovered else ()) + (("literal_final",) if literal else ())
    return ParsedReply(code_blocks=blocks, final=find_final(prose), prose=prose, history=history,
                       guarded=guarded)


def without_trailing_prose(text: str) -> str:
    """The reply up to the end of its last closed code block.

    What a model writes after its code is a guess at output it has not seen: Qwen2.5-Coder
    1.5B ended a search with "the number is 8375", the search printed 3056556, and kept
    answering 8375 from its own earlier words. Kept out of the history, the guess cannot
    anchor later turns; the block's real output follows in the next message.
    """
    return _split_fences(text)[2]


def _literal_final(code: str) -> bool:
    if not code.lstrip().startswith(("FINAL", "Final")):
        return False  # the common case, without parsing
    try:
        tree = ast.parse(code.strip())
    except (SyntaxError, ValueError):
        return False
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return False
    call = tree.body[0].value
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id in ("FINAL", "Final") and len(call.args) == 1 and not call.keywords
            and isinstance(call.args[0], ast.Constant))


def rebinds_name(code: str, name: str) -> bool:
    """Whether ``code`` assigns to (or deletes) the top-level variable ``name``.

    Small models retype the context preview as ``context = \"\"\"Record 1 ...\"\"\"`` and then
    analyse those few lines instead of the data; the engine refuses such blocks.
    """
    if name not in code:
        return False  # the common case, without parsing
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(_binds(node, name) for node in _module_scope(tree))


def _module_scope(node: ast.AST):
    """Every node that runs in the REPL's own scope (function and class bodies left out)."""
    for child in ast.iter_child_nodes(node):
        yield child
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                  ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp,
                                  ast.GeneratorExp)):
            yield from _module_scope(child)


def _binds(node: ast.AST, name: str) -> bool:
    targets: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.NamedExpr, ast.For, ast.AsyncFor)):
        targets = [node.target]
    elif isinstance(node, ast.Delete):
        targets = list(node.targets)
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in node.items if item.optional_vars]
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == name
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        return any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names)
    return any(_names(target, name) for target in targets)


def _names(target: ast.AST, name: str) -> bool:
    """``name`` itself, or inside an unpacking; ``name[k] = v`` mutates and is allowed."""
    if isinstance(target, ast.Name):
        return target.id == name
    if isinstance(target, (ast.Tuple, ast.List)):
        return any(_names(elt, name) for elt in target.elts)
    if isinstance(target, ast.Starred):
        return _names(target.value, name)
    return False


def _split_fences(text: str, recover: bool = True) -> tuple[list[str], list[str], str, bool]:
    """Code blocks, prose lines, the text up to the last closing fence when only prose
    follows it (the whole text otherwise: no closed block, or one left open at the end), and
    whether code written without its opening fence was recovered (``recover``)."""
    lines = text.splitlines()
    blocks: list[str] = []
    prose: list[str] = []
    current: list[str] | None = None
    last_close: int | None = None
    runnable = False
    lang = ""
    fence_char = "`"
    for index, line in enumerate(lines):
        match = _FENCE.match(line)
        if current is None:
            if match:
                fence_char = match.group(1)[0]
                lang = match.group(2).lower()
                current, runnable = [], lang in CODE_LANGS
                continue
            prose.append(line)
        else:
            if match and match.group(1)[0] == fence_char and not match.group(2):
                _close(blocks, current, runnable, lang)
                current, last_close = None, index
                continue
            current.append(line)
    history = text
    recovered = False
    if current is None and last_close is not None and \
            any(line.strip() for line in lines[last_close + 1:]):
        history = "\n".join(lines[:last_close + 1])
    if current is not None:
        if current and any(s.strip() for s in current):
            _close(blocks, current, runnable, lang)
        elif not blocks and recover:
            # A lone fence at the end: the opening fence was forgotten. Recover the code above
            # it, back to the last blank-line-separated paragraph that still parses.
            found = _recover_unfenced(prose)
            if found:
                code, prose = found
                blocks.append(code)
                recovered = True
    return blocks, prose, history, recovered


def _close(blocks: list[str], lines: list[str], runnable: bool, lang: str = "repl") -> None:
    code = "\n".join(lines).strip("\n")
    if not runnable or not code.strip():
        return
    if lang == "" and not _parses(code):
        return  # a bare fence around echoed output or prose, not code
    blocks.append(code)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _recover_unfenced(prose: list[str]) -> tuple[str, list[str]] | None:
    for start in range(len(prose)):
        code = "\n".join(prose[start:]).strip()
        if code and _looks_like_code(code):
            return code, prose[:start]
    return None


def _looks_like_code(text: str) -> bool:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    if not tree.body:
        return False
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant)):
            return False
    return True


_PLACEHOLDER = re.compile(
    r"^\s*(<[^<>]*>|\.\.\.|…|((your|the|final|best|actual|real)\s+)*answer(\s+here)?|x|value"
    r"|result)\s*$",
    re.IGNORECASE)


def is_placeholder(value: str) -> bool:
    """``<the answer>``, ``your answer``, ``...``: an example copied, not an answer."""
    return bool(_PLACEHOLDER.match(value))


_FINAL_LOOSE = re.compile(r"^\s*(?:\*\*)?FINAL\s*[:,]\s*(.+)$", re.MULTILINE)


def find_final(prose: str) -> FinalMarker | None:
    """The first FINAL(...) or FINAL_VAR(...) that starts a line of prose.

    Small models also write ``FINAL: 42`` or ``FINAL, (42)``; those count too.
    """
    match = _FINAL_LINE.search(prose)
    if not match:
        loose = _FINAL_LOOSE.search(prose)
        if not loose:
            return None
        value = loose.group(1).strip().strip("*").strip()
        if value.startswith("(") and value.endswith(")"):
            value = value[1:-1].strip()
        return FinalMarker("text", value.strip("'\"").strip())
    kind = match.group(1).upper()
    rest = prose[match.end():]
    body = _balanced_argument(rest)
    if kind == "FINAL_VAR":
        name = body.strip().strip("'\"` ").strip()
        return FinalMarker("var", name) if _IDENT.match(name) else FinalMarker("var", name)
    value = body.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return FinalMarker("text", value.strip())


def _balanced_argument(rest: str) -> str:
    """Text up to the parenthesis that closes FINAL(, tolerating a missing one."""
    depth = 1
    for i, ch in enumerate(rest):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return rest[:i]
    last = rest.rfind(")")
    return rest[:last] if last >= 0 else rest
