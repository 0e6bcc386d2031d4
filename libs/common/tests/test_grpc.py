"""The internal edge on real gRPC servers on loopback: health, reflection, problems both
ways, bearer tokens verified against a JWKS served over HTTP, deadlines and retries."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import grpc.aio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY

from hdhub.common import grpc as hgrpc
from hdhub.common.auth import Principal, TokenVerifier, current_principal, set_verifier
from hdhub.common.config import platform
from hdhub.common.errors import FieldProblem, Problem

SERVICE = "hdhub.test.v1.EchoService"
# The contract of the test service, as `option idempotency_level` would give it in a .proto.
RETRY_SAFE = {
    "Echo": descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    "WhoAmI": descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    "Slow": descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    "Flaky": descriptor_pb2.MethodOptions.IDEMPOTENT,
}
ISSUER = "http://issuer.test/realms/hdhub"
AUDIENCE = "hdhub"


def _ensure_sdk_tracer_provider() -> None:
    """Trace ids exist only with the SDK; the provider is process-wide and set once."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())


# --- A JWKS served over real HTTP, and tokens signed with its key -----------------------


class _Jwks:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        self.body = json.dumps({"keys": [jwk]}).encode()

    def token(self, subject: str = "user-1", **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + 300,
            "preferred_username": subject,
            "organisations": {"org-1": {"name": "Hospital One", "roles": ["registrant"]}},
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def jwks() -> Iterator[_Jwks]:
    keys = _Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(keys.body)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    set_verifier(
        TokenVerifier(issuer=ISSUER, jwks_url=f"http://127.0.0.1:{http.server_port}/certs", audience=AUDIENCE)
    )
    yield keys
    set_verifier(None)
    http.shutdown()


# --- A tiny service behind the standard interceptors -------------------------------------

METHODS = ("Echo", "WhoAmI", "Anonymous", "Fail", "Boom", "AbortNotFound", "Slow", "Flaky", "Relay", "Count")


def _echo_descriptor() -> ServiceDescriptor:
    """``hdhub.test.v1.EchoService`` as protoc would describe it: StringValue in and out,
    the methods of RETRY_SAFE marked safe to repeat."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="hdhub/test/v1/echo.proto",
        package="hdhub.test.v1",
        dependency=["google/protobuf/wrappers.proto"],
        syntax="proto3",
    )
    service = file.service.add(name="EchoService")
    for name in METHODS:
        method = service.method.add(
            name=name,
            input_type=".google.protobuf.StringValue",
            output_type=".google.protobuf.StringValue",
            server_streaming=name == "Count",
        )
        if name in RETRY_SAFE:
            method.options.idempotency_level = RETRY_SAFE[name]
    pool.AddSerializedFile(file.SerializeToString())
    return pool.FindServiceByName(SERVICE)


class Echo:
    """Methods exercising each behaviour; requests and answers are StringValue."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.seen_deadline: float | None = None
        self.downstream_target: str | None = None

    async def Echo(self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
        return StringValue(value=request.value)

    async def WhoAmI(self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
        return StringValue(value=hgrpc.require_principal().subject)

    async def Anonymous(
        self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]
    ) -> StringValue:
        principal = current_principal.get()
        return StringValue(value=principal.subject if principal else "anonymous")

    async def Fail(self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
        raise _problem(request.value)

    async def Boom(self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
        raise RuntimeError(f"database said no about {request.value}")

    async def AbortNotFound(
        self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]
    ) -> StringValue:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    async def Slow(self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
        self.seen_deadline = context.time_remaining()
        await asyncio.sleep(float(request.value or "2"))
        return StringValue(value="done")

    async def Flaky(self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
        # Unavailable until the request's nth attempt: `<key>:<n>`.
        key, _, succeed_at = request.value.partition(":")
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.attempts[key] < int(succeed_at):
            raise Problem(503, "busy", "Busy, try again")
        return StringValue(value=f"attempt {self.attempts[key]}")

    async def Relay(self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
        # Calls another server (the caller's token and deadline must follow).
        assert self.downstream_target is not None
        method, _, value = request.value.partition("|")
        call = hgrpc.channel("downstream", target=self.downstream_target).unary_unary(
            f"/{SERVICE}/{method}", StringValue.SerializeToString, StringValue.FromString
        )
        return await call(StringValue(value=value or "0.05"))

    async def Count(
        self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[StringValue]:
        for i in range(int(request.value)):
            yield StringValue(value=str(i))
        raise Problem(409, "stream-ended", "Ran out of numbers")

    async def WhoAmIStream(
        self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[StringValue]:
        yield StringValue(value=hgrpc.require_principal().subject)


def _problem(spec: str) -> Problem:
    status, _, slug = spec.partition(":")
    errors = [FieldProblem("DT_PCI", "required", "A date is required", path="pci[1]/DT_PCI", row=3)]
    return Problem(
        int(status),
        slug or "some-problem",
        f"Problem {status}",
        "Some detail.",
        errors=errors if status == "422" else (),
        headers={"Retry-After": "7"} if status == "429" else {},
        extra={"registration_id": "reg-1"} if status == "404" else {},
    )


def _register(echo: Echo) -> Any:
    def register(server: grpc.aio.Server) -> None:
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(echo, name), StringValue.FromString, StringValue.SerializeToString
            )
            for name in METHODS
            if name != "Count"
        }
        for name in ("Count", "WhoAmIStream"):
            handlers[name] = grpc.unary_stream_rpc_method_handler(
                getattr(echo, name), StringValue.FromString, StringValue.SerializeToString
            )
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])

    return register


class Server:
    def __init__(self, server: grpc.aio.Server, echo: Echo) -> None:
        self.server = server
        self.echo = echo
        self.target = f"127.0.0.1:{hgrpc.bound_port(server)}"

    def call(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable[StringValue, StringValue]:
        return hgrpc.channel("test", target=self.target).unary_unary(
            f"/{SERVICE}/{method}", StringValue.SerializeToString, StringValue.FromString
        )


async def _start(service: str = "test") -> Server:
    echo = Echo()
    server = await hgrpc.start_server(
        service=service, bind="127.0.0.1:0", register=[_register(echo)], service_names=[SERVICE]
    )
    return Server(server, echo)


@pytest.fixture(scope="module")
async def server(jwks: _Jwks) -> AsyncIterator[Server]:
    # Channels read the contract's services; the test service joins them here.
    contract = (*hgrpc.contract_services(), _echo_descriptor())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hgrpc, "contract_services", lambda: contract)
        started = await _start()
        yield started
        await hgrpc.close_channels()
        await hgrpc.stop_server(started.server, grace=0)


async def _error(call: Any, value: str, **kwargs: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(StringValue(value=value), **kwargs)
    return info.value


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _counted_since(before: float, name: str, **labels: str) -> float:
    """How much a server-side counter grew since ``before``, once the server's interceptor
    has counted the call: a call's status can reach the client before the interceptor
    records it (seen once in CI for a failed call)."""
    deadline = time.monotonic() + 5.0
    while _sample(name, **labels) == before and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # a second, wrong count would show by now
    return _sample(name, **labels) - before


# --- Health and reflection -----------------------------------------------------------------


async def test_health_reports_serving_for_the_server_and_each_service(server: Server) -> None:
    stub = health_pb2_grpc.HealthStub(hgrpc.channel("test", target=server.target))
    for name in ("", SERVICE):
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Check(health_pb2.HealthCheckRequest(service="hdhub.unknown.v1.NoService"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_watch_streams_the_status(server: Server) -> None:
    stub = health_pb2_grpc.HealthStub(hgrpc.channel("test", target=server.target))
    call = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    first = await call.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    call.cancel()


async def test_reflection_lists_our_service_health_and_reflection(server: Server) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(hgrpc.channel("test", target=server.target))
    requests = [reflection_pb2.ServerReflectionRequest(list_services="")]
    names = [
        s.name
        async for answer in stub.ServerReflectionInfo(iter(requests))
        for s in answer.list_services_response.service
    ]
    assert set(names) == {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


# --- Problems both ways ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ("400", grpc.StatusCode.INVALID_ARGUMENT),
        ("401:unauthorized", grpc.StatusCode.UNAUTHENTICATED),
        ("403:forbidden", grpc.StatusCode.PERMISSION_DENIED),
        ("404:not-found", grpc.StatusCode.NOT_FOUND),
        ("409:stale-version", grpc.StatusCode.ABORTED),
        ("409:registration-exists", grpc.StatusCode.ALREADY_EXISTS),
        ("409:already-exists", grpc.StatusCode.ALREADY_EXISTS),
        ("412:precondition", grpc.StatusCode.FAILED_PRECONDITION),
        ("413:too-large", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("422:validation", grpc.StatusCode.INVALID_ARGUMENT),
        ("429:rate-limited", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("503:issuer-unavailable", grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_problem_raised_by_handler_reaches_the_caller_as_the_same_problem(
    server: Server, spec: str, code: grpc.StatusCode
) -> None:
    error = await _error(server.call("Fail"), spec)
    assert error.code() == code

    problem = hgrpc.problem_from_rpc_error(error)
    expected = _problem(spec)
    assert problem.body("/x") == expected.body("/x")
    assert problem.headers == expected.headers


async def test_field_errors_past_the_metadata_budget_are_dropped_and_counted() -> None:
    errors = [
        FieldProblem(f"FIELD_{i}", "required", "This field is required " * 3, row=i) for i in range(500)
    ]
    trailers = dict(hgrpc._problem_trailers(Problem(422, "validation", "Not valid", errors=errors)))
    body = json.loads(trailers[hgrpc.PROBLEM_METADATA_KEY])
    assert len(trailers[hgrpc.PROBLEM_METADATA_KEY]) <= hgrpc.MAX_PROBLEM_BYTES
    assert body["errors_omitted"] == 500 - len(body["errors"]) > 0


async def test_unexpected_error_is_internal_with_a_generic_message_and_a_logged_trace_id(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    _ensure_sdk_tracer_provider()
    with (
        caplog.at_level(logging.ERROR, logger="hdhub.grpc"),
        trace.get_tracer("test").start_as_current_span("caller") as span,
    ):
        error = await _error(server.call("Boom"), "ssn-sentinel")
        trace_id = format(span.get_span_context().trace_id, "032x")

    assert error.code() == grpc.StatusCode.INTERNAL
    assert "database" not in (error.details() or "") and "sentinel" not in (error.details() or "")
    problem = hgrpc.problem_from_rpc_error(error)
    assert (problem.status, problem.slug) == (500, "internal")
    [record] = [r for r in caplog.records if r.name == "hdhub.grpc"]
    assert record.exc_info is not None
    assert record.trace_id == trace_id  # type: ignore[attr-defined]
    assert f"/{SERVICE}/Boom" in record.getMessage()


async def test_status_without_problem_body_becomes_a_generic_problem(server: Server) -> None:
    error = await _error(server.call("AbortNotFound"), "")
    problem = hgrpc.problem_from_rpc_error(error)
    assert (problem.status, problem.slug, problem.detail) == (404, "not-found", "no such thing")


@pytest.fixture
async def dead_target() -> AsyncIterator[str]:
    """A port nobody listens on (bound, then closed). Its channel is closed after the test:
    the operating system hands the port out again, and a cached channel still backing off
    from it would fail the next server's calls at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"127.0.0.1:{port}"
    await hgrpc.close_channels()


async def test_unreachable_service_is_a_dependency_unavailable_problem(dead_target: str) -> None:
    call = hgrpc.channel("test", target=dead_target).unary_unary(
        f"/{SERVICE}/Echo", StringValue.SerializeToString, StringValue.FromString
    )
    error = await _error(call, "x", timeout=2)
    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    problem = hgrpc.problem_from_rpc_error(error)
    assert (problem.status, problem.slug) == (503, "dependency-unavailable")


async def test_problem_raised_mid_stream_ends_the_stream_with_its_status(server: Server) -> None:
    call = hgrpc.channel("test", target=server.target).unary_stream(
        f"/{SERVICE}/Count", StringValue.SerializeToString, StringValue.FromString
    )
    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for answer in call(StringValue(value="3")):
            received.append(answer.value)
    assert received == ["0", "1", "2"]
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert hgrpc.problem_from_rpc_error(info.value).slug == "stream-ended"


# --- Identity ------------------------------------------------------------------------------


async def test_caller_token_is_forwarded_and_verified_against_the_jwks(server: Server, jwks: _Jwks) -> None:
    token = jwks.token("nurse-1")
    reset = current_principal.set(Principal.from_claims({"sub": "nurse-1"}, token))
    try:
        answer = await server.call("WhoAmI")(StringValue())
    finally:
        current_principal.reset(reset)
    assert answer.value == "nurse-1"


async def test_caller_token_is_forwarded_on_a_server_stream(server: Server, jwks: _Jwks) -> None:
    call = hgrpc.channel("test", target=server.target).unary_stream(
        f"/{SERVICE}/WhoAmIStream", StringValue.SerializeToString, StringValue.FromString
    )
    reset = current_principal.set(Principal.from_claims({"sub": "nurse-2"}, jwks.token("nurse-2")))
    try:
        answers = [a.value async for a in call(StringValue())]
    finally:
        current_principal.reset(reset)
    assert answers == ["nurse-2"]


async def test_method_requiring_a_caller_refuses_a_call_without_token(server: Server) -> None:
    error = await _error(server.call("WhoAmI"), "")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert hgrpc.problem_from_rpc_error(error).status == 401


async def test_method_open_to_anyone_runs_without_token(server: Server) -> None:
    assert (await server.call("Anonymous")(StringValue())).value == "anonymous"


@pytest.mark.parametrize("header", ["Bearer not-a-jwt", "Basic dXNlcjpwdw==", "Bearer "])
async def test_bad_token_is_refused_even_where_none_is_needed(server: Server, header: str) -> None:
    error = await _error(server.call("Anonymous"), "", metadata=(("authorization", header),))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_token_signed_by_another_key_is_refused(server: Server) -> None:
    other = _Jwks()  # same kid, different key
    error = await _error(
        server.call("Anonymous"), "", metadata=(("authorization", f"Bearer {other.token()}"),)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_token_follows_the_call_to_the_next_service(server: Server, jwks: _Jwks) -> None:
    downstream = await _start("downstream")
    server.echo.downstream_target = downstream.target
    try:
        answer = await server.call("Relay")(
            StringValue(value="WhoAmI"), metadata=(("authorization", f"Bearer {jwks.token('doctor-7')}"),)
        )
    finally:
        await hgrpc.stop_server(downstream.server, grace=0)
    assert answer.value == "doctor-7"


async def test_downstream_problem_passes_through_a_handler_that_lets_it_go(server: Server) -> None:
    downstream = await _start("downstream")
    server.echo.downstream_target = downstream.target
    try:
        error = await _error(server.call("Relay"), "Fail|404:not-found")
    finally:
        await hgrpc.stop_server(downstream.server, grace=0)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert hgrpc.problem_from_rpc_error(error).body() == _problem("404:not-found").body()


# --- Deadlines and retries -------------------------------------------------------------------


async def test_call_without_deadline_gets_the_platform_default(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platform(), "grpc_timeout_seconds", 0.3)
    started = time.monotonic()
    error = await _error(server.call("Slow"), "3")
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    assert hgrpc.problem_from_rpc_error(error).slug == "dependency-unavailable"


async def test_call_deadline_set_by_the_caller_wins(server: Server) -> None:
    answer = await server.call("Slow")(StringValue(value="0.01"), timeout=30)
    assert answer.value == "done"
    assert server.echo.seen_deadline is not None and 20 < server.echo.seen_deadline <= 31


async def test_downstream_call_does_not_outlive_the_callers_deadline(server: Server) -> None:
    downstream = await _start("downstream")
    server.echo.downstream_target = downstream.target
    try:
        await server.call("Relay")(StringValue(value="Slow"), timeout=1.5)
    finally:
        await hgrpc.stop_server(downstream.server, grace=0)
    assert downstream.echo.seen_deadline is not None and downstream.echo.seen_deadline <= 1.6


async def test_idempotent_method_is_retried_on_unavailable(server: Server) -> None:
    await hgrpc.close_channels()  # a fresh channel: fresh retry-throttling tokens
    key = uuid.uuid4().hex
    answer = await server.call("Flaky")(StringValue(value=f"{key}:3"))
    assert answer.value == "attempt 3"


async def test_other_methods_are_not_retried(server: Server) -> None:
    # "Fail" has no idempotency_level: one attempt, the caller sees UNAVAILABLE.
    before = _sample(
        "grpc_server_handled_total",
        grpc_type="unary",
        grpc_service=SERVICE,
        grpc_method="Fail",
        grpc_code="UNAVAILABLE",
    )
    error = await _error(server.call("Fail"), "503:busy")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    counted = await _counted_since(
        before,
        "grpc_server_handled_total",
        grpc_type="unary",
        grpc_service=SERVICE,
        grpc_method="Fail",
        grpc_code="UNAVAILABLE",
    )
    assert counted == 1


async def test_retries_give_up_after_four_attempts(server: Server) -> None:
    await hgrpc.close_channels()  # a fresh channel: fresh retry-throttling tokens
    key = uuid.uuid4().hex
    error = await _error(server.call("Flaky"), f"{key}:10")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert server.echo.attempts[key] == 4


def test_plain_targets_resolve_through_dns() -> None:
    assert hgrpc._resolver_target("registrations:50051") == "dns:///registrations:50051"
    assert hgrpc._resolver_target("dns:///registrations:50051") == "dns:///registrations:50051"
    assert hgrpc._resolver_target("unix:///tmp/x.sock") == "unix:///tmp/x.sock"


# --- Metrics, access log, shutdown -----------------------------------------------------------


async def test_metrics_count_calls_by_method_and_code(server: Server) -> None:
    labels = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Echo"}
    before = _sample("grpc_server_handled_total", **labels, grpc_code="OK")
    await server.call("Echo")(StringValue(value="hi"))
    assert await _counted_since(before, "grpc_server_handled_total", **labels, grpc_code="OK") == 1
    assert _sample("grpc_server_handling_seconds_count", **labels) >= 1


async def test_access_log_has_method_code_and_duration_but_no_content(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "hdhub.grpc.access"]

    with caplog.at_level(logging.INFO, logger="hdhub.grpc.access"):
        await server.call("Echo")(StringValue(value="85040216932 Jansen"))
        await _error(server.call("Fail"), "404:not-found")
        # The server logs a call once it has answered it: the client may hear first.
        for _ in range(200):
            if len(logged()) >= 2:
                break
            await asyncio.sleep(0.01)
    lines = logged()
    assert [(r.grpc_method, r.grpc_code) for r in lines] == [  # type: ignore[attr-defined]
        (f"/{SERVICE}/Echo", "OK"),
        (f"/{SERVICE}/Fail", "NOT_FOUND"),
    ]
    assert all(isinstance(r.duration_ms, float) for r in lines)  # type: ignore[attr-defined]
    assert "Jansen" not in caplog.text and "85040216932" not in caplog.text


async def test_graceful_stop_lets_calls_in_flight_finish_and_turns_health_off() -> None:
    started = await _start()
    slow = asyncio.ensure_future(started.call("Slow")(StringValue(value="0.3")))
    await asyncio.sleep(0.1)
    stub = health_pb2_grpc.HealthStub(hgrpc.channel("test", target=started.target))
    state = hgrpc._servers[started.server]
    stopping = asyncio.ensure_future(hgrpc.stop_server(started.server, grace=5))
    await asyncio.sleep(0.05)
    assert (await state.health.Check(health_pb2.HealthCheckRequest(service=""), None)).status == (
        health_pb2.HealthCheckResponse.NOT_SERVING
    )
    assert (await slow).value == "done"
    await stopping
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)


# --- Client metrics, and health following readiness ----------------------------------------


async def test_client_calls_are_counted_by_service_method_and_code(server: Server) -> None:
    """Calls this process makes (to the central platform too, which hdhub does not serve)
    are counted on the client side, with the outcome the alerts read."""
    labels = {"grpc_type": "unary", "grpc_service": SERVICE}
    ok_before = _sample("grpc_client_handled_total", **labels, grpc_method="Echo", grpc_code="OK")
    missing_before = _sample("grpc_client_handled_total", **labels, grpc_method="Fail", grpc_code="NOT_FOUND")
    await server.call("Echo")(StringValue(value="hi"))
    await _error(server.call("Fail"), "404:not-found")
    assert _sample("grpc_client_handled_total", **labels, grpc_method="Echo", grpc_code="OK") - ok_before == 1
    assert (
        _sample("grpc_client_handled_total", **labels, grpc_method="Fail", grpc_code="NOT_FOUND")
        - missing_before
        == 1
    )
    assert _sample("grpc_client_handling_seconds_count", **labels, grpc_method="Echo") >= 1
    # NOT_FOUND is an answer: the service is well, as far as this process can tell.
    ok_at = _sample("grpc_client_last_call_timestamp_seconds", grpc_service=SERVICE, outcome="ok")
    assert time.time() - ok_at < 5
    assert _sample("grpc_client_last_call_timestamp_seconds", grpc_service=SERVICE, outcome="failed") < ok_at


async def test_an_unreachable_service_is_a_failed_call_on_the_client(dead_target: str) -> None:
    service = "hdhub.test.v1.NobodyHome"
    call = hgrpc.channel("test", target=dead_target).unary_unary(
        f"/{service}/Echo", StringValue.SerializeToString, StringValue.FromString
    )
    await _error(call, "x", timeout=1)
    codes = {
        code: _sample(
            "grpc_client_handled_total",
            grpc_type="unary",
            grpc_service=service,
            grpc_method="Echo",
            grpc_code=code,
        )
        for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    }
    assert sum(codes.values()) == 1
    failed_at = _sample("grpc_client_last_call_timestamp_seconds", grpc_service=service, outcome="failed")
    assert time.time() - failed_at < 5
    assert _sample("grpc_client_last_call_timestamp_seconds", grpc_service=service, outcome="ok") == 0


async def test_health_follows_readiness_but_liveness_stays_serving() -> None:
    """While the service's database is down, gRPC health answers NOT_SERVING for the server
    and its services (balancers move away), yet ``liveness`` stays SERVING: the kubelet's
    liveness probe must not restart pods over a database outage."""
    from hdhub.common.health import LIVENESS_SERVICE

    started = await _start()
    stub = health_pb2_grpc.HealthStub(hgrpc.channel("test", target=started.target))
    database = {"state": "database: OperationalError: connection refused"}

    async def readiness() -> dict[str, str]:
        return {"test.database": database["state"]}

    async def statuses() -> dict[str, int]:
        return {
            name: (await stub.Check(health_pb2.HealthCheckRequest(service=name))).status
            for name in ("", SERVICE, LIVENESS_SERVICE)
        }

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    follower = asyncio.ensure_future(hgrpc.follow_readiness(started.server, readiness, every=0.05))
    try:
        await asyncio.sleep(0.2)
        assert await statuses() == {"": not_serving, SERVICE: not_serving, LIVENESS_SERVICE: serving}
        database["state"] = "ok"
        await asyncio.sleep(0.2)
        assert await statuses() == {"": serving, SERVICE: serving, LIVENESS_SERVICE: serving}
    finally:
        follower.cancel()
        await hgrpc.stop_server(started.server, grace=0)


async def test_a_service_whose_database_is_unreachable_is_not_serving_but_alive() -> None:
    """The wiring of every service: its gRPC health follows its own database."""
    from hdhub.common.config import ServiceSettings
    from hdhub.common.health import LIVENESS_SERVICE
    from hdhub.common.runtime import Service

    class Unreachable(Service):
        name = "unreachable-test"
        grpc_service_names = (SERVICE,)

        def grpc_registrations(self) -> Any:
            return [_register(Echo())]

    settings = ServiceSettings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:9/none", grpc_bind="127.0.0.1:0"
    )
    service = Unreachable(settings)
    await service.start_grpc()
    assert service._grpc_server is not None
    try:
        target = f"127.0.0.1:{hgrpc.bound_port(service._grpc_server)}"
        stub = health_pb2_grpc.HealthStub(hgrpc.channel("test", target=target))
        for _ in range(100):
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            if answer.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.05)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        alive = await stub.Check(health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE))
        assert alive.status == health_pb2.HealthCheckResponse.SERVING
        assert (await service.readiness())["unreachable-test"].startswith("database: OperationalError")
    finally:
        await service.stop()


async def test_a_grpc_port_taken_since_the_check_is_named_with_its_settings() -> None:
    """`hdhub run` checks the ports first; one taken in between (another program on a
    shared machine) is said with the settings that move it, not as gRPC's bare error."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(RuntimeError) as refused:
            await hgrpc.start_server(
                service="nippin", bind=f"127.0.0.1:{taken}", register=[], service_names=[]
            )
    message = str(refused.value)
    assert f"127.0.0.1:{taken}" in message
    assert "HDHUB_NIPPIN_GRPC_BIND" in message and "HDHUB_GRPC_NIPPIN" in message
