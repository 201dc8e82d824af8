"""The request body joined from remembered messages is byte for byte ``json.dumps``."""

from __future__ import annotations

import json

from rlm_jupyter.engine.request_body import MessageMemo, chat_body


def _history(turns: int) -> list[dict]:
    messages = [{"role": "system", "content": "You answer questions. ünïcødé \u2603 \"quoted\""},
                {"role": "user", "content": "Question: q\n\nline\twith tab"}]
    for i in range(turns):
        messages.append({"role": "assistant", "content": f"```repl\nx = {i}\n```"})
        messages.append({"role": "user", "content": "Output:\n(nothing printed)"})
    return messages


def test_bytes_equal_json_dumps_as_the_history_grows():
    memo = MessageMemo()
    fields = {"model": "m", "temperature": 0, "stream": True,
              "stream_options": {"include_usage": True}}
    for turns in range(6):
        messages = _history(turns)
        assert chat_body(memo, messages, fields) == \
            json.dumps({**fields, "messages": messages}).encode()
    assert chat_body(memo, _history(2), {}) == json.dumps({"messages": _history(2)}).encode()


def test_same_text_under_another_role_or_with_more_keys_is_encoded_as_it_is():
    memo = MessageMemo()
    first = [{"role": "user", "content": "same"}, {"role": "assistant", "content": "same"},
             {"role": "user", "content": "same", "name": "alice"},
             {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]
    for _ in range(2):
        body = json.loads(chat_body(memo, first, {"model": "m"}))
        assert body["messages"] == first


def test_the_memo_stays_within_its_size():
    memo = MessageMemo(max_bytes=2000)
    for i in range(200):
        chat_body(memo, [{"role": "user", "content": f"message {i} " + "x" * 100},
                         {"role": "assistant", "content": f"reply {i}"}], {"model": "m"})
    assert 0 < len(memo) < 40
    assert memo._size <= 2000


def test_a_single_prompt_is_not_remembered():
    memo = MessageMemo()
    chat_body(memo, [{"role": "user", "content": "a sub-call's prompt"}], {"model": "m"})
    assert len(memo) == 0
