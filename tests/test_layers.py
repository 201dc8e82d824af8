"""The layers stay layers: the import contracts in ``.importlinter`` hold (engine and sandbox
never import the front ends or the commands; settings, config and errors import nothing above
them; commands never import a front end; no cycles between the top-level subpackages)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    if importlib.util.find_spec("importlinter") is None:
        reason = "import-linter is not installed: pip install -e '.[dev]'"
        if os.environ.get("RLM_CI") == "1":  # CI installs the dev extra: never skip there
            pytest.fail(reason)
        pytest.skip(reason)
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command;"
                           " lint_imports_command()"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "0 broken" in proc.stdout


def test_settings_import_nothing_above_them() -> None:
    """Importing the settings table alone pulls in no engine, front end or HTTP client."""
    code = ("import sys, rlm_jupyter.settings, rlm_jupyter.config\n"
            "bad = [m for m in sys.modules if m.startswith(('rlm_jupyter.engine', "
            "'rlm_jupyter.jupyter', 'rlm_jupyter.commands', 'rlm_jupyter.sandbox', 'httpx', "
            "'httpcore', 'litellm', 'IPython'))]\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "[]"
