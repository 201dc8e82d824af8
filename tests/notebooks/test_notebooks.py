"""The example notebooks run headless under nbval (and so in CI) against the scripted demo model.

Each notebook runs in its own pytest subprocess with ``--nbval-lax --nbval-current-env``: every
cell must run without error (cells tagged ``raises-exception`` must fail), and only cells marked
``# NBVAL_CHECK_OUTPUT`` are compared, through ``sanitize.cfg`` (costs, timings, ids, paths).
With ``RLM_MODEL`` set the same notebooks run against that model instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SANITIZE = Path(__file__).with_name("sanitize.cfg")

pytestmark = pytest.mark.slow


def test_all_four_notebooks_exist() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_quickstart", "02_dataframes", "03_sandboxes", "04_trajectories_and_costs",
                     "05_sessions_and_tools", "06_map"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_nbval(notebook: Path, tmp_path: Path) -> None:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True",
               RLM_LOG_DIR=os.environ.get("RLM_LOG_DIR", str(tmp_path / "runs")))
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
           "--sanitize-with", str(SANITIZE), "-p", "no:cacheprovider", "-q",
           "--rootdir", str(tmp_path), str(notebook)]
    proc = subprocess.run(cmd, cwd=notebook.parent, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def test_quickstart_runner_returns_the_answer() -> None:
    """The README's main command: run the quickstart headless and print its answer."""
    if os.environ.get("RLM_MODEL"):
        pytest.skip("runs against the scripted demo model only")
    from rlm_jupyter.jupyter.demo_notebook import run_quickstart

    answer = run_quickstart(verbose=False)
    assert "4921-ALPHA" in answer
