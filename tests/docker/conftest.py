"""Docker tests run real containers against a real daemon.

Locally they skip with the reason when there is no daemon or no image; in CI (``RLM_CI=1``)
they fail instead, because CI (``.ci/run``) installs dockerd and builds the image.
No ``__init__.py`` here on purpose: a package named ``docker`` would shadow docker-py.
"""

from __future__ import annotations

import os

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
