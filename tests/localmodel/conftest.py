"""Fixtures for tests that run a real local model through llama.cpp.

The model and the compiled llama-cpp-python wheel are cached under ``~/.cache/rlm_jupyter`` (or
``RLM_LOCAL_DIR``), so only the first run on a machine pays for the download (~15 s) and the
build (6-17 min on 2 cores). Locally the tests skip when fetching or building is impossible
(no compiler, no package index); with ``RLM_CI=1`` they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

LOCAL_TEST_MODEL = "qwen2.5-coder-0.5b"


def _ci() -> bool:
    return os.environ.get("RLM_CI") == "1"


@pytest.fixture(scope="session")
def local_server() -> Iterator["object"]:
    """A llama.cpp server for the 0.5B model, started here and stopped after the session."""
    from rlm_jupyter.local import LocalModelError, ensure_llama_cpp, fetch, find_server, serve, stop

    def progress(msg: str) -> None:
        print(f"[localmodel] {msg}", flush=True)

    try:
        fetch(LOCAL_TEST_MODEL, progress=progress)
        ensure_llama_cpp(progress=progress)
    except LocalModelError as exc:
        reason = f"cannot fetch the model or install llama-cpp-python here: {exc}"
        if _ci():
            pytest.fail(f"{reason} (RLM_CI=1: CI must be able to build it)")
        pytest.skip(reason)
    preexisting = find_server(LOCAL_TEST_MODEL)
    info = serve(LOCAL_TEST_MODEL, keep_alive=False, progress=progress)
    try:
        yield info
    finally:
        if preexisting is None:
            stop(LOCAL_TEST_MODEL)
