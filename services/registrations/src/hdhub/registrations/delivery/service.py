"""Where deliveries stand, for the REST edge: one registration's, an organisation's, or
(for the operator) every organisation's; the central platform's decisions on a
registration, and an organisation's follow-ups due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from hdhub.common.db import Database, registry_condition
from hdhub.common.paging import count
from hdhub.registrations.delivery.rows import DeliveryState
from hdhub.registrations.records.lifecycle import RegistrationStatus
from hdhub.registrations.store import CentralDecision, FollowUp, Registration
from hdhub.registrations.store import Delivery as DeliveryRow


class Deliveries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def of(
        self, organisations: Sequence[str], registration_ids: Sequence[str]
    ) -> dict[str, DeliveryRow]:
        async with self.db.session(organisations) as session:
            rows = await session.execute(
                select(DeliveryRow).where(DeliveryRow.registration_id.in_(list(registration_ids)))
            )
            return {r.registration_id: r for r in rows.scalars()}

    async def listing(
        self,
        organisations: Sequence[str] | None,
        *,
        state: DeliveryState | None,
        limit: int,
        offset: int,
        states: Sequence[DeliveryState] = (),
    ) -> tuple[list[tuple[DeliveryRow, Registration]], int]:
        """A page of deliveries (with their registrations) of some organisations, or of all
        (operator), and how many there are in all."""
        sessions = self.db.system_session() if organisations is None else self.db.session(organisations)
        async with sessions as session:
            query = select(DeliveryRow, Registration).join(
                Registration, Registration.id == DeliveryRow.registration_id
            )
            if state:
                query = query.where(DeliveryRow.state == state)
            if organisations is not None:
                granted = registry_condition(
                    organisations, Registration.organisation_id, Registration.project_code
                )
                query = query if granted is None else query.where(granted)
            if states:
                query = query.where(DeliveryRow.state.in_([str(s) for s in states]))
            total = await count(session, query)
            query = (
                query.order_by(DeliveryRow.updated_at.desc(), DeliveryRow.registration_id)
                .limit(limit)
                .offset(offset)
            )
            return [(d, r) for d, r in (await session.execute(query)).all()], total

    async def decisions(
        self, organisations: Sequence[str], registration_id: str, *, limit: int, offset: int
    ) -> tuple[list[CentralDecision], int]:
        """The decisions taken on a registration (forged ones never name it), newest first."""
        async with self.db.session(organisations) as session:
            query = select(CentralDecision).where(CentralDecision.registration_id == registration_id)
            total = await count(session, query)
            rows = await session.execute(
                query.order_by(CentralDecision.sequence.desc(), CentralDecision.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return list(rows.scalars()), total

    async def latest_applied(
        self, organisations: Sequence[str], registration_id: str
    ) -> CentralDecision | None:
        async with self.db.session(organisations) as session:
            return (
                await session.execute(
                    select(CentralDecision)
                    .where(
                        CentralDecision.registration_id == registration_id,
                        CentralDecision.outcome == "applied",
                    )
                    .order_by(CentralDecision.sequence.desc(), CentralDecision.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def follow_ups(
        self,
        organisation_id: str,
        *,
        due_before: datetime | None,
        limit: int,
        offset: int,
        dcd_codes: Sequence[str] | None = None,
    ) -> tuple[list[FollowUp], int]:
        """An organisation's follow-ups, soonest due first (those due before a moment; of
        these DCDs only, for a caller whose registry grants bound it); none of a registration
        deleted since (nothing is followed up of a registration that no longer stands)."""
        async with self.db.session([organisation_id]) as session:
            query = (
                select(FollowUp)
                .join(Registration, Registration.id == FollowUp.registration_id)
                .where(Registration.status != RegistrationStatus.DELETED.value)
            )
            if dcd_codes is not None:
                query = query.where(FollowUp.dcd_code.in_(list(dcd_codes)))
            if due_before is not None:
                query = query.where(FollowUp.due_at < due_before)
            total = await count(session, query)
            rows = await session.execute(
                query.order_by(FollowUp.due_at, FollowUp.id).limit(limit).offset(offset)
            )
            return list(rows.scalars()), total
