"""How a service plugs into a process: its REST routers, its gRPC servicers, its
database, and its background worker. ``hdhub run all`` starts every service in one
process; ``hdhub run SERVICE`` starts one. The code path is the same either way.
"""

from __future__ import annotations

import asyncio
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
    for a wake-up (or ``poll_seconds``); a failing step is logged and retried, never fatal.

    A step is not traced (polling that finds nothing would be a trace per poll); the jobs
    it finds are, each continuing the trace that enqueued it (``telemetry.jobs_span``)."""
    from hdhub.common.telemetry import quiet, worker_context

    try:
        while not stop.is_set():
            try:
                with worker_context(name), quiet():
                    done = await step()
            except Exception:
                log.exception("worker step failed", extra={"service": name})
                done = 0
            if not done:
                await wake.wait(poll_seconds)
    finally:
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

    async def domain_metrics(self) -> None:
        """Set this service's domain gauges from its database (before a scrape, at most
        every 15 s; see :func:`hdhub.common.metrics.register_domain_metrics`)."""
        return None

    async def start_grpc(self) -> None:
        if not self.grpc_registrations():
            return
        from hdhub.common.grpc import start_server

        bind = self.settings.resolved_grpc_bind()
        self._grpc_server = await start_server(
            service=self.name, bind=bind, register=self.grpc_registrations(), service_names=self.grpc_service_names
        )
        log.info("gRPC serving", extra={"service": self.name, "bind": bind})

    async def stop(self) -> None:
        if self._grpc_server is not None:
            from hdhub.common.grpc import stop_server

            await stop_server(self._grpc_server)
        await self.db.dispose()

    def openapi_tags(self) -> list[dict[str, Any]]:
        return []
