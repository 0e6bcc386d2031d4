"""Logs: JSON lines on stdout carrying the trace and span ids of the current span, and a
redaction filter that keeps patient identifiers out of them.

Every handler set up here runs :class:`SsinRedactionFilter` last, whatever logger the record
came from (uvicorn's and third-party libraries' included): it is the last line of defence,
not a licence to log identifiers. Exceptions are logged as their type and a traceback of
frames only; exception messages are left out because they routinely embed input values
(SQLAlchemy puts the statement parameters in them).

Uvicorn must be started with ``log_config=None`` so that it keeps the handlers set here;
its access log then goes through the same JSON handler, without query strings.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from opentelemetry import trace

from hdhub.common.ssin import mask_ssins

__all__ = [
    "SSIN_PATTERN",
    "SsinRedactionFilter",
    "current_request",
    "current_service",
    "redact",
    "setup_logging",
]

# 11 digits as a Belgian SSIN (INSZ/NISS) is written: bare (85040216932) or with the usual
# separators (85.04.02-169.32, 850402-169-32, 85 04 02 169 32). Masked when they pass the
# SSIN rule (check number, month, date: hdhub.common.ssin), not for their shape alone:
# by shape, 1.8% of logged UUID ids had a run of digits mangled.
SSIN_PATTERN = re.compile(r"(?<!\d)\d{2}[.\- ]?\d{2}[.\- ]?\d{2}[.\- ]?\d{3}[.\- ]?\d{2}(?!\d)")
SSIN_MASK = "[redacted-ssin]"

# The service a record belongs to. `hdhub run all` hosts several services in one process,
# so the gRPC server and the HTTP middleware set it per call; outside a call, the process
# default from setup_logging applies.
current_service: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hdhub_log_service", default=None
)
_process_service = "hdhub"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_OWN_ATTRS = frozenset({"service", "trace_id", "span_id"})


def redact(text: str) -> str:
    """Return ``text`` with every SSIN in it masked (by the SSIN rule, not the shape)."""
    return mask_ssins(text, SSIN_MASK)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        # An int can be an SSIN too (85040216932): digits count, not types.
        return _redact_number(value)
    if isinstance(value, Mapping):
        return {str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return redact(str(value))


def _redact_number(value: int | float) -> int | float | str:
    text = str(value)
    masked = redact(text)
    return value if masked == text else masked


class SsinRedactionFilter(logging.Filter):
    """Masks SSIN-like numbers in a record's message, arguments and ``extra`` fields.

    The message is formatted with its arguments first (``%d`` of an int SSIN included), then
    masked, so no argument type slips through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS and key not in _OWN_ATTRS:
                setattr(record, key, _redact_value(value))
        return True


class _ContextFilter(logging.Filter):
    """Stamps the service and the current span's ids on the record where it is emitted
    (formatting may happen later, on another thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "service", None):
            record.service = current_service.get() or _process_service
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        else:
            record.trace_id = None
            record.span_id = None
        return True


# The ASGI scope of the request being answered (set by telemetry's middleware), for the
# access line to name the route template that answered instead of the raw path.
current_request: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "hdhub_log_request", default=None
)
UNMATCHED = "(unmatched)"


def _route_template(scope: Mapping[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class _UvicornAccessFilter(logging.Filter):
    """Rewrites uvicorn's access line with the route template that answered
    (``/api/v1/files/{organisation_id}/{registry}/{filename}``): a raw path carries ids
    and file names, a query string identifiers. The request goes in fields too."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, full_path, http_version, status = args
            scope = current_request.get()
            path = _route_template(scope) if scope is not None else str(full_path).split("?", 1)[0]
            record.msg = "%s %s HTTP/%s %s"
            record.args = (method, path, http_version, status)
            record.http_method = method
            record.http_path = path
            record.http_status = status
            record.client = client
        return True


def _exception_info(
    exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
) -> dict[str, Any] | None:
    """The exception's type and frames (file, line, function, code), and its causes':
    never its message nor local variables."""
    if exc_type is None or exc is None:
        return None
    info: dict[str, Any] = {
        "type": f"{exc_type.__module__}.{exc_type.__qualname__}",
        "traceback": [
            redact(
                f"{frame.filename}:{frame.lineno} in {frame.name}" + (f": {frame.line}" if frame.line else "")
            )
            for frame in traceback.extract_tb(tb)
        ],
    }
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None:
        info["cause"] = _exception_info(type(cause), cause, cause.__traceback__)
    return info


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, trace_id, span_id,
    the record's ``extra`` fields, and ``exception`` (type and frames) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": getattr(record, "service", None),
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = _exception_info(*record.exc_info)
        if record.stack_info:
            out["stack"] = redact(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _shown(value: object) -> str:
    """A value of a console line as it is when it is plain; quoted and escaped when it
    holds a space, a quote, a control or a bidi character, so that a value sent by a
    client (an organisation id in a form) can never start a line of its own or reorder one."""
    text = str(value)
    if text.isprintable() and " " not in text and '"' not in text:
        return text
    return json.dumps(text)


class ConsoleFormatter(logging.Formatter):
    """A readable line for a developer's terminal, with the same content rules as JSON."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        trace_id = getattr(record, "trace_id", None)
        line = f"{time} {record.levelname:<7} {getattr(record, 'service', '-')} {record.name}: {record.getMessage()}"
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and k not in _OWN_ATTRS}
        if extras:
            line += " " + " ".join(f"{k}={_shown(v)}" for k, v in extras.items())
        if trace_id:
            line += f" [trace {trace_id}]"
        info = _exception_info(*record.exc_info) if record.exc_info else None
        while info:
            line += f"\n  {info['type']}" + "".join(f"\n    {frame}" for frame in info["traceback"])
            info = info.get("cause")
        return line


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is when the record is emitted (test runners and
    some process managers replace it after start-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def setup_logging(
    level: str = "INFO", fmt: Literal["json", "console"] = "json", *, service: str | None = None
) -> None:
    """Send every log record of the process to stdout, as JSON lines or console lines.

    ``service`` names the process in records logged outside a call (default
    ``OTEL_SERVICE_NAME``, else ``hdhub``). Calling it again replaces the handler, so the
    level and format can be changed at run time. Uvicorn's loggers are made to propagate
    here; start uvicorn with ``log_config=None`` so it does not install its own.
    """
    global _process_service
    _process_service = service or os.environ.get("OTEL_SERVICE_NAME") or "hdhub"

    handler = _StdoutHandler(sys.stdout)
    handler.set_name("hdhub")
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(_ContextFilter())
    handler.addFilter(SsinRedactionFilter())  # last: sees what the other filters added

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "hdhub"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())

    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    # Alembic narrates every plugin it loads at INFO; its upgrades still show at WARNING+.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _UvicornAccessFilter) for f in access.filters):
        access.addFilter(_UvicornAccessFilter())
