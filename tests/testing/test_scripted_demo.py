"""The generic demo policy: keyword sub-calls, the peek/map/reduce root, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from rlm_jupyter.testing import ScriptedServer, answer_from_prompt, best_line, keywords

QUESTION = "What is the secret code for the vault?"


def haystack(n: int = 3000, at: int = 1900) -> list[str]:
    lines = [f"Entry {i}: the harbour was calm and the boats stayed in." for i in range(n)]
    lines.insert(at, "The secret code for the vault is 4417.")
    return lines


def test_keywords_drop_stopwords_and_short_words_but_keep_numbers():
    assert keywords("What is the secret code for the vault?") == ["secret", "code", "vault"]
    assert keywords("Which value does key XK-4821 hold in 2019?") == ["value", "xk-4821", "hold", "2019"]


def test_best_line_prefers_most_hits_then_first():
    text = "the code is red\nsecret vault code: 9\nsecret vault code: 10\nnothing"
    assert best_line(QUESTION, text) == "secret vault code: 9"
    assert best_line(QUESTION, "nothing to see") is None


def test_answer_from_prompt_reads_question_and_chunk():
    prompt = f"Reply NOT FOUND if absent.\nQuestion: {QUESTION}\n\nChunk:\n" + "\n".join(
        haystack(50, 20))
    assert answer_from_prompt(prompt) == "The secret code for the vault is 4417."
    assert answer_from_prompt(f"Question: {QUESTION}\n\nChunk:\nall quiet") == "NOT FOUND"
    assert answer_from_prompt("no question, just one line") == "NOT FOUND"
    # Without a Question: line the first line is the question and the rest the text.
    assert answer_from_prompt("Find the vault code\nx\nvault code = 12\ny") == "vault code = 12"


def test_demo_root_replies_follow_the_plan(chat, root_messages):
    with ScriptedServer.demo() as srv:
        history: list[str] = []
        replies = []
        for _ in range(4):
            reply = chat(srv, root_messages(QUESTION, *history)).choices[0].message.content
            replies.append(reply)
            history += [reply, "Output:\n..."]
    peek, mapping, reduce, give_up = replies
    assert "```repl" in peek and "len(context)" in peek
    assert "llm_query_batched(" in mapping and repr(QUESTION) in mapping
    assert "FINAL(" in reduce and "NOT FOUND" in reduce
    assert give_up.strip().endswith("FINAL(I could not find it)")
    for code in (peek, mapping, reduce):
        body = code.split("```repl\n", 1)[1].split("```", 1)[0]
        compile(body, "<demo>", "exec")  # valid Python


@pytest.fixture(scope="module")
def demo_server():
    with ScriptedServer.demo() as srv:
        yield srv


def _contexts():
    lines = haystack()
    contexts = {"str": "\n".join(lines), "list": lines,
                "dict": {"first": "\n".join(lines[:1500]), "second": "\n".join(lines[1500:])}}
    try:
        import pandas as pd
    except ImportError:
        return contexts
    contexts["DataFrame"] = pd.DataFrame({"entry": lines})
    return contexts


@pytest.mark.parametrize("kind", ["str", "list", "dict", "DataFrame"])
def test_demo_finds_a_needle_through_the_engine(demo_server, tmp_path, kind):
    contexts = _contexts()
    if kind not in contexts:
        pytest.skip("pandas is not installed")
    from rlm_jupyter import RLM

    before = len(demo_server.requests)
    rlm = RLM(**demo_server.client_kwargs, log_dir=str(tmp_path))
    result = rlm.run(QUESTION, context=contexts[kind])
    assert result.error is None, result.error
    assert result.answer == "The secret code for the vault is 4417."
    requests = demo_server.requests.snapshot()[before:]
    subs = [r for r in requests if r.kind == "sub"]
    assert [r.turn for r in requests if r.kind == "root"] == [1, 2, 3]
    assert 8 <= len(subs) <= 16
    assert sum(r.reply == "NOT FOUND" for r in subs) == len(subs) - 1


def test_demo_says_when_it_cannot_find_it(demo_server, tmp_path):
    from rlm_jupyter import RLM

    result = RLM(**demo_server.client_kwargs, log_dir=str(tmp_path)).run(
        "Who painted the ceiling?", context="\n".join(haystack(200, 10)[:10]))
    assert result.answer == "I could not find it"


def test_cli_serves_the_demo():
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_jupyter.testing", "serve", "--demo", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        body = json.dumps({"model": "scripted", "messages": [
            {"role": "user", "content": f"Question: {QUESTION}\n\nChunk:\nvault code 77"}]})
        request = urllib.request.Request(base_url + "/chat/completions", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        assert reply["choices"][0]["message"]["content"] == "vault code 77"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
