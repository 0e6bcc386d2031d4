"""The nippin service as it plugs into a process: REST for the NIPPIN Manager
(/api/v1/nippin), gRPC for registrations, and the worker (sending, TACKs, the nightly
report, exports, purge)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from fastapi import APIRouter

from hdhub.common.objectstore import SealedStore, open_store
from hdhub.common.runtime import Service, run_worker
from hdhub.nippin.service import Messages
from hdhub.nippin.settings import NippinSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class NippinService(Service):
    name = "nippin"
    grpc_service_names = ("hdhub.nippin.v1.NippinService",)

    def __init__(self, settings: NippinSettings | None = None) -> None:
        super().__init__(settings or NippinSettings(), migrations=MIGRATIONS)
        self.settings: NippinSettings
        envelope = self.settings.envelope()
        self.messages = Messages(self.db, self.settings, envelope)
        # Exports may hold SSINs: encrypted at rest like everything else of nippin's.
        self.objects = SealedStore(open_store(self.settings.object_store_url), envelope, purpose="nippin")

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.common.web import answering_for
        from hdhub.nippin import api

        return answering_for(self, api.router)

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        from hdhub.nippin.grpc import NippinServicer
        from hdhub.proto.nippin.v1 import nippin_pb2_grpc

        servicer = NippinServicer(self)
        return [lambda server: nippin_pb2_grpc.add_NippinServiceServicer_to_server(servicer, server)]

    async def domain_metrics(self) -> None:
        from hdhub.nippin.metrics import refresh

        await refresh(self)

    async def work(self, stop: asyncio.Event) -> None:
        from hdhub.nippin.worker import process_jobs

        await run_worker(
            self.name,
            lambda: process_jobs(self),
            wake=self.messages.wake,
            poll_seconds=self.settings.worker_poll_seconds,
            stop=stop,
        )

    async def stop(self) -> None:
        await super().stop()
        await self.objects.close()
