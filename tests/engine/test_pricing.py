"""Every call is priced as litellm prices it (tiers included), and a model litellm cannot price
costs nothing to price: no litellm import on the direct path."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest

from rlm_jupyter import RLM
from rlm_jupyter.engine import pricing
from rlm_jupyter.engine.llm import get_litellm
from rlm_jupyter.engine.pricing import cost_usd as _cost

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
    """Asked twice (the second answer comes from the memo), the price stays litellm's to the
    last digit, tiers above 200k tokens and provider discounts included."""
    litellm = get_litellm()
    checked = tiered = 0
    for name in _sample(litellm.model_cost):
        try:
            expected = [_litellm_price(litellm, name, p, c) for p, c in COUNTS]
        except Exception:  # noqa: BLE001 - models litellm cannot price by tokens
            continue
        for _ in range(2):
            for (p, c), want in zip(COUNTS, expected):
                got, priced = _cost(name, p, c)
                assert priced and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15), \
                    (name, p, c, got, want)
        checked += 1
        tiered += any("above_" in k for k in litellm.model_cost[name])
    assert checked > 500 and tiered > 10


def test_a_tiered_model_costs_more_per_token_above_its_tier():
    """The case a flat-rate shortcut got wrong: the same tokens cost more per token above
    200k, as litellm says."""
    litellm = get_litellm()
    tiered = [n for n, e in litellm.model_cost.items()
              if any(k.startswith("input_cost_per_token_above_200k") for k in e)
              and e.get("input_cost_per_token")]
    assert tiered
    name = tiered[0]
    low, _ = _cost(name, 100_000, 0)
    high, _ = _cost(name, 300_000, 0)
    assert high / 300_000 > low / 100_000
    assert high == pytest.approx(_litellm_price(litellm, name, 300_000, 0), rel=1e-12)


def test_unknown_models_are_free_and_need_no_litellm_import():
    """A local model's call is priced at $0 without importing litellm (seconds), so the first
    run against a local server is not held up; a known model is priced by litellm itself."""
    code = textwrap.dedent("""
        import sys
        from rlm_jupyter.engine.pricing import cost_usd
        assert cost_usd("openai/scripted-model", 1000, 10) == (0.0, False)
        assert cost_usd("hosted_vllm/qwen2.5-coder-1.5b", 1000, 10) == (0.0, False)
        assert "litellm" not in sys.modules, "litellm was imported to price a local model"
        usd, priced = cost_usd("openai/gpt-4o-mini", 1000, 10)
        assert priced and usd > 0 and "litellm" in sys.modules
        print("ok")
    """)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_names_the_shipped_table_lacks_are_unpriced_by_litellm_too():
    """The no-import shortcut may only answer "no price" where litellm would."""
    litellm = get_litellm()
    for name in ("openai/scripted-model", "hosted_vllm/my-model", "openai_like/x-7b",
                 "custom_openai/local"):
        assert not pricing._maybe_priced(name)
        with pytest.raises(Exception):
            litellm.cost_per_token(model=name, prompt_tokens=10, completion_tokens=10)
    assert pricing._maybe_priced("openai/gpt-4o-mini")
    assert pricing._maybe_priced("openai/ft:gpt-4o-mini:org::abc")


def test_a_re_registered_price_applies_at_once():
    litellm = get_litellm()
    name = "openai/pricing-test-flat-model"
    litellm.register_model({name: {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                                   "litellm_provider": "openai", "mode": "chat"}})
    assert _cost(name, 1000, 1000) == (pytest.approx(0.003), True)
    assert _cost(name, 1000, 1000) == (pytest.approx(0.003), True)  # from the memo now
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
