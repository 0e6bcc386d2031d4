"""Finished jobs are deleted once past the installation's retention; pending, running and
parked ones never are. Jobs are marked done with their ids as one array on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import DeclarativeBase

from hdhub.common import jobs as jobs_module
from hdhub.common.db import TYPE_MAP, Database, utcnow
from hdhub.common.jobs import DONE, PARKED, QUEUED, JobColumns, JobQueue


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Job(JobColumns, Base):
    __tablename__ = "jobs"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobQueue]:
    if request.param == "sqlite":
        database, name = Database(f"sqlite+aiosqlite:///{tmp_path / 'j.db'}"), None
    else:
        from tests.support.stack import create_database

        name = f"hdhub_jobs_{uuid.uuid4().hex[:10]}"
        database = Database(create_database(name))
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield JobQueue(database, Job)
    await database.dispose()
    if name:
        from tests.support.stack import drop_database

        drop_database(name)


async def statuses(queue: JobQueue) -> dict[str, str]:
    async with queue.db.system_session() as session:
        return {j.subject_id: j.status for j in (await session.execute(select(Job))).scalars()}


async def test_finished_jobs_past_retention_are_deleted_and_nothing_else(queue: JobQueue) -> None:
    async with queue.db.system_session() as session:
        await queue.enqueue_many(
            session, "k", [{"subject_id": s} for s in ("old", "recent", "pending", "parked")]
        )
    claimed = {j.subject_id: j.id for j in await queue.claim(["k"], limit=10)}
    async with queue.db.system_session() as session:
        await queue.finish_many(session, [claimed["old"], claimed["recent"]])
        await session.execute(update(Job).where(Job.subject_id == "parked").values(status=PARKED))
        await session.execute(update(Job).where(Job.subject_id == "pending").values(status=QUEUED))
        await session.execute(
            update(Job).where(Job.subject_id == "old").values(finished_at=utcnow() - timedelta(days=8))
        )
    assert await statuses(queue) == {"old": DONE, "recent": DONE, "pending": QUEUED, "parked": PARKED}
    assert await queue.purge(older_than=timedelta(days=7)) == 1
    assert await statuses(queue) == {"recent": DONE, "pending": QUEUED, "parked": PARKED}
    assert await queue.purge(older_than=timedelta(days=7)) == 0


async def test_a_worker_claiming_purges_now_and_then(
    queue: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with queue.db.system_session() as session:
        await queue.enqueue_many(session, "k", [{"subject_id": "old"}])
    [job] = await queue.claim(["k"])  # the first claim's housekeeping found nothing yet
    async with queue.db.system_session() as session:
        await queue.finish_many(session, [job.id])
        await session.execute(update(Job).values(finished_at=utcnow() - timedelta(days=30)))
    assert await queue.claim(["k"]) == [] and await statuses(queue) == {"old": DONE}  # not due again yet
    monkeypatch.setattr(jobs_module, "PURGE_EVERY", 0.0)
    queue._next_purge = 0.0
    assert await queue.claim(["k"]) == []
    assert await statuses(queue) == {}


async def test_the_claim_built_once_takes_each_poll_its_own_moment_worker_and_lease(queue: JobQueue) -> None:
    """The claim's statement is built once per kinds and limit (an idle platform spent most
    of its CPU building it at every poll); its moment, worker and lease are each poll's:
    a job due later is not taken early, a lease that ran out is taken over by another
    worker, and the claimed jobs read as the rows say."""
    async with queue.db.system_session() as session:
        await queue.enqueue_many(
            session,
            "k",
            [
                {"subject_id": "now", "payload": {"n": 1}},
                {"subject_id": "later", "run_after": utcnow() + timedelta(hours=1)},
            ],
        )
    now = utcnow()
    [first] = await queue.claim(["k"], worker="w1", now=now)
    assert (first.subject_id, first.payload, first.worker, first.attempts) == ("now", {"n": 1}, "w1", 1)
    assert first.lease_until == now + queue.lease and first.run_after.tzinfo is not None
    assert await queue.claim(["k"], worker="w2", now=now + timedelta(seconds=1)) == []
    later = now + queue.lease + timedelta(seconds=1)  # w1's lease ran out; "later" is not due yet
    [taken] = await queue.claim(["k"], worker="w2", now=later)
    assert (taken.id, taken.worker, taken.attempts) == (first.id, "w2", 2)
    async with queue.db.system_session() as session:
        await queue.finish(session, taken.id)
    [due] = await queue.claim(["k"], worker="w3", now=now + timedelta(hours=2))
    assert due.subject_id == "later" and due.worker == "w3"
    assert len(queue._claims) == 1
