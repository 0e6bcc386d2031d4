"""The REST edge shared by every service: app factory, problem+json handlers, request
size limit, the caller and language dependencies, and ``Idempotency-Key`` support."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any

import grpc
import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hdhub.common.auth import Principal, current_principal, verifier
from hdhub.common.config import platform
from hdhub.common.db import utcnow
from hdhub.common.errors import PROBLEM_MEDIA_TYPE, FieldProblem, Problem, forbidden, unauthorized

log = logging.getLogger("hdhub.web")
LANGUAGES = ("en", "fr", "nl", "de")


#: The response header carrying the request's trace id (with every problem answer).
TRACE_ID_HEADER = "X-Trace-Id"


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    """The problem as ``application/problem+json``, with the request's trace id as a
    ``trace_id`` member and an ``X-Trace-Id`` header: what a caller quotes to support,
    and what finds the request's trace and log lines."""
    body = problem.body(instance)
    headers = dict(problem.headers or {})
    trace_id = _trace_id()
    if trace_id is not None:
        body["trace_id"] = trace_id
        headers[TRACE_ID_HEADER] = trace_id
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _trace_id() -> str | None:
    try:
        from hdhub.common.telemetry import current_trace_id
    except ImportError:  # pragma: no cover - during bootstrap
        return None
    return current_trace_id()


def _location(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        position = e.get("ctx", {}).get("error", "")
        return problem_response(
            Problem(400, "malformed-json", "The request body is not valid JSON", f"JSON parse error: {position}"),
            request.url.path,
        )
    problems = [
        # Pydantic's own messages never echo the input value here: we omit `input`.
        FieldProblem(field=_location(e.get("loc", ())), rule=str(e.get("type", "invalid")), message=str(e.get("msg", "")))
        for e in errors
    ]
    return problem_response(Problem(422, "request-validation", "The request is not valid", errors=problems), request.url.path)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 403: "forbidden"}.get(exc.status_code, "http-error")
    return problem_response(Problem(exc.status_code, slug, str(exc.detail)), request.url.path)


async def _on_rpc_error(request: Request, exc: Exception) -> Response:
    # A downstream service's answer, re-raised as the same problem at this edge.
    from hdhub.common.grpc import problem_from_rpc_error

    assert isinstance(exc, grpc.aio.AioRpcError)
    return problem_response(problem_from_rpc_error(exc), request.url.path)


class UnhandledErrors:
    """Answers any exception no handler took with a bare 500 problem, and ends there.

    (An ``Exception`` handler in Starlette sends the 500 but re-raises, so the server logs
    the error twice and drops the client's keep-alive connection.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            # The log line carries the trace id; the client gets nothing of the exception.
            log.error("unhandled error", exc_info=exc, extra={"path": scope.get("path")})
            if not started:
                problem = Problem(
                    500,
                    "internal",
                    "Internal error",
                    "Something went wrong on our side; quote the trace id (trace_id, X-Trace-Id) to support.",
                )
                await problem_response(problem, scope.get("path"))(scope, receive, send)


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with 413, whether or not Content-Length is set."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt_prefixes: Sequence[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = tuple(exempt_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt and scope["path"].startswith(self.exempt)):
            await self.app(scope, receive, send)
            return
        too_big = Problem(413, "payload-too-large", "The request body is too large", f"At most {self.max_bytes} bytes.")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await problem_response(too_big, scope["path"])(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_big
            return message

        try:
            await self.app(scope, limited, send)
        except Problem as exc:
            if exc is too_big:
                await problem_response(too_big, scope["path"])(scope, receive, send)
            else:
                raise


class _AsgiEndpoint:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def create_app(
    *,
    title: str,
    routers: Sequence[APIRouter],
    description: str = "",
    version: str = "0.1.0",
    readiness: Callable[[], Awaitable[dict[str, str]]] | None = None,
    service: str | None = None,
) -> FastAPI:
    """A FastAPI app with hdhub's error handling, limits, health, readiness and metrics
    endpoints. ``/healthz`` is liveness (200 while the process runs); ``/readyz`` answers
    ``readiness`` (each check "ok" or why not; :mod:`hdhub.common.health`). ``service``
    labels the metrics of routes no hdhub service owns (default: the title)."""
    app = FastAPI(title=title, description=description, version=version)
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(grpc.aio.AioRpcError, _on_rpc_error)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    from hdhub.common.health import install_readiness

    install_readiness(app, readiness)

    app.add_middleware(BodySizeLimit, max_bytes=platform().max_request_bytes, exempt_prefixes=("/api/v1/files", "/api/v1/uploads"))
    app.add_middleware(UnhandledErrors)
    try:
        from hdhub.common.metrics import http_metrics_middleware, metrics_app
        from hdhub.common.telemetry import instrument_fastapi

        http_metrics_middleware(app, service or title)
        from starlette.routing import Route

        # A Route (not a Mount) so /metrics answers without a redirect to /metrics/; the
        # wrapper object makes Starlette treat the endpoint as ASGI, not request-response.
        app.router.routes.append(Route("/metrics", _AsgiEndpoint(metrics_app()), include_in_schema=False))
        instrument_fastapi(app)
    except ImportError:  # pragma: no cover - during bootstrap
        pass
    return app


async def authenticate(authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The verified caller of this request (401 without a valid bearer token).

    A platform service's token opens no REST route (403): services talk to each other over
    gRPC, along the call graph and for the organisation whose work they do; every REST
    route is for people and hospital systems.
    """
    if not authorization or not authorization.lower().startswith("bearer "):
        raise unauthorized()
    principal = await verifier().verify(authorization[7:].strip())
    if principal.is_service():
        raise forbidden("A platform service's token opens no REST route.")
    current_principal.set(principal)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def request_language(request: Request, lang: str | None = None) -> str:
    """``?lang=`` first, then ``Accept-Language``, then English."""
    if lang and lang[:2].lower() in LANGUAGES:
        return lang[:2].lower()
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip()[:2].lower()
        if code in LANGUAGES:
            return code
    return "en"


Language = Annotated[str, Depends(request_language)]


# --- Idempotency-Key ------------------------------------------------------------------


class IdempotencyColumns:
    """Mixin for a service's ``idempotency_keys`` table (stored in the same transaction as the effect)."""

    __table_args__ = (UniqueConstraint("organisation_id", "key", name="uq_idempotency_org_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    headers: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def request_fingerprint(method: str, path: str, body: Any) -> str:
    try:  # orjson: a 2,000-row batch in 1.3 ms instead of 13
        raw = orjson.dumps([method, path, body], default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer beyond 64 bits
        raw = json.dumps([method, path, body], sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()


async def idempotent(
    session: AsyncSession,
    model: type[Any],
    *,
    key: str | None,
    organisation_id: str,
    fingerprint: str,
    effect: Callable[[], Awaitable[tuple[int, Any, dict[str, str]]]],
) -> JSONResponse:
    """Run ``effect`` once per ``Idempotency-Key``: a repeat with the same request gets the
    first answer again; a repeat with a different request is refused (422)."""
    if key is not None:
        if not 1 <= len(key) <= 255:
            raise Problem(400, "bad-idempotency-key", "Idempotency-Key must be 1 to 255 characters")
        stored = (
            await session.execute(select(model).where(model.organisation_id == organisation_id, model.key == key))
        ).scalar_one_or_none()
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise Problem(
                    422, "idempotency-key-reused", "This Idempotency-Key was used for a different request"
                )
            headers = json.loads(stored.headers) | {"Idempotent-Replayed": "true"}
            return JSONResponse(json.loads(stored.body), status_code=stored.status_code, headers=headers)
    status, body, headers = await effect()
    if key is not None:
        session.add(
            model(
                organisation_id=organisation_id,
                key=key,
                fingerprint=fingerprint,
                status_code=status,
                body=json.dumps(body, default=str),
                headers=json.dumps(headers),
            )
        )
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Problem(409, "idempotency-key-in-flight", "A request with this Idempotency-Key is in progress") from exc
    return JSONResponse(body, status_code=status, headers=headers)
