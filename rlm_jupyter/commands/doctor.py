"""``doctor``: honest environment checks, each with its fix, for ``rlm doctor`` and ``%rlm doctor``.

Each check is independent (one failing never hides the others) and says what to do in one line.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import argparse

from rlm_jupyter.settings import NO_MODEL, Settings


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
        # The same words as a run without a model: it refuses, it does not fall back to the
        # demo server (that takes an explicit `%rlm demo` / `rlm demo`).
        checks.append(Check("model", False, "no model configured: a run would refuse to start",
                            NO_MODEL.split(": ", 1)[1]))
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
                       concurrency=1, transport=settings.effective_transport)
    try:
        reply = client.complete(settings.model or "", [{"role": "user", "content": "Say OK"}])
        return Check("model reachable", True, f"replied in {reply.latency_s:.1f}s")
    except Exception as exc:  # noqa: BLE001
        return Check("model reachable", False, one_line_failure(exc),
                     "check the model name, api_base and key")


def one_line_failure(exc: BaseException, limit: int = 240) -> str:
    """The engine's one-line description of a failed call, without the provider's raw text.

    ``LLMCallError`` messages end with the raw exception in parentheses (litellm's are long and
    repeat themselves); the doctor shows what to do, not that.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    if text.endswith(")") and " (" in text:
        text = text.rsplit(" (", 1)[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ping", action="store_true", help="also make a one-token model call")


def report(checks: list[Check]) -> str:
    """The checks, one per line (a fix under each failure), then a one-line verdict."""
    failed = sum(1 for c in checks if not c.ok)
    verdict = f"{len(checks) - failed} ok, {failed} to fix" if failed else "All checks passed."
    return "\n".join([c.line() for c in checks] + [verdict])


def essentials_ok(checks: list[Check]) -> bool:
    """What ``rlm doctor``'s exit status reports: the packages every run needs."""
    return all(c.ok for c in checks if c.name in ("litellm", "RestrictedPython"))


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
