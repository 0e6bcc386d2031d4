"""The registrations service as it plugs into a process: its rooms, wired once here.

- ``catalogue/``: DCD workbooks imported, their versions compiled (the ``engine/``);
- ``records/``: registrations one at a time: lifecycle, business key, history, codes;
- ``batches/``: rows from the Upload Center and intake, upserted in one transaction;
- ``delivery/``: submissions delivered to the central platform and handed to NIPPIN;
- ``hd4dp_v2/``: the HD4DP v2-compatible REST API over the same rooms.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from fastapi import APIRouter

from hdhub.common.objectstore import SealedStore, open_store
from hdhub.common.runtime import Service, run_worker
from hdhub.common.web import answering_for
from hdhub.registrations.catalogue.service import Catalogue
from hdhub.registrations.delivery.queue import DeliveryQueue
from hdhub.registrations.delivery.service import Deliveries
from hdhub.registrations.delivery.worker import Delivery
from hdhub.registrations.exports.service import Exports
from hdhub.registrations.records.service import Registrations
from hdhub.registrations.reuse import Reuse
from hdhub.registrations.settings import RegistrationsSettings

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("hdhub.registrations")


class RegistrationsService(Service):
    name = "registrations"
    grpc_service_names = ("hdhub.registrations.v1.RegistrationsService",)

    def __init__(self, settings: RegistrationsSettings | None = None) -> None:
        super().__init__(settings or RegistrationsSettings(), migrations=MIGRATIONS)
        self.settings: RegistrationsSettings
        self.catalogue = Catalogue(self.db)
        self.queue = DeliveryQueue(self.db, self.catalogue)
        self.registrations = Registrations(self.db, self.catalogue, self.queue, secret=self.settings.secret())
        self.delivery = Delivery(self.db, self.catalogue, self.settings)
        self.deliveries = Deliveries(self.db)
        self.reuse = Reuse(self.db, self.catalogue)
        self.exports = Exports(
            self.db,
            self.catalogue,
            SealedStore(
                open_store(self.settings.object_store_url), self.settings.envelope(), purpose="registrations"
            ),
            self.queue.wake,
            secret=self.settings.secret(),
            link_minutes=self.settings.export_link_minutes,
            batch_rows=self.settings.export_batch_rows,
            retention_days=self.settings.export_retention_days,
        )

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.registrations.catalogue import api as catalogue
        from hdhub.registrations.delivery import api as delivery
        from hdhub.registrations.exports import api as exports
        from hdhub.registrations.fhir import api as fhir
        from hdhub.registrations.hd4dp_v2 import api as hd4dp_v2
        from hdhub.registrations.records import api as records

        return answering_for(
            self,
            catalogue.router,
            records.router,
            delivery.router,
            exports.router,
            hd4dp_v2.router,
            fhir.router,
        )

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
        await self.reuse.refresh()  # data reuse: every organisation's views follow the catalogue

    async def work_step(self) -> int:
        """Deliveries and confirmations, hand-overs to NIPPIN (delivery/handoff.py), one
        export (exports/), and the central platform's decisions when their poll is due
        (delivery/decisions.py)."""
        return (
            await self.delivery.process_jobs()
            + await self.queue.handoff.process_jobs()
            + await self.exports.process_jobs()
            + await self.delivery.decisions.poll_if_due()
        )

    async def work(self, stop: asyncio.Event) -> None:
        """Deliver submissions to the central platform and follow their confirmation
        (delivery/); woken at once after a commit that enqueued work, here or (with
        Redis) in any other process, else every poll."""
        await run_worker(
            self.name,
            self.work_step,
            wake=self.queue.wake,
            poll_seconds=self.settings.worker_poll_seconds,
            stop=stop,
        )
