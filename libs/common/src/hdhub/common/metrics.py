"""Prometheus metrics shared by every service: HTTP and gRPC server metrics, defined once
here, and the ``/metrics`` app.

Every metric lives in the process's default registry (with the process and platform
collectors), so ``hdhub run all`` exposes every service in one scrape; labels tell the
services apart. Labels are bounded: route templates and gRPC method names, never raw
paths or anything taken from a request's content.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app

from hdhub.common.logging import current_service

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "GRPC_SERVER_HANDLED",
    "GRPC_SERVER_HANDLING_SECONDS",
    "GRPC_SERVER_STARTED",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "HTTP_REQUEST_ERRORS",
    "HttpMetricsMiddleware",
    "JOBS",
    "JOB_BACKLOG_AGE",
    "http_metrics_middleware",
    "job_metrics",
    "metrics_app",
    "refresh_domain_metrics",
    "register_domain_metrics",
    "serve_metrics",
    "set_gauge",
]

log = logging.getLogger("hdhub.metrics")

# Up to a minute: CSV uploads and batch validation are legitimately slow.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED_ROUTE = "<unmatched>"

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


class HttpMetricsMiddleware:
    """Pure ASGI middleware counting requests, errors and durations per route template.

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
            method = str(scope.get("method", "GET"))
            route = _route_template(scope)
            HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
            HTTP_REQUEST_DURATION.labels(self.service, method, route).observe(elapsed)
            if failed or status >= 500:
                HTTP_REQUEST_ERRORS.labels(self.service, method, route).inc()
            current_service.reset(token)


def http_metrics_middleware(app: FastAPI, service: str) -> None:
    """Add :class:`HttpMetricsMiddleware` to ``app``, labelling its metrics with ``service``."""
    app.add_middleware(HttpMetricsMiddleware, service=service)


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
_refreshers: dict[str, Callable[[], Awaitable[None]]] = {}
_refreshed_at: dict[str, float] = {}


def register_domain_metrics(name: str, refresh: Callable[[], Awaitable[None]]) -> None:
    """Have ``refresh`` (which sets gauges from the database) run before scrapes."""
    _refreshers[name] = refresh


def unregister_domain_metrics(name: str) -> None:
    _refreshers.pop(name, None)
    _refreshed_at.pop(name, None)


async def refresh_domain_metrics(*, force: bool = False) -> None:
    now = time.monotonic()
    for name, refresh in list(_refreshers.items()):
        if not force and now - _refreshed_at.get(name, -1e9) < DOMAIN_REFRESH_SECONDS:
            continue
        _refreshed_at[name] = now
        try:
            await refresh()
        except Exception:  # a scrape must answer even when a database is down
            log.warning("domain metrics of %s not refreshed", name, exc_info=True)


async def job_metrics(service: str, db: Any, model: Any) -> None:
    """Set :data:`JOBS` and :data:`JOB_BACKLOG_AGE` for one service's jobs table."""
    from sqlalchemy import func, select

    from hdhub.common.db import utcnow

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
                .where(model.status.in_(("queued", "running")), model.run_after <= utcnow())
                .group_by(model.kind)
            )
        ).all()
    now = utcnow()
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


async def serve_metrics(host: str, port: int, stop: Any) -> None:
    """``/metrics`` alone on ``host:port``, for processes without an HTTP edge (workers)."""
    import uvicorn

    config = uvicorn.Config(metrics_app(), host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
