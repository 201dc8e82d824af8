"""Every user-facing message of the magics, kept apart from the entry points (jupysql style).

Messages say what went wrong and what to do next, in one line. ``RLMUsageError`` is
IPython's ``UsageError`` itself, so IPython prints ``UsageError: <message>`` without a traceback wall,
while the cell still fails (so nbval, papermill and "Run all" stop there).
"""

from __future__ import annotations

try:  # IPython is a dependency, but keep this module importable without it.
    from IPython.core.error import UsageError
except Exception:  # pragma: no cover - IPython always installed with the package
    class UsageError(Exception):  # type: ignore[no-redef]
        """Stand-in when IPython is missing."""

#: The error every user mistake raises. IPython prints exactly ``UsageError: <message>`` (no
#: traceback) only for this exact class, not for subclasses, hence an alias, not a subclass.
RLMUsageError = UsageError


SUBCOMMANDS = ("config", "doctor", "logs", "replay", "cost", "models", "stop", "last", "demo",
               "help")

NO_MODEL = ("No model configured: set RLM_MODEL, run `%config RLMMagics.model = \"provider/name\"`, "
            "pass --model, or run `%rlm demo` for the scripted demo model.")
EMPTY_QUESTION = "The question is empty: write it in the cell body under `%%rlm`."
UNKNOWN_SUBCOMMAND = ("Unknown %rlm subcommand {name!r}: use one of " + ", ".join(SUBCOMMANDS)
                      + " (questions go in a `%%rlm` cell).")
NEITHER_READING = ("{where} {expr!r} is neither a notebook expression ({why}) nor a file, "
                   "directory or glob that exists: define the variable, fix the path, or write "
                   "a literal string as a Python string, e.g. --context \"'some text'\".")
BAD_EXPRESSION = "Could not evaluate {where} {expr!r}: {error}"
NO_FILES = "No files match {pattern!r} for {where}: check the path or glob."
BAD_PAIR = "Expected NAME=EXPR for a named context, got {text!r}."
CONTEXT_CONFLICT = "Use either --context EXPR or NAME=EXPR pairs, not both."
BAD_OUT_NAME = "--out needs a Python identifier, got {name!r}."
BAD_OPTION = "{message} (see `%%rlm?` for the options)."
BAD_SANDBOX = "Unknown sandbox {name!r}: use local, docker or inprocess."
BAD_CONFIG_KEY = "Unknown setting {name!r}: use one of {names}."
BAD_CONFIG_VALUE = "Bad value for {name}: {error}"
NO_LAST = "No run yet in this session: run a `%%rlm` cell first."
NOT_FOUND_RUN = ("No saved run {what!r}: pass a run id from `%rlm logs` or a path to a "
                 "trajectory .jsonl file.")
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
