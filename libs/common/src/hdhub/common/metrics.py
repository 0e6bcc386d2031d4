"""Prometheus metrics shared by every service: HTTP and gRPC server metrics, defined once
here, and the ``/metrics`` app.

Every metric lives in the process's default registry (with the process and platform
collectors), so ``hdhub run all`` exposes every service in one scrape; labels tell the
services apart. Labels are bounded: route templates and gRPC method names, never raw
paths or anything taken from a request's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app

from hdhub.common.clock import SYSTEM_CLOCK, Clock
from hdhub.common.logging import current_service

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BUILD_INFO",
    "DOMAIN_REFRESHED",
    "GRPC_CLIENT_HANDLED",
    "GRPC_CLIENT_HANDLING_SECONDS",
    "GRPC_CLIENT_LAST_CALL",
    "GRPC_CLIENT_STARTED",
    "GRPC_SERVER_HANDLED",
    "GRPC_SERVER_HANDLING_SECONDS",
    "GRPC_SERVER_STARTED",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "HTTP_REQUEST_ERRORS",
    "HttpMetricsMiddleware",
    "JOBS",
    "JOBS_CLAIMED",
    "JOBS_ENDED",
    "JOB_BACKLOG_AGE",
    "JOB_DURATION",
    "WORKER_HEARTBEAT",
    "grpc_client_outcome",
    "heartbeat",
    "jobs_claimed",
    "jobs_ended",
    "register_db_pool",
    "worker_alive",
    "http_metrics_middleware",
    "job_metrics",
    "metrics_app",
    "refresh_domain_metrics",
    "register_domain_metrics",
    "serve_metrics",
    "set_gauge",
]

log = logging.getLogger("hdhub.metrics")

#: The time of the ``*_timestamp_seconds`` metrics and of the job backlog's age: the wall
#: clock; a test sets a :class:`~tests.support.clock.ManualClock` (shared with the delivery
#: rules) to run the alert rules through hours or days (tests/observability/test_alerts.py).
clock: Clock = SYSTEM_CLOCK


def _now() -> float:
    return clock.now().timestamp()


# Up to a minute: CSV uploads and batch validation are legitimately slow.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED_ROUTE = "<unmatched>"
#: Probes and scrapes: answered all the time by design, they are left out of the request
#: metrics, so an API failing every real request is not averaged away by its probes.
UNMEASURED_ROUTES = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})

HTTP_REQUESTS = Counter(
    "http_server_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["service", "method", "route", "status"],
)
HTTP_REQUEST_ERRORS = Counter(
    "http_server_request_errors_total",
    "HTTP requests that ended in a 5xx answer or an unhandled exception.",
    ["service", "method", "route"],
)
HTTP_REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Time from the request to the end of the answer, by route template.",
    ["service", "method", "route"],
    buckets=DURATION_BUCKETS,
)

# The names and labels of go-grpc-prometheus, so the usual dashboards work as they are.
GRPC_SERVER_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_SERVER_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_SERVER_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time the server took to handle an RPC, to its last response.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=DURATION_BUCKETS,
)


def _route_template(scope: Scope) -> str:
    """The template of the route that answered (``/api/v1/registrations/{id}``), with the
    prefixes of the mounts it sits under; never the raw path, which would carry ids."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ROUTE
    # Starlette adds each mount's prefix to root_path on the way down.
    app_root = scope.get("app_root_path", "")
    root_path = str(scope.get("root_path", ""))
    prefix = root_path[len(app_root) :] if root_path.startswith(app_root) else ""
    return f"{prefix}{path}" or "/"


def _owning_service(scope: Scope, default: str) -> str:
    """The hdhub service whose route answered: the package of its endpoint
    (``hdhub.registrations.api`` -> ``registrations``), so ``service`` names the same thing
    in one process as in a process per service; ``default`` for shared routes."""
    module = str(getattr(getattr(scope.get("route"), "endpoint", None), "__module__", "") or "")
    parts = module.split(".")
    if len(parts) > 2 and parts[0] == "hdhub" and parts[1] not in ("common", "cli"):
        return parts[1]
    return default


class HttpMetricsMiddleware:
    """Pure ASGI middleware counting requests, errors and durations per route template.

    ``service`` is the hdhub service of the route that answered (:func:`_owning_service`),
    else the process's. Probes and scrapes (:data:`UNMEASURED_ROUTES`) are not counted.

    It also sets :data:`hdhub.common.logging.current_service` for the request, so log lines
    of ``hdhub run all`` say which service answered.
    """

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("app_root_path", scope.get("root_path", ""))
        token = current_service.set(self.service)
        status = 500
        failed = False
        start = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException:
            failed = True
            raise
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            if route not in UNMEASURED_ROUTES:
                method = str(scope.get("method", "GET"))
                service = _owning_service(scope, self.service)
                HTTP_REQUESTS.labels(service, method, route, str(status)).inc()
                HTTP_REQUEST_DURATION.labels(service, method, route).observe(elapsed)
                if failed or status >= 500:
                    HTTP_REQUEST_ERRORS.labels(service, method, route).inc()
            current_service.reset(token)


def http_metrics_middleware(app: FastAPI, service: str) -> None:
    """Add :class:`HttpMetricsMiddleware` to ``app``; ``service`` labels the routes of no
    hdhub service (the process's name: the service, or ``hdhub`` for ``hdhub run all``)."""
    app.add_middleware(HttpMetricsMiddleware, service=service)


# --- gRPC client ----------------------------------------------------------------------
# Every call this process makes, to hdhub services and to the central platform alike
# (grpc_service tells them apart), named as go-grpc-prometheus names its client metrics.
GRPC_CLIENT_STARTED = Counter(
    "grpc_client_started_total",
    "RPCs started by this process as a client.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_CLIENT_HANDLED = Counter(
    "grpc_client_handled_total",
    "RPCs completed as a client, by status code (after the channel's own retries).",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_CLIENT_HANDLING_SECONDS = Histogram(
    "grpc_client_handling_seconds",
    "Time from the start of a client RPC to its status.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=DURATION_BUCKETS,
)
GRPC_CLIENT_LAST_CALL = Gauge(
    "grpc_client_last_call_timestamp_seconds",
    "When a call to each gRPC service last ended well (outcome=ok: an answer, even a "
    "refusal of the request) or badly (outcome=failed: unreachable, timed out, broken or "
    "refusing us). The later of the two is the service's state as this process last saw "
    "it, and stays so between calls, however rare they are.",
    ["grpc_service", "outcome"],
)
#: Codes that say the server could not or would not serve us, rather than answering the
#: request (NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION ... are answers).
FAILED_CODES = frozenset(
    {
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "UNKNOWN",
        "INTERNAL",
        "DATA_LOSS",
        "RESOURCE_EXHAUSTED",
        "UNIMPLEMENTED",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
    }
)


def grpc_client_outcome(
    grpc_type: str, grpc_service: str, grpc_method: str, code: str, elapsed: float
) -> None:
    """Record the end of a client RPC."""
    GRPC_CLIENT_HANDLED.labels(grpc_type, grpc_service, grpc_method, code).inc()
    GRPC_CLIENT_HANDLING_SECONDS.labels(grpc_type, grpc_service, grpc_method).observe(elapsed)
    outcome = "failed" if code in FAILED_CODES else "ok"
    GRPC_CLIENT_LAST_CALL.labels(grpc_service, outcome).set(_now())


# --- jobs and workers -----------------------------------------------------------------
JOBS_CLAIMED = Counter(
    "hdhub_jobs_claimed_total", "Jobs claimed by this process's workers", ["service", "kind"]
)
JOBS_ENDED = Counter(
    "hdhub_jobs_ended_total",
    "Claimed jobs by how their attempt ended: done, failed (retried later), parked "
    "(failed for good), deferred (given back to wait for something)",
    ["service", "kind", "outcome"],
)
JOB_DURATION = Histogram(
    "hdhub_job_duration_seconds",
    "Time from a job's claim to the end of its attempt",
    ["service", "kind", "outcome"],
    buckets=DURATION_BUCKETS,
)
WORKER_HEARTBEAT = Gauge(
    "hdhub_worker_heartbeat_timestamp_seconds",
    "When the worker's claim loop last went round (Unix time)",
    ["service"],
)
_claims: dict[str, tuple[str, str, float]] = {}
_CLAIM_MEMORY_SECONDS = 6 * 3600.0
_heartbeats: dict[str, float] = {}


def jobs_claimed(service: str, jobs: Iterable[Any]) -> None:
    """Count jobs just claimed and remember when, for their duration."""
    now = time.monotonic()
    if len(_claims) > 10_000:  # attempts whose end was never reported (a crash, a bug)
        for job_id in [j for j, (_, _, at) in _claims.items() if now - at > _CLAIM_MEMORY_SECONDS]:
            del _claims[job_id]
    for job in jobs:
        kind = str(job.kind)
        JOBS_CLAIMED.labels(service, kind).inc()
        _claims[str(job.id)] = (service, kind, now)


def jobs_ended(job_ids: Iterable[str], outcome: str) -> None:
    """Count the end of the attempts of jobs claimed in this process (others are ignored:
    an operator's or another worker's change)."""
    now = time.monotonic()
    for job_id in job_ids:
        claim = _claims.pop(str(job_id), None)
        if claim is not None:
            service, kind, since = claim
            JOBS_ENDED.labels(service, kind, outcome).inc()
            JOB_DURATION.labels(service, kind, outcome).observe(now - since)


def heartbeat(service: str) -> None:
    """The worker of ``service`` went round its claim loop."""
    WORKER_HEARTBEAT.labels(service).set(_now())
    _heartbeats[service] = time.monotonic()


def worker_alive(services: Iterable[str], *, stale_after: float, started: float) -> bool:
    """Each worker's loop went round within ``stale_after`` seconds (or the process started
    less than that ago: a loop that has not gone round yet is starting, not stuck)."""
    now = time.monotonic()
    return all(now - _heartbeats.get(s, started) <= stale_after for s in services)


# --- build ----------------------------------------------------------------------------
BUILD_INFO = Gauge(
    "hdhub_build_info",
    "Always 1: the version and build of the running code",
    ["version", "revision", "python"],
)


def _set_build_info() -> None:
    import os
    import platform as py_platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        hdhub_version = version("hdhub")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        hdhub_version = "unknown"
    BUILD_INFO.labels(
        hdhub_version, os.environ.get("HDHUB_REVISION", "unknown"), py_platform.python_version()
    ).set(1)


_set_build_info()


# --- database pools -------------------------------------------------------------------
class _PoolCollector:
    """``hdhub_db_pool_connections{service,state}``: each service's SQLAlchemy pool, read at
    scrape time (in use, idle, and the most it may open)."""

    def __init__(self) -> None:
        self.pools: dict[str, Any] = {}

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "hdhub_db_pool_connections",
            "Connections of each service's database pool: in_use, idle, and max (pool size plus overflow)",
            labels=["service", "state"],
        )
        for service, engine in sorted(self.pools.items()):
            pool = engine.sync_engine.pool
            size, checked_out, idle = (getattr(pool, n, None) for n in ("size", "checkedout", "checkedin"))
            if not (callable(size) and callable(checked_out) and callable(idle)):
                continue  # NullPool, StaticPool: nothing pooled
            overflow = getattr(pool, "_max_overflow", 0)
            family.add_metric([service, "in_use"], float(checked_out()))
            family.add_metric([service, "idle"], float(idle()))
            family.add_metric([service, "max"], float(size() + max(overflow, 0)))
        yield family


_POOLS = _PoolCollector()
REGISTRY.register(_POOLS)


def register_db_pool(service: str, db: Any) -> None:
    """Export ``db``'s connection pool as ``service``'s."""
    _POOLS.pools[service] = db.engine


# --- domain gauges ------------------------------------------------------------------
# What the platform holds (registrations by status, delivery backlog, parked jobs) is read
# from the database by the service that owns it, just before a scrape and at most every
# DOMAIN_REFRESH_SECONDS, so a scrape never waits on more than one query per service.
DOMAIN_REFRESH_SECONDS = 15.0
JOBS = Gauge(
    "hdhub_jobs",
    "Background jobs by service, kind and status (queued, running, parked)",
    ["service", "kind", "status"],
)
JOB_BACKLOG_AGE = Gauge(
    "hdhub_job_backlog_age_seconds",
    "Age of the oldest due job not yet done, by service and kind",
    ["service", "kind"],
)
DOMAIN_REFRESHED = Gauge(
    "hdhub_domain_metrics_refreshed_timestamp_seconds",
    "When each service's domain gauges were last read from its database (Unix time): "
    "while the database is down they keep their last values and this stops moving",
    ["service"],
)
DOMAIN_REFRESH_FAILURES = Counter(
    "hdhub_domain_metrics_refresh_failures_total",
    "Refreshes of a service's domain gauges that failed (its database unreachable or failing)",
    ["service"],
)
_refreshers: dict[str, Callable[[], Awaitable[None]]] = {}
_refreshed_at: dict[str, float] = {}


def register_domain_metrics(name: str, refresh: Callable[[], Awaitable[None]]) -> None:
    """Have ``refresh`` (which sets gauges from the database) run before scrapes."""
    _refreshers[name] = refresh


def unregister_domain_metrics(name: str) -> None:
    """Stop refreshing ``name``'s gauges; its freshness goes too (no stale alert for it)."""
    _refreshers.pop(name, None)
    _refreshed_at.pop(name, None)
    for metric in (DOMAIN_REFRESHED, DOMAIN_REFRESH_FAILURES):
        with contextlib.suppress(KeyError):
            metric.remove(name)


async def refresh_domain_metrics(*, force: bool = False) -> None:
    now = time.monotonic()
    for name, refresh in list(_refreshers.items()):
        if not force and now - _refreshed_at.get(name, -1e9) < DOMAIN_REFRESH_SECONDS:
            continue
        _refreshed_at[name] = now
        try:
            await refresh()
        except Exception as exc:  # a scrape must answer even when a database is down
            from hdhub.common.health import describe_failure

            DOMAIN_REFRESH_FAILURES.labels(name).inc()
            log.warning("domain metrics of %s not refreshed (stale): %s", name, describe_failure(exc))
        else:
            DOMAIN_REFRESHED.labels(name).set(_now())


async def job_metrics(service: str, db: Any, model: Any) -> None:
    """Set :data:`JOBS` and :data:`JOB_BACKLOG_AGE` for one service's jobs table."""
    from sqlalchemy import func, select

    now = clock.now()
    async with db.system_session() as session:
        counts = (
            await session.execute(
                select(model.kind, model.status, func.count())
                .where(model.status != "done")
                .group_by(model.kind, model.status)
            )
        ).all()
        oldest = (
            await session.execute(
                select(model.kind, func.min(model.run_after))
                .where(model.status.in_(("queued", "running")), model.run_after <= now)
                .group_by(model.kind)
            )
        ).all()
    set_gauge(JOBS, {(service, kind, status): n for kind, status, n in counts}, scope=(service,))
    ages: dict[tuple[str, ...], float] = {
        (service, str(kind)): max(0.0, (now - first).total_seconds())
        for kind, first in oldest
        if first is not None
    }
    set_gauge(JOB_BACKLOG_AGE, ages, scope=(service,))


_seen: dict[int, set[tuple[str, ...]]] = {}


def set_gauge(gauge: Gauge, values: Mapping[tuple[str, ...], float], *, scope: tuple[str, ...] = ()) -> None:
    """Set a labelled gauge to ``values``; label sets set before (whose first labels are
    ``scope``) and now absent read 0 rather than vanishing, so alerts see them recover."""
    seen = _seen.setdefault(id(gauge), set())
    for labels in seen:
        if labels[: len(scope)] == scope and labels not in values:
            gauge.labels(*labels).set(0)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
        seen.add(labels)


class _RefreshingMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await refresh_domain_metrics()
        await self.app(scope, receive, send)


def metrics_app(registry: CollectorRegistry = REGISTRY) -> ASGIApp:
    """The ASGI app answering Prometheus scrapes; mount it at ``/metrics``.

    It exposes internals: keep ``/metrics`` off the public ingress (NetworkPolicy or a
    path rule) and let only the scraper reach it.
    """
    return _RefreshingMetrics(make_asgi_app(registry=registry))


def worker_app(
    services: Iterable[str],
    *,
    stale_after: float,
    readiness: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
) -> ASGIApp:
    """A worker's own little HTTP edge: ``/metrics``; ``/healthz`` (liveness), 200 while
    each worker loop of ``services`` went round within ``stale_after`` seconds (503 once one
    is stuck or dead, so the kubelet restarts the pod; a database outage keeps the loop
    going round, with back-off, so it restarts nothing); ``/readyz`` (readiness), 200 while
    every check of ``readiness`` (the service's database) is "ok", else 503 naming it;
    404 on any other path."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from hdhub.common.health import describe_failure, is_ready

    names = list(services)
    started = time.monotonic()
    scrape = metrics_app()

    async def healthz(_request: Any) -> JSONResponse:
        if worker_alive(names, stale_after=stale_after, started=started):
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "stuck", "stale_after_seconds": stale_after}, status_code=503)

    async def readyz(_request: Any) -> JSONResponse:
        try:
            checks = dict(await readiness()) if readiness is not None else {}
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a failed check
            checks = {"readiness": describe_failure(exc)}
        ready = is_ready(checks)
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
        )

    async def not_found(_request: Any, _exc: Exception) -> PlainTextResponse:
        return PlainTextResponse("Not Found", status_code=404)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", _MetricsEndpoint(scrape)),
        ],
        exception_handlers={404: not_found},
    )


class _MetricsEndpoint:
    """An ASGI app as a Route's endpoint (Starlette then passes it the raw scope)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def serve_metrics(
    host: str,
    port: int,
    stop: Any,
    *,
    services: Iterable[str] = (),
    stale_after: float = 300.0,
    readiness: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
) -> None:
    """:func:`worker_app` on ``host:port``, for processes without an HTTP edge (workers)."""
    import uvicorn

    app = worker_app(services, stale_after=stale_after, readiness=readiness)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
