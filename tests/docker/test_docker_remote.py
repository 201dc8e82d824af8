"""A daemon named only by ``DOCKER_HOST`` (the remote case): nothing of ours may be mounted
from the host's filesystem, so worker.py and the context must reach the container through the
API. CI (``.ci/run``) starts dockerd on a second address and exports it as
``RLM_TEST_DOCKER_HOST_ALT``; the test fails in CI without it and skips locally."""

from __future__ import annotations

import os

import pytest

from docker_helpers import require_or_skip
from rlm_jupyter.sandbox import open_sandbox
from rlm_jupyter.sandbox import docker as dsb

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_ready")]

ALT_ENV = "RLM_TEST_DOCKER_HOST_ALT"


@pytest.fixture
def alt_host(monkeypatch: pytest.MonkeyPatch) -> str:
    alt = os.environ.get(ALT_ENV, "")
    require_or_skip(bool(alt), f"{ALT_ENV} is not set: start dockerd with a second address "
                               f"(`dockerd -H unix:///var/run/docker.sock -H "
                               f"tcp://127.0.0.1:2375`, as .ci/run does) and export it")
    monkeypatch.setenv("DOCKER_HOST", alt)
    for var in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(var, raising=False)
    return alt


def test_sandbox_on_a_daemon_named_only_by_docker_host(alt_host: str) -> None:
    client = dsb.docker_client()
    if alt_host.startswith("tcp://"):
        assert client.api.base_url == "http://" + alt_host[len("tcp://"):]
    text = "remote context " * 10_000 + "NEEDLE-99"
    calls: list[str] = []

    def llm_query(prompt: str, model: str | None = None) -> str:
        calls.append(prompt)
        return prompt.upper()

    box = open_sandbox("docker", context=text, functions={"llm_query": llm_query},
                       timeout_s=1, grace_s=1)
    try:
        assert box.client is client
        info = client.api.inspect_container(box.container_name)
        assert [m for m in info["Mounts"] if m["Type"] == "bind"] == []
        assert not info["HostConfig"].get("Binds")
        assert [(m["Type"], m["Destination"]) for m in info["Mounts"]] == \
            [("volume", dsb.FILES_IN_CONTAINER)]
        host = info["HostConfig"]
        assert (host["NetworkMode"], host["ReadonlyRootfs"], host["CapDrop"]) == \
            ("none", True, ["ALL"])
        r = box.execute("print(len(context), context[-9:])\nprint(llm_query('hi there'))")
        assert r.error is None, r.error
        assert r.stdout == f"{len(text)} NEEDLE-99\nHI THERE\n"
        assert calls == ["hi there"]
        # Past the hard deadline: a fresh container on the same daemon, context copied again.
        first = box.container_name
        r = box.execute("import re\nre.match('(a+)+$', 'a' * 40 + 'b')")
        assert r.timed_out and r.restarted and box.container_name != first
        assert box.execute("print(context[-9:])").stdout == "NEEDLE-99\n"
    finally:
        box.close()
    assert dsb.list_sandbox_containers(client, session=box.session_id) == []
