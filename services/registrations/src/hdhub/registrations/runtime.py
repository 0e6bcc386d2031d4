"""The registrations service as it plugs into a process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from fastapi import APIRouter
from sqlalchemy import select

from hdhub.common.errors import not_found
from hdhub.common.runtime import Service, run_worker
from hdhub.registrations.catalogue import Catalogue
from hdhub.registrations.delivery import Delivery
from hdhub.registrations.service import Registrations
from hdhub.registrations.settings import RegistrationsSettings
from hdhub.registrations.store import Registration

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("hdhub.registrations")


class RegistrationsService(Service):
    name = "registrations"
    grpc_service_names = ("hdhub.registrations.v1.RegistrationsService",)

    def __init__(self, settings: RegistrationsSettings | None = None) -> None:
        super().__init__(settings or RegistrationsSettings(), migrations=MIGRATIONS)
        self.settings: RegistrationsSettings
        self.catalogue = Catalogue(self.db)
        self.registrations = Registrations(self.db, self.catalogue, secret=self.settings.secret())
        self.delivery = Delivery(self.registrations, self.settings)
        self.registrations.delivery = self.delivery

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.registrations import api, proxy_api

        return [api.build_router(self), proxy_api.build_router(self)]

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        from hdhub.proto.registrations.v1 import registrations_pb2_grpc
        from hdhub.registrations.grpc import RegistrationsServicer

        servicer = RegistrationsServicer(self)
        return [
            lambda server: registrations_pb2_grpc.add_RegistrationsServiceServicer_to_server(servicer, server)
        ]

    async def domain_metrics(self) -> None:
        from hdhub.registrations import metrics

        await metrics.refresh(self)

    async def prepare(self) -> None:
        if self.settings.import_shipped_dcds:
            new = await self.catalogue.import_shipped()
            if new:
                log.info("imported shipped DCD workbooks", extra={"count": new})

    async def organisation_of(self, registration_id: str) -> str:
        """The organisation owning a registration (for operator actions across organisations)."""
        async with self.db.system_session() as session:
            org = (
                await session.execute(
                    select(Registration.organisation_id).where(Registration.id == registration_id)
                )
            ).scalar_one_or_none()
        if org is None:
            raise not_found("Registration")
        return org

    async def work_step(self) -> int:
        """Deliveries and confirmations, then hand-overs to NIPPIN (handoff.py)."""
        return int(await self.registrations.process_jobs()) + await self.registrations.handoff.process_jobs()

    async def work(self, stop: asyncio.Event) -> None:
        """Deliver submissions to the central platform and follow their confirmation
        (delivery.py); woken at once after a commit that enqueued work, here or (with
        Redis) in any other process, else every poll."""
        await run_worker(
            self.name,
            self.work_step,
            wake=self.registrations.wake,
            poll_seconds=self.settings.worker_poll_seconds,
            stop=stop,
        )
