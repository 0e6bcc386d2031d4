"""Traces: one trace from a FastAPI request through a gRPC call, exported through an
in-memory exporter; SDK set-up from the OTEL_* variables; job context round trip."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from fastapi import FastAPI
from google.protobuf.wrappers_pb2 import StringValue
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hdhub.common import grpc as hgrpc
from hdhub.common import telemetry

SERVICE = "hdhub.things.v1.ThingsService"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span the process records, from here on (the provider is process-wide)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def exported(spans: InMemorySpanExporter) -> InMemorySpanExporter:
    spans.clear()
    return spans


async def _get_thing(request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
    return StringValue(value=f"thing {request.value}")


def _register(server: grpc.aio.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        _get_thing, StringValue.FromString, StringValue.SerializeToString
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"GetThing": handler})])


@pytest.fixture(scope="module")
async def things(spans: InMemorySpanExporter) -> AsyncIterator[str]:
    server = await hgrpc.start_server(
        service="things", bind="127.0.0.1:0", register=[_register], service_names=[SERVICE]
    )
    yield f"127.0.0.1:{hgrpc.bound_port(server)}"
    await hgrpc.close_channels()
    await hgrpc.stop_server(server, grace=0)


def _app(things_target: str) -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        call = hgrpc.channel("things", target=things_target).unary_unary(
            f"/{SERVICE}/GetThing", StringValue.SerializeToString, StringValue.FromString
        )
        answer = await call(StringValue(value=thing_id))
        return {"thing": answer.value}

    telemetry.instrument_fastapi(app)
    return app


def _one(spans: list[ReadableSpan], kind: SpanKind, name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.kind == kind and s.name == name]
    return span


async def test_request_and_the_grpc_call_it_makes_share_one_trace(
    exported: InMemorySpanExporter, things: str
) -> None:
    app = _app(things)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hdhub.test"
    ) as client:
        response = await client.get("/api/v1/things/42", params={"ssin": "85040216932"})
    assert response.json() == {"thing": "thing 42"}

    finished = list(exported.get_finished_spans())
    http_server = _one(finished, SpanKind.SERVER, "GET /api/v1/things/{thing_id}")
    grpc_client = _one(finished, SpanKind.CLIENT, f"/{SERVICE}/GetThing")
    grpc_server = _one(finished, SpanKind.SERVER, f"/{SERVICE}/GetThing")

    trace_ids = {s.context.trace_id for s in (http_server, grpc_client, grpc_server)}
    assert len(trace_ids) == 1
    assert grpc_client.parent is not None and grpc_client.parent.span_id == http_server.context.span_id
    assert grpc_server.parent is not None and grpc_server.parent.span_id == grpc_client.context.span_id
    assert grpc_server.attributes is not None and grpc_server.attributes["hdhub.service"] == "things"
    # Query strings can carry identifiers: they stay out of the trace.
    assert "85040216932" not in str(dict(http_server.attributes or {}))


async def test_health_checks_make_no_spans(exported: InMemorySpanExporter, things: str) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(hgrpc.channel("things", target=things))
    await stub.Check(health_pb2.HealthCheckRequest(service=""))
    assert [s.name for s in exported.get_finished_spans() if "Health" in s.name] == []


async def test_job_trace_context_continues_the_trace_that_enqueued_it(exported: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("enqueue") as enqueue:
        stored = telemetry.inject_context()
    assert set(stored) >= {"traceparent"}

    # Later, in a worker, with nothing current:
    with tracer.start_as_current_span("run job", context=telemetry.extract_context(stored)) as job:
        pass
    assert job.get_span_context().trace_id == enqueue.get_span_context().trace_id
    with tracer.start_as_current_span("fresh", context=telemetry.extract_context(None)) as fresh:
        pass
    assert fresh.get_span_context().trace_id != enqueue.get_span_context().trace_id


async def test_sqlalchemy_statements_are_traced_once_per_engine(
    exported: InMemorySpanExporter, tmp_path: Any
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    telemetry.instrument_sqlalchemy(engine)
    telemetry.instrument_sqlalchemy(engine)  # twice: still one span per statement
    async with engine.connect() as connection:
        await connection.execute(text("SELECT :value"), {"value": "85040216932"})
    await engine.dispose()
    [span] = [s for s in exported.get_finished_spans() if s.name.startswith("SELECT")]
    assert "85040216932" not in str(dict(span.attributes or {}))


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


async def test_httpx_calls_are_traced_without_query_string(
    exported: InMemorySpanExporter, http_server: str
) -> None:
    telemetry.instrument_httpx()
    telemetry.instrument_httpx()
    async with httpx.AsyncClient() as client:
        await client.get(f"{http_server}/tack", params={"ssin": "85040216932"})
    [span] = [s for s in exported.get_finished_spans() if s.kind == SpanKind.CLIENT and s.name == "GET"]
    attributes = dict(span.attributes or {})
    assert "85040216932" not in str(attributes)
    assert any(str(v).endswith("/tack") for v in attributes.values())


def test_setup_keeps_the_provider_already_installed(spans: InMemorySpanExporter) -> None:
    before = trace.get_tracer_provider()
    telemetry.setup_telemetry("registrations")
    telemetry.setup_telemetry("uploads")
    assert trace.get_tracer_provider() is before


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ["OTLPSpanExporter"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, ["OTLPSpanExporter"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["ConsoleSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["OTLPSpanExporter", "ConsoleSpanExporter"]),
    ],
)
def test_exporters_follow_the_standard_variables(env: dict[str, str], expected: list[str]) -> None:
    exporters = telemetry._span_exporters(env)
    assert [type(e).__name__ for e in exporters] == expected
    for exporter in exporters:
        exporter.shutdown()


_PROBE = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from hdhub.common.telemetry import setup_telemetry
setup_telemetry("registrations")
setup_telemetry("uploads")
provider = trace.get_tracer_provider()
if isinstance(provider, TracerProvider):
    print(provider.resource.attributes["service.name"], len(provider._active_span_processor._span_processors))
else:
    print("no-sdk")
"""


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_fresh_process_is_named_by_the_first_setup_and_exports_nothing_without_endpoint() -> None:
    assert _probe() == "registrations 0"


def test_otel_service_name_wins() -> None:
    assert _probe(OTEL_SERVICE_NAME="hdhub") == "hdhub 0"


def test_endpoint_turns_otlp_export_on() -> None:
    assert _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1") == "registrations 1"


def test_sdk_disabled_leaves_the_noop_api() -> None:
    assert _probe(OTEL_SDK_DISABLED="true", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1") == "no-sdk"
