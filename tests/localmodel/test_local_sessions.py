"""A session with a real model (the 0.5B Qwen coder through llama.cpp): two asks, the second a
follow-up of the first.

The 0.5B model is too weak to assert its answers, so the test asserts what a real model
exercises and a scripted one cannot: the first ask's code really ran and left variables in the
REPL; the follow-up's first request carried the first question, the first answer and the names
of those variables; the follow-up's own code ran in the same REPL (the variables are still
there afterwards); each ask kept its own usage and the session added them up.
"""

from __future__ import annotations

import pytest

from test_local_e2e import CONTEXT, _Recorder, _text  # noqa: F401  (same folder)

pytestmark = [pytest.mark.localmodel, pytest.mark.slow, pytest.mark.timeout(2700)]


def test_a_follow_up_in_a_session_with_a_real_model(local_server) -> None:
    from rlm_jupyter import RLM

    with _Recorder(local_server.api_base) as recorder:
        rlm = RLM(model=local_server.litellm_model, api_base=recorder.base_url, api_key="local",
                  sandbox="local", max_iterations=2, timeout_s=900, temperature=0.0,
                  cache=False, request_timeout_s=600)
        with rlm.session(context=CONTEXT) as s:
            first = s.ask("Which line mentions the secret code word?")
            made = set(s.variables()) - {"context"}
            n_requests = len([b for b in recorder.bodies if "messages" in b])
            second = s.ask("What is the code word on that line?")
            after = set(s.variables())
            total = s.usage
        chat = [b for b in recorder.bodies if "messages" in b]
    print("first:", first.status, first.answer, "| vars:", made)
    print("second:", second.status, second.answer)
    for result in (first, second):
        assert result.trajectory is not None and result.trajectory.turns
        if result.error is not None:
            assert type(result.error).__name__ == "TurnLimitExceeded", repr(result.error)
    ran_first = [c for t in first.trajectory.turns for c in t.code]
    assert ran_first, "the model wrote no ```repl block in the first ask"
    # The follow-up's first request: the earlier question and answer, and the REPL's names.
    followup = "\n".join(_text(m) for m in chat[n_requests]["messages"])
    assert "Which line mentions the secret code word?" in followup
    assert "follow-up question in the same session" in followup
    for name in made:
        assert name in followup, f"{name} (made by the first ask) not named to the model"
    assert made <= after, "the first ask's variables did not survive into the second"
    # Each ask has its own usage; the session adds them up.
    model = local_server.litellm_model
    assert total[model]["calls"] == (first.usage[model]["calls"] + second.usage[model]["calls"])
