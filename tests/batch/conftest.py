"""Fixtures of the map tests: a scripted server with the map model, an RLM wired to it."""

from __future__ import annotations

import pytest
from map_helpers import map_root, map_sub


@pytest.fixture
def map_server(server_factory):
    """A scripted server with the map model (tests/conftest.py's server_factory, stopped
    after the test)."""

    def make(**kwargs):
        kwargs.setdefault("root", map_root)
        kwargs.setdefault("sub", map_sub)
        kwargs.setdefault("strict", False)
        return server_factory(**kwargs)

    return make


@pytest.fixture
def map_rlm(tmp_path):
    from rlm_jupyter import RLM

    def make(srv, **kwargs):
        kwargs.setdefault("log_dir", str(tmp_path / "runs"))
        kwargs.setdefault("cell_timeout_s", 20)
        return RLM(model=srv.model, api_base=srv.base_url, api_key="scripted-key-123", **kwargs)

    return make
