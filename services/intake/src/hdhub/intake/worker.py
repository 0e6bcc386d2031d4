"""Intake's background work, as durable jobs (``hdhub.common.jobs``):

- ``link``: one file delivered and accepted, linked to its registrations;
- ``relink``: every ``relink_seconds``, each accepted but unmatched file is linked again,
  and the late VCFs are counted (:func:`hdhub.intake.late.watch`);
- ``send-file``: one linked file streamed to the central platform with its registrations
  (:mod:`hdhub.intake.central`); deferred by ``send_retry_seconds`` while it cannot go
  (registration not delivered yet, the central platform down, a cut: resumed next time);
  acknowledged, it leaves the drop area;
- ``daily-load``: once per UTC day from ``daily_load_hour``, a send job for every linked
  or sent file that has none queued (the daily catch-up);
- ``purge-refused``: every hour, refused files past ``refused_retention_days`` lose their
  bytes (see :meth:`Files.purge_refused`), and acknowledged files past
  ``sent_retention_days`` theirs (:func:`hdhub.intake.central.purge_sent`).

Scheduled runs are enqueued with a row in ``scheduled_runs`` keyed by (kind, slot) in the
same transaction: two workers racing to schedule the same run make one job between them,
and the job itself is claimed by exactly one worker (leases, SKIP LOCKED).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hdhub.common.db import utcnow
from hdhub.common.telemetry import job_span
from hdhub.intake import late
from hdhub.intake.central import CentralSender, Waiting, purge_sent, send
from hdhub.intake.files import LINK_JOB, SEND_JOB, Files
from hdhub.intake.linking import link
from hdhub.intake.store import ACCEPTED, LINKED, SENT, IntakeFile, Job, ScheduledRun

log = logging.getLogger("hdhub.intake.worker")

RELINK_JOB, LOAD_JOB, PURGE_JOB = "relink", "daily-load", "purge-refused"
KINDS = [LINK_JOB, RELINK_JOB, LOAD_JOB, PURGE_JOB, SEND_JOB]


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


async def relink(files: Files, now: datetime | None = None) -> int:
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
    linked = sum([await link(files, file_id) for file_id in ids])
    await late.watch(files, now)  # a registration may have got its VCF, or become late
    return linked


async def catch_up(files: Files) -> int:
    """A send job for each linked or sent file without one queued (lost, or parked)."""
    async with files.db.system_session() as session:
        queued = select(Job.subject_id).where(Job.kind == SEND_JOB, Job.status.in_(("queued", "running")))
        rows = (
            await session.execute(
                select(IntakeFile.id, IntakeFile.organisation_id, IntakeFile.sender)
                .where(IntakeFile.state.in_((LINKED, SENT)), IntakeFile.id.not_in(queued))
                .limit(1000)
            )
        ).all()
        for file_id, organisation_id, sender in rows:
            files.jobs.enqueue(
                session, SEND_JOB, organisation_id=organisation_id, subject_id=file_id, actor=sender
            )
    return len(rows)


def _sender(files: Files) -> CentralSender:
    if files.central_sender is None:
        files.central_sender = CentralSender(files)
    assert isinstance(files.central_sender, CentralSender)
    return files.central_sender


async def run(files: Files, job: Any, now: datetime | None = None) -> None:
    if job.kind == SEND_JOB:
        try:
            await send(files, _sender(files), str(job.subject_id), now)
        except Waiting:
            later = (now or utcnow()) + timedelta(seconds=files.settings.send_retry_seconds)
            async with files.db.system_session() as session:
                await files.jobs.defer(session, job.id, later)
            return
    elif job.kind == LINK_JOB:
        await link(files, str(job.subject_id))
    elif job.kind == RELINK_JOB:
        await relink(files, now)
    elif job.kind == LOAD_JOB:
        await catch_up(files)
    elif job.kind == PURGE_JOB:
        await files.purge_refused(now)
        await purge_sent(files, now)
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
