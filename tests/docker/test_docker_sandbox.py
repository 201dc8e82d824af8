"""The Docker backend against a real daemon: behaviour, hardening flags, the context crossing
once, host functions, timeouts, memory kills, and the container layer on its own."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from docker_helpers import (docker_exec, inspect, session_containers, volume_exists,
                            volumes_of)
from rlm_jupyter.sandbox import Sandbox, SandboxError, open_sandbox
from rlm_jupyter.sandbox import docker as dsb

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_ready")]

CALLS: list[tuple[str, object]] = []


def llm_query(prompt: str, model: str | None = None) -> str:
    CALLS.append(("llm_query", (prompt, model)))
    return f"answer to: {prompt}"


def llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]:
    return [f"answer to: {p}" for p in prompts]


def slow_query(prompt: str) -> str:
    time.sleep(2.0)
    return prompt.upper()


def failing(x: str) -> str:
    raise ValueError(f"bad input {x}")


FUNCTIONS = {"llm_query": llm_query, "llm_query_batched": llm_query_batched,
             "slow_query": slow_query, "failing": failing}


@pytest.fixture(scope="module")
def sb(docker_ready):
    box = open_sandbox("docker", context="The quick brown fox. The lazy dog.",
                       functions=FUNCTIONS, timeout_s=10)
    yield box
    box.close()


def ok(box: Sandbox, code: str, **kwargs):
    r = box.execute(code, **kwargs)
    assert r.error is None, r.error
    return r


# ---- behaviour ---------------------------------------------------------------------------


def test_open_execute_close_removes_container() -> None:
    box = open_sandbox("docker", context="abc", timeout_s=10)
    try:
        assert isinstance(box, Sandbox) and box.kind == "docker"
        name = box.container_name
        assert session_containers(box.session_id) == [name]
        volumes = volumes_of(name)
        assert ok(box, "x = 20\nprint(context)").stdout == "abc\n"
        assert ok(box, "print(x * 2 + 2)").stdout == "42\n"
        assert box.get_variable("x") == "20"
        assert box.variables().get("x") == "int"
        r = ok(box, "FINAL('done')")
        assert r.final == "done"
    finally:
        box.close()
    assert session_containers(box.session_id) == []
    assert volumes and not [v for v in volumes if volume_exists(v)]  # removed with it
    box.close()  # twice is fine
    with pytest.raises(SandboxError, match="closed"):
        box.execute("print(1)")


def test_state_persists_and_errors_do_not_break_it(sb: Sandbox) -> None:
    ok(sb, "total = 0\nfor w in context.split():\n    total += len(w)")
    r = sb.execute("1 / 0")
    assert r.error and "ZeroDivisionError" in r.error and not r.restarted
    assert ok(sb, "print(total)").stdout == "28\n"


def test_answer_dict_and_final_var(sb: Sandbox) -> None:
    r = ok(sb, "answer['content'] = 'fox and dog'\nanswer['ready'] = True")
    assert r.answer == {"content": "fox and dog", "ready": True}
    r = ok(sb, "result = {'n': 2}\nFINAL_VAR('result')")
    assert r.final == "{'n': 2}"


def test_pandas_works_inside_the_image(sb: Sandbox) -> None:
    r = ok(sb, "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})\nprint(int(df.a.sum()))")
    assert r.stdout == "6\n"


# ---- host functions ------------------------------------------------------------------------


def test_llm_query_is_proxied_to_the_host(sb: Sandbox) -> None:
    CALLS.clear()
    r = ok(sb, "print(llm_query('what is in the context?', model='small'))")
    assert r.stdout == "answer to: what is in the context?\n"
    assert CALLS == [("llm_query", ("what is in the context?", "small"))]
    r = ok(sb, "print(llm_query_batched(['a', 'b']))")
    assert r.stdout == "['answer to: a', 'answer to: b']\n"


def test_host_function_errors_reach_the_cell(sb: Sandbox) -> None:
    r = sb.execute("failing('zz')")
    assert r.error and "bad input zz" in r.error and not r.restarted
    assert ok(sb, "print('still here')").stdout == "still here\n"


def test_time_in_host_functions_does_not_count(sb: Sandbox) -> None:
    r = sb.execute("print(slow_query('abc'))", timeout_s=1)
    assert r.error is None and not r.timed_out, r.error
    assert r.stdout == "ABC\n"


# ---- the context crosses once ------------------------------------------------------------


def test_large_context_is_copied_in_once_not_mounted_nor_piped() -> None:
    text = ("lorem ipsum dolor sit amet " * 200_000) + "NEEDLE-4711"  # about 5.4 MB
    box = open_sandbox("docker", context=text, timeout_s=20)
    try:
        name = box.container_name
        # No host path is mounted (a remote daemon could not see it): worker.py and the
        # context were copied into the container's own volume with put_archive.
        mounts = json.loads(inspect(name, "{{json .Mounts}}"))
        assert [(m["Type"], m["Destination"]) for m in mounts] == \
            [("volume", dsb.FILES_IN_CONTAINER)]
        assert inspect(name, "{{json .HostConfig.Binds}}") in ("null", "[]")
        # The whole handshake sent over the attach socket (policy sources included) is far
        # smaller than the context: the context never went through it.
        start_bytes = box._stdio.sent  # noqa: SLF001 - test introspection
        assert start_bytes < len(text) / 2, start_bytes
        for _ in range(10):
            assert ok(box, "print(len(context), context[-6:])").stdout == \
                f"{len(text)} E-4711\n"
        per_cells = box._stdio.sent - start_bytes  # noqa: SLF001
        assert per_cells < 200_000, per_cells
        assert box.memory_mb >= dsb.default_memory_mb(len(text))
        assert int(inspect(name, "{{.HostConfig.Memory}}")) == box.memory_mb * 1024 * 1024
    finally:
        box.close()


def test_restart_copies_the_context_in_again() -> None:
    box = open_sandbox("docker", context="copied twice", timeout_s=1, grace_s=1)
    try:
        first = box.container_name
        r = box.execute("import re\nre.match('(a+)+$', 'a' * 40 + 'b')")
        assert r.restarted and box.container_name != first
        assert ok(box, "print(context)").stdout == "copied twice\n"
    finally:
        box.close()


def test_an_idle_sandbox_outlives_the_clients_request_timeout() -> None:
    """The attach socket must not inherit the SDK's request timeout (60 s by default)."""
    import docker

    box = open_sandbox("docker", context="abc", timeout_s=10,
                       client=docker.from_env(timeout=2))
    try:
        ok(box, "y = 7")
        time.sleep(3)
        r = box.execute("print(y)")
        assert r.stdout == "7\n" and not r.restarted, r
    finally:
        box.close()


def test_dataframe_context_loads_in_the_images_pandas() -> None:
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    df = pd.DataFrame({
        "user": ["ann", "bob", "ann", None],
        "n": [1, 2, 3, 4],
        "score": [0.5, np.nan, 1.5, 2.0],
        "when": pd.to_datetime(["2024-01-01", None, "2024-03-01", "2024-04-01"]),
        "kind": pd.Categorical(["a", "b", "a", "a"]),
    }, index=pd.Index([10, 20, 30, 40], name="id"))
    ctx = {"df": df, "arr": np.arange(4), "count": np.int64(7)}
    box = open_sandbox("docker", context=ctx, timeout_s=20)
    try:
        r = ok(box, "df = context['df']\n"
                    "print(df.shape, list(df.columns), df.index.name)\n"
                    "print(int(df[df.user == 'ann'].n.sum()), float(df.score.sum()))\n"
                    "print(str(df.when.dtype), str(df.kind.dtype), df.when.isna().sum())\n"
                    "print(list(context['arr']), context['count'])")
        assert r.stdout.splitlines() == [
            "(4, 5) ['user', 'n', 'score', 'when', 'kind'] id",
            "4 4.0",
            "datetime64[ns] category 1",
            "[0, 1, 2, 3] 7",
        ]
    finally:
        box.close()


# ---- timeouts and memory -----------------------------------------------------------------


def test_soft_timeout_keeps_state() -> None:
    box = open_sandbox("docker", context="abc", timeout_s=1.5)
    try:
        ok(box, "keep = 'kept'")
        name = box.container_name
        r = box.execute("n = 0\nwhile True:\n    n += 1")
        assert r.timed_out and not r.restarted
        assert ok(box, "print(keep, n > 0)").stdout == "kept True\n"
        assert box.container_name == name
    finally:
        box.close()


def test_hard_timeout_kills_and_restarts_the_container() -> None:
    box = open_sandbox("docker", context="ctx", timeout_s=1, grace_s=1)
    try:
        ok(box, "lost = 1")
        first = box.container_name
        first_volumes = volumes_of(first)
        t0 = time.monotonic()
        # Catastrophic regex backtracking runs in C: the worker's own deadline cannot stop it.
        r = box.execute("import re\nre.match('(a+)+$', 'a' * 40 + 'b')")
        assert time.monotonic() - t0 < 20
        assert r.timed_out and r.restarted
        assert any("restarted" in n for n in r.notes)
        assert box.container_name != first
        assert session_containers(box.session_id) == [box.container_name]
        assert first_volumes and not [v for v in first_volumes if volume_exists(v)]
        r = box.execute("print(context)\nprint(lost)")
        assert r.stdout == "ctx\n" and r.error and "lost" in r.error
    finally:
        box.close()


def test_memory_kill_is_reported_and_the_run_goes_on() -> None:
    box = open_sandbox("docker", context="still here", timeout_s=30, memory_mb=200)
    try:
        assert int(inspect(box.container_name, "{{.HostConfig.MemorySwap}}")) == \
            200 * 1024 * 1024
        r = box.execute("blocks = []\nfor i in range(4000):\n"
                        "    blocks.append(bytearray(1024 * 1024))\nprint(len(blocks))")
        assert r.restarted and r.error
        assert "memory" in r.error.lower() and "200 MB" in r.error
        assert ok(box, "print(context)").stdout == "still here\n"
    finally:
        box.close()


# ---- the container layer on its own (as if the Python policy were broken) ------------------


def test_container_flags_and_labels(sb: dsb.DockerSandbox) -> None:
    name = sb.container_name
    host = inspect(name, "{{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} "
                         "{{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} "
                         "{{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} "
                         "{{.Config.User}} {{.HostConfig.LogConfig.Type}} "
                         "{{.HostConfig.Init}} {{.HostConfig.AutoRemove}}")
    assert host.split() == ["none", "true", "128", "1000000000", "[ALL]",
                            "[no-new-privileges]", "65534:65534", "none", "true", "true"]
    tmpfs = inspect(name, "{{json .HostConfig.Tmpfs}}")
    assert '"/tmp"' in tmpfs and "size=64m" in tmpfs and "noexec" in tmpfs
    labels = {key: inspect(name, f'{{{{index .Config.Labels "{key}"}}}}')
              for key in (dsb.LABEL, dsb.LABEL_PID, dsb.LABEL_HOST, dsb.LABEL_SESSION)}
    assert labels == {dsb.LABEL: "1", dsb.LABEL_PID: str(os.getpid()),
                      dsb.LABEL_HOST: dsb._hostname(), dsb.LABEL_SESSION: sb.session_id}
    env = inspect(name, "{{json .Config.Env}}")
    for secret in ("OPENAI", "API_KEY", "RLM_", "LITELLM"):
        assert secret not in env


def test_no_network_in_the_container(sb: dsb.DockerSandbox) -> None:
    probe = ("import socket\ns = socket.socket()\ns.settimeout(3)\n"
             "print(s.connect_ex(('1.1.1.1', 80)))\n"
             "print([i for i in socket.if_nameindex()])")
    out = docker_exec(sb.container_name, "python3", "-c", probe)
    assert out.returncode == 0, out.stderr
    code, ifaces = out.stdout.splitlines()
    assert int(code) != 0  # ENETUNREACH: nothing but loopback exists
    assert "eth" not in ifaces


def test_read_only_root_nobody_and_no_capabilities(sb: dsb.DockerSandbox) -> None:
    probe = ("import os\n"
             "for p in ('/x', '/opt/rlm/worker.py', '/opt/rlm/context', '/opt/rlm/new',\n"
             "          '/etc/passwd'):\n"
             "    try:\n"
             "        open(p, 'a').close(); print('wrote', p)\n"
             "    except OSError as e:\n"
             "        print('refused', p, e.errno)\n"
             "print(os.getuid(), os.getgid())\n"
             "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
             "print(status['CapEff'].strip())\n"
             "print(status['NoNewPrivs'].strip())")
    out = docker_exec(sb.container_name, "python3", "-c", probe)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert not [line for line in lines if line.startswith("wrote")], lines
    assert lines[-3:] == ["65534 65534", "0000000000000000", "1"]


def test_host_secrets_do_not_reach_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-docker-0042")
    box = open_sandbox("docker", context="x", timeout_s=10)
    try:
        out = docker_exec(box.container_name, "sh", "-c", "cat /proc/1/environ /proc/*/environ")
        assert "sk-canary-docker-0042" not in out.stdout
        assert "sk-canary-docker-0042" not in inspect(box.container_name, "{{json .Config}}")
    finally:
        box.close()


# ---- errors that tell the user what to do -------------------------------------------------


def test_missing_image_says_how_to_build_it() -> None:
    with pytest.raises(SandboxError) as err:
        open_sandbox("docker", image="rlm-jupyter/no-such-image:0", timeout_s=5)
    assert "docker build" in str(err.value) and "no-such-image" in str(err.value)


def test_missing_daemon_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxError, match="daemon is not reachable.*dockerd"):
        dsb.check_daemon()


def test_image_option_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    image = os.environ.get("RLM_DOCKER_IMAGE") or dsb.DEFAULT_IMAGE
    monkeypatch.setenv("RLM_DOCKER_IMAGE", "rlm-jupyter/not-this-one:0")
    with pytest.raises(SandboxError, match="not-this-one"):
        open_sandbox("docker", timeout_s=5)
    box = open_sandbox("docker", image=image, timeout_s=5)
    try:
        assert box.image == image
        assert ok(box, "print(1 + 1)").stdout == "2\n"
    finally:
        box.close()


def test_concurrent_close_during_a_cell_stops_everything() -> None:
    box = open_sandbox("docker", context="abc", timeout_s=60)
    results = []
    worker = threading.Thread(target=lambda: results.append(box.execute("while True:\n    pass")))
    worker.start()
    time.sleep(1.0)
    box.close()
    worker.join(30)
    assert not worker.is_alive()
    assert results and (results[0].error or results[0].timed_out)
    assert session_containers(box.session_id) == []


def test_missing_interpreter_says_what_to_pass() -> None:
    with pytest.raises(SandboxError) as err:
        open_sandbox("docker", python="no-such-python3", timeout_s=5)
    assert "no-such-python3" in str(err.value) and "python=" in str(err.value)
