"""The direct HTTP path for OpenAI-compatible servers keeps every engine guarantee."""

from __future__ import annotations

import pytest

from rlm_jupyter import RLM, errors
from rlm_jupyter.engine import events as ev


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


def make(srv, tmp_path, **kwargs):
    return RLM(model=srv.model, api_base=srv.base_url, api_key="k", transport="http",
               log_dir=str(tmp_path), **kwargs)


def test_batched_run_streaming_and_usage(server_factory, tmp_path):
    srv = server_factory(root=[fence("print(llm_query_batched(['a', 'b', 'c']))"),
                               "FINAL(over http)"], sub=lambda p, r: p.upper())
    seen = []
    result = make(srv, tmp_path).run("q", context="c", on_event=seen.append)
    assert result.error is None and result.answer == "over http"
    assert "['A', 'B', 'C']" in result.trajectory.turns[0].code[0].stdout
    assert any(isinstance(e, ev.ModelChunk) for e in seen)
    usage = result.usage[srv.model]
    assert usage["calls"] == 5 and usage["prompt_tokens"] > 100
    assert srv.requests[0].body["model"] == "scripted"


@pytest.mark.parametrize("fault", ["429", "500", "malformed", "disconnect"])
def test_recovers_from_faults(server_factory, tmp_path, fault):
    script = [fence("print(llm_query('x'))"), "FINAL(ok)"]
    srv = server_factory(root=lambda req: script[req.turn - 1], sub=lambda p, r: "y")
    srv.inject(fault, times=2)
    result = make(srv, tmp_path).run("q", context="c")
    assert result.error is None, result.error
    assert result.answer == "ok"


def test_requires_an_api_base(tmp_path):
    with pytest.raises(errors.ConfigError, match="api_base"):
        RLM(model="openai/x", transport="http", log_dir=str(tmp_path)).run("q", context="c")


def test_auto_picks_http_only_for_openai_compatible_endpoints():
    from rlm_jupyter.config import Settings

    assert Settings.resolve(model="openai/x", api_base="http://h/v1").effective_transport == "http"
    assert Settings.resolve(model="openai/gpt-4o-mini").effective_transport == "litellm"
    assert Settings.resolve(model="anthropic/claude", api_base="http://h").effective_transport \
        == "litellm"
    assert Settings.resolve(model="openai/x", api_base="http://h/v1",
                            transport="litellm").effective_transport == "litellm"


def test_bad_transport_name_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="transport"):
        RLM(model="openai/x", transport="carrier-pigeon")
