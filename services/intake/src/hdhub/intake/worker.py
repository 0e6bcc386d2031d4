"""Intake's background work, as durable jobs (``hdhub.common.jobs``):

- ``link``: one file delivered and accepted, linked to its registrations;
- ``relink``: every ``relink_seconds``, each accepted but unmatched file is linked again;
- ``daily-load``: once per UTC day from ``daily_load_hour``, accepted and linked files
  leave the drop area (see :meth:`Files.load`);
- ``purge-refused``: every hour, refused files past ``refused_retention_days`` lose their
  bytes (see :meth:`Files.purge_refused`).

Scheduled runs are enqueued with a row in ``scheduled_runs`` keyed by (kind, slot) in the
same transaction: two workers racing to schedule the same run make one job between them,
and the job itself is claimed by exactly one worker (leases, SKIP LOCKED).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hdhub.common.db import utcnow
from hdhub.common.telemetry import job_span
from hdhub.intake.files import LINK_JOB, Files
from hdhub.intake.linking import link
from hdhub.intake.store import ACCEPTED, IntakeFile, ScheduledRun

log = logging.getLogger("hdhub.intake.worker")

RELINK_JOB, LOAD_JOB, PURGE_JOB = "relink", "daily-load", "purge-refused"
KINDS = [LINK_JOB, RELINK_JOB, LOAD_JOB, PURGE_JOB]


async def schedule(files: Files, kind: str, slot: str) -> bool:
    """Enqueue the run ``kind`` for ``slot`` unless someone did already; True if we did."""
    try:
        async with files.db.system_session() as session:
            if await session.get(ScheduledRun, (kind, slot)) is not None:
                return False
            session.add(ScheduledRun(kind=kind, slot=slot))
            await session.flush()
            files.jobs.enqueue(session, kind, subject_id=slot, payload={"slot": slot})
    except IntegrityError:
        return False
    return True


async def schedule_due(files: Files, now: datetime | None = None) -> None:
    now = now or utcnow()
    if now.hour >= files.settings.daily_load_hour:
        await schedule(files, LOAD_JOB, now.strftime("%Y-%m-%d"))
    interval = max(int(files.settings.relink_seconds), 1)
    await schedule(files, RELINK_JOB, str(int(now.timestamp()) // interval))
    await schedule(files, PURGE_JOB, now.strftime("%Y-%m-%dT%H"))


async def relink(files: Files) -> int:
    async with files.db.system_session() as session:
        ids = list(
            (
                await session.execute(
                    select(IntakeFile.id)
                    .where(IntakeFile.state == ACCEPTED, IntakeFile.unmatched.is_(True))
                    .limit(1000)
                )
            ).scalars()
        )
    return sum([await link(files, file_id) for file_id in ids])


async def run(files: Files, job: Any, now: datetime | None = None) -> None:
    if job.kind == LINK_JOB:
        await link(files, str(job.subject_id))
    elif job.kind == RELINK_JOB:
        await relink(files)
    elif job.kind == LOAD_JOB:
        await files.load(day=str(job.payload.get("slot") or job.subject_id))
    elif job.kind == PURGE_JOB:
        await files.purge_refused(now)
    async with files.db.system_session() as session:
        await files.jobs.finish(session, job.id)


async def process_jobs(files: Files, now: datetime | None = None) -> int:
    """One worker step: schedule what is due, then run claimed jobs. Returns jobs done."""
    await schedule_due(files, now)
    await files.abort_stale(now)
    done = 0
    for job in await files.jobs.claim(KINDS, limit=10, now=now):
        try:
            with job_span(job):  # a link continues the trace of the file's delivery
                await run(files, job, now)
            done += 1
        except Exception as exc:
            state = await files.jobs.fail(job.id, f"{type(exc).__name__}: {str(exc)[:300]}")
            log.warning("intake job failed", extra={"job_id": job.id, "kind": job.kind, "state": state})
    return done
