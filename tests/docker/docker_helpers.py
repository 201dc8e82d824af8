"""Helpers shared by the Docker tests (a plain module: conftest.py is not importable by name
when several test folders have one)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest


def require_or_skip(available: bool, reason: str) -> None:
    """Skip locally with a clear reason; fail in CI (``RLM_CI=1``), which must provide it."""
    if available:
        return
    if os.environ.get("RLM_CI") == "1":
        pytest.fail(f"{reason} (RLM_CI=1: CI must provide it)")
    pytest.skip(reason)


def session_containers(session: str) -> list[str]:
    """Names of containers (any state) carrying this sandbox session label."""
    from rlm_jupyter.sandbox.docker import list_sandbox_containers

    return [r["name"] for r in list_sandbox_containers(session=session)]


def inspect(name: str, fmt: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", fmt, name], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def volumes_of(container: str) -> list[str]:
    """Names of the volumes mounted in a container (ours: the one holding worker.py and the
    context, which must go when the container goes)."""
    return [m["Name"] for m in json.loads(inspect(container, "{{json .Mounts}}"))
            if m.get("Type") == "volume"]


def volume_exists(name: str) -> bool:
    return subprocess.run(["docker", "volume", "inspect", name], capture_output=True,
                          timeout=30).returncode == 0


def docker_exec(name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a command beside the worker, in the same container (same user, namespaces,
    read-only root and network): checks the container layer on its own, without the policy."""
    return subprocess.run(["docker", "exec", name, *cmd], capture_output=True, text=True,
                          timeout=60)
