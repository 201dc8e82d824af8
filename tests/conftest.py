"""Shared test set-up: offline litellm, and logs/caches in temporary folders, never in $HOME."""

from __future__ import annotations

import os
import tempfile

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
_TMP = tempfile.mkdtemp(prefix="rlm-tests-")
os.environ.setdefault("RLM_LOG_DIR", os.path.join(_TMP, "runs"))
os.environ.setdefault("RLM_CACHE_DIR", os.path.join(_TMP, "cache"))
for _var in ("RLM_MODEL", "RLM_SUB_MODEL", "RLM_API_BASE", "RLM_API_KEY", "RLM_SANDBOX"):
    os.environ.pop(_var, None)

import pytest  # noqa: E402


def in_ci() -> bool:
    return os.environ.get("RLM_CI") == "1"


def require_or_skip(available: bool, reason: str) -> None:
    """Skip locally with a clear reason; fail in CI, where the component must be installed."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{reason} (RLM_CI=1: CI must provide it)")
    pytest.skip(reason)
