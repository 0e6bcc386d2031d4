"""The uploads service as it plugs into a process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from fastapi import APIRouter

from hdhub.common.runtime import Service, run_worker
from hdhub.uploads.service import Uploads
from hdhub.uploads.settings import UploadsSettings

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("hdhub.uploads")
#: The organisations identity seeds for the demo (hdhub.identity.seed).
DEMO_ORGANISATIONS = ("az-demo", "lab-demo")


class UploadsService(Service):
    name = "uploads"
    grpc_service_names = ("hdhub.uploads.v1.UploadsService",)

    def __init__(self, settings: UploadsSettings | None = None) -> None:
        super().__init__(settings or UploadsSettings(), migrations=MIGRATIONS)
        self.settings: UploadsSettings
        self.uploads = Uploads(self.db, self.settings)
        # Opened now, so that production without an object store refuses to start.
        self.uploads.plain_store  # noqa: B018

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.common.web import answering_for
        from hdhub.uploads import api

        return answering_for(self, api.router)

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        from hdhub.proto.uploads.v1 import uploads_pb2_grpc
        from hdhub.uploads.grpc import UploadsServicer

        servicer = UploadsServicer(self)
        return [lambda server: uploads_pb2_grpc.add_UploadsServiceServicer_to_server(servicer, server)]

    async def domain_metrics(self) -> None:
        from hdhub.uploads import metrics

        await metrics.refresh(self)

    async def seed(self) -> None:
        """On embedded defaults, a drop folder for each demo organisation (identity seeds
        them), so `make run` shows where to drop a file."""
        from hdhub.common.objectstore import FolderStore
        from hdhub.uploads.dropfolder import drop_area

        store, _ = drop_area(self.uploads)
        if isinstance(store, FolderStore):
            for org in DEMO_ORGANISATIONS:
                (store.root / org).mkdir(parents=True, exist_ok=True)
            log.info("drop folders ready", extra={"path": str(store.root)})

    async def work(self, stop: asyncio.Event) -> None:
        """Process upload jobs one at a time (woken after a commit that enqueued one) and,
        beside it, watch the drop folders."""
        from hdhub.uploads import dropfolder
        from hdhub.uploads.worker import process_jobs

        uploads = run_worker(
            self.name,
            lambda: process_jobs(self.uploads),
            wake=self.uploads.wake,
            poll_seconds=self.settings.worker_poll_seconds,
            stop=stop,
        )
        if not self.settings.dropfolder_enabled:
            await uploads
            return
        await asyncio.gather(uploads, dropfolder.run(dropfolder.DropFolder(self.uploads), stop))
