"""Spans go to the SDK's in-memory exporter through a provider handed to rlm_jupyter.telemetry
(never the process's global provider, so the rest of the suite runs with tracing off)."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="pip install 'rlm-jupyter[otel]'")


@pytest.fixture
def exporter():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from rlm_jupyter import telemetry

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry.use_tracer_provider(provider)
    memory.provider = provider
    yield memory
    telemetry.use_tracer_provider(None)
    provider.shutdown()


# server_factory: tests/conftest.py
