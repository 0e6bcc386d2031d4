"""Each organisation's health as the operator's console shows it: counts and states only,
never a registration's values. Counts come from the tallies the database keeps (store.py,
migration 0004); the two time-based figures read one index entry per organisation and
state (the oldest delivery) or the range of overdue pending confirmations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.registrations.delivery.rows import DeliveryState
from hdhub.registrations.store import Delivery, DeliveryTally, RegistrationTally

#: A delivery still to be confirmed: with hdhub, sent and waiting, or being resent.
BACKLOG = (DeliveryState.SENDING, DeliveryState.PENDING, DeliveryState.NOK)


@dataclass
class OrganisationHealth:
    organisation_id: str
    registrations: int = 0
    registries: list[str] = field(default_factory=list)
    deliveries: dict[str, int] = field(default_factory=dict)
    overdue_pending: int = 0
    oldest_backlog_at: datetime | None = None

    @property
    def backlog(self) -> int:
        return sum(self.deliveries.get(s, 0) for s in BACKLOG)

    @property
    def confirmations_overdue(self) -> int:
        """Confirmations pending past the timeout: NOK ones, and pending ones the worker
        has not marked yet (a stopped worker shows here)."""
        return self.deliveries.get(DeliveryState.NOK, 0) + self.overdue_pending


async def organisations_health(
    session: AsyncSession, *, now: datetime, timeout_hours: float
) -> list[OrganisationHealth]:
    """Every organisation with registrations or deliveries, by id."""
    found: dict[str, OrganisationHealth] = {}

    def of(organisation_id: str) -> OrganisationHealth:
        return found.setdefault(organisation_id, OrganisationHealth(organisation_id))

    for org, bucket, n in await session.execute(
        select(RegistrationTally.organisation_id, RegistrationTally.bucket, RegistrationTally.n).where(
            RegistrationTally.n > 0
        )
    ):
        health = of(org)
        health.registrations += n
        dcd = bucket.split("@", 1)[0]
        if dcd not in health.registries:
            health.registries.append(dcd)
    tally = DeliveryTally
    for org, state, n in await session.execute(select(tally.organisation_id, tally.bucket, tally.n)):
        if n:
            of(org).deliveries[state] = n
    # The oldest delivery of each backlog state: the first entry of (organisation, state,
    # updated_at) in the index, for each tally row that says there is one.
    oldest = (
        select(func.min(Delivery.updated_at))
        .where(Delivery.organisation_id == tally.organisation_id, Delivery.state == tally.bucket)
        .scalar_subquery()
    )
    for org, at in await session.execute(
        select(tally.organisation_id, oldest).where(tally.bucket.in_(list(BACKLOG)), tally.n > 0)
    ):
        health = of(org)
        if at is not None and (health.oldest_backlog_at is None or at < health.oldest_backlog_at):
            health.oldest_backlog_at = at
    cutoff = now - timedelta(hours=timeout_hours)
    for org, n in await session.execute(
        select(Delivery.organisation_id, func.count())
        .where(Delivery.state == DeliveryState.PENDING, Delivery.first_sent_at < cutoff)
        .group_by(Delivery.organisation_id)
    ):
        of(org).overdue_pending = n
    for health in found.values():
        health.registries.sort()
    return sorted(found.values(), key=lambda h: h.organisation_id)


@dataclass(frozen=True)
class VersionUsage:
    dcd_code: str
    version: str
    organisation_id: str
    registrations: int


async def catalogue_usage(session: AsyncSession) -> list[VersionUsage]:
    """Which organisations have live registrations of which DCD version, and how many
    (the tallies: no scan)."""
    rows = await session.execute(
        select(RegistrationTally.organisation_id, RegistrationTally.bucket, RegistrationTally.n).where(
            RegistrationTally.n > 0
        )
    )
    found = []
    for org, bucket, n in rows:
        dcd, _, version = bucket.partition("@")
        found.append(VersionUsage(dcd, version, org, n))
    return sorted(found, key=lambda u: (u.dcd_code, u.version, u.organisation_id))
