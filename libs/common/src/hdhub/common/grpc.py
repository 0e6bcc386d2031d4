"""The internal edge: ``grpc.aio`` servers and channels set up the same way everywhere.

Server (:func:`start_server`): the servicers given, the standard health service
(``grpc.health.v1.Health``: SERVING for ``""`` and each service name), reflection, and
these interceptors, outermost first, in this fixed order:

1. **telemetry**: OpenTelemetry's server span, continuing the caller's trace;
2. **metrics**: ``grpc_server_started_total``, ``grpc_server_handled_total{grpc_code}``,
   ``grpc_server_handling_seconds`` (:mod:`hdhub.common.metrics`);
3. **access log**: one line per RPC on ``hdhub.grpc.access`` with method, code, duration
   and trace id, never the request or response (health and reflection calls are not
   logged);
4. **errors**: a :class:`~hdhub.common.errors.Problem` raised by a handler becomes its
   status code (:data:`STATUS_CODES`) with the problem body as JSON in the trailing
   metadata ``hdhub-problem-bin``; an :class:`grpc.aio.AioRpcError` of a downstream call
   that the handler let through is passed on the same way; anything else becomes
   ``INTERNAL`` with a generic message, logged with its trace id;
5. **identity**: ``authorization: Bearer ...`` metadata is verified with
   :func:`hdhub.common.auth.verifier` and the caller put in
   :data:`~hdhub.common.auth.current_principal` (None without a token: handlers that need a
   caller call :func:`require_principal`); the caller's deadline is kept so calls the
   handler makes downstream do not outlive it.

The order matters: the span is open while everything else runs, so metrics, logs and
errors carry its trace id; metrics and the access log see the final code, after the
errors step has turned exceptions into statuses; the errors step sees a rejected token.

Servers and channels speak mutual TLS with certificates from files, reloaded when the
files rotate, and refuse plaintext in production unless a mesh provides mutual TLS
(:mod:`hdhub.common.grpc_tls`).

Client (:func:`channel`): one cached channel per target, ``dns:///`` with round_robin over
every address the name resolves to (a headless Service in Kubernetes), keepalive, retries
on ``UNAVAILABLE`` for the methods whose contract in proto/ says they are safe to repeat
(``option idempotency_level``, see :func:`retried_methods`), the telemetry interceptor, the caller's bearer token (and a service's acting-for) forwarded,
and a default deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import json
import logging
import pkgutil
import time
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, TypeAlias

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from hdhub.common.auth import SERVICE_CALLS, ActingFor, Principal, current_principal, verifier
from hdhub.common.config import platform
from hdhub.common.errors import FieldProblem, Problem, forbidden, unauthorized
from hdhub.common.grpc_tls import TlsFiles, channel_credentials, client_files, server_credentials
from hdhub.common.health import LIVENESS_SERVICE, describe_failure, is_ready
from hdhub.common.logging import current_service
from hdhub.common.metrics import (
    GRPC_CLIENT_STARTED,
    GRPC_SERVER_HANDLED,
    GRPC_SERVER_HANDLING_SECONDS,
    GRPC_SERVER_STARTED,
    grpc_client_outcome,
)
from hdhub.common.telemetry import (
    current_trace_id,
    grpc_client_interceptors,
    grpc_server_interceptor,
    quiet_carrier,
)

__all__ = [
    "GRACE_SECONDS",
    "PROBLEM_HEADERS_METADATA_KEY",
    "PROBLEM_METADATA_KEY",
    "STATUS_CODES",
    "ServicerContext",
    "bound_port",
    "channel",
    "check_acting_for",
    "close_channels",
    "contract_services",
    "follow_readiness",
    "problem_from_rpc_error",
    "require_principal",
    "retried_methods",
    "server_interceptors",
    "start_server",
    "status_code_for",
    "stop_server",
]

#: The context handed to servicer methods: ``context: ServicerContext``.
ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]

log = logging.getLogger("hdhub.grpc")
access_log = logging.getLogger("hdhub.grpc.access")

PROBLEM_METADATA_KEY = "hdhub-problem-bin"
# Response headers of the problem (WWW-Authenticate, Retry-After), for the caller's REST edge.
PROBLEM_HEADERS_METADATA_KEY = "hdhub-problem-headers-bin"
# Receivers refuse metadata over 8 KiB by default; a problem keeps well under it and
# drops field errors past that (counted in ``errors_omitted``).
MAX_PROBLEM_BYTES = 6 * 1024
GRACE_SECONDS = 10.0
#: How often the health service re-checks readiness (the service's database).
READINESS_EVERY_SECONDS = 5.0
# Whose work a service call does (see hdhub.common.auth.ActingFor); the actor is
# percent-encoded (metadata values are ASCII).
ACTING_FOR_METADATA_KEY = "hdhub-acting-for"
ACTOR_METADATA_KEY = "hdhub-actor"
# Arrow record batches travel in `bytes` fields; gRPC's default of 4 MiB is too small.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_QUIET_SERVICES = frozenset(
    {
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
        "grpc.reflection.v1.ServerReflection",
    }
)

SERVER_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Accept the clients' keepalive pings (see CHANNEL_OPTIONS), idle connections included.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    # Connections are recycled every few minutes so clients re-resolve DNS and spread
    # their calls over replicas started since.
    ("grpc.max_connection_age_ms", 5 * 60_000),
    ("grpc.max_connection_age_grace_ms", 30_000),
    # Fail loudly when the port is taken instead of sharing it with another process.
    ("grpc.so_reuseport", 0),
)

CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_retries", 1),
    # Our service config, never one published in DNS TXT records.
    ("grpc.service_config_disable_resolution", 1),
)

RETRY_POLICY: Mapping[str, Any] = MappingProxyType(
    {
        "maxAttempts": 4,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
)
# Stops retrying on a channel whose calls mostly fail, so retries cannot pile onto a
# service that is struggling to come back (gRPC's retry throttling).
RETRY_THROTTLING: Mapping[str, Any] = MappingProxyType({"maxTokens": 20, "tokenRatio": 0.1})


# --- Problems <-> status codes ---------------------------------------------------------

STATUS_CODES: Mapping[int, grpc.StatusCode] = MappingProxyType(
    {
        400: grpc.StatusCode.INVALID_ARGUMENT,
        401: grpc.StatusCode.UNAUTHENTICATED,
        403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND,
        408: grpc.StatusCode.DEADLINE_EXCEEDED,
        409: grpc.StatusCode.ABORTED,  # ALREADY_EXISTS by slug, see status_code_for
        410: grpc.StatusCode.NOT_FOUND,
        412: grpc.StatusCode.FAILED_PRECONDITION,
        413: grpc.StatusCode.RESOURCE_EXHAUSTED,
        422: grpc.StatusCode.INVALID_ARGUMENT,
        429: grpc.StatusCode.RESOURCE_EXHAUSTED,
        500: grpc.StatusCode.INTERNAL,
        501: grpc.StatusCode.UNIMPLEMENTED,
        503: grpc.StatusCode.UNAVAILABLE,
        504: grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)

# A status code without a problem body (a handler that called context.abort itself, a
# transport failure): a generic problem, saying nothing the caller should not learn.
_GENERIC_PROBLEMS: Mapping[grpc.StatusCode, tuple[int, str, str]] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: (400, "bad-request", "The request is not valid"),
        grpc.StatusCode.OUT_OF_RANGE: (400, "bad-request", "The request is not valid"),
        grpc.StatusCode.NOT_FOUND: (404, "not-found", "Not found"),
        grpc.StatusCode.ALREADY_EXISTS: (409, "already-exists", "It already exists"),
        grpc.StatusCode.ABORTED: (409, "conflict", "Conflict"),
        grpc.StatusCode.FAILED_PRECONDITION: (412, "precondition-failed", "A precondition failed"),
        grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "too-many-requests", "Too many requests"),
        grpc.StatusCode.UNIMPLEMENTED: (501, "not-implemented", "Not implemented"),
        grpc.StatusCode.UNAVAILABLE: (503, "dependency-unavailable", "A service we depend on is unavailable"),
        grpc.StatusCode.DEADLINE_EXCEEDED: (
            503,
            "dependency-unavailable",
            "A service we depend on is unavailable",
        ),
        grpc.StatusCode.CANCELLED: (503, "dependency-unavailable", "A service we depend on is unavailable"),
    }
)
_PROBLEM_BODY_KEYS = frozenset({"type", "title", "status", "detail", "instance", "errors"})


def status_code_for(problem: Problem) -> grpc.StatusCode:
    """The status code a problem travels as over gRPC.

    A 409 whose slug says the thing is already there (``already-exists``,
    ``registration-exists``, ``duplicate-...``) is ``ALREADY_EXISTS``; any other conflict
    is ``ABORTED``. An unlisted 4xx is ``FAILED_PRECONDITION``, an unlisted 5xx ``INTERNAL``.
    """
    if problem.status == 409 and (problem.slug.endswith("exists") or problem.slug.startswith("duplicate")):
        return grpc.StatusCode.ALREADY_EXISTS
    code = STATUS_CODES.get(problem.status)
    if code is not None:
        return code
    return grpc.StatusCode.FAILED_PRECONDITION if 400 <= problem.status < 500 else grpc.StatusCode.INTERNAL


def _problem_trailers(problem: Problem) -> tuple[tuple[str, bytes], ...]:
    body = problem.body()
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    errors = list(body.get("errors", []))
    while len(raw) > MAX_PROBLEM_BYTES and errors:
        errors = errors[: len(errors) // 2]
        body["errors"] = errors
        body["errors_omitted"] = len(problem.errors) - len(errors)
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > MAX_PROBLEM_BYTES:
        raw = json.dumps(
            {"type": problem.type, "title": problem.title[:200], "status": problem.status}
        ).encode()
    trailers = [(PROBLEM_METADATA_KEY, raw)]
    if problem.headers:
        trailers.append((PROBLEM_HEADERS_METADATA_KEY, json.dumps(problem.headers).encode()))
    return tuple(trailers)


async def _abort_with_problem(context: grpc.aio.ServicerContext[Any, Any], problem: Problem) -> None:
    await context.abort(status_code_for(problem), problem.title, _problem_trailers(problem))


def _problem_from_body(raw: bytes, headers_raw: bytes | None) -> Problem | None:
    try:
        body = json.loads(raw)
        headers = json.loads(headers_raw) if headers_raw else {}
        slug = str(body["type"]).removeprefix("/problems/")
        errors = [
            FieldProblem(
                field=str(e["field"]),
                rule=str(e["rule"]),
                message=str(e["message"]),
                path=e.get("path"),
                row=e.get("row"),
            )
            for e in body.get("errors", [])
        ]
        return Problem(
            int(body["status"]),
            slug,
            str(body["title"]),
            body.get("detail"),
            errors=errors,
            headers={str(k): str(v) for k, v in headers.items()},
            extra={k: v for k, v in body.items() if k not in _PROBLEM_BODY_KEYS},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("unreadable %s trailer ignored", PROBLEM_METADATA_KEY)
        return None


def problem_from_rpc_error(exc: grpc.aio.AioRpcError) -> Problem:
    """The problem a failed call stands for, for the caller's REST edge to raise.

    The server's own problem when it sent one (``hdhub-problem-bin``); otherwise a generic
    problem for the status code: ``UNAVAILABLE``, ``DEADLINE_EXCEEDED`` and ``CANCELLED``
    are ``503 dependency-unavailable``, ``UNAUTHENTICATED`` 401, ``PERMISSION_DENIED`` 403,
    ``INTERNAL`` and anything unknown ``500 internal``. The status details of a 5xx are
    not passed on.
    """
    trailers = exc.trailing_metadata() or grpc.aio.Metadata()
    raw = trailers.get(PROBLEM_METADATA_KEY)
    if isinstance(raw, bytes):
        headers_raw = trailers.get(PROBLEM_HEADERS_METADATA_KEY)
        problem = _problem_from_body(raw, headers_raw if isinstance(headers_raw, bytes) else None)
        if problem is not None:
            return problem
    code = exc.code()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return unauthorized()
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return forbidden()
    generic = _GENERIC_PROBLEMS.get(code)
    if generic is None:
        return Problem(
            500,
            "internal",
            "Internal error",
            "Something went wrong on our side; the trace id is in our logs.",
        )
    status, slug, title = generic
    return Problem(status, slug, title, (exc.details() or None) if status < 500 else None)


# --- Server ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rpc:
    """What the interceptors know of an RPC: its name and shape, never its content."""

    full_method: str
    service: str
    method: str
    type: str  # go-grpc-prometheus's grpc_type: unary, client_stream, server_stream, bidi_stream
    quiet: bool

    @classmethod
    def of(cls, full_method: str | bytes, handler: grpc.RpcMethodHandler[Any, Any]) -> _Rpc:
        name = full_method.decode() if isinstance(full_method, bytes) else full_method
        service, _, method = name.lstrip("/").partition("/")
        kind = {
            (False, False): "unary",
            (True, False): "client_stream",
            (False, True): "server_stream",
            (True, True): "bidi_stream",
        }[(handler.request_streaming, handler.response_streaming)]
        return cls(name, service, method, kind, service in _QUIET_SERVICES)


_Around = Callable[[grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]


def _wrap_unary(behavior: Callable[..., Any], around: _Around) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async with around(context):
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

    return unary


def _wrap_streaming(behavior: Callable[..., Any], around: _Around) -> Callable[..., Any]:
    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        async with around(context):
            result = behavior(request, context)
            if inspect.isawaitable(result):  # a handler that writes with context.write()
                await result
            elif hasattr(result, "__aiter__"):
                async for response in result:
                    yield response
            elif result is not None:
                for response in result:
                    yield response

    return streaming


def _rewrap(handler: grpc.RpcMethodHandler[Any, Any], around: _Around) -> grpc.RpcMethodHandler[Any, Any]:
    deserializer, serializer = handler.request_deserializer, handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            _wrap_streaming(handler.stream_stream, around), deserializer, serializer
        )
    if handler.request_streaming:
        assert handler.stream_unary is not None
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(handler.stream_unary, around), deserializer, serializer
        )
    if handler.response_streaming:
        assert handler.unary_stream is not None
        return grpc.unary_stream_rpc_method_handler(
            _wrap_streaming(handler.unary_stream, around), deserializer, serializer
        )
    assert handler.unary_unary is not None
    return grpc.unary_unary_rpc_method_handler(
        _wrap_unary(handler.unary_unary, around), deserializer, serializer
    )


class _Rewrapped:
    """A server interceptor's wrapped handler per method, made once: the handler below it
    is the same object on every call of a method (each interceptor here keeps its own),
    and wrapping it anew was a few percent of a short call's CPU."""

    def __init__(self, wrap: Callable[[str | bytes, grpc.RpcMethodHandler[Any, Any]], Any]) -> None:
        self._wrap = wrap
        self._made: dict[str | bytes, tuple[grpc.RpcMethodHandler[Any, Any], Any]] = {}

    def __call__(self, method: str | bytes, handler: grpc.RpcMethodHandler[Any, Any]) -> Any:
        made = self._made.get(method)
        if made is None or made[0] is not handler:
            made = (handler, self._wrap(method, handler))
            self._made[method] = made
        return made[1]


def _final_code(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None) -> grpc.StatusCode:
    if exc is None:
        return context.code() or grpc.StatusCode.OK
    if isinstance(exc, grpc.aio.AbortError):
        return context.code() or grpc.StatusCode.UNKNOWN
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class _EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Steps 2 to 5 of the module docstring, in that order, as one context around each
    call of a method, unary and streaming alike (four nested interceptors were a tenth of
    a short call's CPU): metrics, the access log, errors into statuses, the caller's
    identity."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._rewrapped = _Rewrapped(self._wrapped)

    def _wrapped(self, method: str | bytes, handler: grpc.RpcMethodHandler[Any, Any]) -> Any:
        rpc = _Rpc.of(method, handler)
        return _rewrap(handler, lambda context: self.around(rpc, context))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler: grpc.RpcMethodHandler[Any, Any] | None = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._rewrapped(handler_call_details.method, handler)  # type: ignore[no-any-return]

    @asynccontextmanager
    async def around(self, rpc: _Rpc, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        GRPC_SERVER_STARTED.labels(rpc.type, rpc.service, rpc.method).inc()
        # `hdhub run all` serves every service from one process: say which one this is.
        service_token = current_service.set(self.service)
        trace.get_current_span().set_attribute("hdhub.service", self.service)
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            try:
                principal_token, deadline_token = await _identify(rpc, context)
                try:
                    yield
                finally:
                    _reset(_caller_deadline, deadline_token)
                    _reset(current_principal, principal_token)
            except grpc.aio.AbortError:
                raise  # the handler chose its status itself
            except Problem as problem:
                await _abort_with_problem(context, problem)
            except grpc.aio.AioRpcError as exc:
                # A downstream call failed and the handler let it through: pass its problem
                # on (a dependency that is down is a 503 here too, not an internal error).
                await _abort_with_problem(context, problem_from_rpc_error(exc))
            except NotImplementedError:
                if context.code() == grpc.StatusCode.UNIMPLEMENTED:  # the generated servicer's default
                    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented")
                await _internal(rpc, context)
            except Exception:
                await _internal(rpc, context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            elapsed = time.perf_counter() - start
            code = _final_code(context, failure)
            if not rpc.quiet:
                duration_ms = round(elapsed * 1000, 1)
                access_log.info(
                    "%s %s %sms",
                    rpc.full_method,
                    code.name,
                    duration_ms,
                    extra={
                        "grpc_method": rpc.full_method,
                        "grpc_code": code.name,
                        "duration_ms": duration_ms,
                        "trace_id": current_trace_id(),
                    },
                )
            GRPC_SERVER_HANDLED.labels(rpc.type, rpc.service, rpc.method, code.name).inc()
            GRPC_SERVER_HANDLING_SECONDS.labels(rpc.type, rpc.service, rpc.method).observe(elapsed)
            _reset(current_service, service_token)


async def _internal(rpc: _Rpc, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    trace_id = current_trace_id()
    # The traceback goes to the log (sanitised by hdhub.common.logging), never to the caller.
    log.exception(
        "unhandled error in %s",
        rpc.full_method,
        extra={"grpc_method": rpc.full_method, "trace_id": trace_id},
    )
    await _abort_with_problem(
        context,
        Problem(
            500,
            "internal",
            "Internal error",
            "Something went wrong on our side; the trace id is in our logs.",
        ),
    )


# The absolute deadline (time.monotonic()) of the RPC being handled, for downstream calls.
_caller_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "hdhub_caller_deadline", default=None
)


def _bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise unauthorized("The authorization metadata must be `Bearer <token>`.")
            return token.strip()
    return None


async def _identify(
    rpc: _Rpc, context: grpc.aio.ServicerContext[Any, Any]
) -> tuple[contextvars.Token[Principal | None], contextvars.Token[float | None]]:
    """The caller from its bearer token (None without one) and its deadline, set for the
    handler; health and reflection answer anyone: probes carry no token, and a stale one
    from grpcurl must not fail a health check."""
    metadata = context.invocation_metadata()
    token = None if rpc.quiet else _bearer_token(metadata)
    principal = await verifier().verify(token) if token else None
    if principal is not None and principal.is_service():
        principal = _service_caller(principal, rpc, metadata)
    remaining = context.time_remaining()
    deadline = time.monotonic() + remaining if remaining is not None and remaining < 10**8 else None
    return current_principal.set(principal), _caller_deadline.set(deadline)


def _service_caller(
    principal: Principal, rpc: _Rpc, metadata: Iterable[tuple[str, str | bytes]] | None
) -> Principal:
    """A platform service calling: only along the call graph, and acting for the
    organisation its metadata names (None: for no organisation)."""
    if not any(rpc.full_method in SERVICE_CALLS.get(s, ()) for s in principal.services):
        raise forbidden(f"This service may not call {rpc.full_method}.")
    values = {k: v.decode() if isinstance(v, bytes) else v for k, v in metadata or ()}
    organisation_id = values.get(ACTING_FOR_METADATA_KEY, "")
    if not organisation_id:
        return replace(principal, acting_for=None)
    actor = urllib.parse.unquote(values.get(ACTOR_METADATA_KEY, ""))
    if not actor:
        raise forbidden("A service acting for an organisation must name the actor.")
    return replace(principal, acting_for=ActingFor(organisation_id, actor))


class _ActingForInterceptor(grpc.aio.ServerInterceptor):
    """A service's request that names an organisation (``organisation_id``) must name the
    one the service acts for. Runs inside the identity step, on the decoded request."""

    def __init__(self) -> None:
        self._rewrapped = _Rewrapped(self._wrapped)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler: grpc.RpcMethodHandler[Any, Any] | None = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        return self._rewrapped(handler_call_details.method, handler)  # type: ignore[no-any-return]

    @staticmethod
    def _wrapped(_method: str | bytes, handler: grpc.RpcMethodHandler[Any, Any]) -> Any:
        deserializer, serializer = handler.request_deserializer, handler.response_serializer
        if handler.response_streaming:
            assert handler.unary_stream is not None
            streaming = _wrap_streaming(_checked(handler.unary_stream), lambda _context: nullcontext())
            return grpc.unary_stream_rpc_method_handler(streaming, deserializer, serializer)
        assert handler.unary_unary is not None
        unary = _wrap_unary(_checked(handler.unary_unary), lambda _context: nullcontext())
        return grpc.unary_unary_rpc_method_handler(unary, deserializer, serializer)


def _checked(behavior: Callable[..., Any]) -> Callable[..., Any]:
    def checked(request: Any, context: Any) -> Any:
        check_acting_for(current_principal.get(), getattr(request, "organisation_id", None))
        return behavior(request, context)

    return checked


def check_acting_for(principal: Principal | None, organisation_id: str | None) -> None:
    """Raise a 403 problem when a platform service touches an organisation other than the
    one whose work it is doing (or any organisation while acting for none)."""
    if principal is None or not organisation_id or not principal.is_service():
        return
    acting = principal.acting_for
    if acting is None or acting.organisation_id != organisation_id:
        raise forbidden("A service may touch only the organisation whose work it is doing.")


def _reset(var: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    try:
        var.reset(token)
    except ValueError:  # a stream closed from another context; that context dies with it
        pass


def require_principal() -> Principal:
    """The verified caller of the RPC (or request) being handled; raises a 401 problem,
    which the server turns into ``UNAUTHENTICATED``, when the call carried no token."""
    principal = current_principal.get()
    if principal is None:
        raise unauthorized()
    return principal


def require_operator() -> Principal:
    """The verified caller, who must hold the operator's realm role (the console's
    installation-wide reads and actions); ``PERMISSION_DENIED`` for anyone else."""
    principal = require_principal()
    if not principal.is_operator:
        raise forbidden("Only the operator sees and acts across the installation's organisations.")
    return principal


def server_interceptors(service: str) -> list[grpc.aio.ServerInterceptor]:
    """The server interceptors of ``service``, outermost first: telemetry, metrics, access
    log, errors, identity, acting for (see the module docstring for why this order)."""
    return [
        grpc_server_interceptor(),
        _EdgeInterceptor(service),
        _ActingForInterceptor(),
    ]


@dataclass(slots=True)
class _ServerState:
    service: str
    port: int
    health: health_aio.HealthServicer
    service_names: tuple[str, ...] = ()


_servers: weakref.WeakKeyDictionary[grpc.aio.Server, _ServerState] = weakref.WeakKeyDictionary()


async def start_server(
    *,
    service: str,
    bind: str,
    register: Sequence[Callable[[grpc.aio.Server], None]],
    service_names: Sequence[str],
) -> grpc.aio.Server:
    """Start ``service``'s gRPC server on ``bind`` (``host:port``; port 0 picks a free one,
    see :func:`bound_port`) and return it.

    ``register`` adds the servicers (``lambda s: pb_grpc.add_XServicer_to_server(x, s)``);
    ``service_names`` are their full names (``hdhub.registrations.v1.RegistrationsService``),
    reported SERVING by the health service and listed by reflection. Stop it with
    :func:`stop_server`.
    """
    server = grpc.aio.server(interceptors=server_interceptors(service), options=SERVER_OPTIONS)
    for add in register:
        add(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", *service_names, LIVENESS_SERVICE):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection([*service_names, health_name, reflection.SERVICE_NAME], server)
    credentials = server_credentials()
    try:
        port = server.add_secure_port(bind, credentials) if credentials else server.add_insecure_port(bind)
    except RuntimeError:
        # `hdhub run` checks every port first; this is one taken since (another program).
        upper = service.upper()
        raise RuntimeError(
            f"{service}'s gRPC port {bind} is taken (by another program since the start's check): "
            f"set HDHUB_{upper}_GRPC_BIND and HDHUB_GRPC_{upper} to a free one"
        ) from None
    await server.start()
    _servers[server] = _ServerState(service, port, health, tuple(service_names))
    log.info(
        "gRPC server of %s listening on %s (%s)",
        service,
        bind.rsplit(":", 1)[0] + f":{port}",
        "mutual TLS" if credentials else "plaintext",
    )
    return server


async def set_ready(server: grpc.aio.Server, ready: bool) -> None:
    """Report ``""`` and the server's service names SERVING or NOT_SERVING (readiness);
    :data:`~hdhub.common.health.LIVENESS_SERVICE` is left SERVING."""
    state = _servers.get(server)
    if state is None:
        return
    status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *state.service_names):
        await state.health.set(name, status)


async def follow_readiness(
    server: grpc.aio.Server,
    readiness: Callable[[], Awaitable[Mapping[str, str]]],
    *,
    every: float = READINESS_EVERY_SECONDS,
) -> None:
    """Until cancelled: every ``every`` seconds, the server's health follows ``readiness``
    (NOT_SERVING while a check fails, e.g. the service's database is unreachable)."""
    ready: bool | None = None
    while True:
        try:
            states = await readiness()
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a failed check
            states = {"readiness": describe_failure(exc)}
        now_ready = is_ready(states)
        if now_ready != ready:
            if ready is not None or not now_ready:  # a change, or not ready from the start
                report = log.info if now_ready else log.warning
                report(
                    "gRPC health %s",
                    "SERVING" if now_ready else "NOT_SERVING",
                    extra={"checks": dict(states)},
                )
            await set_ready(server, now_ready)
            ready = now_ready
        await asyncio.sleep(every)


def bound_port(server: grpc.aio.Server) -> int:
    """The port a server started by :func:`start_server` listens on."""
    return _servers[server].port


async def stop_server(server: grpc.aio.Server, *, grace: float = GRACE_SECONDS) -> None:
    """Stop gracefully: health turns NOT_SERVING (probes and balancers move away), new
    calls are refused, calls in flight get ``grace`` seconds to finish, then are cancelled."""
    state = _servers.get(server)
    if state is not None:
        await state.health.enter_graceful_shutdown()
    await server.stop(grace)


# --- Client ------------------------------------------------------------------------------

#: The ``idempotency_level`` values that make a method safe to call again after
#: ``UNAVAILABLE``: it changes nothing, or a repeat changes nothing more.
RETRIED_LEVELS = frozenset({MethodOptions.NO_SIDE_EFFECTS, MethodOptions.IDEMPOTENT})


@functools.cache
def contract_services() -> tuple[ServiceDescriptor, ...]:
    """Every gRPC service of the contract (proto/, generated into ``hdhub.proto``)."""
    import hdhub.proto

    services: list[ServiceDescriptor] = []
    for module in pkgutil.walk_packages(hdhub.proto.__path__, "hdhub.proto."):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(module.name).DESCRIPTOR
            services.extend(descriptor.services_by_name.values())
    return tuple(sorted(services, key=lambda s: s.full_name))


def retried_methods(services: Iterable[ServiceDescriptor]) -> dict[str, frozenset[str]]:
    """The methods of ``services`` that channels retry on ``UNAVAILABLE`` (4 attempts,
    exponential backoff), by full service name: those the contract marks
    ``option idempotency_level = NO_SIDE_EFFECTS`` or ``IDEMPOTENT``."""
    retried = {
        service.full_name: frozenset(
            m.name for m in service.methods if m.GetOptions().idempotency_level in RETRIED_LEVELS
        )
        for service in services
    }
    return {service: methods for service, methods in retried.items() if methods}


def _service_config() -> str:
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    retried = retried_methods(contract_services())
    names = [{"service": s, "method": m} for s in sorted(retried) for m in sorted(retried[s])]
    if names:
        config["methodConfig"] = [{"name": names, "retryPolicy": dict(RETRY_POLICY)}]
        config["retryThrottling"] = dict(RETRY_THROTTLING)
    return json.dumps(config)


class _CallerInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Forwards the caller's bearer token, marks a call made while quiet as not to be traced,
    and sets the deadline of calls that have none: the default, shortened to what is left of
    the RPC being handled, if any."""

    @staticmethod
    def _details(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        principal = current_principal.get()
        if principal is not None and principal.token and metadata.get("authorization") is None:
            metadata.add("authorization", f"Bearer {principal.token}")
            acting = principal.acting_for
            if acting is not None and principal.is_service():
                metadata.add(ACTING_FOR_METADATA_KEY, acting.organisation_id)
                metadata.add(ACTOR_METADATA_KEY, urllib.parse.quote(acting.actor, safe="@"))
        for key, value in quiet_carrier().items():  # a quiet poll is not traced at the far end either
            if metadata.get(key) is None:
                metadata.add(key, value)
        timeout = details.timeout if details.timeout is not None else platform().grpc_timeout_seconds
        caller_deadline = _caller_deadline.get()
        if caller_deadline is not None:
            timeout = max(0.0, min(timeout, caller_deadline - time.monotonic()))
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class _ClientMetricsInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Counts client calls by service, method and status code, and times them
    (:data:`hdhub.common.metrics.GRPC_CLIENT_HANDLED`): calls to the central platform are
    seen here, not only on a server hdhub does not run."""

    _pending: set[asyncio.Task[None]] = set()

    @staticmethod
    def _names(details: grpc.aio.ClientCallDetails, grpc_type: str) -> tuple[str, str, str]:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        service, _, name = method.lstrip("/").partition("/")
        GRPC_CLIENT_STARTED.labels(grpc_type, service, name).inc()
        return grpc_type, service, name

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        names = self._names(client_call_details, "unary")
        start = time.perf_counter()
        call = await continuation(client_call_details, request)
        code = await call.code()  # the call's end, as the OpenTelemetry interceptor waits for it
        grpc_client_outcome(*names, code.name, time.perf_counter() - start)
        return call

    def _when_done(self, call: Any, names: tuple[str, str, str], start: float) -> None:
        def done(finished: Any) -> None:
            elapsed = time.perf_counter() - start

            async def record() -> None:
                code = await finished.code()
                grpc_client_outcome(*names, code.name, elapsed)

            task = asyncio.ensure_future(record())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        call.add_done_callback(done)

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        names, start = self._names(client_call_details, "server_stream"), time.perf_counter()
        call = await continuation(client_call_details, request)
        self._when_done(call, names, start)
        return call

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        names, start = self._names(client_call_details, "client_stream"), time.perf_counter()
        call = await continuation(client_call_details, request_iterator)
        self._when_done(call, names, start)
        return call

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        names, start = self._names(client_call_details, "bidi_stream"), time.perf_counter()
        call = await continuation(client_call_details, request_iterator)
        self._when_done(call, names, start)
        return call


class _UnaryStreamOnly(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, inner: grpc.aio.UnaryStreamClientInterceptor) -> None:
        self.inner = inner

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self.inner.intercept_unary_stream(continuation, client_call_details, request)


class _StreamUnaryOnly(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, inner: grpc.aio.StreamUnaryClientInterceptor) -> None:
        self.inner = inner

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self.inner.intercept_stream_unary(continuation, client_call_details, request_iterator)


class _StreamStreamOnly(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, inner: grpc.aio.StreamStreamClientInterceptor) -> None:
        self.inner = inner

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self.inner.intercept_stream_stream(continuation, client_call_details, request_iterator)


_ONLY: Mapping[type, Callable[[Any], grpc.aio.ClientInterceptor]] = {
    grpc.aio.UnaryStreamClientInterceptor: _UnaryStreamOnly,
    grpc.aio.StreamUnaryClientInterceptor: _StreamUnaryOnly,
    grpc.aio.StreamStreamClientInterceptor: _StreamStreamOnly,
}


def _one_kind_each(interceptors: Sequence[grpc.aio.ClientInterceptor]) -> list[grpc.aio.ClientInterceptor]:
    """grpc.aio files a client interceptor under the first kind of call it implements only
    (unary first); an interceptor of several kinds is given again for each other kind, so
    that streaming calls go through it too. OpenTelemetry's are one class per kind already."""
    out: list[grpc.aio.ClientInterceptor] = []
    for interceptor in interceptors:
        out.append(interceptor)
        if isinstance(interceptor, grpc.aio.UnaryUnaryClientInterceptor):
            out.extend(only(interceptor) for kind, only in _ONLY.items() if isinstance(interceptor, kind))
    return out


@dataclass(slots=True)
class _CachedChannel:
    channel: grpc.aio.Channel
    loop: asyncio.AbstractEventLoop | None
    #: The certificate files as they were when the channel was made (None: plaintext).
    files: TlsFiles | None
    stamp: tuple[Any, ...] | None


_channels: dict[str, _CachedChannel] = {}
_retired: list[_CachedChannel] = []
_closing: set[asyncio.Task[None]] = set()
#: Calls in flight on a channel replaced by one with rotated certificates get this long.
ROTATED_CHANNEL_GRACE_SECONDS = 30.0


def _resolver_target(target: str) -> str:
    if "://" in target or target.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        return target
    return f"dns:///{target}"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def channel(service: str, *, target: str | None = None) -> grpc.aio.Channel:
    """The shared channel to ``service`` (``platform().grpc_target(service)`` unless
    ``target`` is given); build stubs on it per call, they are cheap.

    Calls on it carry the current caller's bearer token, a client span, the default
    deadline (``HDHUB_GRPC_TIMEOUT_SECONDS``) when they set none, and are retried on
    ``UNAVAILABLE`` when the contract marks their method safe to repeat. The channel speaks
    TLS as :mod:`hdhub.common.grpc_tls` says, and is made again when its certificate files
    change.
    """
    resolved = _resolver_target(target or platform().grpc_target(service))
    loop = _running_loop()
    files = client_files(service)
    stamp = files.stamp() if files is not None else None
    cached = _channels.get(resolved)
    current = rotated = False
    if cached is not None:
        current = loop is None or cached.loop in (None, loop)
        rotated = (cached.files, cached.stamp) != (files, stamp)
        if current and not rotated:
            return cached.channel
    try:
        credentials = channel_credentials(files) if files is not None else None
    except ValueError as exc:
        if cached is None or not (current and rotated):
            raise
        # A rotation caught half-way (the new certificate, the old key): the next call retries.
        log.warning("gRPC client certificate not reloaded: %s", exc)
        return cached.channel
    if cached is not None:
        _retire(cached, loop, rotated=rotated)
    options = [*CHANNEL_OPTIONS, ("grpc.service_config", _service_config())]
    interceptors = _one_kind_each(
        [_ClientMetricsInterceptor(), _CallerInterceptor(), *grpc_client_interceptors()]
    )
    if credentials is None:
        created = grpc.aio.insecure_channel(resolved, options=options, interceptors=interceptors)
    else:
        created = grpc.aio.secure_channel(resolved, credentials, options=options, interceptors=interceptors)
    _channels[resolved] = _CachedChannel(created, loop, files, stamp)
    return created


def _retire(cached: _CachedChannel, loop: asyncio.AbstractEventLoop | None, *, rotated: bool) -> None:
    """Put a replaced channel aside. One replaced for rotated certificates is closed once
    the calls in flight on it are done (at most :data:`ROTATED_CHANNEL_GRACE_SECONDS`), so
    rotations do not pile up connections; others wait for :func:`close_channels`."""
    if rotated and loop is not None and cached.loop in (None, loop):
        task = loop.create_task(cached.channel.close(ROTATED_CHANNEL_GRACE_SECONDS))
        _closing.add(task)
        task.add_done_callback(_closing.discard)
    else:
        _retired.append(cached)


async def close_channels(grace: float | None = None) -> None:
    """Close every cached channel (at shutdown, or between tests); calls in flight get
    ``grace`` seconds, or are cancelled at once with None."""
    loop = asyncio.get_running_loop()
    entries = [*_channels.values(), *_retired]
    _channels.clear()
    _retired.clear()
    for entry in entries:
        if entry.loop is None or (entry.loop is loop):
            await entry.channel.close(grace)
