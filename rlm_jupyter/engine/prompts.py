"""The words we send the root model: one system prompt for every model, and per-turn messages.

The prompt is short and directive because small local models copy examples literally: the
example shows searching, not guessing, and each feedback message ends with what to do next.
"""

from __future__ import annotations

import re

SYSTEM_PROMPT = """\
You answer a question about a context that is far too large to read directly. The context is \
loaded in a Python REPL as the variable `context`; you never see it whole. Work by writing code.

Write Python in a ```repl block. The code runs in one persistent namespace and you see only \
what it prints (long output is cut). Available in the REPL:
- `context`: the data ({context_type}).
- `llm_query(prompt)`: ask a language model about a piece of text (it can read ~100k characters); returns a string. It sees only the prompt you pass, not `context`: put the text in the prompt.
- `llm_query_batched(prompts)`: the same for a list of prompts, run in parallel; returns a list of strings in order.
- `rlm_query(prompt, context=None)`: hand a sub-question (with its own context) to a helper that works like you.
- `SHOW_VARS()`: list your variables.
- `FINAL(answer)`: finish with an answer string. `FINAL_VAR(name)`: finish with the value of a variable.
- Modules you may import: re, json, math, collections, itertools, statistics, datetime, textwrap, difflib, string, heapq, bisect, functools, operator, fractions, decimal, typing, random, csv.

How to work:
1. Look at the context first: its size, a few lines, its structure.
2. Search or split it with code: to find fixed text, test `"text" in line` on each line, as below (in a regex, escape | . ( ) with a backslash). Use llm_query_batched on chunks when meaning matters.
3. Print what you find, check it, then finish.

Example: keep the lines that meet every condition of the question (written exactly as the data writes them), count them and print some, then tally a field:
```repl
lines = context.splitlines()
hits = [line for line in lines if "level: ERROR" in line and "zone: eu" in line]
print(len(hits), "matching lines")
for line in hits[:10]:
    print(line)
```
```repl
from collections import Counter
hosts = Counter(line.split("host: ")[1].split(" |")[0] for line in hits if "host: " in line)
print(hosts.most_common(5))
```

When you know the answer, write FINAL(your answer) on its own line in a reply without code, or \
call FINAL_VAR(name) in code. Do not guess: base the answer on what your code printed.\
"""

FIRST_USER_MESSAGE = """\
Question: {question}

The context is {context_summary}

Start with a ```repl block that prints {first_look}.\
"""

#: What the first block should print: searching for the question's words at once gets small
#: models to the evidence in one turn (they otherwise print ``context[:100]`` and then guess).
FIRST_LOOK_TEXT = "a few lines of `context` and the lines that contain the question's key words"
FIRST_LOOK_OTHER = "the structure of `context` and a few of its items or rows"

#: With key words in the question, the first message also shows where they occur, found by
#: the engine with ``str.find`` (bounded like the preview). Told only to "print the lines that
#: contain" them, Qwen2.5-Coder 1.5B sent the preview lines to llm_query_batched instead, or
#: wrote the output it expected; a strong model saves the turn it would spend on this search.
FOUND_LINES = """\
{term} occurs {count:,} times in `context`. The first lines that contain it (a sample):
{lines}\
"""
NOT_FOUND = "{term} does not occur in `context` as written; search for parts of it or other words."
FIRST_LOOK_FOUND = ("what the question asks about, taken with code from all of `context`: keep "
                    "the lines it is about, then count or tally the field it asks for, as in "
                    "the example")

#: With a data hint that holds code (data_hints): small models copy code better than they
#: follow prose, so the first block is that code with the question's own conditions.
FIRST_LOOK_HINT = ("the result: adapt the code above to the question (its own fields, values, "
                   "dates and every condition it names), print the count of rows kept and the "
                   "answer")

# Quoted phrases, hyphenated or underscored names, numbers of 3+ digits, and capitalised words
# inside the sentence: the parts of a question most likely to occur verbatim in the data.
_QUOTED = re.compile(r"""(?<![\w])['"\u2018\u201c]([^'"\u2019\u201d\n]{2,60})['"\u2019\u201d](?![\w])""")
_NAMED = re.compile(r"\b(?:[A-Za-z0-9]+[-_])+[A-Za-z0-9]+\b|\b\d{3,}\b|(?<=[a-z,;:] )[A-Z][A-Za-z]+\b")

CONTINUE_MESSAGE = (
    "Question: {question}\n\nIf the output above answers the question, reply with only "
    "FINAL(...) with the answer itself inside the parentheses. Otherwise write a new, "
    "different ```repl block."
)

REPEAT_NUDGE = (
    "Your last reply only repeated code that already ran; its output is above. Write a "
    "different ```repl block{hint}, or reply with FINAL(...) if the output answers the question."
)
REPEAT_HINT = ' (for example one that prints the lines of `context` that contain "{term}")'

REPEATED_CODE_NOTE = (
    "Not run again: this code already ran in an earlier turn. The model was asked again for "
    "something different."
)

ERROR_NOTE = (
    "Your code raised an error. Print a few of the values it works on (for example the first "
    "lines it splits) to see their exact format, then write corrected code."
)

#: Names small models use without importing them (Qwen2.5-Coder 1.5B: ``Counter``, turn after
#: turn, never seeing why): the note after the NameError says the exact import.
IMPORTS = {
    "Counter": "from collections import Counter",
    "defaultdict": "from collections import defaultdict",
    "combinations": "from itertools import combinations",
    "groupby": "from itertools import groupby",
    "re": "import re", "json": "import json", "math": "import math",
    "statistics": "import statistics", "collections": "import collections",
    "itertools": "import itertools",
    "datetime": "import datetime",
}
IMPORT_NOTE = (
    "`{name}` is not defined because it was not imported: put `{statement}` at the top of "
    "the block and run it again."
)

PLACEHOLDER_NOTE = (
    "FINAL({value}) is a placeholder, not an answer: put the actual answer inside FINAL(...)."
)

UNGROUNDED_NOTE = (
    "Your answer {value} does not appear in any output your code printed. If you worked it out "
    "yourself (a sum, a count, a difference), do it with code instead: put the numbers you "
    "found in a ```repl block and print the result (arithmetic done without code is often "
    "wrong). Else print the evidence first (the lines that contain it). Then reply with FINAL."
)

FINAL_WITH_CODE_NOTE = (
    "Your FINAL(...) was ignored because it came in the same reply as code whose output you had "
    "not seen yet. If the output confirms it, reply with the FINAL line alone."
)

NO_CODE_MESSAGE = (
    "Your last reply had no ```repl block and no FINAL(...), so nothing ran. Write a ```repl "
    "block with code that uses `context`, or write FINAL(your answer) on its own line."
)

LAST_TURN_MESSAGE = (
    "You are out of turns. Reply now with FINAL(your best answer) based on what you found."
)

CONTEXT_REBIND_NOTE = (
    "This block was not run: it assigns to `context`, which already holds all the data (the "
    "first message showed only its first lines). Keep `context` as it is and put results in "
    "other variables."
)

BLIND_SUBCALL_NOTE = (
    "Note: llm_query saw only the short prompt you passed, not `context`, so its answer is a "
    "guess. Find the lines that matter with code first, then pass them in the prompt."
)

STATE_RESET_NOTE = (
    "[the REPL was restarted: all your variables are gone except `context`; redo what you need]"
)


#: confirm_final (guardrails): a finish whose value the model never saw printed.
CONFIRM_NOTE = (
    "Check before answering: you finished with {value}, but you never saw that value printed "
    "(the code that computes it ran in the same reply, so its output is new to you). Look at "
    "the output above: does it answer the question exactly (the right rows, filter, dates and "
    "units)? If yes, reply with FINAL({value}) alone. If not, write a corrected ```repl block "
    "that prints the rows it uses and the result."
)

#: empty_answer (guardrails): a finish of 0 / empty / None, asked about once.
EMPTY_NOTE = (
    "Check before answering: your answer is {value}. An empty result usually means the filter "
    "kept no rows because the data is written differently from what the code assumed "
    "(spelling, case, separators, field order). Print a few lines of `context` and how many "
    "rows each condition keeps on its own, fix the filter, and compute again. If {value} is "
    "right, reply with FINAL({value}) alone."
)

#: loop_breaker (guardrails): after an empty, fence-only or repeated reply.
LOOP_NOTE = (
    "Your last reply {what}, so nothing ran. Write one ```repl block with real code in it. "
    "{found}For example, the next step could be:\n```repl\n{example}\n```\n"
    "Or, if the output above already answers the question, reply with FINAL(the answer)."
)
LOOP_FOUND = "What you found so far:\n{evidence}\n"
LOOP_LINES = ("`context` has {count} lines that contain {term!r}; the first ones (copy their "
              "exact format):\n{lines}\n")
LOOP_GAVE_UP = (
    "The run stopped after {count} replies in a row that were empty, only a code fence, or a "
    "repeat of an earlier reply (the model was stuck). {best}"
)


def loop_example(terms: list[str], names: list[str], text: bool) -> str:
    """The next step the loop breaker proposes, from what the model already has: print the
    variables its last good block assigned, else search `context` for the question's words."""
    if names:
        return "\n".join(f"print({n!r}, repr({n})[:300])" for n in names[:3])
    term = terms[0] if terms else "KEYWORD"
    if text:
        return (f"lines = [l for l in context.splitlines() if {term!r} in l]\n"
                f"print(len(lines))\nprint(lines[:10])")
    return "print(type(context))\nprint(repr(context)[:500])"


def system_prompt(context_type: str) -> str:
    return SYSTEM_PROMPT.format(context_type=context_type)


def key_terms(question: str, limit: int = 3) -> list[str]:
    """Words of the question worth searching the context for verbatim, in order, at most
    ``limit``: quoted phrases first, then names, ids and capitalised words."""
    found: list[str] = []
    for term in [*_QUOTED.findall(question), *_NAMED.findall(question)]:
        term = term.strip()
        if term and not any(term in seen for seen in found) and len(found) < limit:
            found.append(term)
    return found


def first_user_message(question: str, context_summary: str, text: bool = True,
                       found: list[tuple[str, int, list[str]]] = (), hint: str = "") -> str:
    """``found``: for some of the question's key words, how often each occurs in the (text)
    context and the first lines that hold it (see :func:`key_terms`); ``hint``: how to read
    the data in code (:mod:`.data_hints`), placed after the preview."""
    if hint:
        context_summary = f"{context_summary}\n\n{hint}"
    first_look = (FIRST_LOOK_FOUND if found else FIRST_LOOK_TEXT) if text else FIRST_LOOK_OTHER
    if hint and "```repl" in hint:
        first_look = FIRST_LOOK_HINT
    message = FIRST_USER_MESSAGE.format(
        question=question, context_summary=context_summary, first_look=first_look)
    if not found:
        return message
    parts = []
    for term, count, lines in found:
        quoted = f'"{term}"'
        parts.append(FOUND_LINES.format(term=quoted, count=count, lines="\n".join(
            f"    {line}" for line in lines)) if count else NOT_FOUND.format(term=quoted))
    head, start = message.rsplit("\n\n", 1)
    return "\n\n".join([head, *parts, start])


def echoes_feedback(text: str, question: str) -> bool:
    """Whether a reply only copies back what the engine sent (an error, the restated question):
    no answer, though small models write it as their last reply."""
    return ("Traceback (most recent call last)" in text or f"Question: {question}" in text
            or CONTINUE_MESSAGE.split("\n\n", 1)[1][:40] in text)


def repeat_nudge(terms: list[str]) -> str:
    """Added to the last message when the model only repeated code that already ran;
    ``terms``: the question's :func:`key_terms`, the first one named as a search to try."""
    hint = REPEAT_HINT.format(term=terms[0]) if terms else ""
    return REPEAT_NUDGE.format(hint=hint)


def execution_feedback(outputs: list[str], question: str, notes: list[str] = ()) -> str:
    """The user message after a turn's code ran: each block's output, then what to do next.

    The question is restated every time: small models lose track of it after a turn or two.
    """
    parts = []
    for i, out in enumerate(outputs, 1):
        label = f"Output of block {i}:" if len(outputs) > 1 else "Output:"
        parts.append(f"{label}\n{out if out.strip() else '(nothing printed: use print() to see values)'}")
    parts.extend(notes)
    parts.append(CONTINUE_MESSAGE.format(question=question))
    return "\n\n".join(parts)


# -- sessions, typed answers, tools (issue 15) -------------------------------------------------

OUTPUT_TYPE_NOTE = (
    "The answer must be {shape}. Build it in a variable with code, print it to check it, then "
    "finish with FINAL_VAR('name_of_that_variable') (use plain lists, dicts, numbers and "
    "strings, or a DataFrame; not your own classes)."
)

OUTPUT_REPAIR_MESSAGE = (
    "Your final value was refused: it is not {label}. The check said: {error}\n\nFix the "
    "variable with code (print it to check), then finish again with FINAL_VAR('name')."
)

TOOLS_HEADER = "Your own functions, run by the user's kernel (pass and get plain data):"

FOLLOWUP_HEADER = (
    "This is a follow-up question in the same session: the REPL still holds every variable "
    "you made before{variables}. Reuse them instead of recomputing."
)
FOLLOWUP_STATE_LOST = (
    "This is a follow-up question, but the REPL was restarted since the last question "
    "({why}): every variable you made is gone; only `context` is loaded again."
)
EARLIER_ASKS_HEADER = "Earlier questions in this session (summarised):"

JSON_SUBCALL_SUFFIX = "\n\nReply with JSON only: no prose, no code fences."
JSON_REPAIR_PROMPT = (
    "Your reply below is not valid JSON ({error}). Reply again with only the JSON value, "
    "nothing else.\n\nThe request was:\n{prompt}\n\nYour reply was:\n{reply}"
)


def tools_section(lines: list[str]) -> str:
    """The system prompt's list of user tools (``- `name(sig)`: first docstring line``)."""
    return "\n".join([TOOLS_HEADER, *lines]) if lines else ""
