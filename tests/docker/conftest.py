"""Docker tests run real containers against a real daemon.

Locally they skip with the reason when there is no daemon or no image; in CI (``RLM_CI=1``)
they fail instead, because CI (``.ci/run``) installs dockerd and builds the image.
No ``__init__.py`` here on purpose: a package named ``docker`` would shadow docker-py.
"""

from __future__ import annotations

import os
import subprocess
from typing import Iterator

import pytest

from rlm_jupyter.sandbox.base import SandboxError


def docker_problem() -> str | None:
    """Why Docker tests cannot run here, or None when they can."""
    from rlm_jupyter.sandbox import docker as dsb

    try:
        dsb.check_daemon()
        dsb.check_image(os.environ.get("RLM_DOCKER_IMAGE") or dsb.DEFAULT_IMAGE)
    except SandboxError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def docker_ready() -> None:
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("RLM_CI") == "1":
        pytest.fail(f"Docker is required in CI (RLM_CI=1): {problem}")
    pytest.skip(f"no usable Docker here: {problem}")


def session_containers(session: str) -> list[str]:
    """Names of containers (any state) carrying this sandbox session label."""
    from rlm_jupyter.sandbox.docker import list_sandbox_containers

    return [r["name"] for r in list_sandbox_containers(session=session)]


def inspect(name: str, fmt: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", fmt, name], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def docker_exec(name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a command beside the worker, in the same container (same user, namespaces,
    read-only root and network): checks the container layer on its own, without the policy."""
    return subprocess.run(["docker", "exec", name, *cmd], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def sandbox_factory() -> Iterator:
    """Open Docker sandboxes; every one is closed at the end of the test."""
    from rlm_jupyter.sandbox import open_sandbox

    opened = []

    def make(**kwargs):
        kwargs.setdefault("timeout_s", 10)
        sb = open_sandbox("docker", **kwargs)
        opened.append(sb)
        return sb

    yield make
    for sb in opened:
        sb.close()
