"""A whole RLM run with sandbox="docker" over real HTTP (the scripted server): the model's code
runs in the container and its llm_query calls come back through the host to the server."""

from __future__ import annotations

import re

import pytest

from rlm_jupyter.sandbox import docker as dsb

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_ready")]

NEEDLE_RE = re.compile(r"secret number for project KIWI is (\d+)")


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


def needle_sub(prompt: str, req) -> str:
    match = NEEDLE_RE.search(prompt)
    return match.group(1) if match else "NONE"


def test_rlm_run_in_docker_with_subcalls(tmp_path) -> None:
    from rlm_jupyter import RLM
    from rlm_jupyter.testing import ScriptedServer

    line = "The harbour report says calm seas and light wind today.\n"
    context = line * 20_000 + "The secret number for project KIWI is 5150.\n" + line * 20_000
    turns = [
        fence("print(len(context))"),
        fence("size = 200_000\n"
              "chunks = [context[i:i + size] for i in range(0, len(context), size)]\n"
              "answers = llm_query_batched(['Find the KIWI number; else NONE.\\n' + c\n"
              "                             for c in chunks])\n"
              "found = [a for a in answers if a != 'NONE']\n"
              "print(found)"),
        fence("FINAL(found[0])"),
    ]
    before = {r["name"] for r in dsb.list_sandbox_containers()}
    with ScriptedServer(root=turns, sub=needle_sub) as srv:
        rlm = RLM(model=srv.model, api_base=srv.base_url, api_key="scripted-key",
                  sandbox="docker", log_dir=str(tmp_path / "runs"))
        result = rlm.run("What is the KIWI number?", context=context)
    assert result.error is None, result.error
    assert result.answer == "5150"
    turns_run = result.trajectory.turns
    assert str(len(context)) in turns_run[0].code[0].stdout
    assert "5150" in turns_run[1].code[0].stdout
    # the run closed its container
    assert {r["name"] for r in dsb.list_sandbox_containers()} <= before
