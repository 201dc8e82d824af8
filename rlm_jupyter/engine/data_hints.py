"""How to read the data in code: a parse line for the context's shape, and pandas idioms.

The ``data_hints`` guardrail. Shown the first lines of a CSV or a log, Qwen2.5-Coder 1.5B still
wrote filters for a format it invented (``"category: garden" in line`` over
``2026-01-11,west,garden,...``: no row kept, answer 0) and joined pandas comparisons without
parentheses (``df['a'] == 'x' & df['b'] == 'y'``: a TypeError, retyped turn after turn). So the
first message says how this context splits into fields, with the parse written out and its
result on the first row, taken from the data itself; and the error of the pandas precedence
slip gets the corrected form.

Only a bounded head of the context is read (the first few kB), so a 100 MB string costs
nothing here. Every hint is derived from the data; none is worded for a particular task.
"""

from __future__ import annotations

import re
from typing import Any

#: Characters read from the head of a text context: its shape and the values of its fields.
HEAD_CHARS = 32_000
#: Lines of that head a shape must hold on (all of them, or it is not used).
SAMPLE_LINES = 12
#: Lines of the head whose values the question is linked to.
HEAD_LINES = 400
_DELIMITERS = ("\t", " | ", ",", ";", "|")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_NAME = re.compile(r"^[A-Za-z_][\w .-]{0,40}$")

FILTER_TIP = ("Keep a row only if it meets every condition of the question, print how many "
              "rows are kept and a few of them, then compute the answer from those rows.")
DATE_TIP = ("ISO dates and times compare as text: `value >= {day!r}`, "
            "`value.startswith({month!r})` for a month.")


def _date_tip(value: str) -> str:
    return DATE_TIP.format(day=value[:10], month=value[:7])


def _head(text: str) -> list[str]:
    """The non-blank lines of the head (at most ``HEAD_LINES``), read once per hint."""
    head = text[:HEAD_CHARS].split("\n")
    if len(text) > HEAD_CHARS:
        head = head[:-1]  # the last line of the head may be cut
    return [line.rstrip("\r") for line in head if line.strip()][:HEAD_LINES]


def _short(value: Any, width: int = 240) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width] + "..."


def _delimited(lines: list[str]) -> tuple[str, int] | None:
    """The delimiter every sampled line holds the same number of times (at least once)."""
    for sep in _DELIMITERS:
        counts = {line.count(sep) for line in lines}
        if len(counts) == 1 and min(counts) >= 1:
            return sep, counts.pop()
    return None


def _is_header(first: list[str], second: list[str]) -> bool:
    """A header row names its columns: every field a short name, none numeric or a date,
    and the next row differs in at least one field's kind (a number or a date)."""
    if not all(_NAME.match(f.strip()) for f in first):
        return False
    return any(re.fullmatch(r"-?[\d.]+", f.strip()) or _ISO_DATE.match(f.strip())
               for f in second)


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_AFTER = re.compile(r"\b(after|since|from|or later|onwards?|later than)\b", re.I)
_BEFORE = re.compile(r"\b(before|until|earlier than|prior to)\b", re.I)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _shape(value: str) -> str:
    return re.sub(r"\d", "9", re.sub(r"[A-Za-z]", "a", value))


def _linked(question: str, columns: dict[str, list[str]], quote: Any,
            date: str | None, time: str | None, day: str) -> list[tuple[str, str]]:
    """Conditions of the question, linked to the data: ``(kind, text)`` pairs.

    A word of the question that is a value of a column (``'garden'``, ``auth`` for ``[auth]``),
    a token with the shape of a column's ids (``C-78273`` for ``id``), a month name or an ISO
    date for the date field, a time of day for the timestamp. ``quote(column, value)`` writes
    the comparison in the caller's syntax. The operator for dates and times follows the
    question's words (after/since/from: ``>=``; before/until: ``<``); the model is told to
    check it. Schema linking, as text-to-SQL systems do it, with no model call.
    """
    low = question.lower()
    tokens = [t.strip(".,;:?!()'\"") for t in question.split()]
    out: list[tuple[str, str]] = []
    for col, values in columns.items():
        texts = [v for v in values if v and not _NUMBER.fullmatch(v) and not _ISO_DATE.match(v)]
        if not texts:
            continue
        hit = next((v for v in sorted(set(texts), key=len, reverse=True)
                    if len(v.strip("[]()<>")) >= 2 and re.search(
                        rf"(?<![\w-]){re.escape(v.strip('[]()<>').lower())}(?![\w-])", low)), None)
        shapes = {_shape(v) for v in texts}
        if hit is None and len(shapes) == 1 and re.search(r"\d", next(iter(shapes))):
            hit = next((t for t in tokens if len(t) >= 4 and _shape(t) in shapes), None)
        if hit is not None:
            out.append(("eq", quote(col, hit)))
    op = ">=" if _AFTER.search(low) else "<" if _BEFORE.search(low) else None
    if date:
        iso = re.search(r"\b\d{4}-\d{2}-\d{2}\b", question)
        month = next((i for i, m in enumerate(_MONTHS, 1) if re.search(rf"\b{m}\b", low)), 0)
        if iso:
            out.append(("cmp", f"{date} {op or '=='} {iso.group(0)!r}"))
        elif month:
            year = re.search(r"\b(19|20)\d{2}\b", question)
            out.append(("start", f"{year.group(0) if year else day[:4]}-{month:02d}"))
    if time:
        clock = re.search(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?\b", question)
        if clock:
            hms = f"{int(clock.group(1)):02d}:{clock.group(2)}:{clock.group(3) or '00'}"
            out.append(("cmp", f"{time} {op or '>='} {hms!r}"))
    return out


def _summed(question: str, numeric: list[str]) -> str | None:
    """The numeric column the question names (``amount``, ``units``), if any."""
    low = question.lower()
    return next((c for c in numeric if re.search(rf"\b{re.escape(c.lower())}\b", low)), None)


def _columns(rows: list[dict[str, str]]) -> tuple[dict[str, list[str]], list[str], str | None]:
    """Text columns with their sampled values, numeric columns, the first ISO-date column."""
    keys = list(rows[0])
    text: dict[str, list[str]] = {}
    numeric: list[str] = []
    date = None
    for key in keys:
        values = [str(r.get(key, "")).strip() for r in rows]
        if all(_NUMBER.fullmatch(v) for v in values if v):
            numeric.append(key)
        elif all(_ISO_DATE.match(v) for v in values if v):
            date = date or key
        else:
            text[key] = values
    return text, numeric, date


def _row_filter(rows: list[dict[str, str]], question: str) -> str:
    """The question's conditions as a filter over ``rows`` (dicts of str), or ""."""
    text, numeric, date = _columns(rows)
    conds = []
    for kind, cond in _linked(question, text, lambda c, v: f"r[{c!r}] == {v!r}",
                              f"r[{date!r}]" if date else None, None,
                              rows[0].get(date, "") if date else ""):
        conds.append(f"r[{date!r}].startswith({cond!r})" if kind == "start" else cond)
    if not conds:
        return ""
    col = _summed(question, numeric)
    total = ""
    if col:
        cast = "float" if any("." in r.get(col, "") for r in rows) else "int"
        total = f"\nprint(sum({cast}(r[{col!r}]) for r in sel))"
    return (f"sel = [r for r in rows if {' and '.join(conds)}]\n"
            f"print(len(sel), sel[:3]){total}\n")


def _row_date_tip(row: dict[str, str]) -> str:
    dates = [(k, v.strip()) for k, v in row.items() if _ISO_DATE.match(v.strip())]
    if not dates:
        return ""
    key, value = dates[0]
    return (f" `{key}` holds ISO dates (YYYY-MM-DD), never month names: a month is "
            f"`r[{key!r}].startswith({value[:7]!r})`, from a day on `r[{key!r}] >= "
            f"{value[:10]!r}`.")


def text_hint(text: str, question: str = "") -> str:
    """How lines of ``text`` split into fields, or "" when no shape holds on the head."""
    head = _head(text)
    lines = head[:SAMPLE_LINES]
    if len(lines) < 5 or max(len(line) for line in lines) > 400:
        return ""  # prose, or too few lines to tell
    found = _delimited(lines)
    if found is not None:
        sep, _ = found
        first = lines[0].split(sep)
        if sep == "," and _is_header(first, lines[1].split(sep)):
            names = [f.strip() for f in first]
            rows = [dict(zip(names, line.split(sep))) for line in head[1:]]
            row = rows[0]
            return ("`context` is CSV text with a header row; its columns: "
                    + ", ".join(f.strip() for f in first) + ". Read it, and filter it for the "
                    "conditions found in the question (check each one):\n"
                    "```repl\nimport csv\nrows = list(csv.DictReader(context.splitlines()))\n"
                    f"print(len(rows), rows[0])\n{_row_filter(rows, question)}```\n"
                    f"rows[0] is {_short(row)}: every value is a str (use int() or float() "
                    f"on numbers).{_row_date_tip(row)} " + FILTER_TIP)
        parts = lines[0].split(sep)
        if all("=" in p for p in parts) or all(": " in p for p in parts):
            kv = "=" if all("=" in p for p in parts) else ": "
            rows = [dict(p.strip().split(kv, 1) for p in line.split(sep) if kv in p)
                    for line in head]
            row = rows[0]
            return (f"Each line of `context` is one record of {kv.strip()!r}-separated fields "
                    f"joined by {sep!r}. Read them (and filter them for the conditions found in "
                    f"the question: check each one) with:\n```repl\n"
                    f"rows = [dict(p.strip().split({kv!r}, 1) for p in line.split({sep!r}))\n"
                    f"        for line in context.splitlines() if line.strip()]\n"
                    f"print(len(rows), rows[0])\n{_row_filter(rows, question)}```\n"
                    f"rows[0] is {_short(row)}: every value is a str.{_row_date_tip(row)} "
                    + FILTER_TIP)
        return (f"Each line of `context` is fields separated by {sep!r}: "
                f"`line.split({sep!r})` on the first line gives {_short(parts)}. " + FILTER_TIP)
    tokens = [line.split() for line in head]
    if min(len(t) for t in tokens[:len(lines)]) >= 3 and len({len(t[0]) for t in tokens}) == 1:
        # Log-like lines: the same kind of first field (a timestamp, an id) on every line.
        fields = tokens[0]
        by_index = ", ".join(f"f[{i}] = {f!r}" for i, f in enumerate(fields[:8]))
        stamp = re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", fields[0])
        width = min(len(t) for t in tokens)
        columns = {f"f[{i}]": [t[i] for t in tokens] for i in range(1, min(width, 4))}
        conds = []

        def quote(col: str, word: str) -> str:
            return f"{col} == {_field(columns[col], word)!r}"

        for kind, cond in _linked(question, columns, quote,
                                  "f[0][:10]" if _ISO_DATE.match(fields[0]) else None,
                                  "f[0][11:19]" if stamp else None, fields[0]):
            conds.append(f"f[0].startswith({cond!r})" if kind == "start" else cond)
        tip = ""
        if stamp:
            tip = (f" The time of day is `f[0][11:19]` ({fields[0][11:19]!r} on the first line; "
                   f"times compare as text), the day `f[0][:10]`.")
        elif _ISO_DATE.match(fields[0]):
            tip = f" {_date_tip(fields[0])}"
        code = ("rows = [line.split() for line in context.splitlines() if line.strip()]\n"
                + (f"sel = [f for f in rows if {' and '.join(conds)}]\n"
                   "print(len(sel))\nfor f in sel[:5]:\n    print(' '.join(f))" if conds else
                   "print(len(rows), rows[0])"))
        return ("Each line of `context` starts with the same fields. Split them, and filter "
                "them for the conditions found in the question (check each one), "
                f"with:\n```repl\n{code}\n```\nOn the first line: {by_index}. Compare "
                f"fields exactly (`f[2] == ...`), not with `in` on the whole line.{tip} "
                + FILTER_TIP)
    return ""


def _field(values: list[str], word: str) -> str:
    """The data's own spelling of a question word: ``[auth]`` for ``auth``."""
    low = word.lower()
    return next((v for v in values if v.strip("[]()<>").lower() == low), word)


def frame_hint(frame: Any, question: str = "") -> str:
    """How to filter this DataFrame, written with its own columns: the question's conditions
    where they link to the data, else the first row's values."""
    try:
        if len(frame) == 0 or frame.shape[1] == 0:
            return ""
        head = [{str(k): str(v) for k, v in row.items()}
                for row in frame.head(400).to_dict("records")]
    except Exception:  # an exotic frame: no hint rather than a failed run
        return ""
    text, numeric, date = _columns(head)
    conds = []
    for kind, cond in _linked(question, text, lambda c, v: f"(df[{c!r}] == {v!r})",
                              f"df[{date!r}]" if date else None, None,
                              head[0].get(date, "") if date else ""):
        conds.append(f"(df[{date!r}].str.startswith({cond!r}))" if kind == "start" else
                     cond if cond.startswith("(") else f"({cond})")
    if not conds:
        conds = [f"(df[{c!r}] == {head[0][c]!r})" for c in list(text)[:2]]
    if not conds:
        return ""
    col = _summed(question, numeric) or (numeric[0] if numeric else None)
    total = f"\nprint(sel[{col!r}].sum())" if col else ""
    day = head[0].get(date, "") if date else ""
    tip = (f"Text dates compare as text: `df[{date!r}] >= {day[:10]!r}`, "
           f"`df[{date!r}].str.startswith({day[:7]!r})` for a month. " if date else "")
    return ("Filter the DataFrame with each condition in its own parentheses, joined by & "
            "(and | for or):\n```repl\ndf = context\nsel = df[" + " & ".join(conds) + "]\n"
            "print(len(sel))" + total + "\n```\n" + tip + FILTER_TIP)


def structure_hint(context: Any, question: str = "") -> str:
    """The first message's hint for ``context`` and the question, or ""."""
    if isinstance(context, str):
        return text_hint(context, question)
    if type(context).__module__.startswith("pandas") and type(context).__name__ == "DataFrame":
        return frame_hint(context, question)
    return ""


PRECEDENCE = re.compile(r"unsupported operand type\(s\) for [&|]|Cannot perform 'r?(and|or)_'"
                        r"|The truth value of a Series is ambiguous")


_BAD_NUMBER = re.compile(r"invalid literal for (int|float)\(\)(?: with base 10)?: '([^']{0,40})'"
                         r"|could not convert string to float: '([^']{0,40})'")


def error_hint(error: str) -> str | None:
    """The corrected form for two slips small models repeat turn after turn: a pandas filter
    whose comparisons are joined without parentheses (``&`` binds tighter than ``==``) or with
    ``and``/``or``; and ``int()`` of a piece of text with punctuation around the number
    (``int('969.')`` after splitting a sentence on spaces)."""
    bad = _BAD_NUMBER.search(error or "")
    if bad:
        piece = bad.group(2) if bad.group(2) is not None else bad.group(3)
        return (f"int()/float() got {piece!r}: punctuation or words around the number. Strip "
                f"them from that same piece first: `int(piece.strip('.,;:!?'))`; or take the "
                f"number after the words that introduce it: "
                f"`int(re.search(r'is (\\d+)', line).group(1))`. Not the first digits of the "
                f"whole line: they may belong to a name like ITEM-2.")
    if not PRECEDENCE.search(error or ""):
        return None
    return ("In pandas, put each comparison in its own parentheses and join them with & (and) "
            "or | (or), never `and`/`or`: `df[(df['a'] == 'x') & (df['b'] >= 3)]`. "
            "Write the corrected filter and print the rows it keeps.")
