"""`rlm map` from a shell: a real subprocess against the scripted server."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from map_helpers import doc


def test_rlm_map_writes_one_row_per_file(map_server, tmp_path):
    srv = map_server()
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in (21, 22, 23):
        (folder / f"d{n}.txt").write_text(doc(n))
    out = tmp_path / "results.csv"
    env = {**os.environ, **srv.env(), "RLM_LOG_DIR": str(tmp_path / "runs")}
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_jupyter.cli", "map", "What is the code in {key}?",
         "--contexts", str(folder / "*.txt"), "--out", str(out), "--map-concurrency", "2"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert sorted(df["answer"].astype(str)) == ["21", "22", "23"]
    assert "3 items: 3 ok" in proc.stderr and "[ok]" in proc.stderr
    # again with --resume: nothing runs, every row says resumed
    roots = len(srv.requests.roots())
    again = subprocess.run(
        [sys.executable, "-m", "rlm_jupyter.cli", "map", "What is the code in {key}?",
         "--contexts", str(folder), "--resume", "-q"],
        capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(srv.requests.roots()) == roots
    assert again.stdout.count("True") == 3  # the resumed column, CSV on stdout


def test_rlm_map_usage_mistake_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_jupyter.cli", "map", "q", "--contexts",
         str(tmp_path / "none-*.txt"), "--model", "openai/x", "--api-base", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "No files match" in proc.stderr
