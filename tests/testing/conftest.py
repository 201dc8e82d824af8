from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session")
def litellm() -> Any:
    import litellm as _litellm

    _litellm.suppress_debug_info = True
    return _litellm


@pytest.fixture
def chat(litellm):
    """``chat(srv, messages, **kw)``: one completion through litellm's real HTTP path."""

    def call(srv, messages, **kwargs):
        kwargs.setdefault("max_retries", 0)
        return litellm.completion(model=srv.model, api_base=srv.base_url, api_key="scripted",
                                  messages=messages, **kwargs)

    return call


def _root_messages(question: str = "What is the key?", *history: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are an RLM."},
                {"role": "user", "content": f"Question: {question}\n\nThe context is a str."}]
    for i, text in enumerate(history):
        messages.append({"role": "assistant" if i % 2 == 0 else "user", "content": text})
    return messages


@pytest.fixture
def root_messages():
    """``root_messages(question, *history)``: messages shaped like the engine's root turns
    (system prompt, "Question: ..." user message, then alternating assistant/user texts)."""
    return _root_messages
