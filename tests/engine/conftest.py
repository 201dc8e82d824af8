from __future__ import annotations

import pytest




@pytest.fixture
def server_factory():
    servers = []

    def make(**kwargs):
        from rlm_jupyter.testing import ScriptedServer

        srv = ScriptedServer(**kwargs)
        srv.start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def rlm_for(tmp_path):
    """An RLM wired to a scripted server, logging into the test's tmp folder."""
    from rlm_jupyter import RLM

    def make(srv, **kwargs):
        kwargs.setdefault("log_dir", str(tmp_path / "runs"))
        kwargs.setdefault("cell_timeout_s", 20)
        return RLM(model=srv.model, api_base=srv.base_url, api_key="scripted-key-123", **kwargs)

    return make
