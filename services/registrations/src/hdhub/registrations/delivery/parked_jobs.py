"""Parked background jobs for the operator: jobs of this service whose attempts ran out
(hdhub.common.jobs), grouped by organisation, kind and the type of their last error.
Counts only: no payload, no subject, no free text of an error (a name or ``other``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from hdhub.common.db import Database
from hdhub.common.jobs import PARKED
from hdhub.registrations.store import Job

#: An exception's class name or a failure code: anything else is reported as ``other``.
_ERROR_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")


def error_type(last_error: str | None) -> str:
    head = (last_error or "").split(":", 1)[0].strip()
    return head if _ERROR_TYPE.fullmatch(head) else "other"


@dataclass
class ParkedJobGroup:
    organisation_id: str
    kind: str
    error_type: str
    jobs: int
    max_attempts: int
    oldest_at: datetime | None


async def parked_jobs(db: Database, *, organisation_id: str | None) -> list[ParkedJobGroup]:
    query = (
        select(
            Job.organisation_id,
            Job.kind,
            Job.last_error,
            func.count(),
            func.max(Job.attempts),
            func.min(Job.created_at),
        )
        .where(Job.status == PARKED)
        .group_by(Job.organisation_id, Job.kind, Job.last_error)
    )
    if organisation_id:
        query = query.where(Job.organisation_id == organisation_id)
    groups: dict[tuple[str, str, str], ParkedJobGroup] = {}
    async with db.system_session() as session:
        for org, kind, last_error, n, attempts, oldest in await session.execute(query):
            key = (org or "", kind, error_type(last_error))
            g = groups.setdefault(key, ParkedJobGroup(*key, 0, 0, None))
            g.jobs += int(n)
            g.max_attempts = max(g.max_attempts, int(attempts or 0))
            if oldest is not None and (g.oldest_at is None or oldest < g.oldest_at):
                g.oldest_at = oldest
    return [groups[k] for k in sorted(groups)]
