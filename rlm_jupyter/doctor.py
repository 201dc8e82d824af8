"""Honest environment checks, each with the fix, shared by ``rlm doctor`` and ``%rlm doctor``."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlm_jupyter.config import Settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"[{mark}] {self.name}: {self.detail}"
        return text + (f"\n        fix: {self.fix}" if not self.ok and self.fix else "")


def run_checks(settings: Settings | None = None, *, ping: bool = False) -> list[Check]:
    """Each check is independent; one failing never hides the others."""
    settings = settings or Settings.resolve()
    checks: list[Check] = []
    litellm = None
    try:
        from rlm_jupyter.engine.llm import get_litellm

        litellm = get_litellm()
        version = _dist_version("litellm")
        bad = version in ("1.82.7", "1.82.8")
        checks.append(Check("litellm", not bad, f"version {version}",
                            "pip install 'litellm!=1.82.7,!=1.82.8' (those releases were malicious)"))
    except Exception as exc:  # noqa: BLE001
        checks.append(Check("litellm", False, f"cannot import: {exc}", "pip install litellm"))
    if settings.model:
        checks.append(Check("model", True, settings.model))
    else:
        checks.append(Check("model", False, "no model configured",
                            "set RLM_MODEL (e.g. openai/gpt-4o-mini) or "
                            "`%config RLMMagics.model = ...`; without one the demo server is used"))
    if litellm is not None and settings.model and not settings.model.startswith("local/"):
        if settings.api_key or settings.api_base:
            checks.append(Check("api key", True, "given explicitly (RLM_API_KEY / api_base)"))
        else:
            try:
                env = litellm.validate_environment(model=settings.model)
                missing = env.get("missing_keys") or []
                checks.append(Check("api key", not missing,
                                    "present" if not missing else f"missing {', '.join(missing)}",
                                    f"export {' '.join(missing)}=... or set RLM_API_KEY"))
            except Exception as exc:  # noqa: BLE001
                checks.append(Check("api key", False, f"cannot check: {exc}", ""))
    if ping and litellm is not None and settings.model:
        checks.append(_ping(settings))
    try:
        version = _dist_version("RestrictedPython")
        major = int(version.split(".")[0])
        checks.append(Check("RestrictedPython", major == 9, f"version {version}",
                            "pip install 'RestrictedPython>=9.0,<10'"))
    except Exception as exc:  # noqa: BLE001
        checks.append(Check("RestrictedPython", False, str(exc),
                            "pip install 'RestrictedPython>=9.0,<10'"))
    checks.append(_docker_check())
    checks.append(_log_dir_check(settings.effective_log_dir))
    return checks


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _ping(settings: Settings) -> Check:
    from rlm_jupyter.engine.llm import LLMClient

    client = LLMClient(api_base=settings.api_base, api_key=settings.api_key, num_retries=0,
                       request_timeout_s=20, litellm_kwargs={"max_tokens": 1}, cache=None,
                       concurrency=1)
    try:
        reply = client.complete(settings.model or "", [{"role": "user", "content": "Say OK"}])
        return Check("model reachable", True, f"replied in {reply.latency_s:.1f}s")
    except Exception as exc:  # noqa: BLE001
        return Check("model reachable", False, str(exc)[:300],
                     "check the model name, api_base and key")


def _docker_check() -> Check:
    """Only needed for sandbox='docker'; the sandbox's own checks give the same fixes."""
    from rlm_jupyter.sandbox.docker import DEFAULT_IMAGE, SandboxError, check_daemon, check_image

    image = os.environ.get("RLM_DOCKER_IMAGE", DEFAULT_IMAGE)
    try:
        version = check_daemon()
        check_image(image)
    except SandboxError as exc:
        return Check("docker (sandbox='docker' only)", False, str(exc).split(";")[0][:200],
                     str(exc)[:600])
    return Check("docker", True, f"daemon {version}, image {image}")


def _log_dir_check(path: Path) -> Check:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return Check("log directory", True, str(path))
    except OSError as exc:
        return Check("log directory", False, f"{path}: {exc}", "set RLM_LOG_DIR to a writable folder")
