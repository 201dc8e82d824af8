"""Every knob in one typed place: defaults, environment variables, validation.

Notebooks, the CLI and Binder configure runs without code through ``RLM_*`` environment
variables; explicit arguments always win over the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rlm_jupyter.errors import ConfigError

SANDBOX_KINDS = ("local", "docker", "inprocess")

#: Environment variable for each setting that can come from the environment.
ENV_VARS = {
    "model": "RLM_MODEL",
    "sub_model": "RLM_SUB_MODEL",
    "api_base": "RLM_API_BASE",
    "api_key": "RLM_API_KEY",
    "sandbox": "RLM_SANDBOX",
    "log_dir": "RLM_LOG_DIR",
    "cache_dir": "RLM_CACHE_DIR",
    "transport": "RLM_TRANSPORT",
}

DEFAULT_LOG_DIR = Path.home() / ".rlm_jupyter" / "runs"
DEFAULT_CACHE_DIR = Path.home() / ".rlm_jupyter" / "cache"


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one run tree. ``None`` limits mean unlimited."""

    model: str | None = None
    sub_model: str | None = None
    sandbox: str = "local"
    max_depth: int = 1
    max_iterations: int = 20
    max_subcalls: int | None = None
    max_tokens: int | None = None
    budget_usd: float | None = None
    timeout_s: float | None = None
    concurrency: int = 16
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    log_dir: str | None = None
    cache: bool | None = None
    cache_dir: str | None = None
    stream: bool = True
    cell_timeout_s: float = 60.0
    memory_mb: int | None = None
    output_chars: int = 20_000
    transport: str = "auto"
    num_retries: int = 3
    request_timeout_s: float = 120.0
    litellm_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, **overrides: Any) -> "Settings":
        """Explicit arguments, then ``RLM_*`` environment variables, then defaults."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = dict(overrides.pop("litellm_kwargs", None) or {})
        for key, value in overrides.items():
            if key in known:
                values[key] = value
            else:
                extra[key] = value
        for key, env in ENV_VARS.items():
            if values.get(key) is None and os.environ.get(env):
                values[key] = os.environ[env]
        values = {k: v for k, v in values.items() if v is not None or k in ("cache",)}
        settings = cls(**values, litellm_kwargs=extra)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    @property
    def effective_sub_model(self) -> str | None:
        return self.sub_model or self.model

    @property
    def effective_log_dir(self) -> Path:
        return Path(self.log_dir).expanduser() if self.log_dir else DEFAULT_LOG_DIR

    @property
    def effective_cache_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else DEFAULT_CACHE_DIR

    @property
    def cache_enabled(self) -> bool:
        """The response cache is on by default only when replies are reproducible.

        ``cache=True`` or ``False`` decides explicitly; left as ``None`` it is on when the
        sampling is deterministic (``temperature=0`` or a fixed ``seed``), because re-running
        a notebook cell should then give the same answer without paying again.
        """
        if self.cache is not None:
            return bool(self.cache)
        kw = self.litellm_kwargs
        return kw.get("temperature") == 0 or kw.get("seed") is not None

    def validate(self) -> None:
        if self.transport not in ("auto", "litellm", "http"):
            raise ConfigError(
                f"Unknown transport {self.transport!r}: use 'auto', 'litellm' or 'http'.")
        if self.sandbox not in SANDBOX_KINDS:
            raise ConfigError(
                f"Unknown sandbox {self.sandbox!r}: use one of {', '.join(SANDBOX_KINDS)}."
            )
        for name in ("max_depth", "max_iterations", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "max_depth" else 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        if not isinstance(self.output_chars, int) or self.output_chars < 100:
            raise ConfigError(f"output_chars must be an integer of at least 100 (characters of "
                              f"printed output the model sees per block), got "
                              f"{self.output_chars!r}.")
        for name in ("max_subcalls", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"{name} must be a non-negative integer or None, got {value!r}.")
        for name in ("budget_usd", "timeout_s"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"{name} must be a positive number or None, got {value!r}.")

    @property
    def effective_transport(self) -> str:
        """``auto``: direct HTTP for an OpenAI-compatible server at ``api_base``, else litellm.

        The direct path costs ~1 ms of CPU a call instead of ~5-30 ms through litellm and the
        openai SDK (benchmarks/RESULTS.md); every other provider needs litellm's adapters.
        """
        if self.transport != "auto":
            return self.transport
        from rlm_jupyter.engine.http_transport import speaks_openai

        models = [m for m in (self.model, self.sub_model) if m]
        if self.api_base and models and all(speaks_openai(m) for m in models):
            return "http"
        return "litellm"

    def require_model(self) -> str:
        if not self.model:
            raise ConfigError(
                "No model configured: pass RLM(model=...), set RLM_MODEL "
                "(e.g. RLM_MODEL=openai/gpt-4o-mini), or `%config RLMMagics.model = ...`."
            )
        return self.model
