"""OpenTelemetry traces: SDK set-up from the standard ``OTEL_*`` variables, and the
instrumentation of every hop (FastAPI, gRPC server and client, SQLAlchemy, httpx).

Configuration is the OpenTelemetry SDK's own, nothing home-made:

- ``OTEL_SDK_DISABLED=true`` leaves the no-op API in place.
- ``OTEL_SERVICE_NAME`` (else ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``, else the
  name given to :func:`setup_telemetry`) names the process.
- ``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` or ``none`` (comma-separated); when
  unset, ``otlp`` if ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set,
  ``none`` otherwise, so a laptop exports nothing and pays next to nothing: with no
  exporter (and no other span processor added) spans are not recorded at all, though
  every request still gets a trace id for its log lines and the calls it makes.
- ``OTEL_EXPORTER_OTLP_*``, ``OTEL_BSP_*``, ``OTEL_TRACES_SAMPLER[_ARG]``,
  ``OTEL_PROPAGATORS``, ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS``,
  ``OTEL_PYTHON_GRPC_EXCLUDED_SERVICES``: read by the SDK and instrumentations as usual.

What leaves the process is scrubbed on the way out (:class:`ScrubbingSpanProcessor`):
URL paths become their route templates, query strings go, exception events keep their
type only (messages and stack traces embed values), and SSINs that slipped into any
attribute are masked. Idle polls make no spans at all (:func:`quiet`): a worker that
finds nothing to do is not a trace.

Attribute names follow the current semantic conventions (``OTEL_SEMCONV_STABILITY_OPT_IN``
defaults to ``http``): ``http.request.method``, ``url.path``, ``http.response.status_code``;
jobs follow the messaging conventions (a producer span when enqueued, a consumer span when
processed, continuing the producer's trace or linking to each producer of a batch).
"""

from __future__ import annotations

import contextvars
import logging
import os
import secrets
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.context.context import Context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode

from hdhub.common.logging import current_request, current_service
from hdhub.common.ssin import mask_ssins

if TYPE_CHECKING:
    import grpc.aio
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "QuietSampler",
    "ScrubbingSpanProcessor",
    "current_trace_id",
    "enqueue_span",
    "extract_context",
    "grpc_client_interceptors",
    "grpc_server_interceptor",
    "inject_context",
    "instrument_fastapi",
    "instrument_httpx",
    "instrument_sqlalchemy",
    "job_context",
    "job_span",
    "jobs_span",
    "quiet",
    "quiet_carrier",
    "stream_message_span",
    "setup_telemetry",
    "worker_context",
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
    (``opentelemetry-instrument``, a test) is kept. ``hdhub run all`` calls it with
    ``"hdhub"``: each span is then exported under the service that made it
    (``hdhub-registrations``, ``hdhub-registrations-worker``...), unless ``OTEL_SERVICE_NAME``
    names the process. The resource carries ``service.version`` and
    ``deployment.environment`` (``HDHUB_ENVIRONMENT``).
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

        from opentelemetry.sdk.resources import OTELResourceDetector
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

        if isinstance(trace.get_tracer_provider(), TracerProvider):
            return
        # Current HTTP attribute names (http.request.method, url.path, ...); read by the
        # instrumentations when they are set up, so before any of them.
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
        from_env = OTELResourceDetector().detect()
        named_by_env = SERVICE_NAME in from_env.attributes
        environment = os.environ.get("HDHUB_ENVIRONMENT", "development")
        attributes: dict[str, Any] = {
            "service.version": _version(),
            "deployment.environment": environment,
            "deployment.environment.name": environment,
        }
        if not named_by_env:
            attributes[SERVICE_NAME] = service_name
        provider = ListenedTracerProvider(
            resource=Resource.create(attributes), sampler=QuietSampler(_get_from_env_or_default())
        )
        per_service = service_name == "hdhub" and not named_by_env
        for exporter in _span_exporters(os.environ):
            provider.add_span_processor(
                ScrubbingSpanProcessor(BatchSpanProcessor(exporter), per_service=per_service)
            )
        trace.set_tracer_provider(provider)
    instrument_httpx()


def _version() -> str:
    try:
        return metadata.version("hdhub")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


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
    with a background job so the worker's span continues the trace that enqueued it.
    Nothing while instrumentation is suppressed (:func:`quiet`): the span there is not
    recorded, and a job continuing it would not be either."""
    carrier: dict[str, str] = {}
    if is_instrumentation_enabled():
        _JOB_PROPAGATOR.inject(carrier)
    return carrier


def quiet_carrier() -> dict[str, str]:
    """Headers telling the receiver of a call made while :func:`quiet` not to record it
    either: a W3C ``traceparent`` whose *sampled* flag is off, which a parent-based sampler
    (the default) follows. Without it an idle poll across a service boundary (the decision
    poll asking the central platform) would be a new trace on the receiving side each time.
    Empty outside :func:`quiet`."""
    if is_instrumentation_enabled():
        return {}
    return {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"}


def extract_context(carrier: Mapping[str, str] | None) -> otel_context.Context:
    """The context stored by :func:`inject_context`, to start a span in:
    ``tracer.start_as_current_span("job", context=extract_context(job.trace_context))``.
    An empty or missing carrier gives an empty context (a new trace). The context is a
    fresh one: a job's work is traced even when the poll that claimed it is not."""
    return _JOB_PROPAGATOR.extract(dict(carrier or {}), context=Context())


_stream_tracer = trace.get_tracer("hdhub.grpc.stream")


@contextmanager
def stream_message_span(
    method: str, kind: trace.SpanKind, carrier: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """A span for one message of a gRPC stream (``method``: ``package.Service/Method``),
    named ``"<method> message"`` with the RPC attributes OpenTelemetry's interceptors set.
    A stream has no metadata per message, so the message carries its trace: the client
    side (``SpanKind.CLIENT``) is given the W3C headers to put in the message; the server
    side continues the trace of the ``carrier`` the message brought (none: the stream's)."""
    service, _, name = method.partition("/")
    context = extract_context(carrier) if carrier else None
    with _stream_tracer.start_as_current_span(
        f"{method} message",
        context=context,
        kind=kind,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
    ):
        yield inject_context() if kind == trace.SpanKind.CLIENT else {}


_jobs_tracer = trace.get_tracer("hdhub.jobs")
#: What jobs are to the messaging conventions: the queue is the service's jobs table, the
#: destination a job kind.
_MESSAGING_SYSTEM = "hdhub.jobs"
_MAX_LINKS = 128  # the SDK's default span link limit


def _stored(job: Any) -> trace.SpanContext:
    return trace.get_current_span(extract_context(getattr(job, "trace_context", None))).get_span_context()


@contextmanager
def enqueue_span(kind: str, *, job_id: str | None = None, count: int = 1) -> Iterator[None]:
    """A producer span for enqueueing ``count`` jobs of ``kind`` (messaging conventions,
    ``send <kind>``), around storing the trace context with them: the job's consumer span
    is its child. No span while instrumentation is suppressed."""
    if not is_instrumentation_enabled():
        yield
        return
    attributes: dict[str, Any] = {
        "messaging.system": _MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": kind,
        "hdhub.job.kind": kind,
    }
    if job_id is not None:
        attributes["messaging.message.id"] = job_id
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    with _jobs_tracer.start_as_current_span(
        f"send {kind}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ):
        yield


@contextmanager
def jobs_span(jobs: Sequence[Any], kind: str | None = None) -> Iterator[trace.Span]:
    """A consumer span for processing ``jobs`` together (``process <kind>``).

    When every job was enqueued in one trace (one request, or one upload's batches) the
    span continues it, under the first job's producer, and links to the other producers;
    when they come from several traces (a batch of several hospitals' submits) it starts a
    trace of its own with a span link to each (up to 128): the messaging conventions'
    batch receive. Every job's own trace then leads here through its link."""
    kind = kind or str(jobs[0].kind)
    stored = [_stored(job) for job in jobs]
    first = stored[0] if stored else trace.INVALID_SPAN_CONTEXT
    one_trace = first.is_valid and all(c.is_valid and c.trace_id == first.trace_id for c in stored)
    parent = extract_context(jobs[0].trace_context) if one_trace else Context()
    seen = {(first.trace_id, first.span_id)} if one_trace else set()
    links: list[trace.Link] = []
    for c in stored:
        if c.is_valid and (c.trace_id, c.span_id) not in seen and len(links) < _MAX_LINKS:
            seen.add((c.trace_id, c.span_id))
            links.append(trace.Link(c))
    attributes: dict[str, Any] = {
        "messaging.system": _MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": kind,
        "hdhub.job.kind": kind,
    }
    if len(jobs) == 1:
        job = jobs[0]
        attributes["messaging.message.id"] = attributes["hdhub.job.id"] = str(job.id)
        attributes["hdhub.job.attempt"] = int(job.attempts or 0)
    else:
        attributes["messaging.batch.message_count"] = len(jobs)
    span = _jobs_tracer.start_span(
        f"process {kind}", context=parent, kind=trace.SpanKind.CONSUMER, links=links, attributes=attributes
    )
    # The job's work is traced even inside the quiet poll that claimed it.
    loud = otel_context.get_current()
    for key in _SUPPRESSED:
        loud = otel_context.set_value(key, False, loud)
    token = otel_context.attach(loud)
    try:
        with trace.use_span(span, end_on_exit=True):
            yield span
    finally:
        otel_context.detach(token)


def job_span(job: Any) -> Any:
    """A consumer span for running ``job`` (``process <kind>``), continuing the trace
    stored with it (the request that enqueued it), so one trace runs from that request
    through the work done later, in whatever process claims the job::

        with job_span(job):
            await run(job)
    """
    return jobs_span([job])


def job_context(job: Any) -> dict[str, str]:
    """The trace context a job that follows ``job`` (a confirmation after a delivery)
    stores: the current span when it continues ``job``'s trace, else ``job``'s own stored
    context (a batch span of many traces: each follow-up stays in its journey's trace)."""
    stored = _stored(job)
    current = trace.get_current_span().get_span_context()
    if current.is_valid and stored.is_valid and current.trace_id == stored.trace_id:
        return inject_context()
    return dict(getattr(job, "trace_context", None) or {})


# --- idle polls and workers ---------------------------------------------------------------

# What suppress_instrumentation() sets (the instrumentations look at either).
_SUPPRESSED = (_SUPPRESS_INSTRUMENTATION_KEY, "suppress_instrumentation")
_in_worker: contextvars.ContextVar[bool] = contextvars.ContextVar("hdhub_in_worker", default=False)


@contextmanager
def quiet() -> Iterator[None]:
    """Nothing inside is traced (a worker's poll for work: claiming, scheduling,
    housekeeping) except the jobs it finds (:func:`jobs_span` starts from a fresh
    context). Without it an idle worker would export a trace per poll."""
    with suppress_instrumentation():
        yield


@contextmanager
def worker_context(service: str) -> Iterator[None]:
    """Marks what runs inside as ``service``'s worker: its log lines name the service and,
    in ``hdhub run all``, its spans are exported as ``hdhub-<service>-worker``."""
    service_token = current_service.set(service)
    worker_token = _in_worker.set(True)
    try:
        yield
    finally:
        _in_worker.reset(worker_token)
        current_service.reset(service_token)


class ListenedTracerProvider(TracerProvider):
    """The SDK's provider, knowing whether any span processor listens. Until one does
    (no exporter configured: a laptop, a bench), :class:`QuietSampler` records nothing:
    spans nobody reads would be built at every call for nothing. The trace ids
    are made all the same (the SDK makes them before sampling), so log lines and the
    calls a request makes still share one."""

    listened = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.sampler, QuietSampler):
            self.sampler.provider = self

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.listened = True


class QuietSampler(Sampler):
    """Drops every span started while instrumentation is suppressed (:func:`quiet`), our
    own spans included (the SDK's tracer does not look), and every span of a
    :class:`ListenedTracerProvider` no processor listens to; otherwise ``delegate``
    decides."""

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate
        #: Set by :class:`ListenedTracerProvider` when it is given this sampler.
        self.provider: ListenedTracerProvider | None = None

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if self.provider is not None and not self.provider.listened:
            return SamplingResult(Decision.DROP)
        context = parent_context if parent_context is not None else otel_context.get_current()
        if any(otel_context.get_value(key, context) for key in _SUPPRESSED):
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"QuietSampler{{{self._delegate.get_description()}}}"


# --- what leaves the process ----------------------------------------------------------------

#: Exception events keep these: the type says what failed; the message and the stack
#: trace (whose last line repeats the message) routinely embed input values.
_EXCEPTION_KEEP = frozenset({"exception.type", "exception.escaped"})


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_ssins(value, "[redacted-ssin]")
    if isinstance(value, list | tuple):
        return tuple(_masked(v) for v in value)
    return value


def scrub_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A span's attributes as they may leave the process: the URL path is the route
    template (``/api/v1/registrations/{registration_id}``, never the id or a file name) or
    absent, no query string, ``db.operation`` the SQL verb alone, SSINs masked anywhere."""
    out = dict(attributes)
    route = out.get("http.route")
    for key in ("url.path", "http.target"):
        if key in out:
            if route:
                out[key] = route
            else:
                del out[key]
    for key in ("url.full", "http.url"):
        if isinstance(out.get(key), str):
            out[key] = _strip_query(out[key])
    out.pop("url.query", None)
    for key in ("db.operation", "db.operation.name"):
        value = out.get(key)
        if isinstance(value, str) and value.split():
            out[key] = value.split()[0].upper()
    return {key: _masked(value) for key, value in out.items()}


def _scrubbed_event(event: Any) -> Event:
    attributes = dict(event.attributes or {})
    if event.name == "exception":
        attributes = {k: v for k, v in attributes.items() if k in _EXCEPTION_KEEP}
    return Event(event.name, {k: _masked(v) for k, v in attributes.items()}, event.timestamp)


def scrubbed(span: ReadableSpan, resource: Resource | None = None) -> ReadableSpan:
    """``span`` as it may leave the process (see :func:`scrub_attributes`): gRPC span
    names without their leading ``/``, events and status without messages."""
    attributes = scrub_attributes(span.attributes or {})
    name = span.name
    if attributes.get("rpc.system") == "grpc":
        name = name.lstrip("/")
    status = Status(span.status.status_code) if span.status.description else span.status
    return ReadableSpan(
        name=_masked(name),
        context=span.context,
        parent=span.parent,
        resource=resource or span.resource,
        attributes=attributes,
        events=[_scrubbed_event(e) for e in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _service_of_context() -> str | None:
    name = (current_service.get() or "").removeprefix("hdhub").strip()
    if not name:
        return None
    return f"hdhub-{name}-worker" if _in_worker.get() else f"hdhub-{name}"


class ScrubbingSpanProcessor(SpanProcessor):
    """Hands ``delegate`` (the exporting processor) each span :func:`scrubbed`.

    With ``per_service`` (``hdhub run all``), each span is exported under the service that
    made it: the service of the call or worker it runs in, else its parent's; a gRPC
    server span under the service that answered."""

    def __init__(self, delegate: SpanProcessor, *, per_service: bool = False) -> None:
        self._delegate = delegate
        self._per_service = per_service
        self._service_of: dict[int, str] = {}  # live spans only
        self._resources: dict[tuple[int, str], Resource] = {}

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if self._per_service and span.context is not None:
            named = (span.attributes or {}).get("hdhub.service")  # given at start (SFTP's session)
            service = f"hdhub-{named}" if named else _service_of_context()
            if service is None:
                parent = trace.get_current_span(parent_context).get_span_context()
                if parent.is_valid and not parent.is_remote:
                    service = self._service_of.get(parent.span_id)
            if service is not None:
                self._service_of[span.context.span_id] = service
        self._delegate.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        resource = None
        if self._per_service and span.context is not None:
            service = self._service_of.pop(span.context.span_id, None)
            answered = (span.attributes or {}).get("hdhub.service")
            if answered and span.kind == trace.SpanKind.SERVER:
                service = f"hdhub-{answered}"
            if service is not None:
                resource = self._resource(span.resource, service)
        self._delegate.on_end(scrubbed(span, resource))

    def _resource(self, base: Resource, service: str) -> Resource:
        key = (id(base), service)
        if key not in self._resources:
            self._resources[key] = base.merge(Resource({SERVICE_NAME: service}))
        return self._resources[key]

    def shutdown(self) -> None:
        self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._delegate.force_flush(timeout_millis)


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
    from opentelemetry.util.http import parse_excluded_urls

    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", _DEFAULT_FASTAPI_EXCLUDED)
    FastAPIInstrumentor.instrument_app(
        app,
        server_request_hook=_server_request_hook,
        excluded_urls=excluded,
        exclude_spans=["receive", "send"],
    )
    _name_spans_after_routing(app)
    app.add_middleware(_RequestContext, excluded=parse_excluded_urls(excluded))


#: HTTP methods a span is named after; any other is ``HTTP`` (as the instrumentation does).
_SPAN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)


def _span_method(scope: Mapping[str, Any]) -> str:
    if scope.get("type") == "websocket":
        return "WEBSOCKET"
    method = str(scope.get("method", "")).strip().upper()
    return method if method in _SPAN_METHODS else "HTTP"


def _method_only(scope: Any) -> tuple[str, dict[str, str]]:
    return _span_method(scope), {}


def _name_spans_after_routing(app: FastAPI) -> None:
    """The server span is started named after the method alone, and named after its route
    template (``POST /portal/o/{organisation_id}/forms/{dcd}/{version}/evaluate``, with
    ``http.route``) once the app has routed the request, as the answer starts (:class:`_RequestContext`).

    The instrumentation names it before the request reaches the app, by matching the path
    against every route of the app once more (about 220 in ``hdhub run all``): 5 % of the
    CPU of a portal page or a form's live validation. The span and its name are the same;
    only the order differs. Should the instrumentation's middleware stack change shape,
    its own naming stays."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from starlette.middleware.errors import ServerErrorMiddleware

    build = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        stack = build()
        inner = stack.app if isinstance(stack, ServerErrorMiddleware) else None
        if isinstance(inner, OpenTelemetryMiddleware):
            inner.default_span_details = _method_only
        return stack

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]


def _name_span(scope: MutableMapping[str, Any]) -> None:
    """Name the current server span after the route that answered (no route: the method);
    called as the answer starts, the span ending with its last byte."""
    from hdhub.common.metrics import UNMATCHED_ROUTE, _route_template

    span = trace.get_current_span()
    if not span.is_recording() or getattr(span, "kind", None) != trace.SpanKind.SERVER:
        return
    route = _route_template(scope)
    if route != UNMATCHED_ROUTE:
        span.update_name(f"{_span_method(scope)} {route}")
        span.set_attribute("http.route", route)


#: What starts an answer: the span is named after the route then (a WebSocket's span lasts
#: as long as its connection; it is named once it is accepted or refused).
_ANSWER_STARTS = frozenset({"http.response.start", "websocket.accept", "websocket.close"})


class _RequestContext:
    """Nothing traced while answering an excluded URL (a scrape of /metrics reads the
    domain gauges from the database, and each statement would start a trace); and the
    request's scope at hand for the access log line, which names the route template."""

    def __init__(self, app: Any, *, excluded: Any) -> None:
        self.app, self.excluded = app, excluded

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = current_request.set(scope)
        try:
            if self.excluded.url_disabled(str(scope.get("path", ""))):
                with quiet():
                    await self.app(scope, receive, send)
            else:
                named = False

                async def naming(message: Any) -> None:
                    # The span ends with the answer's last byte: named as the answer starts
                    # (once: a WebSocket's later close is sent inside a message's span).
                    nonlocal named
                    if not named and message["type"] in _ANSWER_STARTS:
                        named = True
                        _name_span(scope)
                    await send(message)

                await self.app(scope, receive, naming)
        finally:
            current_request.reset(token)


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


_database_tracer = trace.get_tracer("hdhub.database")


@contextmanager
def database_span(name: str, statement: str, attributes: Mapping[str, Any]) -> Iterator[None]:
    """A span for a statement run on the driver itself (``Database.plain_reads``), named
    and described as the SQLAlchemy instrumentation names its own ("SELECT hdhub", the
    database's ``attributes``): the statement with its placeholders, never its
    parameters. Not made current: a statement has no spans below it."""
    span = _database_tracer.start_span(
        name, kind=trace.SpanKind.CLIENT, attributes={**attributes, "db.statement": statement}
    )
    try:
        yield
    except Exception as exc:  # a cancelled read (its caller gone) is no error of the statement
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()


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


class _NotServices:
    """OpenTelemetry's gRPC filter: True for a call to none of the services named. One
    ``startswith`` per call; OpenTelemetry's own filters (``negate(any_of(service_name(
    ...)))``) split the method name per call and per service, 3 % of a grid page's CPU."""

    def __init__(self, names: Sequence[str]) -> None:
        self.prefixes = tuple(f"/{name}/" for name in names)

    def __call__(self, details: Any) -> bool:
        method = details.method
        if isinstance(method, bytes):
            method = method.decode()
        return not method.startswith(self.prefixes)


def _grpc_filter() -> Callable[[Any], bool] | None:
    excluded = os.environ.get("OTEL_PYTHON_GRPC_EXCLUDED_SERVICES", _DEFAULT_GRPC_EXCLUDED)
    names = [s.strip() for s in excluded.split(",") if s.strip()]
    return _NotServices(names) if names else None


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
