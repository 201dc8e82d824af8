"""The benchmark script in its smoke mode, so it cannot rot.

Speed is measured in benchmarks/, never asserted here: this only checks that every code path
of ``benchmarks/run.py --quick`` runs and writes a well-formed results file, without touching
the real ``benchmarks/RESULTS.md``. Docker figures are skipped by the script when no daemon
answers, except with ``RLM_CI=1``, where the script itself fails without Docker.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "run.py"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

HEADINGS = [
    "## 1. A batch of 64 sub-calls",
    "## 2. Per-turn host overhead",
    "## 2b. Hotspots (local backend)",
    "## 3. Large contexts",
    "## 3b. Sandbox backends",
    "## 4. A cached re-run",
    "## 5. Import times",
    "## 6. Needle in a haystack: rlm-jupyter beside rlms",
    "## Run notes",
]


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.slow
def test_quick_benchmark_runs_every_path(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\n## Evaluation kit\n\nkept as it is\n")
    before = _digest(RESULTS)
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out),
                           "--json", str(tmp_path / "figures.json")],
                          capture_output=True, text=True, timeout=280, cwd=str(ROOT), env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    for heading in HEADINGS:
        assert heading in text, f"{heading!r} missing from:\n{text}"
    assert "Not measured: failed" not in text, text
    assert "## Evaluation kit\n\nkept as it is" in text, "another tool's section was lost"
    assert "| Python |" in text                      # the machine-details header
    assert (tmp_path / "figures.json").exists()
    assert _digest(RESULTS) == before, "the smoke run must not touch benchmarks/RESULTS.md"
