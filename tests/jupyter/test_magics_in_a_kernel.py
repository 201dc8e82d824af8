"""The newcomer fixes of the magics, checked in a real Jupyter kernel (nbclient), as a notebook
user meets them: a quoted --context is the variable, a mistyped one fails the cell with one line,
`%rlm demo` leaves no `True` behind, and re-running an unchanged cell is replayed from the cache.
"""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

CELLS = [
    "%load_ext rlm",
    "%rlm demo",
    "b = [10, 20, 30]\nfrom rlm_jupyter.demo import make_document\ndoc = make_document(20_000)",
    '%%rlm --context "b" --out r --quiet\nWhat is in b?',
    "print(r_run.events[0].context_summary)",
    "%%rlm --context doc --out code --quiet\nWhat is the access code for the vault in building 7?",
    "%%rlm --context doc --out code --quiet\nWhat is the access code for the vault in building 7?",
    "u = next(iter(code_run.usage.values()))\nprint('cached', u['cached_calls'], 'of', u['calls'],"
    " 'cost', code_run.cost_usd)",
    "%%rlm --context 'nosuch.txt' --quiet\nQ?",
]


@pytest.mark.slow
def test_the_magics_in_a_real_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    env_backup = dict(os.environ)
    os.environ.pop("RLM_MODEL", None)
    os.environ["RLM_LOG_DIR"] = str(tmp_path / "runs")
    os.environ["RLM_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        # The last cell must fail (so nbval and papermill notice), with one line.
        with pytest.raises(CellExecutionError) as failed:
            NotebookClient(nb, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": str(tmp_path)}},
                           extra_arguments=["--log-level=ERROR"]).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)

    def outputs(i: int) -> list[dict]:
        return nb.cells[i].outputs

    def text(i: int) -> str:
        return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                       + str(o.get("evalue", "")) for o in outputs(i))

    assert not [o for o in outputs(1) if o.output_type == "execute_result"]  # no "True"
    assert "demo" in text(1)
    assert text(4).startswith("a list of 3 items")  # the variable b, not the string 'b'
    import re

    hit = re.search(r"cached (\d+) of (\d+) cost 0\.0\b", text(7))
    assert hit and hit.group(1) == hit.group(2) != "0", text(7)  # every call replayed, $0
    assert failed.value.ename == "UsageError"
    assert "--context 'nosuch.txt'" in str(failed.value)
    said = [o["text"] for o in outputs(8) if o.output_type == "stream"]
    assert len(said) == 1 and said[0].count("\n") == 1  # one line, no traceback
    assert "neither a notebook expression" in said[0]
