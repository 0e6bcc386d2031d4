"""The REST edge shared by every service: app factory, problem+json handlers, request
size limit, the caller and language dependencies, and ``Idempotency-Key`` support."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import grpc
import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BeforeValidator
from sqlalchemy import Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hdhub.common import apidocs, problem_pages
from hdhub.common.auth import Principal, current_principal, verifier
from hdhub.common.config import platform
from hdhub.common.db import utcnow
from hdhub.common.errors import PROBLEM_MEDIA_TYPE, FieldProblem, Problem, forbidden, unauthorized
from hdhub.common.limits import (
    BodySizeLimit,
    JsonBodyCheck,
    RequestHeadLimits,
    malformed_json,
)
from hdhub.common.logging import redact
from hdhub.common.moments import in_utc
from hdhub.common.openapi_contract import operation_id
from hdhub.common.openapi_problems import document_problems

log = logging.getLogger("hdhub.web")
S = TypeVar("S")
LANGUAGES = ("en", "fr", "nl", "de")


#: The response header carrying the request's trace id (with every problem answer).
TRACE_ID_HEADER = "X-Trace-Id"


def problem_response(problem: Problem, instance: str | None = None, *, xml: bool = False) -> Response:
    """The problem as ``application/problem+json`` (``application/problem+xml`` with ``xml``,
    for a route that offers XML to a client that wants it: :mod:`hdhub.common.xml`), with the
    request's trace id as a ``trace_id`` member and an ``X-Trace-Id`` header: what a caller
    quotes to support, and what finds the request's trace and log lines."""
    body = _without_ssins(problem.body(instance))
    headers = dict(problem.headers or {})
    trace_id = _trace_id()
    if trace_id is not None:
        body["trace_id"] = trace_id
        headers[TRACE_ID_HEADER] = trace_id
    from hdhub.common.fhir_outcome import FHIR_MEDIA_TYPE, is_fhir, operation_outcome

    if is_fhir(instance):
        return JSONResponse(
            operation_outcome(body), status_code=problem.status, media_type=FHIR_MEDIA_TYPE, headers=headers
        )
    if xml:
        from hdhub.common.xml import PROBLEM_XML_MEDIA_TYPE, problem_xml

        return Response(
            problem_xml(body), status_code=problem.status, media_type=PROBLEM_XML_MEDIA_TYPE, headers=headers
        )
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _without_ssins(value: Any) -> Any:
    """``value`` with every SSIN in its strings masked: a problem echoes what the caller
    sent (a path's DCD or field name, an unknown field's name, a file name in
    ``instance``), and a national register number typed in the wrong place must not come
    back in an error answer, nor reach whatever logs or caches answers on the way."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _without_ssins(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_ssins(item) for item in value]
    return value


#: Path prefixes whose refusals a person reads in a browser: a request there that accepts
#: HTML gets the prefix's own error page (the portal registers it), not problem+json.
_HTML_ERRORS: dict[str, Callable[[Request, Problem], Response]] = {}


def html_errors(prefix: str, render: Callable[[Request, Problem], Response]) -> None:
    """Answer refusals under ``prefix`` (no route, wrong method, bad parameters) with
    ``render`` when the request accepts HTML, as a page of that prefix would."""
    _HTML_ERRORS[prefix] = render


def _answer(problem: Problem, request: Request) -> Response:
    from hdhub.common.xml import wants_xml

    path = request.url.path
    for prefix, render in _HTML_ERRORS.items():
        if path.startswith(prefix) and "text/html" in request.headers.get("accept", ""):
            return render(request, problem)
    return problem_response(problem, path, xml=wants_xml(request))


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
    return _answer(exc, request)


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        # JsonBodyCheck refuses bad JSON first, saying which rule; should one get here, the
        # decoder's own message is still not ours to publish.
        return _answer(malformed_json("The body is not one JSON value."), request)
    problems = [
        # Pydantic's own messages never echo the input value here: we omit `input`.
        FieldProblem(
            field=_location(e.get("loc", ())),
            rule=str(e.get("type", "invalid")),
            message=str(e.get("msg", "")),
        )
        for e in errors
    ]
    return _answer(Problem(422, "request-validation", "The request is not valid", errors=problems), request)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 403: "forbidden"}.get(
        exc.status_code, "http-error"
    )
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return _answer(Problem(exc.status_code, slug, str(exc.detail), headers=headers), request)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at this path (RFC 9110: a 405 carries ``Allow``), as the
    OpenAPI document lists them: every route of the most literal path template that
    matches (``/accounts/password`` before ``/accounts/{account_id}``). Starlette's own
    header names only the first route that matched."""
    by_template: dict[str, set[str]] = {}
    for route in iter_route_contexts(request.app.router.routes):
        if route.methods and route.path_format and route.matches(request.scope)[0] != Match.NONE:
            by_template.setdefault(route.path_format, set()).update(route.methods)
    if not by_template:
        return []
    return sorted(by_template[min(by_template, key=lambda template: template.count("{"))])


async def _on_rpc_error(request: Request, exc: Exception) -> Response:
    # A downstream service's answer, re-raised as the same problem at this edge.
    from hdhub.common.grpc import problem_from_rpc_error

    assert isinstance(exc, grpc.aio.AioRpcError)
    return _answer(problem_from_rpc_error(exc), request)


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


#: Methods Starlette may redirect when only the path with or without a trailing slash has a
#: route: safe ones, whose request has no body to send again.
_REDIRECTABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class NoSlashRedirectForWrites:
    """A request with a body (PUT, POST, PATCH, DELETE) to a path that has no route, but
    whose twin with or without a trailing slash has one, is answered 404 problem+json naming
    what to do, not with Starlette's 307 redirect (``redirect_slashes``): the client would
    send its body (a file upload, whole) a second time. Safe methods keep the redirect.
    Only Starlette's own redirect is replaced: a 307 whose ``Location`` is that twin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] in _REDIRECTABLE or path == "/":
            await self.app(scope, receive, send)
            return
        twin = path.rstrip("/") if path.endswith("/") else path + "/"
        replaced = False

        async def answering(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the redirect's body
            if message["type"] == "http.response.start" and message["status"] == 307:
                location = dict(message.get("headers", [])).get(b"location", b"").decode("latin-1")
                if unquote(urlsplit(location).path).endswith(twin):
                    replaced = True
                    how = "without the trailing slash" if path.endswith("/") else "with a trailing slash"
                    problem = Problem(
                        404,
                        "not-found",
                        "Not Found",
                        f"Nothing at this path; send the request {how} "
                        "(a request with a body is not redirected).",
                    )
                    await problem_response(problem, path)(scope, receive, send)
                    return
            await send(message)

        await self.app(scope, receive, answering)


class _AsgiEndpoint:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


#: The REST API's routes, whose query parameters are all declared; pages and the OIDC
#: endpoints (which receive whatever an identity provider appends) are left alone.
API_PREFIXES = ("/api/", "/proxy/api/")
_declared_query: dict[int, frozenset[str]] = {}


def _query_names(dependant: Any) -> set[str]:
    names = {f.alias for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query_parameters(request: HTTPConnection) -> None:
    """Refuses (422, naming them) query parameters the API route does not declare: a typo
    such as ``?stauts=`` would otherwise answer as if no filter had been asked for. (An
    ``HTTPConnection``: the app's dependencies run for its WebSocket routes too.)"""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.path.startswith(API_PREFIXES):
        return
    known = _declared_query.get(id(route))
    if known is None:
        known = _declared_query[id(route)] = frozenset(_query_names(route.dependant))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        expected = ", ".join(sorted(known)) or "none"
        raise Problem(
            422,
            "request-validation",
            "The request is not valid",
            errors=[
                FieldProblem(
                    field=name,
                    rule="unknown_parameter",
                    message=f"Unknown query parameter; known: {expected}",
                )
                for name in unknown
            ],
        )


#: Pages that read their body as it arrives and bound it themselves, answering an oversized
#: one as the page with the error at its field, not as problem+json: the operator console's
#: workbook import, and the portal's Upload Center and files pages, which stream the file
#: on to the owning service under that service's own limit (1 GiB a CSV, 5 GiB a file).
OWN_BODY_LIMIT_PATHS = tuple(
    re.compile(path)
    for path in (
        r"/portal/operator/catalogue/import",
        r"/portal/o/[^/]+/uploads/new",
        r"/portal/o/[^/]+/files/new",
    )
)


def create_app(
    *,
    title: str,
    routers: Sequence[APIRouter],
    description: str = "",
    version: str = "0.1.0",
    readiness: Callable[[], Awaitable[dict[str, str]]] | None = None,
    service: str | None = None,
) -> FastAPI:
    """A FastAPI app with hdhub's error handling, limits, health, readiness, metrics and
    offline API docs. ``/healthz`` is liveness (200 while the process runs); ``/readyz``
    answers ``readiness`` (each check "ok" or why not; :mod:`hdhub.common.health`).
    ``service`` labels the metrics of routes no hdhub service owns (default: the title)."""
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(known_query_parameters)],
        generate_unique_id_function=operation_id,
    )
    apidocs.install(app)
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(grpc.aio.AioRpcError, _on_rpc_error)
    for router in routers:
        # A service's routers are included straight into the app, each with the
        # dependency that carries the service instance: one inclusion level fewer, so a
        # request is matched against the routes once less (FastAPI matches lazily
        # included routers level by level, again when handling).
        for part, dependencies in router.parts if isinstance(router, ServiceRouters) else [(router, [])]:
            app.include_router(part, dependencies=dependencies)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    from hdhub.common.health import install_readiness

    install_readiness(app, readiness)
    problem_pages.install(app)
    if not any(getattr(r, "path", None) == "/" for r in app.routes):
        apidocs.install_index(app)

    streamed = ("/api/v1/files", "/api/v1/uploads")  # files, streamed to the object store
    # Each add wraps the ones before: a request meets the header limit, then the body
    # limit, then the JSON rules on what was read.
    app.add_middleware(NoSlashRedirectForWrites)
    app.add_middleware(JsonBodyCheck, exempt_prefixes=streamed)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=platform().max_request_bytes,
        exempt_prefixes=streamed,
        exempt_paths=OWN_BODY_LIMIT_PATHS,
    )
    app.add_middleware(RequestHeadLimits)
    app.add_middleware(UnhandledErrors)
    document_problems(app)
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


async def authenticate(authorization: Annotated[str | None, Depends(apidocs.bearer)] = None) -> Principal:
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

_SERVICE_KEY = "hdhub.service"


class ServiceRouters(APIRouter):
    """A service instance's routers (:func:`answering_for`): usable as one router, and
    :func:`create_app` includes its ``parts`` one by one with their dependencies."""

    def __init__(self, parts: list[tuple[APIRouter, list[Any]]]) -> None:
        super().__init__()
        self.parts = parts
        for router, dependencies in parts:
            self.include_router(router, dependencies=dependencies)


def answering_for(service: object, *routers: APIRouter) -> list[APIRouter]:
    """Routers declared at module level, answering for one service instance.

    Routes live at module level, their dependencies in the service's ``deps.py``; a
    process may hold several instances of a service (the tests run a stack per
    database), so each request through these routers carries its instance, which
    :func:`service_of` hands to the dependencies."""

    async def carry(connection: HTTPConnection) -> None:  # async: a plain def would run in a thread
        connection.scope[_SERVICE_KEY] = service  # a request's, or a WebSocket's

    return [ServiceRouters([(router, [Depends(carry)]) for router in routers])]


def service_of(request: HTTPConnection, kind: type[S]) -> S:
    """The service instance a request (or a WebSocket) reached (see :func:`answering_for`)."""
    service = request.scope.get(_SERVICE_KEY)
    if not isinstance(service, kind):
        raise TypeError(f"route not mounted with answering_for({kind.__name__}(...), ...)")
    return service


async def request_language(request: Request, lang: str | None = None) -> str:
    """``?lang=`` first, then ``Accept-Language``, then English (``async``: FastAPI runs a
    plain ``def`` dependency in a worker thread)."""
    if lang and lang[:2].lower() in LANGUAGES:
        return lang[:2].lower()
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip()[:2].lower()
        if code in LANGUAGES:
            return code
    return "en"


Language = Annotated[str, Depends(request_language)]
#: An organisation's id in a route's path.
OrganisationId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


ISO_MOMENT = "must be an ISO 8601 date and time, e.g. 2026-12-03T09:30:00Z"


def _iso_moment(value: object) -> datetime:
    """The moment, in UTC. Read here rather than by pydantic: it would take a bare number
    as seconds since 1970 (the documents promise ISO 8601) and answer its parser's own
    words ("input is too short"); and a moment whose UTC falls outside the calendar
    (0001-01-01T00:00:00+01:00) must be refused here, not fail in the database layer."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and not value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(ISO_MOMENT) from None
    else:
        raise ValueError(ISO_MOMENT)
    return in_utc(moment)


#: A moment a client names in a query (ISO 8601 only; without an offset, UTC), in UTC.
Moment = Annotated[datetime, BeforeValidator(_iso_moment)]


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` for a download named ``filename``, whatever its script:
    an ASCII ``filename`` for old clients and the exact name as RFC 5987 UTF-8 in
    ``filename*``, which clients prefer (RFC 6266). Header values are Latin-1 on the wire,
    so a Cyrillic or Chinese name put in ``filename`` could not be sent at all."""
    name = "".join(c for c in unicodedata.normalize("NFC", filename) if c.isprintable()) or "download"
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


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
    try:  # orjson: a batch of rows is fingerprinted on every request (bench/README.md)
        raw = orjson.dumps(
            [method, path, body], default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
        )
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
            await session.execute(
                select(model).where(model.organisation_id == organisation_id, model.key == key)
            )
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
            raise Problem(
                409, "idempotency-key-in-flight", "A request with this Idempotency-Key is in progress"
            ) from exc
    return JSONResponse(body, status_code=status, headers=headers)
