"""Fixtures for the adversarial suite; see security_helpers.py for the canaries."""

from __future__ import annotations

import os
import sys
from typing import Iterator

import pytest
from security_helpers import Canaries, docker_ready, require_or_skip


@pytest.fixture(scope="session")
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canaries]:
    c = Canaries(str(tmp_path_factory.mktemp("canaries")))
    old = {k: os.environ.get(k) for k in ("RLM_CANARY_KEY", "OPENAI_API_KEY")}
    os.environ["RLM_CANARY_KEY"] = c.env
    os.environ["OPENAI_API_KEY"] = c.api_key
    main = sys.modules["__main__"]
    main.RLM_NOTEBOOK_SECRET = c.notebook
    yield c
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        delattr(main, "RLM_NOTEBOOK_SECRET")
    except AttributeError:
        pass


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    kind = request.param
    if kind == "docker":
        ok, reason = docker_ready()
        require_or_skip(ok, f"Docker backend unavailable: {reason}")
    return kind
