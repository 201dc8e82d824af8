"""Export a run as a notebook that re-runs the analysis without a model.

The run log holds every block of code the root model ran (``code_executed``) and every value a
host function handed back to that code (``host_call``: ``llm_query``, ``rlm_query``, tools...),
in call order. The notebook is: a context cell for you to fill in (the log keeps only a summary
of the context, never the data), a replay cell that defines ``llm_query`` & co. as functions
returning the recorded values in order, one cell per block the model ran, and a last cell that
prints the answer. Run it top to bottom and the code computes the same answer, offline; edit a
block and re-run to explore. A session's follow-ups depend on the earlier asks' variables:
export them together, ``export_notebook([first_run_id, second_run_id], path)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from rlm_jupyter.engine import events as ev
from rlm_jupyter.engine import prompts
from rlm_jupyter.engine.parsing import parse_reply
from rlm_jupyter.engine.trajectory import find_run, iter_events

#: Blocks the engine refused to run are logged with these errors; they are not exported.
_NOT_RUN = (prompts.REPEATED_CODE_NOTE, prompts.CONTEXT_REBIND_NOTE)

REPLAY_CELL = '''\
# Replay runtime: the sandbox's functions, answering with what the run recorded, in order.
import json as _json
_RECORDED = _json.loads({recorded!r})
_position = 0


def _next_recorded(fn):
    global _position
    if _position >= len(_RECORDED):
        raise RuntimeError(f"{{fn}}() was called more often than in the recorded run: the "
                           "code changed; call the model again, or edit the recorded values")
    call = _RECORDED[_position]
    _position += 1
    if call["fn"] != fn:
        raise RuntimeError(f"the recorded run called {{call['fn']}}() here, not {{fn}}(): the "
                           "code changed since it was recorded")
    if call.get("truncated"):
        raise RuntimeError(f"{{fn}}() returned a value too large to keep in the run log")
    if call.get("error"):
        raise RuntimeError(f"{{fn}}() failed: {{call['error']}}")
    return call["value"]


{functions}

answer = {{"content": "", "ready": False}}
_FINALS = []


def FINAL(value):
    _FINALS.append(str(value))


def FINAL_VAR(name):
    _FINALS.append(str(globals()[name.strip().strip("'\\"")]))


def SHOW_VARS():
    print(sorted(k for k in globals() if not k.startswith("_")))
'''

FUNCTION = '''\
def {name}(*args, **kwargs):
    return _next_recorded({name!r})
'''

LAST_CELL = '''\
{finish}final_answer = _FINALS[-1] if _FINALS else (answer["content"] if answer.get("ready")
                                                  else None)
print(final_answer)
'''


def _runs(sources: Iterable[str | os.PathLike[str]], log_dir: str | os.PathLike[str] | None
          ) -> list[list[ev.Event]]:
    from rlm_jupyter.settings import DEFAULT_LOG_DIR

    directory = Path(log_dir).expanduser() if log_dir else Path(
        os.environ.get("RLM_LOG_DIR") or DEFAULT_LOG_DIR)
    return [list(iter_events(find_run(directory, str(src)))) for src in sources]


def _root(events: list[ev.Event]) -> ev.RunStarted:
    for event in events:
        if isinstance(event, ev.RunStarted) and event.parent_run_id is None:
            return event
    raise ValueError("the log holds no root run_started event: is it a run log?")


def _finish_line(events: list[ev.Event], run_id: str) -> str:
    """The finish the model wrote outside code on its last turn, as a line of code."""
    replies = [e for e in events if isinstance(e, ev.ModelResponse) and e.run_id == run_id]
    if not replies:
        return ""
    final = parse_reply(replies[-1].text).final
    if final is None:
        return ""
    if final.kind == "text":
        return f"FINAL({final.value!r})  # the model wrote this answer after reading the output\n"
    return f"FINAL_VAR({final.value.strip()!r})\n"


def export_notebook(runs: str | os.PathLike[str] | list[str | os.PathLike[str]],
                    path: str | os.PathLike[str], *, context_code: str | None = None,
                    log_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``path`` (.ipynb): the code of the run(s) as cells that re-run without a model.

    ``runs``: a run id (or a prefix), a log path, or a list of them (a session's asks, in
    order). ``context_code``: the first cell, which must set ``context`` to the same data the
    run had, e.g. ``"import pandas as pd\\ncontext = pd.read_csv('sales.csv')"``; without it
    the cell names the run's context and raises until you fill it in. ``log_dir``: where to
    look up run ids (default: RLM_LOG_DIR, else ~/.rlm_jupyter/runs).
    """
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    sources = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    logs = _runs(sources, log_dir)
    roots = [_root(events) for events in logs]
    recorded: list[dict[str, Any]] = []
    names: set[str] = set()
    for events, root in zip(logs, roots):
        calls = sorted((e for e in events if isinstance(e, ev.HostCallRecorded)
                        and e.run_id == root.run_id), key=lambda e: e.seq)
        for call in calls:
            names.add(call.fn)
            recorded.append({"fn": call.fn, "value": call.value, "error": call.error,
                             "truncated": call.truncated})
    names |= {"llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched"}
    questions = "\n".join(f"- `{r.run_id}`: {r.question}" for r in roots)
    cells = [new_markdown_cell(
        f"# Replay of {'run' if len(roots) == 1 else 'runs'} "
        f"{', '.join(r.run_id for r in roots)}\n\n{questions}\n\nThe model's code, cell by "
        f"cell. `llm_query` and the other sandbox functions return the values recorded in the "
        f"run, in order, so this notebook runs without a model (and without the sandbox: it "
        f"runs in this kernel, so read the code before you run it). Fill in the context cell "
        f"first.")]
    summary = roots[0].context_summary.replace("\n", " ")
    cells.append(new_code_cell(context_code if context_code is not None else (
        f"# The run's context was: {summary}\n"
        f"# Load the same data into `context` (the log keeps only this summary), e.g.\n"
        f"# context = open('my_file.txt').read()\n"
        f"raise NotImplementedError('fill in the context cell: set context = ...')")))
    functions = "\n\n".join(FUNCTION.format(name=name) for name in sorted(names))
    cells.append(new_code_cell(REPLAY_CELL.format(
        recorded=json.dumps(recorded, ensure_ascii=False), functions=functions)))
    finish = ""
    for events, root in zip(logs, roots):
        if len(roots) > 1:
            cells.append(new_markdown_cell(f"## {root.question}"))
        for event in events:
            if (isinstance(event, ev.CodeExecuted) and event.run_id == root.run_id
                    and event.error not in _NOT_RUN):
                cells.append(new_code_cell(f"# turn {event.turn}, block {event.index + 1}\n"
                                           f"{event.code}"))
        finish = _finish_line(events, root.run_id)
    cells.append(new_code_cell(LAST_CELL.format(finish=finish)))
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(target))
    return target
