"""The benchmark script in its smoke mode, so it cannot rot.

Speed is measured in benchmarks/, never asserted here: this only checks that every code path
of ``benchmarks/run.py --quick`` runs and writes a well-formed results file, without touching
the real ``benchmarks/RESULTS.md``. Docker figures are skipped by the script when no daemon
answers, except with ``RLM_CI=1``, where the script itself fails without Docker.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
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
    "## 7. Many contexts: RLM.map",
    "## Run notes",
]


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _sections(text: str) -> dict[str, str]:
    """``## heading`` -> the body under it."""
    parts = re.split(r"(?m)^(## .*)$", text)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _table_rows(body: str) -> list[str]:
    """The data rows of the Markdown tables in ``body`` (no header or separator rows)."""
    lines = [ln for ln in body.splitlines() if ln.startswith("|")]
    return [ln for i, ln in enumerate(lines)
            if not set(ln) <= set("|-: ") and not (i + 1 < len(lines)
                                                   and set(lines[i + 1]) <= set("|-: "))]


@pytest.mark.slow
def test_quick_benchmark_runs_every_path(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\n## Evaluation kit\n\nkept as it is\n")
    before = _digest(RESULTS)
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out),
                           "--json", str(tmp_path / "figures.json")],
                          capture_output=True, text=True, timeout=420, cwd=str(ROOT), env=env)
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
    # Every path measured something: no section is skipped or empty, no figure is missing.
    sections = _sections(text)
    for heading in HEADINGS[:-1]:
        assert "Not measured" not in sections[heading], sections[heading]
        assert _table_rows(sections[heading]), f"{heading!r} holds no measurement"
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert [s["heading"] for s in figures] == [h[3:] for h in HEADINGS]
    assert all(s["skipped"] is None for s in figures)
    values = [f["value"] for s in figures for f in s["figures"]]
    assert values and all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                          for v in values), values
    # ...on every backend it ran with (local and inprocess always; docker when a daemon
    # answers), each over both transports.
    measured = re.search(r"backends measured: ([a-z, ]+);", sections["## Run notes"]).group(1)
    backends = [b.strip() for b in measured.split(",")]
    assert {"local", "inprocess"} <= set(backends)
    if os.environ.get("RLM_CI") == "1":
        assert "docker" in backends
    batch = {f["name"] for f in figures[0]["figures"]}
    for backend in backends:
        for transport in ("litellm (reference)", "http"):
            assert f"64 sub-calls, {backend}, transport={transport}" in batch, batch
        assert any(row.startswith(f"| {backend} |")
                   for row in _table_rows(sections["## 3. Large contexts"]))
        assert any(row.startswith(f"| {backend} |")
                   for row in _table_rows(sections["## 3b. Sandbox backends"]))
