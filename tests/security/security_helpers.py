"""Canaries and backends for the adversarial suite (shared by conftest and the tests).

Every attack runs with secrets planted where a successful escape would find them: an API-key
style environment variable of the host process, a file in a private directory, a "notebook"
variable in ``__main__``, and a secret captured in the closure of a host function. The tests
assert that none of them ever appears in anything the sandbox returns.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable

import pytest



def require_or_skip(available: bool, reason: str) -> None:
    """Skip locally with the reason; fail in CI (RLM_CI=1), where the component must exist."""
    if available:
        return
    if os.environ.get("RLM_CI") == "1":
        pytest.fail(f"{reason} (RLM_CI=1: CI must provide it)")
    pytest.skip(reason)

BACKENDS = ["local", "inprocess", pytest.param("docker", marks=pytest.mark.docker)]


class Canaries:
    def __init__(self, root: str) -> None:
        tag = uuid.uuid4().hex[:10]
        self.env = f"canary-env-{tag}"
        self.api_key = f"sk-canary-{tag}"
        self.file_text = f"canary-file-{tag}"
        self.notebook = f"canary-notebook-{tag}"
        self.closure = f"canary-closure-{tag}"
        self.dir = os.path.join(root, "private")
        os.makedirs(self.dir, exist_ok=True)
        self.file = os.path.join(self.dir, "secret.txt")
        with open(self.file, "w") as fh:
            fh.write(self.file_text)

    def values(self) -> list[str]:
        return [self.env, self.api_key, self.file_text, self.notebook, self.closure]

    def functions(self) -> dict[str, Callable[..., Any]]:
        secret = self.closure  # captured: an escape through the host function would find it

        def llm_query(prompt: str, model: str | None = None) -> str:
            assert secret
            return f"model says: {str(prompt)[:50]}"

        def llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]:
            return [llm_query(p) for p in prompts]

        return {"llm_query": llm_query, "llm_query_batched": llm_query_batched}

    def snapshot(self) -> set[str]:
        """Files where an escaped write would land: the private dir, the test's cwd, /tmp."""
        seen: set[str] = set()
        for d in (self.dir, os.getcwd(), "/tmp"):
            try:
                seen.update(os.path.join(d, n) for n in os.listdir(d) if "pwned" in n or
                            d == self.dir)
            except OSError:
                pass
        return seen


def docker_ready() -> tuple[bool, str]:
    try:
        from rlm_jupyter.sandbox import docker as dk
    except ImportError as exc:
        return False, f"the docker backend is not importable: {exc}"
    try:
        dk.check_daemon()
        image = os.environ.get("RLM_DOCKER_IMAGE") or dk.DEFAULT_IMAGE
        dk.check_image(image)
    except Exception as exc:  # SandboxError with the fix
        return False, str(exc)
    return True, ""
