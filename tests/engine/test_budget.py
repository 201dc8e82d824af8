from __future__ import annotations

import threading

import pytest

from rlm_jupyter import errors
from rlm_jupyter.engine.budget import Budget


def test_subcall_limit_is_refused_before_and_sticks():
    budget = Budget(max_subcalls=2)
    budget.reserve_call(subcall=True)
    budget.reserve_call(subcall=True)
    with pytest.raises(errors.SubcallLimitExceeded):
        budget.reserve_call(subcall=True)
    with pytest.raises(errors.SubcallLimitExceeded):  # sticky: root calls refused too
        budget.reserve_call(subcall=False)
    assert budget.subcalls == 2


def test_token_estimate_is_checked_before_sending():
    budget = Budget(max_tokens=100)
    budget.charge("m", 60, 20, 0.0)
    with pytest.raises(errors.TokenLimitExceeded):
        budget.reserve_call(subcall=False, estimated_prompt_tokens=30)


def test_cached_calls_are_free_and_warnings_fire_once():
    budget = Budget(budget_usd=1.0)
    assert budget.charge("m", 10, 10, 0.5, cached=True) == []
    assert budget.cost_usd == 0.0
    assert budget.charge("m", 10, 10, 0.85) == [("usd", 0.85, 1.0)]
    assert budget.charge("m", 1, 1, 0.01) == []
    with pytest.raises(errors.CostLimitExceeded):
        budget.charge("m", 1, 1, 0.2) or budget.reserve_call(subcall=False)
    assert budget.usage_dict()["m"]["calls"] == 4


def test_concurrent_reservations_never_overshoot():
    budget = Budget(max_subcalls=50)
    ok = []

    def worker():
        for _ in range(20):
            try:
                budget.reserve_call(subcall=True)
                ok.append(1)
            except errors.SubcallLimitExceeded:
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 50 == budget.subcalls
