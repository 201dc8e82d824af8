"""OpenTelemetry traces for RLM runs: one more event subscriber, nothing at all when off.

``RLM.run`` calls :func:`attach` once; it subscribes a :class:`~.spans.SpanBuilder` to the run
tree's event bus when tracing is on, and does nothing otherwise. Tracing is on when

* ``tracing=True`` (``RLM(tracing=True)``, ``RLM_TRACING=1``), or ``tracing="content"``
  (spans also carry prompts, replies, code and output; ``RLM_TRACING=content``), or
* ``tracing`` is left unset ("auto") and the process has configured an OpenTelemetry tracer
  provider (``trace.set_tracer_provider(...)``, ``opentelemetry-instrument``), or handed one
  to :func:`use_tracer_provider`.

Off costs nothing: this module imports no OpenTelemetry package, and "is a provider
configured?" is answered from ``sys.modules`` (a process that never imported
``opentelemetry.trace`` has configured nothing). Keys never reach a span: every text the
engine emits is already redacted, and content attributes pass the run's redactor again.

This module also tells the user, once, when litellm callbacks (Langfuse, MLflow, ...) are set
but the run takes the direct HTTP path, where litellm is not called and they never fire.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from rlm_jupyter.errors import ConfigError

#: The values ``tracing`` accepts, and what each means (see :func:`tracing_mode`).
TRUE_WORDS = ("1", "true", "on", "yes")
FALSE_WORDS = ("0", "false", "off", "no")
#: The OpenTelemetry GenAI instrumentations' own opt-in for message content; honoured too.
OTEL_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

_provider: Any = None  # set by use_tracer_provider
_litellm_note_given = False


def tracing_mode(value: Any) -> str:
    """``"off"``, ``"auto"``, ``"on"`` or ``"content"`` for a ``tracing`` setting.

    ``None``/``"auto"``: on when a tracer provider is configured; ``True``/``"on"``: on;
    ``"content"``: on, with prompts and outputs; ``False``/``"off"``: never.
    """
    if value is None:
        return "auto"
    if value is True:
        return "on"
    if value is False:
        return "off"
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("", "auto"):
            return "auto"
        if word in TRUE_WORDS:
            return "on"
        if word in FALSE_WORDS:
            return "off"
        if word == "content":
            return "content"
    raise ConfigError(f"tracing must be True, False, 'content' or None (auto: on when an "
                      f"OpenTelemetry tracer provider is configured), got {value!r}.")


def validate_tracing(value: Any) -> None:
    """Settings validation: a known value, and OpenTelemetry installed when asked for."""
    mode = tracing_mode(value)
    if mode in ("on", "content"):
        import importlib.util

        if importlib.util.find_spec("opentelemetry") is None or \
                importlib.util.find_spec("opentelemetry.trace") is None:
            raise ConfigError(
                f"tracing={value!r} needs OpenTelemetry: pip install 'rlm-jupyter[otel]' "
                f"(opentelemetry-api, -sdk and the OTLP/HTTP exporter), or pass tracing=False.")


def use_tracer_provider(provider: Any) -> None:
    """Send RLM spans to ``provider`` without making it the process's global provider
    (``None`` goes back to the global one). Tracing in auto mode counts it as configured."""
    global _provider
    _provider = provider


def tracer_provider() -> Any:
    """The provider RLM spans go to: :func:`use_tracer_provider`'s, else the global one."""
    if _provider is not None:
        return _provider
    from opentelemetry import trace

    return trace.get_tracer_provider()


def provider_configured() -> bool:
    """Whether spans would go anywhere, without importing OpenTelemetry."""
    if _provider is not None:
        return True
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def content_opt_in() -> bool:
    return os.environ.get(OTEL_CONTENT_ENV, "").strip().lower() in TRUE_WORDS


def attach(bus: Any, settings: Any, redactor: Any, notes: list[str]) -> None:
    """What ``RLM.run`` calls once per run, before anything is opened: subscribe the span
    builder when tracing is on. A ``tracing`` value it does not know is a ConfigError."""
    _note_litellm_callbacks(settings, notes)
    value = getattr(settings, "tracing", None)
    mode = tracing_mode(value)  # a ConfigError for a value it does not know
    if mode == "off" or (mode == "auto" and not provider_configured()):
        return
    if mode != "auto":
        validate_tracing(value)  # a ConfigError when OpenTelemetry is not installed
    from rlm_jupyter.telemetry.spans import SpanBuilder, ensure_provider

    ensure_provider(notes)
    bus.subscribe(SpanBuilder(tracer_provider(), content=mode == "content" or content_opt_in(),
                              redactor=redactor))


# -- litellm callbacks on the direct path ---------------------------------------------------------

def litellm_callbacks() -> list[str]:
    """The litellm callbacks a user set (names), without importing litellm: a process that
    never imported it has set none."""
    litellm = sys.modules.get("litellm")
    if litellm is None:
        return []
    names: list[str] = []
    for attr in ("callbacks", "success_callback", "failure_callback"):
        for cb in getattr(litellm, attr, None) or []:
            name = cb if isinstance(cb, str) else (getattr(cb, "__name__", None)
                                                    or type(cb).__name__)
            if name not in names:
                names.append(name)
    return names


def _note_litellm_callbacks(settings: Any, notes: list[str]) -> None:
    """Once per process: litellm callbacks are set, but this run's calls bypass litellm."""
    global _litellm_note_given
    if _litellm_note_given or "litellm" not in sys.modules:
        return
    try:
        if settings.effective_transport != "http":
            return
    except Exception:  # noqa: BLE001 - a note must never break a run
        return
    names = litellm_callbacks()
    if not names:
        return
    _litellm_note_given = True
    message = (f"litellm callbacks are set ({', '.join(names)}), but this run calls the "
               f"OpenAI-compatible server at api_base directly, without litellm, so they do not "
               f"fire. Pass transport='litellm' (or RLM_TRANSPORT=litellm) to keep them, or use "
               f"tracing=True for OpenTelemetry spans.")
    notes.append(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


__all__ = ["attach", "tracing_mode", "validate_tracing", "use_tracer_provider",
           "tracer_provider", "provider_configured", "litellm_callbacks"]
