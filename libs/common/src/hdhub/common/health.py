"""Health that tells the truth: liveness (the process works) apart from readiness (it can
serve: its database answers), and what a worker says while its database is gone.

- ``/healthz`` is liveness: it answers 200 while the process runs, whatever its database
  does, so a database outage never turns into pods restarted in a loop.
- ``/readyz`` is readiness: 503 while the service's database does not answer a query
  within :data:`READINESS_TIMEOUT_SECONDS`; the Service stops sending it requests.
- gRPC ``grpc.health.v1`` follows readiness for ``""`` and each service name (balancers and
  grpc-health-probe see NOT_SERVING while the database is down); :data:`LIVENESS_SERVICE`
  stays SERVING while the server runs, for the kubelet's liveness probe.
- A worker's liveness is its claim loop's heartbeat (:func:`hdhub.common.metrics.worker_app`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("hdhub.health")

__all__ = [
    "LIVENESS_SERVICE",
    "READINESS_TIMEOUT_SECONDS",
    "FailureLog",
    "database_state",
    "describe_failure",
    "install_readiness",
]

READINESS_TIMEOUT_SECONDS = 2.0
#: The gRPC health service name the kubelet's liveness probe asks: SERVING while the
#: server runs, even while the database is down (readiness is the other names).
LIVENESS_SERVICE = "liveness"
OK = "ok"


def describe_failure(exc: BaseException) -> str:
    """What went wrong, for a log line or a readiness answer: the exception's type, and for
    a connection failure (the network's, or the database driver's OperationalError) the
    first line of its message ("connection refused", "password authentication failed").
    Other messages are left out: SQLAlchemy's quote the statement and its parameters, a
    driver's data errors quote the value."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    name = type(cause).__name__
    if isinstance(cause, OSError) or name in _CONNECTION_ERRORS:
        first_line = (str(cause).strip().splitlines() or [""])[0][:200]
        return f"{name}: {first_line}" if first_line else name
    return name


_CONNECTION_ERRORS = frozenset({"OperationalError", "InterfaceError", "ConnectionTimeout"})


async def database_state(db: Any, *, timeout: float = READINESS_TIMEOUT_SECONDS) -> str:
    """``"ok"`` when ``db`` answers ``SELECT 1`` within ``timeout`` seconds, else why not.
    Not traced: probes and the gRPC health re-check every few seconds are no journey."""
    from hdhub.common.telemetry import quiet

    try:
        with quiet():
            async with asyncio.timeout(timeout), db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return f"database: no answer within {timeout:g}s"
    except (SQLAlchemyError, OSError) as exc:
        return f"database: {describe_failure(exc)}"
    return OK


def is_ready(states: Mapping[str, str]) -> bool:
    return all(state == OK for state in states.values())


def install_readiness(app: FastAPI, readiness: Callable[[], Awaitable[dict[str, str]]] | None) -> None:
    """``GET /readyz`` on ``app``: 200 with each check's state while every one is "ok",
    503 otherwise. ``/healthz`` (liveness) is not this: it stays 200."""
    from fastapi.responses import JSONResponse

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = await readiness() if readiness is not None else {}
        ready = is_ready(checks)
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
        )


class FailureLog:
    """A worker step that keeps failing (its database down, say) logged usefully and
    rarely: the first failure at once with what failed, then one line every ``every``
    seconds saying for how long and how many times, then one when it works again."""

    def __init__(self, service: str, *, every: float = 60.0) -> None:
        self.service = service
        self.every = every
        self.failures = 0
        self._since = 0.0
        self._last_logged = 0.0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.failures += 1
        extra = {"service": self.service, "error": describe_failure(exc), "failures": self.failures}
        if self.failures == 1:
            self._since = self._last_logged = now
            log.error("worker step failed; retrying with back-off", extra=extra)
        elif now - self._last_logged >= self.every:
            self._last_logged = now
            log.error(
                "worker step still failing", extra={**extra, "failing_for_seconds": round(now - self._since)}
            )

    def succeeded(self) -> None:
        if self.failures:
            log.info(
                "worker step works again",
                extra={
                    "service": self.service,
                    "failures": self.failures,
                    "failed_for_seconds": round(time.monotonic() - self._since),
                },
            )
        self.failures = 0

    def backoff(self, poll_seconds: float, *, ceiling: float = 30.0) -> float:
        """How long to wait before the next try: ``poll_seconds`` doubling per consecutive
        failure, at most ``ceiling`` (a database outage is not hammered twice a second)."""
        if not self.failures:
            return poll_seconds
        wait: float = max(poll_seconds, 0.5) * 2 ** min(self.failures - 1, 10)
        return min(wait, max(ceiling, poll_seconds))
