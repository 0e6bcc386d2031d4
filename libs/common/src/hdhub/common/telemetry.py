"""OpenTelemetry traces: SDK set-up from the standard ``OTEL_*`` variables, and the
instrumentation of every hop (FastAPI, gRPC server and client, SQLAlchemy, httpx).

Configuration is the OpenTelemetry SDK's own, nothing home-made:

- ``OTEL_SDK_DISABLED=true`` leaves the no-op API in place.
- ``OTEL_SERVICE_NAME`` (else ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``, else the
  name given to :func:`setup_telemetry`) names the process.
- ``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` or ``none`` (comma-separated); when
  unset, ``otlp`` if ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set,
  ``none`` otherwise, so a laptop exports nothing and pays next to nothing.
- ``OTEL_EXPORTER_OTLP_*``, ``OTEL_BSP_*``, ``OTEL_TRACES_SAMPLER[_ARG]``,
  ``OTEL_PROPAGATORS``, ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS``,
  ``OTEL_PYTHON_GRPC_EXCLUDED_SERVICES``: read by the SDK and instrumentations as usual.

Query strings are stripped from HTTP span attributes: they can carry identifiers.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    import grpc.aio
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "current_trace_id",
    "extract_context",
    "grpc_client_interceptors",
    "grpc_server_interceptor",
    "inject_context",
    "instrument_fastapi",
    "instrument_httpx",
    "instrument_sqlalchemy",
    "job_span",
    "setup_telemetry",
]

log = logging.getLogger("hdhub.telemetry")

_lock = threading.Lock()
_configured_as: str | None = None
_instrumented_engines: weakref.WeakSet[Any] = weakref.WeakSet()

# Kubernetes probes and grpcurl hit these all the time; a span each would drown the traces.
_DEFAULT_GRPC_EXCLUDED = (
    "grpc.health.v1.Health,grpc.reflection.v1.ServerReflection,grpc.reflection.v1alpha.ServerReflection"
)
_DEFAULT_FASTAPI_EXCLUDED = "/healthz,/readyz,/livez,/metrics"
# Stored with background jobs: always W3C, whatever OTEL_PROPAGATORS says, so a job
# enqueued before a configuration change can still be continued after it.
_JOB_PROPAGATOR: TextMapPropagator = TraceContextTextMapPropagator()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def setup_telemetry(service_name: str) -> None:
    """Install the process's TracerProvider, configured from the ``OTEL_*`` variables.

    Idempotent: the first call in a process decides, later calls (``hdhub run all`` calls
    it once per service) do nothing, and a TracerProvider installed earlier by someone else
    (``opentelemetry-instrument``, a test) is kept. ``hdhub run all`` should call it with
    ``"hdhub"`` first, so the one resource names the process; which service handled an RPC
    is on its server span as ``hdhub.service``.
    """
    global _configured_as
    with _lock:
        if _configured_as is not None:
            if _configured_as != service_name:
                log.debug("telemetry already set up for %s; %s shares it", _configured_as, service_name)
            return
        _configured_as = service_name
        if _truthy(os.environ.get("OTEL_SDK_DISABLED")):
            log.info("OpenTelemetry SDK disabled by OTEL_SDK_DISABLED")
            return

        from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if isinstance(trace.get_tracer_provider(), TracerProvider):
            return
        from_env = OTELResourceDetector().detect()
        attributes = {} if SERVICE_NAME in from_env.attributes else {SERVICE_NAME: service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        for exporter in _span_exporters(os.environ):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)


def _span_exporters(env: Mapping[str, str]) -> list[Any]:
    """The span exporters named by ``OTEL_TRACES_EXPORTER`` (see the module docstring)."""
    names = env.get("OTEL_TRACES_EXPORTER")
    if names is None:
        has_endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        names = "otlp" if has_endpoint else "none"
    exporters: list[Any] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "grpc"
            )
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            else:  # http/protobuf: needs opentelemetry-exporter-otlp-proto-http installed
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[no-redef]
                    OTLPSpanExporter,
                )
            exporters.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)
    return exporters


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a recorded trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def inject_context() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``), to store
    with a background job so the worker's span continues the trace that enqueued it."""
    carrier: dict[str, str] = {}
    _JOB_PROPAGATOR.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str] | None) -> otel_context.Context:
    """The context stored by :func:`inject_context`, to start a span in:
    ``tracer.start_as_current_span("job", context=extract_context(job.trace_context))``.
    An empty or missing carrier gives an empty context (a new trace)."""
    return _JOB_PROPAGATOR.extract(dict(carrier or {}))


def job_span(job: Any, name: str | None = None) -> Any:
    """A consumer span for running ``job``, continuing the trace stored with it (the
    request that enqueued it), so one trace runs from that request through the work done
    later, in whatever process claims the job::

        with job_span(job):
            await run(job)
    """
    return trace.get_tracer("hdhub.jobs").start_as_current_span(
        name or f"job {job.kind}",
        context=extract_context(getattr(job, "trace_context", None)),
        kind=trace.SpanKind.CONSUMER,
        attributes={"hdhub.job.id": str(job.id), "hdhub.job.kind": str(job.kind), "hdhub.job.attempt": int(job.attempts or 0)},
    )


def _strip_query(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _redact_query_attributes(span: trace.Span) -> None:
    attributes: Mapping[str, Any] = getattr(span, "attributes", None) or {}
    for key in ("http.url", "url.full"):
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, _strip_query(value))
    if "http.target" in attributes and "?" in str(attributes["http.target"]):
        span.set_attribute("http.target", str(attributes["http.target"]).split("?", 1)[0])
    if attributes.get("url.query"):
        span.set_attribute("url.query", "REDACTED")


def _server_request_hook(span: trace.Span, scope: dict[str, Any]) -> None:
    if span.is_recording() and scope.get("query_string"):
        _redact_query_attributes(span)


def instrument_fastapi(app: FastAPI) -> None:
    """Trace every request of ``app`` (span name ``METHOD /route/{template}``), except the
    URLs in ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` (default: health and metrics), with
    query strings left out of the span."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    FastAPIInstrumentor.instrument_app(
        app,
        server_request_hook=_server_request_hook,
        excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", _DEFAULT_FASTAPI_EXCLUDED),
        exclude_spans=["receive", "send"],
    )


def instrument_sqlalchemy(engine: AsyncEngine | Engine) -> None:
    """Trace the statements of ``engine`` (an async engine's ``sync_engine``); once per
    engine, however often it is called. Statements are recorded with placeholders, never
    with their parameters."""
    from opentelemetry import metrics
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__

    sync_engine = getattr(engine, "sync_engine", engine)
    with _lock:
        if sync_engine in _instrumented_engines:
            return
        _instrumented_engines.add(sync_engine)
    # EngineTracer per engine rather than SQLAlchemyInstrumentor: the instrumentor is a
    # process-wide singleton that instruments only the first engine it is given, and
    # `hdhub run all` has one engine per service.
    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__)
    meter = metrics.get_meter("opentelemetry.instrumentation.sqlalchemy", __version__)
    connections = meter.create_up_down_counter(
        name="db.client.connections.usage",
        unit="connections",
        description="The number of connections that are currently in state described by the state attribute.",
    )
    EngineTracer(tracer, sync_engine, connections)  # type: ignore[no-untyped-call]


def _httpx_request_hook(span: trace.Span, request: Any) -> None:
    if span.is_recording() and "?" in str(getattr(request, "url", "")):
        _redact_query_attributes(span)


async def _httpx_async_request_hook(span: trace.Span, request: Any) -> None:
    _httpx_request_hook(span, request)


def instrument_httpx() -> None:
    """Trace every httpx client of the process (and propagate the trace context to the
    servers it calls), with query strings left out of the span. Idempotent."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        return
    instrumentor.instrument(request_hook=_httpx_request_hook, async_request_hook=_httpx_async_request_hook)


def _grpc_filter() -> Callable[[Any], bool] | None:
    from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_name

    excluded = os.environ.get("OTEL_PYTHON_GRPC_EXCLUDED_SERVICES", _DEFAULT_GRPC_EXCLUDED)
    names = [s.strip() for s in excluded.split(",") if s.strip()]
    if not names:
        return None
    keep: Callable[[Any], bool] = negate(any_of(*(service_name(n) for n in names)))
    return keep


def grpc_server_interceptor() -> grpc.aio.ServerInterceptor:
    """The OpenTelemetry interceptor for a ``grpc.aio`` server: one server span per RPC,
    continuing the caller's trace from the ``traceparent`` metadata."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(filter_=_grpc_filter())  # type: ignore[no-untyped-call]
    return interceptor


def grpc_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The OpenTelemetry interceptors for a ``grpc.aio`` channel: one client span per RPC,
    with the trace context injected into the request metadata."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        filter_=_grpc_filter()
    )
    return interceptors
