"""The intake service as it plugs into a process: REST (/api/v1/files), gRPC, the SFTP
listener, and the worker (linking, relinking, the daily load)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from fastapi import APIRouter

from hdhub.common.objectstore import SealedStore, open_store
from hdhub.common.runtime import Service, run_worker
from hdhub.intake.files import Files
from hdhub.intake.settings import IntakeSettings

if TYPE_CHECKING:
    from hdhub.intake.sftp import SftpEdge

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("hdhub.intake")


class IntakeService(Service):
    name = "intake"
    grpc_service_names = ("hdhub.intake.v1.IntakeService",)

    def __init__(self, settings: IntakeSettings | None = None) -> None:
        super().__init__(settings or IntakeSettings(), migrations=MIGRATIONS)
        self.settings: IntakeSettings
        # Received files are encrypted at rest: refused ones may carry patient data.
        self.objects = SealedStore(
            open_store(self.settings.object_store_url), self.settings.envelope(), purpose="intake"
        )
        self.files = Files(self.db, self.objects, self.settings)
        self._sftp: SftpEdge | None = None

    @property
    def sftp_port(self) -> int | None:
        """The port SFTP listens on (a free one in tests), once started."""
        return self._sftp.get_port() if self._sftp is not None else None

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.common.web import answering_for
        from hdhub.intake import api

        return answering_for(self, api.router)

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        from hdhub.intake.grpc import IntakeServicer
        from hdhub.proto.intake.v1 import intake_pb2_grpc

        servicer = IntakeServicer(self)
        return [lambda server: intake_pb2_grpc.add_IntakeServiceServicer_to_server(servicer, server)]

    async def domain_metrics(self) -> None:
        from hdhub.intake.metrics import refresh

        await refresh(self)

    async def start_grpc(self) -> None:
        """The SFTP edge starts with the gRPC edge: both are what `hdhub run` serves (and
        `hdhub worker`, which serves neither, does not listen on 2222)."""
        await super().start_grpc()
        from hdhub.intake.sftp import host_key, start_sftp

        s = self.settings
        port = s.resolved_sftp_port()
        key = host_key(s.host_key_path(), s.sftp_host_key)
        try:
            self._sftp = await start_sftp(self.files, host=s.sftp_host, port=port, key=key)
        except OSError as exc:
            raise RuntimeError(
                f"the SFTP server cannot listen on {s.sftp_host}:{port} ({exc.strerror}); "
                "set HDHUB_INTAKE_SFTP_PORT (and HDHUB_INTAKE_SFTP_HOST)"
            ) from exc
        log.info("SFTP serving", extra={"service": self.name, "bind": f"{s.sftp_host}:{self.sftp_port}"})

    async def work(self, stop: asyncio.Event) -> None:
        from hdhub.intake.worker import process_jobs

        await run_worker(
            self.name,
            lambda: process_jobs(self.files),
            wake=self.files.wake,
            poll_seconds=self.settings.worker_poll_seconds,
            stop=stop,
        )

    async def stop(self) -> None:
        if self._sftp is not None:
            await self._sftp.drain(self.settings.sftp_drain_seconds)
            self._sftp = None
        await super().stop()
        await self.objects.close()
