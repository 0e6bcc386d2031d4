"""Parked deliveries for the operator: every organisation's, with why they were parked,
a retry that gives them ten more days of resends, and an archive that sets them aside
(out of the parked list and the console's parked count, listed as archived, nothing
deleted, retried later if need be). Both are the operator's decision: each registration's
history records it with the operator's name and reason.

Archived is a flag on a parked delivery (``archived_at``), not a state: the worker's state
machine does not know it, and the delivery tally counts a parked delivery with the flag
under ``archived`` (migration 0009_archive_parked). Parking again clears it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import Database
from hdhub.common.jobs import DONE, PARKED, check_reason
from hdhub.registrations.delivery.queue import CONFIRM, DELIVER, DeliveryQueue
from hdhub.registrations.delivery.rows import DeliveryState
from hdhub.registrations.records.lifecycle import RegistrationStatus
from hdhub.registrations.store import Delivery as DeliveryRow
from hdhub.registrations.store import Job, Registration, worker_history

log = logging.getLogger("hdhub.registrations.delivery")


@dataclass(frozen=True)
class ParkedDelivery:
    organisation_id: str
    registration_id: str
    registration_code: str
    dcd_code: str
    parked_at: datetime | None
    attempts: int
    reason: str
    archived_at: datetime | None = None
    archived_by: str = ""
    archive_reason: str = ""


def _parked(archived: bool) -> list[Any]:
    """Deliveries still parked, or those parked and archived."""
    flag = DeliveryRow.archived_at.is_not(None) if archived else DeliveryRow.archived_at.is_(None)
    return [DeliveryRow.state == DeliveryState.PARKED, flag]


async def listing(
    db: Database, *, organisation_id: str | None, limit: int, offset: int, archived: bool = False
) -> tuple[list[ParkedDelivery], int]:
    """Parked deliveries (of one organisation, or all), oldest parked first, and their
    total: those still parked, or the archived ones."""
    where = _parked(archived)
    if organisation_id:
        where.append(DeliveryRow.organisation_id == organisation_id)
    async with db.system_session() as session:
        total = (
            await session.execute(select(func.count()).select_from(DeliveryRow).where(*where))
        ).scalar_one()
        rows = await session.execute(
            select(DeliveryRow, Registration.registration_code, Registration.dcd_code)
            .join(Registration, Registration.id == DeliveryRow.registration_id)
            .where(*where)
            .order_by(DeliveryRow.parked_at, DeliveryRow.registration_id)
            .limit(limit)
            .offset(offset)
        )
        found = [
            ParkedDelivery(
                organisation_id=d.organisation_id,
                registration_id=d.registration_id,
                registration_code=code or "",
                dcd_code=dcd,
                parked_at=d.parked_at,
                attempts=d.attempts,
                # Why: the last attempt's failure (refused for good), else the 10 days passed.
                reason=d.reason or "no_confirmation",
                archived_at=d.archived_at,
                archived_by=d.archived_by or "",
                archive_reason=d.archive_reason or "",
            )
            for d, code, dcd in rows.all()
        ]
    return found, int(total)


def _chosen(db: Database, organisation_id: str, registration_ids: Sequence[str], archived: bool) -> list[Any]:
    where = [DeliveryRow.organisation_id == organisation_id, *_parked(archived)]
    if registration_ids:
        where.append(db.among(DeliveryRow.registration_id, list(registration_ids)))
    return where


async def retry(
    db: Database,
    queue: DeliveryQueue,
    *,
    organisation_id: str,
    actor: str,
    reason: str,
    now: datetime,
    archived: bool = False,
    registration_ids: Sequence[str] = (),
) -> int:
    """Resend every parked delivery of ``organisation_id`` (or its archived ones; or only
    those of ``registration_ids``), with a history entry per registration with who and why.
    One that reached the central platform is NOK again with a fresh parking clock and a
    confirmation check due now (which resends at once); one parked while still Sending
    (pseudonymisation refused it) is Sending again, with a new ``deliver`` job for its
    current version in place of the parked one. How many were retried."""
    reason = check_reason(reason)
    async with db.system_session() as session:
        parked = (
            await session.execute(
                select(DeliveryRow.registration_id, DeliveryRow.content_version, Registration.status)
                .join(Registration, Registration.id == DeliveryRow.registration_id)
                .where(*_chosen(db, organisation_id, registration_ids, archived))
                .with_for_update(of=DeliveryRow)
            )
        ).all()
        if not parked:
            return 0
        unsent = [r for r, _, status in parked if status == RegistrationStatus.SENDING]
        sent = [(r, version) for r, version, status in parked if status != RegistrationStatus.SENDING]
        cleared = {
            "parked_at": None,
            "archived_at": None,
            "archived_by": None,
            "archive_reason": None,
            "reason": None,
            "updated_at": now,
        }
        if sent:
            await session.execute(
                update(DeliveryRow)
                .where(db.among(DeliveryRow.registration_id, [r for r, _ in sent]))
                .values(
                    state=DeliveryState.NOK,
                    first_sent_at=now,
                    last_sent_at=None,
                    last_attempt_at=None,
                    **cleared,
                )
                .execution_options(synchronize_session=False)
            )
        if unsent:
            await session.execute(
                update(DeliveryRow)
                .where(db.among(DeliveryRow.registration_id, unsent))
                .values(state=DeliveryState.SENDING, **cleared)
                .execution_options(synchronize_session=False)
            )
        ids = [r for r, _, _ in parked]
        await _operator_entry(session, db, ids, "delivery_retried", actor=actor, reason=reason, now=now)
        if sent:
            await queue.jobs.enqueue_many(
                session,
                CONFIRM,
                [
                    {
                        "organisation_id": organisation_id,
                        "actor": actor,
                        "subject_id": registration_id,
                        "payload": {"version": version, "checks": 0},
                    }
                    for registration_id, version in sent
                ],
            )
        if unsent:
            await _send_again(session, db, queue, organisation_id, unsent, actor=actor, now=now)
    queue.wake.notify()
    log.info("parked deliveries retried", extra={"organisation_id": organisation_id, "count": len(ids)})
    return len(ids)


async def _send_again(
    session: AsyncSession,
    db: Database,
    queue: DeliveryQueue,
    organisation_id: str,
    registration_ids: Sequence[str],
    *,
    actor: str,
    now: datetime,
) -> None:
    """Registrations parked while Sending: their parked ``deliver`` jobs are done (the
    console's parked jobs no longer count them) and a new one sends each one's current
    version, the version the operator's history entry just made."""
    await session.execute(
        update(Job)
        .where(
            db.among(Job.subject_id, registration_ids),
            Job.kind == DELIVER,
            Job.status == PARKED,
        )
        .values(status=DONE, finished_at=now, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    versions = await session.execute(
        select(Registration.id, Registration.version).where(db.among(Registration.id, registration_ids))
    )
    await queue.jobs.enqueue_many(
        session,
        DELIVER,
        [
            {
                "organisation_id": organisation_id,
                "actor": actor,
                "subject_id": registration_id,
                "payload": {"version": version},
            }
            for registration_id, version in versions
        ],
    )


async def _operator_entry(
    session: AsyncSession,
    db: Database,
    ids: Sequence[str],
    action: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> None:
    """The operator's act in the history of each registration that was sent or is being
    sent, with who and why: a history entry is a version of the registration, the next one.
    One reopened meanwhile is left as it is (its draft's version is the person's ETag)."""
    where = db.among(Registration.id, ids) & Registration.status.in_(
        [RegistrationStatus.SUBMITTED, RegistrationStatus.SENDING]
    )
    await session.execute(
        update(Registration)
        .where(where)
        .values(version=Registration.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        worker_history(where, action=action, at=now, comment=reason, actor=actor, via="operator")
    )


async def archive(
    db: Database,
    *,
    organisation_id: str,
    actor: str,
    reason: str,
    now: datetime,
    registration_ids: Sequence[str] = (),
) -> int:
    """Set aside every delivery of ``organisation_id`` still parked (or only those of
    ``registration_ids``): flagged with who, when and why, out of the parked list and count,
    and a history entry per registration with who and why. Nothing else changes: the
    delivery stays parked underneath, and a retry can take it up again. How many."""
    reason = check_reason(reason)
    async with db.system_session() as session:
        ids = list(
            (
                await session.execute(
                    select(DeliveryRow.registration_id)
                    .where(*_chosen(db, organisation_id, registration_ids, False))
                    .with_for_update()
                )
            ).scalars()
        )
        if not ids:
            return 0
        await session.execute(
            update(DeliveryRow)
            .where(db.among(DeliveryRow.registration_id, ids))
            .values(archived_at=now, archived_by=actor, archive_reason=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        await _operator_entry(session, db, ids, "delivery_archived", actor=actor, reason=reason, now=now)
    log.info("parked deliveries archived", extra={"organisation_id": organisation_id, "count": len(ids)})
    return len(ids)
