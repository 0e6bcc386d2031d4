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
from fastapi import FastAPI, WebSocket
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


async def test_a_quiet_call_is_not_traced_at_the_far_end_either(
    exported: InMemorySpanExporter, things: str
) -> None:
    """A worker's idle poll of another service (the decision poll asks the central platform
    every few seconds) is no new trace on the receiving side: the call carries a W3C parent
    whose sampled flag is off, and the receiver's parent-based sampler follows it."""
    call = hgrpc.channel("things", target=things).unary_unary(
        f"/{SERVICE}/GetThing", StringValue.SerializeToString, StringValue.FromString
    )
    with telemetry.quiet():
        assert (await call(StringValue(value="idle"))).value == "thing idle"
    assert [s.name for s in exported.get_finished_spans()] == []
    assert (await call(StringValue(value="loud"))).value == "thing loud"
    assert {(s.kind, s.name) for s in exported.get_finished_spans()} == {
        (SpanKind.CLIENT, f"/{SERVICE}/GetThing"),
        (SpanKind.SERVER, f"/{SERVICE}/GetThing"),
    }


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


_UNLISTENED = """
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from hdhub.common.telemetry import current_trace_id, setup_telemetry
setup_telemetry("registrations")
tracer = trace.get_tracer("probe")
with tracer.start_as_current_span("nobody listens") as span:
    print(span.is_recording(), current_trace_id() is not None)
exporter = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
with tracer.start_as_current_span("listened") as span:
    print(span.is_recording(), current_trace_id() is not None)
print([s.name for s in exporter.get_finished_spans()])
"""


def test_without_an_exporter_spans_are_not_recorded_but_requests_keep_a_trace_id() -> None:
    """Nobody reads the spans of a process that exports nothing: they are not built (the
    grid's call spent a tenth of its time on them), yet a log line still has a trace id;
    a processor added later (a test's, an exporter's) gets every span from then on."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", _UNLISTENED], env=clean, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split("\n")[:3] == ["False True", "True True", "['listened']"]


def test_sdk_disabled_leaves_the_noop_api() -> None:
    assert _probe(OTEL_SDK_DISABLED="true", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1") == "no-sdk"


# --- jobs: producer and consumer spans, batches linked -------------------------------------


class _Job:
    def __init__(self, kind: str, trace_context: dict[str, str]) -> None:
        self.id, self.kind, self.attempts, self.trace_context = os.urandom(4).hex(), kind, 1, trace_context


def _enqueued(kind: str) -> tuple[_Job, trace.Span]:
    with trace.get_tracer("test").start_as_current_span("POST /submit") as request:
        with telemetry.enqueue_span(kind, job_id="j"):
            stored = telemetry.inject_context()
    return _Job(kind, stored), request


def test_a_job_continues_its_producer_in_the_request_trace(exported: InMemorySpanExporter) -> None:
    job, request = _enqueued("deliver")
    with telemetry.quiet(), telemetry.job_span(job):  # claimed by a quiet poll: still traced
        follow_up = telemetry.job_context(job)
    finished = list(exported.get_finished_spans())
    producer = _one(finished, SpanKind.PRODUCER, "send deliver")
    consumer = _one(finished, SpanKind.CONSUMER, "process deliver")
    assert producer.parent is not None and producer.parent.span_id == request.get_span_context().span_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == request.get_span_context().trace_id
    attributes = dict(consumer.attributes or {})
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"] == "deliver"
    # The confirmation enqueued by the job stays in the same trace, under the job.
    assert follow_up["traceparent"].split("-")[2] == format(consumer.context.span_id, "016x")


def test_a_batch_of_several_requests_links_to_each(exported: InMemorySpanExporter) -> None:
    (a, ra), (b, rb) = _enqueued("deliver"), _enqueued("deliver")
    with telemetry.jobs_span([a, b]):
        a_next, b_next = telemetry.job_context(a), telemetry.job_context(b)
    batch = _one(list(exported.get_finished_spans()), SpanKind.CONSUMER, "process deliver")
    assert batch.parent is None  # a trace of its own
    linked = {link.context.trace_id for link in batch.links}
    assert linked == {ra.get_span_context().trace_id, rb.get_span_context().trace_id}
    assert dict(batch.attributes or {})["messaging.batch.message_count"] == 2
    # Each follow-up job keeps its own journey's trace, not the batch's.
    assert a_next == a.trace_context and b_next == b.trace_context


def test_nothing_is_traced_in_a_quiet_poll(exported: InMemorySpanExporter) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    provider = TracerProvider(sampler=telemetry.QuietSampler(ALWAYS_ON))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with telemetry.quiet():
        with tracer.start_as_current_span("claim"):
            with telemetry.enqueue_span("relink"):
                assert telemetry.inject_context() == {}
    assert memory.get_finished_spans() == ()
    with tracer.start_as_current_span("loud"):
        pass
    assert [s.name for s in memory.get_finished_spans()] == ["loud"]


# --- what leaves the process -----------------------------------------------------------------


def _scrubbing(per_service: bool = False) -> tuple[trace.Tracer, InMemorySpanExporter]:
    from opentelemetry.sdk.resources import Resource

    provider = TracerProvider(resource=Resource.create({"service.name": "hdhub"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(
        telemetry.ScrubbingSpanProcessor(SimpleSpanProcessor(memory), per_service=per_service)
    )
    return provider.get_tracer("test"), memory


def test_exported_spans_carry_templates_not_values() -> None:
    tracer, memory = _scrubbing()
    with tracer.start_as_current_span(
        "GET /api/v1/registrations/{registration_id}",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "GET",
            "http.route": "/api/v1/registrations/{registration_id}",
            "url.path": "/api/v1/registrations/85040216932",
            "url.query": "ssin=85040216932",
        },
    ):
        pass
    with tracer.start_as_current_span(
        "PUT", kind=SpanKind.SERVER, attributes={"url.path": "/api/v1/files/az/NGS/Peeters_Jan_19700615.vcf"}
    ):
        pass
    with tracer.start_as_current_span("SELECT hdhub_reg", attributes={"db.operation": "SELECT hdhub_reg"}):
        pass
    with tracer.start_as_current_span("/hdhub.sim.v1.Central/Send", attributes={"rpc.system": "grpc"}):
        pass
    with pytest.raises(ValueError), tracer.start_as_current_span("fails"):
        raise ValueError("no registration for Peeters Jan born 1970-06-15 (85040216932)")
    routed, unrouted, sql, rpc, fails = memory.get_finished_spans()
    assert dict(routed.attributes or {})["url.path"] == "/api/v1/registrations/{registration_id}"
    assert "url.query" not in dict(routed.attributes or {})
    assert "url.path" not in dict(unrouted.attributes or {})  # no template, no path
    assert dict(sql.attributes or {})["db.operation"] == "SELECT"
    assert rpc.name == "hdhub.sim.v1.Central/Send"
    [event] = fails.events
    assert dict(event.attributes or {}) == {"exception.type": "ValueError", "exception.escaped": "False"}
    assert fails.status.description is None
    exported = repr(
        [
            (s.name, dict(s.attributes or {}), s.events, s.status.description)
            for s in memory.get_finished_spans()
        ]
    )
    for secret in ("85040216932", "Peeters", "19700615", "1970-06-15"):
        assert secret not in exported


def test_in_one_process_each_service_exports_its_own_spans() -> None:
    from hdhub.common.logging import current_service

    tracer, memory = _scrubbing(per_service=True)
    token = current_service.set("uploads")
    with tracer.start_as_current_span("POST /api/v1/uploads"):
        pass
    current_service.reset(token)
    with telemetry.worker_context("registrations"), tracer.start_as_current_span("process deliver"):
        with tracer.start_as_current_span("SELECT"):
            pass
    with tracer.start_as_current_span("hdhub.registrations.v1.X/Y", kind=SpanKind.SERVER) as server:
        server.set_attribute("hdhub.service", "registrations")
    names = [s.resource.attributes["service.name"] for s in memory.get_finished_spans()]
    assert names == [
        "hdhub-uploads",
        "hdhub-registrations-worker",
        "hdhub-registrations-worker",
        "hdhub-registrations",
    ]


async def test_the_server_span_is_named_after_the_route_that_answered(exported: InMemorySpanExporter) -> None:
    """Named once the app has routed the request (not by matching every route once more
    before it): the route template and ``http.route``; a path no route takes keeps the
    method alone and no ``http.route``; a refusal of the route keeps its route."""
    from hdhub.common.errors import Problem
    from hdhub.common.web import create_app

    app = FastAPI()

    @app.post("/api/v1/things/{thing_id}/notes")
    async def add_note(thing_id: str) -> dict[str, str]:
        raise Problem(409, "conflict", "No")

    @app.get("/api/v1/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    app = create_app(title="things", routers=[app.router])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/api/v1/things/85040216932")).status_code == 200
        assert (await client.post("/api/v1/things/7/notes")).status_code == 409
        assert (await client.get("/nothing/here")).status_code == 404
    servers = {
        s.name: dict(s.attributes or {}) for s in exported.get_finished_spans() if s.kind == SpanKind.SERVER
    }
    assert servers["GET /api/v1/things/{thing_id}"]["http.route"] == "/api/v1/things/{thing_id}"
    assert servers["POST /api/v1/things/{thing_id}/notes"]["http.route"] == "/api/v1/things/{thing_id}/notes"
    assert "http.route" not in servers["GET"]


def test_a_websocket_span_is_named_after_its_route_once(exported: InMemorySpanExporter) -> None:
    """A WebSocket's server span lasts as long as its connection: named after its route as
    it is accepted (the app's dependencies ran for it), and not renamed by a close sent
    later inside a span of the route's own."""
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from hdhub.common.web import create_app

    app = FastAPI()
    tracer = trace.get_tracer("test")

    @app.websocket("/api/v1/things/{thing_id}/live")
    async def live(websocket: WebSocket, thing_id: str) -> None:
        await websocket.accept()
        await websocket.receive_text()
        with tracer.start_as_current_span("a message", kind=SpanKind.SERVER):
            await websocket.close(4000)

    app = create_app(title="things", routers=[app.router])
    with TestClient(app).websocket_connect("/api/v1/things/7/live") as socket:
        socket.send_text("hello")
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_text()
    assert closed.value.code == 4000
    servers = {
        s.name: dict(s.attributes or {}) for s in exported.get_finished_spans() if s.kind == SpanKind.SERVER
    }
    assert (
        servers["WEBSOCKET /api/v1/things/{thing_id}/live"]["http.route"] == "/api/v1/things/{thing_id}/live"
    )
    assert "a message" in servers
