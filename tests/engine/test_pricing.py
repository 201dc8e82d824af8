"""Every call is priced as litellm prices it, without paying litellm's lookup on every call."""

from __future__ import annotations

import math

import pytest

from rlm_jupyter import RLM
from rlm_jupyter.engine import llm
from rlm_jupyter.engine.llm import _cost, get_litellm

COUNTS = [(1234, 56), (300_000, 7), (5, 99_999)]  # the middle one crosses tiered prices


def _litellm_price(litellm, model, prompt_tokens, completion_tokens):
    return sum(litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                      completion_tokens=completion_tokens))


def _sample(model_cost: dict) -> list[str]:
    """Every 6th model litellm knows, every model with tiered prices, and the ones whose
    litellm price is not the plain rate (a provider discount): ~1,000 models, a few seconds."""
    names = [n for n in model_cost if n != "sample_spec"]
    return [n for i, n in enumerate(names)
            if i % 6 == 0 or any("above_" in k for k in model_cost[n])
            or n.startswith(("deepseek/", "tencent/"))]


def test_mapped_models_are_priced_as_litellm_prices_them():
    """After the first call a flat-priced model is priced from its entry; the price must stay
    litellm's to the last digit, tiers and discounts included."""
    litellm = get_litellm()
    checked = 0
    for name in _sample(litellm.model_cost):
        try:
            expected = [_litellm_price(litellm, name, p, c) for p, c in COUNTS]
        except Exception:  # noqa: BLE001 - models litellm cannot price by tokens
            continue
        for (p, c), want in zip(COUNTS, expected):
            got, priced = _cost(name, p, c)
            assert priced and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15), \
                (name, p, c, got, want)
        checked += 1
    assert checked > 500
    flat = [m for m, key in llm._FLAT.items() if key is not None]
    assert len(flat) > checked // 3  # most untiered models take the fast path
    # A model whose litellm price is not its plain rate (a provider discount) is checked once
    # and stays on litellm's path, its probes not repeated on every call.
    discounted = [m for m in _sample(litellm.model_cost) if m.startswith("deepseek/")
                  and m in llm._FLAT and llm._FLAT[m] is None]
    assert discounted


def test_a_re_registered_price_applies_at_once():
    litellm = get_litellm()
    name = "openai/pricing-test-flat-model"
    litellm.register_model({name: {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                                   "litellm_provider": "openai", "mode": "chat"}})
    assert _cost(name, 1000, 1000) == (pytest.approx(0.003), True)
    assert _cost(name, 1000, 1000) == (pytest.approx(0.003), True)  # from the entry now
    litellm.register_model({name: {"input_cost_per_token": 1e-5, "output_cost_per_token": 2e-5,
                                   "litellm_provider": "openai", "mode": "chat"}})
    assert _cost(name, 1000, 1000) == (pytest.approx(0.03), True)


def test_a_known_model_over_the_http_path_costs_what_litellm_says(server_factory, tmp_path):
    litellm = get_litellm()
    script = ["```repl\nprint('a')\n```", "```repl\nprint('b')\n```", "FINAL(done)"]
    srv = server_factory(root=lambda req: script[req.turn - 1])
    result = RLM(model="openai/gpt-4o-mini", api_base=srv.base_url, api_key="k",
                 transport="http", cache=False, log_dir=str(tmp_path)).run("q", context="c")
    assert result.error is None, result.error
    replies = [e for e in result.events if e.type == "model_response"]
    assert len(replies) == 3
    for e in replies:
        want = _litellm_price(litellm, "openai/gpt-4o-mini", e.prompt_tokens,
                              e.completion_tokens)
        assert e.cost_usd == pytest.approx(want, rel=1e-9) and want > 0
    assert result.cost_usd == pytest.approx(sum(e.cost_usd for e in replies))
