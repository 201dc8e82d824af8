"""THE table of knobs: one declaration per setting, and ``Settings`` built from it.

Why a table: a knob used to be declared in about nine places (the dataclass, its environment
map, ``RLM.__init__``, the magics' traitlets, ``%%rlm``'s options, a second environment map, the
CLI's flags, the README), and they drifted. Now each knob is one :class:`Knob` in :data:`KNOBS`:
``Settings`` and its validation are generated from it, the magics' traitlets and ``%%rlm``
options and the CLI's flags are built from it, and ``tests/test_settings_table.py`` fails when
``RLM.__init__`` or the README lacks one. Adding a knob is one entry here plus the code that
reads it.

This module sits at the bottom of the house: it imports only the standard library and
:mod:`rlm_jupyter.errors` (the import contracts in ``.importlinter`` keep it so).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from rlm_jupyter.errors import ConfigError

#: Every sandbox backend, listed once (``sandbox/__init__.py`` registers one class per kind).
SANDBOX_KINDS = ("local", "docker", "inprocess")
#: ``transport=``: ``auto`` picks ``http`` for an OpenAI-compatible ``api_base``, else litellm.
TRANSPORTS = ("auto", "litellm", "http")
#: Model prefixes litellm sends to an OpenAI-compatible endpoint unchanged (``transport="auto"``
#: takes the direct HTTP path for these; ``engine/http_transport.py`` strips them on the wire).
OPENAI_COMPATIBLE_PREFIXES = ("openai/", "hosted_vllm/", "openai_like/", "custom_openai/")

DEFAULT_LOG_DIR = Path.home() / ".rlm_jupyter" / "runs"
DEFAULT_CACHE_DIR = Path.home() / ".rlm_jupyter" / "cache"


@dataclass(frozen=True)
class Knob:
    """One setting and every front end that shows it.

    ``traitlet`` / ``option`` / ``cli`` are ``None`` when that front end does not show the knob;
    ``option`` and ``cli`` hold the flag spellings (the first is the long one). A ``bool`` knob
    also gets the ``--no-`` form of its long flag. ``minimum`` is inclusive unless
    ``positive`` (then the value must be above it).
    """

    name: str
    type: type
    default: Any
    help: str
    env: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    positive: bool = False
    kwarg: bool = True
    traitlet: str | None = None
    option: tuple[str, ...] | None = None
    cli: tuple[str, ...] | None = None
    metavar: str | None = None
    secret: bool = False
    #: Words a ``bool`` knob takes besides True/False (``tracing="content"``).
    words: tuple[str, ...] = ()

    @property
    def nullable(self) -> bool:
        return self.default is None

    @property
    def annotation(self) -> str:
        name = self.type.__name__
        return f"{name} | None" if self.nullable else name

    def argparse_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``add_argument`` (``%%rlm`` and ``rlm run`` share them).

        The default is ``None`` ("not given here"), so the session default, the environment
        variable or the table's default decides.
        """
        kwargs: dict[str, Any] = {"dest": self.name, "default": None, "help": self.help}
        if self.type is bool:
            kwargs["action"] = "store_true"
        else:
            if self.type is not str:
                kwargs["type"] = self.type
            if self.metavar:
                kwargs["metavar"] = self.metavar
        return kwargs

    def check(self, value: Any) -> None:
        """Raise a one-line :class:`ConfigError` naming the knob, the value and what it takes."""
        if value is None:
            if self.nullable or self.type is bool:
                return
            raise ConfigError(f"{self.name} cannot be None: {self.help}")
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError(f"Unknown {self.name} {value!r}: use one of "
                                  f"{', '.join(self.choices)}.")
            return
        if self.type in (int, float):
            number = (int,) if self.type is int else (int, float)
            bad = not isinstance(value, number) or isinstance(value, bool)
            if not bad and self.minimum is not None:
                bad = value <= self.minimum if self.positive else value < self.minimum
            if bad:
                kind = "an integer" if self.type is int else "a number"
                if self.minimum is not None:
                    bound = "above" if self.positive else "of at least"
                    kind += f" {bound} {self.minimum:g}"
                raise ConfigError(f"{self.name} must be {kind}{' or None' if self.nullable else ''}"
                                  f", got {value!r}: {self.help}")


def _k(name: str, type_: type, default: Any, help: str, **kw: Any) -> Knob:
    return Knob(name, type_, default, help, **kw)


#: The knobs, in the order ``%%rlm?``, ``rlm run -h`` and ``%rlm config`` show them.
KNOBS: tuple[Knob, ...] = (
    _k("model", str, None, "Root model (a litellm model name, e.g. openai/gpt-4o-mini).",
       env="RLM_MODEL", traitlet="model", option=("--model", "-m"), cli=("--model", "-m")),
    _k("sub_model", str, None, "Model for llm_query sub-calls (default: the root model).",
       env="RLM_SUB_MODEL", traitlet="sub_model", option=("--sub-model",), cli=("--sub-model",)),
    _k("sandbox", str, "local", "Where model-written code runs: local, docker or inprocess.",
       env="RLM_SANDBOX", choices=SANDBOX_KINDS, traitlet="sandbox", option=("--sandbox",),
       cli=("--sandbox",)),
    _k("max_depth", int, 1, "Recursion depth for rlm_query (0: no child RLMs).", minimum=0,
       traitlet="max_depth", option=("--max-depth",), cli=("--max-depth",)),
    _k("max_iterations", int, 20, "Root turns per run.", minimum=1,
       traitlet="max_iterations", option=("--max-iterations",), cli=("--max-iterations",)),
    _k("max_subcalls", int, None, "Sub-calls per run tree.", minimum=0,
       traitlet="max_subcalls", option=("--max-subcalls",), cli=("--max-subcalls",)),
    _k("max_total_tokens", int, None, "Tokens per run tree (prompt + completion, all calls).",
       minimum=0, traitlet="max_total_tokens", option=("--max-total-tokens",),
       cli=("--max-total-tokens",)),
    _k("max_reply_tokens", int, None,
       "Per-reply cap sent to the provider as max_tokens (default: the provider's).",
       minimum=1, traitlet="max_reply_tokens", option=("--max-reply-tokens",),
       cli=("--max-reply-tokens",)),
    _k("budget_usd", float, None, "Cost cap in USD per run tree.", minimum=0, positive=True,
       traitlet="budget", option=("--budget",), cli=("--budget",), metavar="USD"),
    _k("timeout_s", float, None, "Wall-time cap in seconds per run.", minimum=0, positive=True,
       traitlet="timeout", option=("--timeout",), cli=("--timeout",), metavar="S"),
    _k("concurrency", int, 16, "Parallel sub-calls.", minimum=1, traitlet="concurrency",
       cli=("--concurrency",)),
    _k("api_base", str, None, "Base URL of an OpenAI-compatible server.", env="RLM_API_BASE",
       traitlet="api_base", cli=("--api-base",)),
    _k("api_key", str, None, "API key (never shown or logged).", env="RLM_API_KEY",
       traitlet="api_key", secret=True),
    _k("log_dir", str, None, "Where run logs (JSONL) go (default ~/.rlm_jupyter/runs).",
       env="RLM_LOG_DIR", traitlet="log_dir", cli=("--log-dir",)),
    _k("cache", bool, None,
       "Response cache: replay identical calls at $0 (--no-cache asks the model again).",
       traitlet="cache", option=("--cache",), cli=("--cache",)),
    _k("cache_dir", str, None, "Where the response cache lives (default ~/.rlm_jupyter/cache).",
       env="RLM_CACHE_DIR"),
    _k("stream", bool, True, "Stream the root model's text to event listeners."),
    _k("cell_timeout_s", float, 60.0, "Seconds one code block may run in the sandbox.",
       minimum=0, positive=True),
    _k("memory_mb", int, None, "Memory cap of the sandbox worker in MiB.", minimum=1),
    _k("output_chars", int, 20_000,
       "Characters of printed output the model sees per block.", minimum=100),
    _k("transport", str, "auto", "auto, litellm or http (the direct path).", env="RLM_TRANSPORT",
       choices=TRANSPORTS, cli=("--transport",)),
    _k("num_retries", int, 3, "Retries of a failed model call.", minimum=0),
    _k("request_timeout_s", float, 120.0, "Seconds one model call may take.", minimum=0,
       positive=True),
    _k("tracing", bool, None,
       "OpenTelemetry spans of each run (rlm_jupyter/telemetry): None = on when a tracer "
       "provider is configured, True, False, or 'content' (prompts and outputs too).",
       env="RLM_TRACING", traitlet="tracing", cli=("--tracing",), words=("content",)),
    _k("guardrails", str, "auto",
       "Small-model fixes (engine/guardrails.py): auto, small, strong, off, a dict "
       "{fix: bool}, or 'small,-loop_breaker'.", env="RLM_GUARDRAILS",
       traitlet="guardrails", option=("--guardrails",), cli=("--guardrails",)),
    _k("session_idle_s", float, 1800.0,
       "Seconds a session (follow-ups, --session) stays open without a question.",
       env="RLM_SESSION_IDLE_S", minimum=0, traitlet="session_idle_s"),
    _k("output_type", str, None,
       "Typed answer: a notebook expression for the type (int, list[str], a pydantic model, "
       "pandas.DataFrame); --out gets the value.", kwarg=False, option=("--output-type",),
       metavar="EXPR"),
    _k("tools", str, None, "Notebook functions the model may call, by name (f,g).",
       kwarg=False, option=("--tools",), metavar="F,G"),
)

BY_NAME: dict[str, Knob] = {k.name: k for k in KNOBS}
#: Environment variable for each setting that can come from the environment.
ENV_VARS: dict[str, str] = {k.name: k.env for k in KNOBS if k.env}
#: Old names still accepted for one release, with a DeprecationWarning (knob name -> new name).
DEPRECATED: dict[str, str] = {"max_tokens": "max_total_tokens"}
#: Their flag spellings (``--max-tokens`` -> ``max_total_tokens``).
DEPRECATED_FLAGS: dict[str, str] = {"--" + old.replace("_", "-"): new
                                    for old, new in DEPRECATED.items()}


def deprecated_name(old: str, stacklevel: int = 3) -> str:
    """Warn that ``old`` is deprecated and return the knob it now means."""
    new = DEPRECATED[old]
    note = ("; the provider's per-reply cap is max_reply_tokens" if old == "max_tokens" else "")
    warnings.warn(f"{old} is deprecated and will be removed in the next release: use {new}"
                  f"{note}.", DeprecationWarning, stacklevel=stacklevel)
    return new


def rename_deprecated(values: dict[str, Any], stacklevel: int = 4) -> dict[str, Any]:
    """``values`` with deprecated names moved to their new ones (the new name wins)."""
    for old in [k for k in values if k in DEPRECATED]:
        value = values.pop(old)
        new = deprecated_name(old, stacklevel=stacklevel)
        if values.get(new) is None:
            values[new] = value
    return values


def _from_table(cls: type) -> type:
    """Give ``cls`` one dataclass field per knob (before its own fields), then make it a
    frozen dataclass: the table is the only list of settings."""
    own = dict(cls.__dict__.get("__annotations__", {}))
    annotations: dict[str, Any] = {}
    for knob in KNOBS:
        annotations[knob.name] = knob.annotation
        setattr(cls, knob.name, field(default=knob.default, repr=not knob.secret))
    annotations.update(own)
    cls.__annotations__ = annotations
    return dataclass(frozen=True)(cls)


@_from_table
class Settings:
    """Resolved settings for one run tree: one field per knob in :data:`KNOBS` (``None`` limits
    mean unlimited), plus ``litellm_kwargs``, the extra keyword arguments that go to the model
    call as they are (``temperature``, ``seed``...)."""

    litellm_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, **overrides: Any) -> "Settings":
        """Explicit arguments, then ``RLM_*`` environment variables, then the table's defaults.

        Unknown keyword arguments go to the model call (``litellm_kwargs``); deprecated names
        (``max_tokens``) still work, with a DeprecationWarning.
        """
        extra: dict[str, Any] = dict(overrides.pop("litellm_kwargs", None) or {})
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            (values if key in BY_NAME or key in DEPRECATED else extra)[key] = value
        for old in [k for k in extra if k in DEPRECATED]:
            values.setdefault(old, extra.pop(old))
        rename_deprecated(values, stacklevel=5)
        for key, env in ENV_VARS.items():
            if values.get(key) is None and os.environ.get(env):
                values[key] = os.environ[env]
        values = {k: v for k, v in values.items() if v is not None or BY_NAME[k].type is bool}
        settings = cls(**values, litellm_kwargs=extra)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    def validate(self) -> None:
        for knob in KNOBS:
            knob.check(getattr(self, knob.name))

    def knob_values(self) -> dict[str, Any]:
        """Every knob's value by name (``%rlm config`` and ``rlm config`` show these)."""
        return {knob.name: getattr(self, knob.name) for knob in KNOBS}

    @property
    def max_tokens(self) -> int | None:
        """Deprecated name of ``max_total_tokens`` (the run tree's token budget)."""
        deprecated_name("max_tokens")
        return self.max_total_tokens

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

    @property
    def request_params(self) -> dict[str, Any]:
        """What every model call sends besides the messages: ``litellm_kwargs`` plus the
        per-reply cap (``max_reply_tokens`` goes to the provider as ``max_tokens``)."""
        if self.max_reply_tokens is None:
            return dict(self.litellm_kwargs)
        return {**self.litellm_kwargs, "max_tokens": self.max_reply_tokens}

    @property
    def effective_transport(self) -> str:
        """``auto``: direct HTTP for an OpenAI-compatible server at ``api_base``, else litellm.

        The direct path costs ~1 ms of CPU a call instead of ~5-30 ms through litellm and the
        openai SDK (benchmarks/RESULTS.md); every other provider needs litellm's adapters.
        """
        if self.transport != "auto":
            return self.transport
        models = [m for m in (self.model, self.sub_model) if m]
        if self.api_base and models and all(speaks_openai(m) for m in models):
            return "http"
        return "litellm"

    def require_model(self) -> str:
        if not self.model:
            raise ConfigError(NO_MODEL)
        return self.model


#: The one message for "no model": the engine, ``%%rlm``, ``rlm run`` and the doctor all say it.
NO_MODEL = ("No model configured: set RLM_MODEL (e.g. RLM_MODEL=openai/gpt-4o-mini), pass "
            "RLM(model=...), --model or `%config RLMMagics.model = ...`, or use the scripted "
            "demo model (`%rlm demo` in a notebook, `rlm demo` in a shell).")


def speaks_openai(model: str) -> bool:
    """Models litellm would send to an OpenAI-compatible endpoint unchanged."""
    return model.startswith(OPENAI_COMPATIBLE_PREFIXES)


def markdown_table() -> str:
    """The README's settings table, generated from :data:`KNOBS` (``python -m
    rlm_jupyter.settings`` prints it; ``tests/test_settings_table.py`` checks the README has it).
    """
    def code(text: Any) -> str:
        return f"`{text}`" if text not in (None, "") else ""

    rows = ["| setting: `RLM(...)` | default | environment | `%config RLMMagics.` | `%%rlm` "
            "| `rlm run` | what it does |", "|---|---|---|---|---|---|---|"]
    for k in KNOBS:
        flags = lambda spelled: " ".join(code(f) for f in (spelled or ()))  # noqa: E731
        option = flags(k.option) + (f" {code('--no-' + k.option[0][2:])}"
                                    if k.option and k.type is bool else "")
        cli = flags(k.cli) + (f" {code('--no-' + k.cli[0][2:])}" if k.cli and k.type is bool
                              else "")
        rows.append(f"| {code(k.name)} | {code(repr(k.default))} | {code(k.env)} | "
                    f"{code(k.traitlet)} | {option} | {cli} | {k.help.replace('|', '/')} |")
    return "\n".join(rows)


def knob_for_traitlet(name: str) -> Knob | None:
    return next((k for k in KNOBS if k.traitlet == name), None)


def from_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The environment's value for knob ``name``, or None."""
    env = BY_NAME[name].env
    return (environ if environ is not None else os.environ).get(env) or None if env else None


if __name__ == "__main__":
    print(markdown_table())

__all__ = ["KNOBS", "BY_NAME", "ENV_VARS", "DEPRECATED", "Knob", "Settings", "SANDBOX_KINDS",
           "TRANSPORTS", "NO_MODEL", "speaks_openai"]
