"""litellm callbacks (Langfuse, MLflow...) do not fire on the direct HTTP path: said once."""

from __future__ import annotations

import warnings

from rlm_jupyter import RLM, telemetry


def test_callbacks_on_the_direct_path_are_reported_once(server_factory, tmp_path,
                                                        monkeypatch):
    import litellm

    def my_logger(*args, **kwargs):
        pass

    monkeypatch.setattr(litellm, "success_callback", [my_logger])
    monkeypatch.setattr(telemetry, "_litellm_note_given", False)
    srv = server_factory(root=lambda req: "FINAL(ok)")
    rlm = RLM(model=srv.model, api_base=srv.base_url, api_key="k", sandbox="inprocess",
              log_dir=str(tmp_path))
    assert rlm.settings.effective_transport == "http"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = rlm.run("q", context="c")
        second = rlm.run("q", context="c")
    said = [n for n in first.notes if "transport='litellm'" in n]
    assert len(said) == 1 and "my_logger" in said[0]
    assert not [n for n in second.notes if "transport='litellm'" in n]
    assert len([w for w in caught if "transport='litellm'" in str(w.message)]) == 1


def test_no_note_through_litellm_or_without_callbacks(server_factory, tmp_path, monkeypatch):
    import litellm

    monkeypatch.setattr(telemetry, "_litellm_note_given", False)
    monkeypatch.setattr(litellm, "success_callback", [])
    monkeypatch.setattr(litellm, "callbacks", [])
    monkeypatch.setattr(litellm, "failure_callback", [])
    srv = server_factory(root=lambda req: "FINAL(ok)")
    plain = RLM(model=srv.model, api_base=srv.base_url, api_key="k", sandbox="inprocess",
                log_dir=str(tmp_path)).run("q", context="c")
    assert not [n for n in plain.notes if "transport='litellm'" in n]
    monkeypatch.setattr(litellm, "success_callback", [lambda *a, **k: None])
    through = RLM(model=srv.model, api_base=srv.base_url, api_key="k", sandbox="inprocess",
                  transport="litellm", log_dir=str(tmp_path)).run("q", context="c")
    assert through.answer == "ok"
    assert not [n for n in through.notes if "transport='litellm'" in n]
