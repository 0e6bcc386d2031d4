"""A registration's delivery row: where its delivery stands (its state) and the status
confirmation's clock (first send, last send, attempts, parking), with the statements a
delivery step changes rows and jobs with, one per group, never one per registration."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import Database
from hdhub.common.jobs import PARKED, QUEUED, JobQueue
from hdhub.registrations.settings import RegistrationsSettings
from hdhub.registrations.store import Delivery as DeliveryRow
from hdhub.registrations.store import Job

if TYPE_CHECKING:
    from hdhub.registrations.delivery.outgoing import Outgoing


class DeliveryState(StrEnum):
    """Where a registration's delivery to the central platform stands: the status
    confirmation it leads to (pending, ok, nok), and what that cannot say: the delivery
    is still with hdhub (sending), or its resends stopped (parked)."""

    SENDING = "sending"  # still with hdhub: waiting for a certificate or pseudonymisation
    PENDING = "pending"  # sent, no confirmation yet (within 48 h)
    OK = "ok"  # the central platform confirmed arrival
    NOK = "nok"  # no confirmation within 48 h: being resent
    PARKED = "parked"  # no confirmation 10 days after the first send, or refused for good


async def lock(session: AsyncSession, db: Database, registration_ids: Sequence[str]) -> None:
    """Lock the delivery rows (before the registrations, as every step does)."""
    await session.execute(
        select(DeliveryRow.registration_id)
        .where(db.among(DeliveryRow.registration_id, registration_ids))
        .with_for_update()
    )


async def locked(
    session: AsyncSession, db: Database, registration_ids: Iterable[str]
) -> dict[str, DeliveryRow]:
    """The delivery rows, locked, by registration id."""
    rows = await session.execute(
        select(DeliveryRow).where(db.among(DeliveryRow.registration_id, registration_ids)).with_for_update()
    )
    return {r.registration_id: r for r in rows.scalars()}


async def set_rows(session: AsyncSession, db: Database, items: Sequence[Outgoing], **values: Any) -> None:
    """Set ``values`` on the delivery rows of ``items``."""
    await session.execute(
        update(DeliveryRow)
        .where(db.among(DeliveryRow.registration_id, [o.registration_id for o in items]))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def defer(
    session: AsyncSession,
    db: Database,
    job_ids: Sequence[str],
    until: datetime,
    payload: dict[str, Any] | None = None,
) -> None:
    """Give claimed jobs back for later (same time, same payload): waiting is not
    failing, so they never park."""
    values: dict[str, Any] = {
        "status": QUEUED,
        "lease_until": None,
        "worker": None,
        "run_after": until,
        "attempts": 0,
    }
    if payload is not None:
        values["payload"] = payload
    await session.execute(update(Job).where(db.among(Job.id, job_ids)).values(**values))
    JobQueue.ended(list(job_ids), "deferred")


async def park(session: AsyncSession, db: Database, job_ids: Sequence[str], reason: str) -> None:
    """Park claimed jobs for good with ``reason``: they are not retried."""
    await session.execute(
        update(Job)
        .where(db.among(Job.id, job_ids))
        .values(status=PARKED, lease_until=None, last_error=reason)
    )
    JobQueue.ended(list(job_ids), "parked")


def next_check(settings: RegistrationsSettings, row: DeliveryRow, now: datetime, checks: int) -> datetime:
    """The next confirmation check: soon after a send, doubling up to the poll interval,
    never later than the next deadline (48 h -> NOK, 10 days -> parked) nor a due retry."""
    s = settings
    first = s.confirmation_first_check_seconds
    nxt = now + timedelta(seconds=min(s.confirmation_poll_minutes * 60, first * 2 ** min(checks, 30)))
    assert row.first_sent_at is not None
    deadlines = [row.first_sent_at + timedelta(days=s.park_after_days)]
    if row.state == DeliveryState.PENDING:
        deadlines.append(row.first_sent_at + timedelta(hours=s.confirmation_timeout_hours))
    if row.reason is not None:  # the last attempt did not reach the central platform
        deadlines.append((row.last_attempt_at or now) + timedelta(minutes=s.retry_minutes))
    if row.state == DeliveryState.NOK:
        deadlines.append(
            (row.last_sent_at or row.last_attempt_at or now) + timedelta(hours=s.resend_interval_hours)
        )
    return max(now, min([nxt, *[d for d in deadlines if d > now]]))


def resend_due(settings: RegistrationsSettings, row: DeliveryRow, now: datetime) -> bool:
    """Whether to send again now: the last attempt did not reach the central platform
    ``retry_minutes`` ago, or a NOK delivery's last send is ``resend_interval_hours`` old."""
    if row.reason is not None and now >= (row.last_attempt_at or now) + timedelta(
        minutes=settings.retry_minutes
    ):
        return True
    if row.state == DeliveryState.NOK:
        last = row.last_sent_at or row.last_attempt_at
        return last is None or now >= last + timedelta(hours=settings.resend_interval_hours)
    return False
