"""Shared test set-up: offline litellm, and logs/caches in temporary folders, never in $HOME."""

from __future__ import annotations

import os
import tempfile

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
_TMP = tempfile.mkdtemp(prefix="rlm-tests-")
os.environ.setdefault("RLM_LOG_DIR", os.path.join(_TMP, "runs"))
os.environ.setdefault("RLM_CACHE_DIR", os.path.join(_TMP, "cache"))
for _var in ("RLM_MODEL", "RLM_SUB_MODEL", "RLM_API_BASE", "RLM_API_KEY", "RLM_SANDBOX"):
    os.environ.pop(_var, None)

import pytest  # noqa: E402


def in_ci() -> bool:
    return os.environ.get("RLM_CI") == "1"


def require_or_skip(available: bool, reason: str) -> None:
    """Skip locally with a clear reason; fail in CI, where the component must be installed."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{reason} (RLM_CI=1: CI must provide it)")
    pytest.skip(reason)


# -- shared by the engine, session, telemetry and MCP suites ------------------------------------

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


BACKENDS = ["local", "inprocess", "docker"]


def docker_available() -> bool:
    import shutil
    import subprocess

    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(params=BACKENDS)
def sandbox_kind(request):
    """Every engine test runs on every sandbox backend."""
    if request.param == "docker" and not docker_available():
        import os

        if os.environ.get("RLM_CI") == "1":
            pytest.fail("Docker daemon not reachable (RLM_CI=1: CI must provide it)")
        pytest.skip("Docker daemon not reachable: start dockerd to run the docker backend")
    return request.param


@pytest.fixture
def rlm_for(tmp_path, sandbox_kind):
    """An RLM wired to a scripted server, logging into the test's tmp folder."""
    from rlm_jupyter import RLM

    def make(srv, **kwargs):
        kwargs.setdefault("sandbox", sandbox_kind)
        # The engine suite exercises litellm's real HTTP path; test_http_transport.py covers
        # the direct path that transport="auto" picks for OpenAI-compatible servers.
        kwargs.setdefault("transport", "litellm")
        kwargs.setdefault("log_dir", str(tmp_path / "runs"))
        kwargs.setdefault("cell_timeout_s", 20)
        return RLM(model=srv.model, api_base=srv.base_url, api_key="scripted-key-123", **kwargs)

    return make
