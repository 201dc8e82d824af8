"""The notebook's own messages, kept apart from the entry points (jupysql style); the ones both
front ends show live in ``rlm_jupyter/commands/messages.py`` and are re-exported here.

Messages say what went wrong and what to do next, in one line. :data:`CellFailure` is what the
magics raise for both a mistake and a run that ended in error: it is IPython's ``UsageError``
itself, so IPython prints ``UsageError: <message>`` without a traceback wall while the cell
still fails (so nbval, papermill and "Run all" stop there).
"""

from __future__ import annotations

from rlm_jupyter.commands.messages import (BAD_CONFIG_KEY, BAD_EXPRESSION, BAD_PAIR,  # noqa: F401
                                           CONTEXT_CONFLICT, NEITHER_READING, NO_FILES,
                                           NOT_FOUND_RUN)
from rlm_jupyter.settings import NO_MODEL as _ENGINE_NO_MODEL

try:  # IPython is a dependency, but keep this module importable without it.
    from IPython.core.error import UsageError
except Exception:  # pragma: no cover - IPython always installed with the package
    class UsageError(Exception):  # type: ignore[no-redef]
        """Stand-in when IPython is missing."""

#: What fails a cell with one line: a user mistake, or a run that ended with an error (the
#: result is still stored). IPython prints exactly ``UsageError: <message>`` (no traceback)
#: only for this exact class, not for subclasses, hence an alias, not a subclass.
CellFailure = UsageError
#: The old name (it was raised for failed runs too, which are not usage errors); one release.
RLMUsageError = CellFailure

#: ``%rlm NAME``: what each subcommand does (its parser's description and ``%rlm help``).
SUBCOMMANDS = {
    "config": "show or set session defaults",
    "doctor": "check the setup, each problem with a fix",
    "logs": "recent runs",
    "replay": "show a saved run (no model called)",
    "cost": "this session's spend per model",
    "models": "models with context window and prices",
    "stop": "stop background runs",
    "last": "the last result",
    "demo": "use the scripted demo model (no key)",
    "sessions": "open sessions (follow-ups): asks, variables, age, cost",
    "end": "close a session (its variables are gone)",
    "pull": "copy a sandbox variable into the notebook (plain data, DataFrames)",
    "export": "a saved run as a notebook that re-runs without a model",
    "help": "this list",
}
#: The usage ``%rlm help`` shows next to each name.
SUBCOMMAND_USAGE = {
    "config": ("[NAME=VALUE ...] [--reset]", SUBCOMMANDS["config"]),
    "doctor": ("[--ping]", SUBCOMMANDS["doctor"]),
    "logs": ("[-n N]", SUBCOMMANDS["logs"]),
    "replay": ("RUN_ID|PATH", SUBCOMMANDS["replay"]),
    "cost": ("", SUBCOMMANDS["cost"]),
    "models": ("[FILTER] [-n N]", SUBCOMMANDS["models"]),
    "stop": ("", SUBCOMMANDS["stop"]),
    "last": ("", SUBCOMMANDS["last"]),
    "demo": ("[--force]", SUBCOMMANDS["demo"]),
    "sessions": ("", SUBCOMMANDS["sessions"]),
    "end": ("NAME", SUBCOMMANDS["end"]),
    "pull": ("NAME [--as LOCAL] [--session S]", SUBCOMMANDS["pull"]),
    "export": ("RUN_ID [--to FILE.ipynb]", SUBCOMMANDS["export"]),
}

#: The engine's words, so the notebook, the CLI and the doctor agree (no fallback to the demo).
NO_MODEL = _ENGINE_NO_MODEL
EMPTY_QUESTION = "The question is empty: write it in the cell body under `%%rlm`."
UNKNOWN_SUBCOMMAND = ("Unknown %rlm subcommand {name!r}: use one of " + ", ".join(SUBCOMMANDS)
                      + " (questions go in a `%%rlm` cell).")
BAD_OUT_NAME = "--out needs a Python identifier, got {name!r}."
BAD_OPTION = "{message} (see `%%rlm?` for the options)."
BAD_CONFIG_VALUE = "Bad value for {name}: {error}"
NO_LAST = "No run yet in this session: run a `%%rlm` cell first."
ENGINE_MISSING = "The rlm_jupyter engine is not importable ({error}); reinstall with `pip install -e .`."
DEMO_ON = ("Using the scripted demo model ({model} at {base_url}): canned answers from a local "
           "script, not a real LLM. Set RLM_MODEL (and its API key) to use a real model.")
DEMO_REAL = "RLM_MODEL is set ({model}): using that model, not the scripted demo."
NO_BACKGROUND = "No background run is active."
STOPPED = "Stop requested for {n} background run(s)."
INTERRUPTED_PENDING = ("Interrupted: run cancelled; it is closing its last calls in the background and "
                       "the partial trajectory lands in `{name}` in a few seconds.")
INTERRUPTED = "Interrupted: run cancelled, partial trajectory kept in `{name}`."
RUN_FAILED = "Run ended with {status}: {error}"
