"""The services one process can run, and how `hdhub run` composes them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from fastapi import FastAPI

from hdhub.common.health import OK, describe_failure
from hdhub.common.heap import settle
from hdhub.common.runtime import Service
from hdhub.common.web import create_app

log = logging.getLogger("hdhub.cli")

#: How often a process waiting for its schema (not migrated yet) looks again.
SCHEMA_POLL_SECONDS = 5.0
WORKER_GRACE_SECONDS = 10.0


def make_service(name: str) -> Service:
    if name == "identity":
        from hdhub.identity.runtime import IdentityService

        return IdentityService()
    if name == "registrations":
        from hdhub.registrations.runtime import RegistrationsService

        return RegistrationsService()
    if name == "uploads":
        from hdhub.uploads.runtime import UploadsService

        return UploadsService()
    if name == "portal":
        from hdhub.portal.runtime import PortalService

        return PortalService()
    if name == "intake":
        from hdhub.intake.runtime import IntakeService

        return IntakeService()
    if name == "nippin":
        from hdhub.nippin.runtime import NippinService

        return NippinService()
    if name == "pseudonymisation":
        from hdhub.pseudonymisation.runtime import PseudonymisationService

        return PseudonymisationService()
    if name == "sim":
        from hdhub.sim.runtime import SimService

        return SimService()
    raise KeyError(name)


class DemoDataRefused(RuntimeError):
    """Asked to seed demo data in production."""


class Platform:
    """Some services in one process: migrations, gRPC servers, REST app, workers."""

    def __init__(
        self, names: Sequence[str], *, migrate: bool, seed: bool, workers: bool, settle: bool = False
    ) -> None:
        self.services = [make_service(n) for n in names]
        self.migrate, self.seed, self.workers = migrate, seed, workers
        # A process of its own (`hdhub run`): what start-up built is set aside from the
        # collector once it is done (hdhub.common.heap). Never in a test's process.
        self.settle = settle
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._starting: asyncio.Task[None] | None = None

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    async def start(self) -> None:
        """Migrate (when asked), then serve. A database whose schema is behind this code (not
        migrated yet) or unreachable does not stop the process: it serves liveness and a
        readiness that says why, and goes on once the schema is there."""
        for s in self.services:
            if self.migrate:
                await s.db.migrate()
        if await self.schemas_usable():
            await self._serve(grpc=True)
            return
        for s in self.services:
            await s.start_grpc()  # liveness answers; readiness follows the schema
        self._starting = asyncio.create_task(self._serve_once_migrated(), name="startup")

    async def schemas_usable(self) -> bool:
        """Whether every service's database holds the schema its code expects (each logs
        what it found otherwise)."""
        states = await asyncio.gather(*(s.schema_state() for s in self.services))
        return all(state == OK for state in states)

    async def wait_for_schemas(self) -> bool:
        """Until every schema is usable (True) or the process is told to stop (False)."""
        while not await self.schemas_usable():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), SCHEMA_POLL_SECONDS)
            if self._stop.is_set():
                return False
        return True

    async def _serve_once_migrated(self) -> None:
        if not await self.wait_for_schemas():
            return
        try:
            await self._serve(grpc=False)
        except Exception:
            log.exception("start failed after the schema came")
            raise

    async def _serve(self, *, grpc: bool) -> None:
        for s in self.services:
            await s.prepare()
        if self.seed:
            await self.seed_demo()
        self.register_metrics()
        if grpc:
            for s in self.services:
                await s.start_grpc()
        if self.workers:
            for s in self.services:
                self._tasks.append(asyncio.create_task(s.work(self._stop), name=f"{s.name}-worker"))
        if self.settle:
            settle()

    def register_metrics(self) -> None:
        """Each service's domain gauges, refreshed before a scrape of this process."""
        from hdhub.common.metrics import register_domain_metrics

        for s in self.services:
            register_domain_metrics(s.name, _untraced(s.domain_metrics))

    async def seed_demo(self) -> None:
        """Load the demo organisations, accounts, clients and certificates (README): known
        passwords and secrets, so never in production."""
        from hdhub.common.config import platform

        if platform().environment == "production":
            raise DemoDataRefused("demo data (known passwords and secrets) is never loaded in production")
        for s in self.services:
            seed = getattr(s, "seed", None)
            if seed is not None:
                await seed()

    async def stop(self) -> None:
        self._stop.set()
        if self._starting is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._starting, timeout=10)
        # Workers end their wait at once; a job in flight gets WORKER_GRACE_SECONDS (all
        # workers together), then is cancelled: its claim lapses and another run takes it.
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=WORKER_GRACE_SECONDS)
            for t in late:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        from hdhub.common.grpc import close_channels

        await close_channels()
        for s in self.services:
            await s.stop()

    async def readiness(self) -> dict[str, str]:
        """Each service's readiness checks (its database answers with the expected schema),
        side by side; while the start waits on a schema, what it waits for."""
        checks: dict[str, str] = {}
        for states in await asyncio.gather(*(s.readiness() for s in self.services)):
            checks.update(states)
        if self._starting is not None and not self._starting.done():
            checks["startup"] = "waiting for the database schema"
        elif self._starting is not None and self._starting.exception() is not None:
            checks["startup"] = f"failed: {describe_failure(self._starting.exception())}"  # type: ignore[arg-type]
        return checks

    def app(self) -> FastAPI:
        routers = [r for s in self.services for r in s.routers()]
        single = len(self.services) == 1
        app = create_app(
            title=f"hdhub {self.services[0].name}" if single else "hdhub",
            service=self.services[0].name if single else "hdhub",
            readiness=self.readiness,
            routers=routers,
            description="Deliver hospital and laboratory data to health registries. "
            "Problems are answered as application/problem+json (RFC 9457).",
        )

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app.router.lifespan_context = lifespan
        return app


def _untraced(refresh: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``refresh`` without traces: every scrape would otherwise start one per statement."""
    from hdhub.common.telemetry import quiet

    async def run() -> None:
        with quiet():
            await refresh()

    return run
