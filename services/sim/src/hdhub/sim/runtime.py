"""The sim service as it plugs into a process: the stand-in central receiver (gRPC) and the
operator's switches for it (REST under /sim). Never deployed to production."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from fastapi import APIRouter

from hdhub.common.runtime import Service
from hdhub.sim.decisions import Decisions, SigningKey
from hdhub.sim.files import CentralFiles
from hdhub.sim.mycarenet import MyCareNet
from hdhub.sim.receiver import CentralKey, Receiver
from hdhub.sim.settings import SimSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class SimService(Service):
    name = "sim"
    grpc_service_names = ("hdhub.sim.v1.CentralReceiverService", "hdhub.sim.v1.SimControlService")

    def __init__(self, settings: SimSettings | None = None) -> None:
        super().__init__(settings or SimSettings(), migrations=MIGRATIONS)
        self.settings: SimSettings
        key = CentralKey(self.settings.resolved_key_file(), self.settings.central_key_bits)
        self.receiver = Receiver(self.db, key)
        self.central_files = CentralFiles(self.db, self.receiver, self.settings.resolved_files_folder())
        self.decisions = Decisions(
            self.db, SigningKey(self.settings.resolved_signing_key_file()), self.receiver
        )
        self.mycarenet = MyCareNet(self.settings.resolved_mycarenet_folder())

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.common.web import answering_for
        from hdhub.sim import api

        return answering_for(self, api.router)

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        from hdhub.proto.sim.v1 import central_pb2_grpc
        from hdhub.sim.grpc import CentralReceiverServicer, SimControlServicer

        servicer, control = CentralReceiverServicer(self), SimControlServicer(self)
        return [
            lambda server: central_pb2_grpc.add_CentralReceiverServiceServicer_to_server(servicer, server),
            lambda server: central_pb2_grpc.add_SimControlServiceServicer_to_server(control, server),
        ]

    async def work(self, stop: asyncio.Event) -> None:
        """The MyCareNet stand-in's gateway: collects the NIPPIN folder, answers TACKs."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.mycarenet.collect)
            except OSError:
                logging.getLogger("hdhub.sim").warning(
                    "the MyCareNet folder cannot be collected", exc_info=True
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.mycarenet_poll_seconds)
