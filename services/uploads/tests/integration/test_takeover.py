"""A worker that dies mid-upload is taken over once its lease runs out; the batch it was
storing is replayed by batch id, so no row is lost or stored twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update

from hdhub.common.db import utcnow
from hdhub.uploads.store import Job
from hdhub.uploads.worker import Abandon
from services.uploads.tests.integration.test_uploads_api import HIS, csv_bytes, finished, report, upload
from tests.support.samples import record
from tests.support.stack import Stack


async def test_a_dying_worker_is_taken_over_without_loss_or_double_storage(stack: Stack) -> None:
    service = stack.service("uploads")
    uploads = service.uploads
    died = asyncio.Event()

    def die_after_storing_the_first_batch(upload_id: str, phase: str, batch: int) -> None:
        if phase == "storing" and batch == 1 and not died.is_set():
            died.set()
            raise Abandon()  # after UpsertBatch of batch 1, before its progress is saved

    uploads.settings.batch_rows = 2
    uploads.after_batch = die_after_storing_the_first_batch
    try:
        rows = [record() for _ in range(5)]
        created = await upload(stack, csv_bytes(rows), autosubmit=True)
        await asyncio.wait_for(died.wait(), 20)
        got = (
            await stack.client.get(f"/api/v1/uploads/{created['id']}", headers=await stack.headers(HIS))
        ).json()
        assert got["status"] == "processing" and got["counts"]["created"] == 2  # batch 0 saved, batch 1 not
        async with uploads.db.system_session() as session:  # the lease runs out
            await session.execute(
                update(Job)
                .where(Job.subject_id == created["id"])
                .values(lease_until=utcnow() - timedelta(seconds=1))
            )
        uploads.wake.notify()
        done = await finished(stack, created["id"])
    finally:
        uploads.settings.batch_rows = 2000
        uploads.after_batch = None
    assert done["status"] == "done" and done["counts"]["created"] == 5 and done["counts"]["rows_read"] == 5, (
        done
    )
    success = await report(stack, created["id"], "success")
    assert [s["line"] for s in success] == ["2", "3", "4", "5", "6"]
    assert len({s["registration_id"] for s in success}) == 5
