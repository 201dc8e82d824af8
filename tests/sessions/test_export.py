"""Export a run to a notebook that nbclient executes, without a model, to the same answer."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from rlm_jupyter import export_notebook

TEXT = "\n".join(f"ticket {i}: {'refund' if i % 4 == 0 else 'question'} from user{i}"
                 for i in range(1, 41))


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


def execute(path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    last = nb.cells[-1]
    return "".join(o.get("text", "") for o in last.outputs if o.get("output_type") == "stream")


def test_export_reruns_to_the_same_answer(server_factory, rlm_for, tmp_path):
    def sub(prompt, req):
        return "refund" if "Classify" in prompt and "refund" in prompt else "other"

    def rate(kind: str) -> float:
        """Refund rate for a kind."""
        return 0.25 if kind == "refund" else 0.0

    srv = server_factory(root=[
        fence("lines = context.splitlines()\nprint(len(lines))"),
        fence("labels = llm_query_batched([f'Classify: {ln}' for ln in lines[:8]])\n"
              "first = llm_query('Classify: ' + lines[3])\n"
              "r = rate(first)\nprint(labels.count('refund'), first, r)"),
        fence("result = f\"{labels.count('refund')} refunds, rate {r}\"") + "\nFINAL_VAR(result)",
    ], sub=sub)
    result = rlm_for(srv, tools=[rate]).run("How many refunds?", context=TEXT)
    assert result.error is None, result.error
    assert result.answer == "2 refunds, rate 0.25"
    path = export_notebook(str(result.log_path), tmp_path / "replay.ipynb",
                           context_code=f"context = {TEXT!r}")
    nb = nbformat.read(str(path), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any("llm_query_batched([f'Classify" in c for c in code)
    assert code[-1].startswith("FINAL_VAR('result')")
    requests_before = len(srv.requests)
    assert execute(path).strip() == result.answer
    assert len(srv.requests) == requests_before  # no model was called


def test_export_a_session_by_run_ids(server_factory, rlm_for, tmp_path):
    srv = server_factory(root=[
        fence("n = len(context.splitlines())"), "FINAL(counted)",
        fence("half = n // 2\nprint(half)"), fence("FINAL(half)"),
    ])
    rlm = rlm_for(srv)
    with rlm.session(context=TEXT) as s:
        first = s.ask("count")
        second = s.ask("half of it")
    assert second.answer == "20"
    path = export_notebook([first.run_id, second.run_id], tmp_path / "s.ipynb",
                           log_dir=first.log_path.parent, context_code=f"context = {TEXT!r}")
    assert execute(path).strip() == "20"


def test_without_context_code_the_first_cell_says_what_to_fill_in(server_factory, rlm_for,
                                                                  tmp_path):
    srv = server_factory(root=["FINAL(x)"])
    result = rlm_for(srv).run("q", context=TEXT)
    path = export_notebook(result.run_id, tmp_path / "n.ipynb", log_dir=result.log_path.parent)
    nb = nbformat.read(str(path), as_version=4)
    assert "The run's context was: a str" in nb.cells[1].source
    assert "NotImplementedError" in nb.cells[1].source
    with pytest.raises(FileNotFoundError, match="rlm logs"):
        export_notebook("no-such-run", tmp_path / "m.ipynb", log_dir=tmp_path)
