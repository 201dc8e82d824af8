"""One real OTLP/HTTP export: a run in a fresh process sends its spans to a receiver started
here (http.server on 127.0.0.1, POST /v1/traces, protobuf decoded with opentelemetry-proto)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
pytest.importorskip("opentelemetry.proto")


class Receiver:
    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.requests: list = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.paths.append(self.path)
                receiver.requests.append(request)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list:
        return [span for request in self.requests for rs in request.resource_spans
                for ss in rs.scope_spans for span in ss.spans]

    def resources(self) -> list[dict]:
        return [{kv.key: kv.value.string_value for kv in rs.resource.attributes}
                for request in self.requests for rs in request.resource_spans]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


USER_PROVIDER = """
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
"""


@pytest.mark.parametrize("setup", ["user provider, tracing auto", "tracing=True, no provider"])
def test_spans_reach_an_otlp_http_receiver(receiver, server_factory, tmp_path, setup):
    srv = server_factory(root=["```repl\nprint(llm_query('ping'))\n```", "FINAL(sent)"],
                         sub=lambda prompt, req: "pong")
    user = setup.startswith("user")
    script = (USER_PROVIDER if user else "") + textwrap.dedent(f"""
        from rlm_jupyter import RLM
        r = RLM(model={srv.model!r}, api_base={srv.base_url!r}, api_key='k', sandbox='inprocess',
                log_dir={str(tmp_path)!r}, tracing={None if user else True!r}).run('q', context='c')
        assert r.answer == 'sent', r.error
        print([n for n in r.notes if 'OTLP' in n])
    """)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    env.pop("OTEL_SERVICE_NAME", None)
    env.pop("OTEL_RESOURCE_ATTRIBUTES", None)
    # No explicit flush: the SDK's exit handler sends what the batch processor holds.
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    notes = out.stdout.strip().splitlines()[-1]
    if user:
        assert notes == "[]"  # the user's provider is used as it is
    else:
        assert receiver.url in notes  # the run says where its spans go
        assert {"service.name": "rlm-jupyter"}.items() <= receiver.resources()[0].items()
    assert set(receiver.paths) == {"/v1/traces"}
    spans = receiver.spans()
    names = sorted(s.name for s in spans)
    assert names.count("rlm.run") == 1 and names.count("rlm.turn") == 2
    assert names.count(f"chat {srv.model}") == 3 and names.count("rlm.code") == 1
    by_id = {s.span_id: s for s in spans}
    run = next(s for s in spans if s.name == "rlm.run")
    assert run.parent_span_id == b""
    for span in spans:
        if span.name.startswith("chat") or span.name == "rlm.code":
            assert by_id[span.parent_span_id].name == "rlm.turn"
        if span.name == "rlm.turn":
            assert span.parent_span_id == run.span_id
        assert span.trace_id == run.trace_id
    attrs = {kv.key: kv.value for kv in
             next(s for s in spans if s.name.startswith("chat")).attributes}
    assert attrs["gen_ai.operation.name"].string_value == "chat"
    assert attrs["gen_ai.usage.input_tokens"].int_value > 0
