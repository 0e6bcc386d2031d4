"""NIPPIN's background work, as durable jobs (``hdhub.common.jobs``):

- ``send``: one message to MyCareNet (REST or FILE_SYSTEM), deferred with back-off while
  MyCareNet or the folder is unreachable;
- ``answers``: every minute, FILE_SYSTEM only: the gateway's TACKs read back, unanswered
  messages sent again;
- ``report``: once per UTC night from ``report_hour``, each organisation's report;
- ``export``: one NIPPIN Manager's export;
- ``purge``: every hour, the XML of messages past ``message_retention_days`` deleted.

Scheduled runs are enqueued with a row in ``scheduled_runs`` keyed by (kind, slot) in the
same transaction, so two workers make one job between them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from hdhub.common.db import utcnow
from hdhub.nippin import exports, reports
from hdhub.nippin.service import SEND_JOB
from hdhub.nippin.store import ScheduledRun

if TYPE_CHECKING:
    from hdhub.nippin.runtime import NippinService

log = logging.getLogger("hdhub.nippin.worker")

ANSWERS_JOB, REPORT_JOB, PURGE_JOB = "answers", "report", "purge"
KINDS = [SEND_JOB, ANSWERS_JOB, REPORT_JOB, exports.EXPORT_JOB, PURGE_JOB]


async def schedule(service: NippinService, kind: str, slot: str) -> bool:
    """Enqueue the run ``kind`` for ``slot`` unless someone did already; True if we did."""
    messages = service.messages
    try:
        async with service.db.system_session() as session:
            if await session.get(ScheduledRun, (kind, slot)) is not None:
                return False
            session.add(ScheduledRun(kind=kind, slot=slot))
            await session.flush()
            messages.jobs.enqueue(session, kind, subject_id=slot, payload={"slot": slot})
    except IntegrityError:
        return False
    return True


async def schedule_due(service: NippinService, now: datetime) -> None:
    if now.hour >= service.settings.report_hour:
        await schedule(service, REPORT_JOB, now.strftime("%Y-%m-%d"))
    if service.settings.interface == "FILE_SYSTEM":
        await schedule(service, ANSWERS_JOB, now.strftime("%Y-%m-%dT%H:%M"))
    await schedule(service, PURGE_JOB, now.strftime("%Y-%m-%dT%H"))


async def nightly_reports(service: NippinService, night: str) -> None:
    day = datetime.fromisoformat(night).date()
    for organisation_id in await reports.reimbursed_organisations():
        try:
            await reports.build(service.db, organisation_id, day)
        except Exception as exc:  # one organisation's failure does not stop the others'
            log.warning("NIPPIN report failed", extra={"error_type": type(exc).__name__})


async def process_jobs(service: NippinService, now: datetime | None = None) -> int:
    """One worker step: schedule what is due, then run claimed jobs. Returns jobs done."""
    await schedule_due(service, now or utcnow())
    messages = service.messages
    done = 0
    for job in await messages.jobs.claim(KINDS, limit=10, now=now):
        try:
            if job.kind == SEND_JOB:
                await messages.send(job, now)  # finishes or defers the job itself
                done += 1
                continue
            if job.kind == ANSWERS_JOB:
                await messages.collect_answers(now)
            elif job.kind == REPORT_JOB:
                await nightly_reports(service, str(job.payload.get("slot") or job.subject_id))
            elif job.kind == exports.EXPORT_JOB:
                await exports.produce(service.db, messages, service.objects, str(job.subject_id))
            elif job.kind == PURGE_JOB:
                await messages.purge(now)
            async with service.db.system_session() as session:
                await messages.jobs.finish(session, job.id)
            done += 1
        except Exception as exc:
            state = await messages.jobs.fail(job.id, type(exc).__name__)
            log.warning("nippin job failed", extra={"job_id": job.id, "kind": job.kind, "state": state})
    return done
