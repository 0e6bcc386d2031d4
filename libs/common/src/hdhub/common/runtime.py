"""How a service plugs into a process: its REST routers, its gRPC servicers, its
database, and its background worker. ``hdhub run all`` starts every service in one
process; ``hdhub run SERVICE`` starts one. The code path is the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from fastapi import APIRouter

from hdhub.common.config import ServiceSettings
from hdhub.common.db import Database
from hdhub.common.wakeup import Wakeup

log = logging.getLogger("hdhub.runtime")


async def run_worker(
    name: str, step: Callable[[], Awaitable[int]], *, wake: Wakeup, poll_seconds: float, stop: asyncio.Event
) -> None:
    """The loop every service worker runs: do a step of work; when it found nothing, wait
    for a wake-up (or ``poll_seconds``). A failing step (its database down, say) is retried
    with back-off, never fatal, and logged once, then once a minute, then when it recovers
    (:class:`hdhub.common.health.FailureLog`). Each round is a heartbeat: the worker's
    liveness and ``hdhub_worker_heartbeat_timestamp_seconds``.

    A step is not traced (polling that finds nothing would be a trace per poll); the jobs
    it finds are, each continuing the trace that enqueued it (``telemetry.jobs_span``)."""
    from hdhub.common.health import FailureLog
    from hdhub.common.metrics import heartbeat
    from hdhub.common.telemetry import quiet, worker_context

    failures = FailureLog(name)

    async def interrupt_on_stop() -> None:  # a wait (poll or back-off) ends when told to stop
        await stop.wait()
        wake.interrupt()

    stopping = asyncio.create_task(interrupt_on_stop(), name=f"{name}-stop")
    try:
        while not stop.is_set():
            heartbeat(name)
            try:
                with worker_context(name), quiet():
                    done = await step()
            except Exception as exc:
                failures.failed(exc)
                await wake.wait(failures.backoff(poll_seconds))
                continue
            failures.succeeded()
            if not done:
                await wake.wait(poll_seconds)
    finally:
        stopping.cancel()
        await wake.close()


class Service:
    """Base for every hdhub service. Subclasses fill in the hooks."""

    name: str = "service"
    #: Full gRPC service names, for health and reflection.
    grpc_service_names: Sequence[str] = ()

    def __init__(self, settings: ServiceSettings, *, migrations: Path | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.resolved_database_url(), migrations=migrations)
        self._grpc_server: grpc.aio.Server | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._schema_usable = False
        self._schema_report = ""
        from hdhub.common.metrics import register_db_pool

        register_db_pool(self.name, self.db)

    def routers(self) -> Sequence[APIRouter]:
        """REST routers this service contributes to the HTTP edge."""
        return ()

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        """Functions adding this service's servicers to a gRPC server."""
        return ()

    async def prepare(self) -> None:
        """Anything to do after migrations and before serving (caches, seeding)."""

    async def work(self, stop: asyncio.Event) -> None:
        """The background worker loop; returns when ``stop`` is set. Default: nothing."""
        await stop.wait()

    def has_worker(self) -> bool:
        """Whether this service has a worker loop (:meth:`work` is its own)."""
        return type(self).work is not Service.work

    async def domain_metrics(self) -> None:
        """Set this service's domain gauges from its database (before a scrape, at most
        every 15 s; see :func:`hdhub.common.metrics.register_domain_metrics`)."""
        return None

    async def readiness(self) -> dict[str, str]:
        """Whether this service can serve: its database answers and holds the schema this
        code expects ("ok"), or why not; keyed by the service's name, as ``/readyz`` lists
        its checks."""
        from hdhub.common.health import OK, database_state

        state = await database_state(self.db)
        return {self.name: await self.schema_state() if state == OK else state}

    async def schema_state(self) -> str:
        """ "ok" once the database's schema is the one this code expects (or ahead of it: a
        newer release migrated, and migrations expand before they contract), else what was
        found and what is expected. Logged when it changes; once usable, never asked again."""
        from sqlalchemy.exc import SQLAlchemyError

        from hdhub.common.health import OK, READINESS_TIMEOUT_SECONDS, describe_failure
        from hdhub.common.telemetry import quiet

        if self._schema_usable:
            return OK
        try:
            with quiet():
                async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                    schema = await self.db.schema()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            return self._report(f"database: {describe_failure(exc)}", {"service": self.name})
        extra = {"service": self.name, "found": sorted(schema.found), "expected": sorted(schema.expected)}
        if schema.usable:
            self._schema_usable = True
            if schema.ahead:
                log.info(
                    f"{self.name}: database schema at {schema.describe()}; newer, and compatible", extra=extra
                )
            elif self._schema_report:
                log.info(f"{self.name}: database schema now at {schema.describe()}; ready", extra=extra)
            return OK
        return self._report(
            f"schema at {schema.describe()}; not ready until `hdhub migrate {self.name}` has run", extra
        )

    def _report(self, state: str, extra: dict[str, Any]) -> str:
        """A reason not to be ready, logged once until it changes (the start waits on it)."""
        if state != self._schema_report:
            log.warning(f"{self.name}: {state}", extra=extra)
            self._schema_report = state
        return state

    async def start_grpc(self) -> None:
        if not self.grpc_registrations():
            return
        from hdhub.common.grpc import follow_readiness, start_server

        bind = self.settings.resolved_grpc_bind()
        self._grpc_server = await start_server(
            service=self.name,
            bind=bind,
            register=self.grpc_registrations(),
            service_names=self.grpc_service_names,
        )
        self._health_task = asyncio.create_task(
            follow_readiness(self._grpc_server, self.readiness), name=f"{self.name}-grpc-health"
        )
        log.info("gRPC serving", extra={"service": self.name, "bind": bind})

    async def stop(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        if self._grpc_server is not None:
            from hdhub.common.grpc import stop_server

            await stop_server(self._grpc_server)
        await self.db.dispose()
