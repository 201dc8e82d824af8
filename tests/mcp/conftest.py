"""Drive `rlm mcp` with the official SDK's client, over stdio and over streamable HTTP, against
the scripted model server; the server process runs this checkout's code."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="pip install 'rlm-jupyter[mcp]'")

REPO = Path(__file__).resolve().parents[2]


# server_factory: tests/conftest.py


def server_env(srv, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, **srv.env(), "RLM_SANDBOX": "inprocess",
           "RLM_LOG_DIR": str(tmp_path / "runs"), "RLM_CACHE_DIR": str(tmp_path / "cache"),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["stdio", "http"])
def connect(request, tmp_path):
    """``connect(srv, root)`` -> an async context manager yielding a connected Client."""
    from mcp import Client, StdioServerParameters

    procs: list[subprocess.Popen] = []

    def make(srv, root: Path):
        args = ["-m", "rlm_jupyter.cli", "mcp", "--root", str(root)]
        env = server_env(srv, tmp_path)
        if request.param == "stdio":
            return Client(StdioServerParameters(command=sys.executable, args=args, env=env,
                                                cwd=str(tmp_path)), read_timeout_seconds=60)
        port = _free_port()
        proc = subprocess.Popen([sys.executable, *args, "--http", str(port)], env=env,
                                cwd=str(tmp_path), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode())
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                         timeout=0.2):
                break
            time.sleep(0.1)
        return Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=60)

    make.transport = request.param
    yield make
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
