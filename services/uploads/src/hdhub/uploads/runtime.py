"""The uploads service as it plugs into a process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter

from hdhub.common.runtime import Service, run_worker
from hdhub.uploads.service import Uploads
from hdhub.uploads.settings import UploadsSettings

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("hdhub.uploads")


class UploadsService(Service):
    name = "uploads"

    def __init__(self, settings: UploadsSettings | None = None) -> None:
        super().__init__(settings or UploadsSettings(), migrations=MIGRATIONS)
        self.settings: UploadsSettings
        self.uploads = Uploads(self.db, self.settings)

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.uploads import api

        return [api.build_router(self)]

    async def work(self, stop: asyncio.Event) -> None:
        """Process upload jobs one at a time; woken after a commit that enqueued one."""
        from hdhub.uploads.worker import process_jobs

        await run_worker(
            self.name,
            lambda: process_jobs(self.uploads),
            wake=self.uploads.wake,
            poll_seconds=self.settings.worker_poll_seconds,
            stop=stop,
        )
