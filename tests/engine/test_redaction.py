"""Known secrets never leave the engine: not in prompts, events, the answer or the log.

A sandbox cell prints a key (here the key reaches the sandbox as the context, standing in for
code that found it in memory); the scripted server records what the engine sent next.
"""

from __future__ import annotations

import json

import pytest

from rlm_jupyter import RLM
from rlm_jupyter.engine.redact import Redactor, known_secrets, marker

KEY = "sk-test-9f8e7d6c5b4a39281706"
TOKEN = "tok-live-ABCDEFGH12345678"


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


# Each channel in turn: stdout fed back, a sub-call prompt, an error, the answer.
SCRIPT = [
    fence("print('the context says', context)"),
    fence("print(llm_query('echo this: ' + context))"),
    fence("raise ValueError('bad ' + context)"),
    fence("result = 'answer: ' + context") + "\nFINAL_VAR(result)",
]


def _sent_text(srv) -> str:
    return json.dumps([r.messages for r in srv.requests])


@pytest.mark.parametrize("sandbox", ["inprocess", "local"])
def test_printed_key_reaches_no_prompt_event_answer_or_log(server_factory, tmp_path,
                                                           monkeypatch, sandbox):
    monkeypatch.setenv("MY_SERVICE_TOKEN", TOKEN)
    srv = server_factory(root=lambda req: SCRIPT[req.turn - 1],
                         sub=lambda prompt, req: "echo: " + prompt)
    rlm = RLM(model=srv.model, api_base=srv.base_url, api_key=KEY, sandbox=sandbox,
              transport="http", log_dir=str(tmp_path / "runs"), cell_timeout_s=20)
    result = rlm.run("What does the context hold?", context=f"key={KEY} token={TOKEN}")
    assert result.error is None, result.error

    sent = _sent_text(srv)
    assert KEY not in sent and TOKEN not in sent
    assert marker("api_key") in sent and marker("MY_SERVICE_TOKEN") in sent
    assert len(srv.requests.subs()) == 1 and marker("api_key") in srv.requests.subs()[0].prompt

    events = json.dumps([e.to_dict() for e in result.events], default=str)
    assert KEY not in events and TOKEN not in events
    codes = [c for t in result.trajectory.turns for c in t.code]
    assert marker("api_key") in codes[0].stdout and marker("api_key") in (codes[2].error or "")

    assert result.answer == f"answer: key={marker('api_key')} token={marker('MY_SERVICE_TOKEN')}"
    log = result.log_path.read_text()
    assert KEY not in log and TOKEN not in log and marker("api_key") in log


def test_secret_in_the_question_and_error_is_redacted(server_factory, tmp_path):
    srv = server_factory(root=["no code here"] * 3, exhausted="repeat")
    rlm = RLM(model=srv.model, api_base=srv.base_url, api_key=KEY, sandbox="inprocess",
              transport="http", log_dir=str(tmp_path / "runs"), max_iterations=1)
    result = rlm.run(f"Is {KEY} valid?", context="c")
    assert KEY not in _sent_text(srv)
    assert KEY not in json.dumps([e.to_dict() for e in result.events], default=str)
    assert KEY not in (result.answer or "") and KEY not in str(result.error)


def test_no_secrets_leaves_text_untouched():
    redactor = Redactor({})
    text = "plain output"
    assert not redactor and redactor.redact(text) is text


def test_known_secrets_from_the_environment():
    env = {"OPENAI_API_KEY": "sk-aaaaaaaaaaaa", "HF_TOKEN": "hf_bbbbbbbbbbbb",
           "AWS_SECRET_ACCESS_KEY": "cccccccc/dddd+eeee", "DB_PASSWORD": "hunter22hunter",
           "WATSONX_APIKEY": "wwww1111wwww", "RLM_API_KEY": "rlm-key-0000000",
           "SHORT_TOKEN": "abc", "PWD": "/home/someone/project", "PATH": "/usr/bin:/bin",
           "HF_TOKEN_PATH": "/home/someone/.token", "HOME": "/home/someone"}
    found = known_secrets("sk-run-key-12345", environ=env)
    assert set(found.values()) == {"OPENAI_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY",
                                   "DB_PASSWORD", "WATSONX_APIKEY", "RLM_API_KEY", "api_key"}
    redactor = Redactor(found)
    out = redactor.redact("a sk-aaaaaaaaaaaa b cccccccc/dddd+eeee c /home/someone/project")
    assert out == (f"a {marker('OPENAI_API_KEY')} b {marker('AWS_SECRET_ACCESS_KEY')} "
                   "c /home/someone/project")


def test_run_key_from_a_variable_is_named_after_it():
    found = known_secrets("sk-aaaaaaaaaaaa", environ={"OPENAI_API_KEY": "sk-aaaaaaaaaaaa"})
    assert found == {"sk-aaaaaaaaaaaa": "OPENAI_API_KEY"}


def test_plain_words_are_not_secrets():
    # The scripted server's key is "scripted", also part of its model name.
    assert known_secrets("scripted", environ={"MY_PASSWORD": "password"}) == {}
    assert Redactor({"scripted": "api_key"}).redact("openai/scripted") == "openai/scripted"
    assert known_secrets("scriptedscriptedx", environ={}) == {"scriptedscriptedx": "api_key"}


def test_longest_secret_wins():
    redactor = Redactor({"abcdefg1": "SHORT", "abcdefg1-ijkl": "LONG"})
    assert redactor.redact("x abcdefg1-ijkl y abcdefg1") == \
        f"x {marker('LONG')} y {marker('SHORT')}"


def test_messages_are_redacted_in_place_without_touching_clean_ones():
    redactor = Redactor({"sk-aaaaaaaaaaaa": "K"})
    clean = {"role": "user", "content": "fine"}
    messages = [clean, {"role": "user", "content": "k=sk-aaaaaaaaaaaa"}]
    redactor.redact_messages(messages)
    assert messages[0] is clean and messages[1]["content"] == f"k={marker('K')}"
