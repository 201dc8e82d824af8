"""Mistakes found before the first model call: nothing is paid for a run that cannot work."""

from __future__ import annotations

import io

import pytest

from rlm_jupyter import RLM
from rlm_jupyter.errors import ConfigError


class Thing:
    """Stands for a class defined in a notebook cell."""

    def __init__(self) -> None:
        self.x = 1


Thing.__module__ = "__main__"


def _gen():
    yield 1


@pytest.mark.parametrize("context,needle", [
    (_gen(), "materialise it first"),
    ((i for i in range(3)), "list(gen)"),
    (lambda: 1, "call it and pass what it returns"),
    (io, "a module"),
    (io.StringIO("x"), "an open file"),
    (Thing(), "convert it to plain data, e.g. vars(obj)"),
    ({"docs": ["a", Thing()]}, "context['docs'][1] is an instance of Thing"),
])
def test_a_context_the_sandbox_cannot_take_fails_before_any_call(server_factory, tmp_path,
                                                                  context, needle):
    srv = server_factory(root=lambda req: "FINAL(done)")
    rlm = RLM(model=srv.model, api_base=srv.base_url, api_key="k", log_dir=str(tmp_path))
    with pytest.raises(ConfigError) as info:
        rlm.run("q", context=context)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert "sandbox='local'" not in message  # never suggests the sandbox already in use
    assert len(srv.requests) == 0  # nothing was paid for


def test_notebook_objects_work_in_process(server_factory, tmp_path):
    srv = server_factory(root=lambda req: "FINAL(done)")
    rlm = RLM(model=srv.model, api_base=srv.base_url, api_key="k", sandbox="inprocess",
              log_dir=str(tmp_path))
    assert rlm.run("q", context=Thing()).answer == "done"


@pytest.mark.parametrize("model,variable", [
    ("openai/gpt-4o-mini", "OPENAI_API_KEY"),
    ("anthropic/claude-3-5-sonnet-20240620", "ANTHROPIC_API_KEY"),
])
def test_a_missing_provider_key_is_named_before_any_call(monkeypatch, tmp_path, model,
                                                         variable):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RLM_API_KEY", "RLM_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        RLM(model=model, log_dir=str(tmp_path)).run("q", context="c")
    message = str(info.value)
    assert variable in message and "\n" not in message
    other = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} - {variable}
    assert not any(name in message for name in other)


def test_a_local_server_needs_no_key(server_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = server_factory(root=lambda req: "FINAL(done)")
    result = RLM(model=srv.model, api_base=srv.base_url,
                 log_dir=str(tmp_path)).run("q", context="c")
    assert result.answer == "done"
