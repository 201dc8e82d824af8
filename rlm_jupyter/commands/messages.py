"""The messages both front ends show, kept apart from the code that raises them (jupysql style).

Each is one line that says what went wrong and what to do next. Messages that only the notebook
shows live in ``rlm_jupyter/jupyter/messages.py``.
"""

from __future__ import annotations

NEITHER_READING = ("{where} {expr!r} is neither a notebook expression ({why}) nor a file, "
                   "directory or glob that exists: define the variable, fix the path, or write "
                   "a literal string as a Python string, e.g. --context \"'some text'\".")
BAD_EXPRESSION = "Could not evaluate {where} {expr!r}: {error}"
NO_FILES = "No files match {pattern!r} for {where}: check the path or glob."
TOO_MANY_FILES = "{pattern!r} matches {count:,} files (more than {limit}): narrow the glob."
EMPTY_CONTEXT = "{where} is empty: pass a variable, an expression or a path."
BAD_PAIR = "Expected NAME=EXPR for a named context, got {text!r}."
CONTEXT_CONFLICT = "Use either --context EXPR or NAME=EXPR pairs, not both."
NOT_FOUND_RUN = ("No saved run {what!r}: pass a run id from `rlm logs` / `%rlm logs` or a path "
                 "to a trajectory .jsonl file.")
NO_RUNS = "No runs in {log_dir} yet."
BAD_COUNT = "-n needs a number, got {text!r}."
UNEXPECTED = "Unexpected {words!r}"
BAD_CONFIG_KEY = "Unknown setting {name!r}: use one of {names}."
BAD_ASSIGNMENT = ("Expected NAME=VALUE, got {item!r} (e.g. `%rlm config model=openai/gpt-4o-mini`)"
                  ".")
NO_MODELS = "No models match {needle!r} in litellm's price map."
EMPTY_LEDGER = "No runs in this session yet: the ledger is empty."
