"""Parked jobs for the operator (hdhub.common.jobs): grouped by organisation, kind and error
type without an error's free text; a group retried (queued, attempts 0, due now, no lease)
or archived (never claimed, never purged, listed apart); a reason is always required."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import DeclarativeBase

from hdhub.common.db import TYPE_MAP, Database, utcnow
from hdhub.common.errors import Problem
from hdhub.common.jobs import ARCHIVED, PARKED, QUEUED, JobColumns, JobQueue, error_type


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

        name = f"hdhub_parked_{uuid.uuid4().hex[:10]}"
        database = Database(create_database(name))
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield JobQueue(database, Job)
    await database.dispose()
    if name:
        from tests.support.stack import drop_database

        drop_database(name)


@pytest.mark.parametrize(
    ("last_error", "expected"),
    [
        ("TimeoutError", "TimeoutError"),
        ("httpx.ConnectError: host 10.0.0.1 refused", "httpx.ConnectError"),
        ("refused: 85073003328 Vandersmissen", "refused"),
        ("the central platform said no", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_the_error_type_is_a_name_or_other(last_error: str | None, expected: str) -> None:
    assert error_type(last_error) == expected


async def park(q: JobQueue, org: str, kind: str, error: str, n: int = 1) -> None:
    async with q.db.system_session() as session:
        await q.enqueue_many(
            session,
            kind,
            [
                {"organisation_id": org, "subject_id": f"{kind}-{i}", "status": PARKED, "last_error": error}
                for i in range(n)
            ],
        )
        await session.execute(update(Job).where(Job.kind == kind).values(attempts=8, lease_until=utcnow()))


async def test_a_group_is_retried_and_another_archived(queue: JobQueue) -> None:
    await park(queue, "org", "sync", "TimeoutError: 10.0.0.1", n=2)
    await park(queue, "org", "sync2", "ValueError")
    await park(queue, "other", "sync3", "TimeoutError")
    groups = await queue.parked_groups(organisation_id="org")
    assert [(g.kind, g.error_type, g.jobs, g.max_attempts) for g in groups] == [
        ("sync", "TimeoutError", 2, 8),
        ("sync2", "ValueError", 1, 8),
    ]
    for reason in ("", "  ", "ab", " ab ", "x" * 501):
        with pytest.raises(Problem) as refused:
            await queue.retry_parked(organisation_id="org", reason=reason)
        assert [e.field for e in refused.value.errors] == ["reason"]
    assert (
        await queue.retry_parked(organisation_id="org", reason="okay", kind="sync", error_type="Other") == 0
    )
    now = utcnow()
    assert await queue.retry_parked(organisation_id="org", reason=" fixed ", kind="sync", now=now) == 2
    async with queue.db.system_session() as session:
        rows = (await session.execute(select(Job).where(Job.kind == "sync"))).scalars().all()
        assert {(j.status, j.attempts, j.lease_until, j.run_after) for j in rows} == {(QUEUED, 0, None, now)}

    assert await queue.archive_parked(organisation_id="org", reason="known bad", error_type="ValueError") == 1
    assert [g.kind for g in await queue.parked_groups(organisation_id=None)] == ["sync3"]
    archived = await queue.parked_groups(organisation_id="org", archived=True)
    assert [(g.kind, g.jobs) for g in archived] == [("sync2", 1)]
    # Never claimed, never purged.
    assert not await queue.claim(["sync2"], now=utcnow() + timedelta(days=400))
    await queue.purge(older_than=timedelta(0), now=utcnow() + timedelta(days=400))
    async with queue.db.system_session() as session:
        assert (await session.execute(select(Job.status).where(Job.kind == "sync2"))).scalar_one() == ARCHIVED
    # Retried from the archived ones.
    assert await queue.retry_parked(organisation_id="org", reason="fixed now", archived=True) == 1
    assert not await queue.parked_groups(organisation_id="org", archived=True)


async def test_refused_kinds_are_named_or_left_out(queue: JobQueue) -> None:
    await park(queue, "org", "deliver", "refused")
    await park(queue, "org", "export", "TimeoutError")
    refused = {"deliver": "Retry the deliveries instead."}
    for act in (queue.retry_parked, queue.archive_parked):
        with pytest.raises(Problem) as no:
            await act(organisation_id="org", reason="because", kind="deliver", refused_kinds=refused)
        assert [(e.field, e.message) for e in no.value.errors] == [("kind", "Retry the deliveries instead.")]
    assert await queue.archive_parked(organisation_id="org", reason="because", refused_kinds=refused) == 1
    assert [g.kind for g in await queue.parked_groups(organisation_id="org")] == ["deliver"]


@pytest.mark.parametrize("reason", ["ab\x07\x1b[31mcd", "ok \u202egnp.exe reason", "zero\u200bwidth"])
def test_a_reason_with_control_or_direction_characters_is_refused(reason: str) -> None:
    from hdhub.common.errors import Problem
    from hdhub.common.jobs import check_reason

    with pytest.raises(Problem) as refused:
        check_reason(reason)
    assert [(e.field, e.rule) for e in refused.value.errors] == [("reason", "characters")]
    assert check_reason("  line one\nline two\twith a tab  ") == "line one\nline two\twith a tab"
