"""The return channel: the central platform's decisions on delivered registrations
(Corrections needed, Approved, Follow-up needed, Error), pulled, checked and applied
through the lifecycle, and their outcome sent back (docs/delivery.md, "Decisions").

Pulled, as confirmations are: registrations asks ``GetDecisions`` after its cursor every
``decision_poll_seconds``. Each decision is taken in one transaction with the cursor, so
a worker dying half-way takes it again from where the cursor says, and a decision id
already taken is only acknowledged again, never applied twice. Outcomes (applied, or
refused with a reason) wait in the table until ``AcknowledgeDecisions`` succeeds: either
side being down delays, loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.central_decision import DecisionVerifier
from hdhub.common.clock import SYSTEM_CLOCK, Clock
from hdhub.common.db import Database, utcnow
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.registrations.catalogue.follow_ups import follow_up_of
from hdhub.registrations.catalogue.service import Catalogue
from hdhub.registrations.delivery.clients import CentralPlatform
from hdhub.registrations.records import lifecycle
from hdhub.registrations.records.history import record_change
from hdhub.registrations.records.lifecycle import RegistrationStatus, TransitionRefused
from hdhub.registrations.records.service import Actor
from hdhub.registrations.settings import RegistrationsSettings
from hdhub.registrations.store import CentralDecision, DecisionCursor, FollowUp, Registration
from hdhub.registrations.store import Delivery as DeliveryRow

log = logging.getLogger("hdhub.registrations.decisions")

#: Who the history names for a decision.
CENTRAL = Actor("central platform", "central")
CURSOR = "central"
PULL = 200

STATUSES = {
    pb.DECISION_STATUS_CORRECTIONS_NEEDED: RegistrationStatus.CORRECTIONS_NEEDED,
    pb.DECISION_STATUS_APPROVED: RegistrationStatus.APPROVED,
    pb.DECISION_STATUS_FOLLOW_UP_NEEDED: RegistrationStatus.FOLLOW_UP_NEEDED,
    pb.DECISION_STATUS_ERROR: RegistrationStatus.ERROR,
}


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Taken:
    """What became of one decision."""

    decision_id: str
    applied: bool
    reason: str | None = None


class CentralDecisions:
    def __init__(
        self,
        db: Database,
        settings: RegistrationsSettings,
        central: CentralPlatform,
        catalogue: Catalogue,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db, self.settings, self.central, self.clock = db, settings, central, clock
        self.catalogue = catalogue
        self._last_poll = float("-inf")
        # One poll at a time in this process too (SQLite has no advisory lock).
        self._polling = asyncio.Lock()

    async def poll_if_due(self) -> int:
        """A poll when ``decision_poll_seconds`` have passed since the last; how many were taken."""
        if time.monotonic() - self._last_poll < self.settings.decision_poll_seconds:
            return 0
        self._last_poll = time.monotonic()
        return await self.poll()

    async def poll(self) -> int:
        """Send outcomes not yet acknowledged, take the decisions after the cursor, then
        acknowledge them; how many were taken. Taking holds a lock (one replica at a
        time); an idle poll (nothing new) takes none."""
        verifier = await self.central.decision_verifier()
        if verifier is None:
            return 0
        await self.acknowledge()  # the central side keeps a decision's first outcome
        if not await self.central.decisions(await self._cursor(), 1):
            return 0
        taken = 0
        async with self._polling, self.db.exclusive("registrations:central-decisions"):
            while True:
                decisions = await self.central.decisions(await self._cursor(), PULL)
                if not decisions:
                    break
                for d in decisions:
                    await self.take(d, verifier)
                taken += len(decisions)
                if len(decisions) < PULL:
                    break
        if taken:
            await self.acknowledge()
        return taken

    async def _cursor(self) -> int:
        async with self.db.system_session() as session:
            found = await session.get(DecisionCursor, CURSOR)
            return found.sequence if found is not None else 0

    async def take(self, d: pb.Decision, verifier: DecisionVerifier) -> Taken:
        """Check and apply one decision, recording its outcome and moving the cursor, in one
        transaction. A decision id already taken changes nothing."""
        async with self.db.system_session() as session:
            cursor = await session.get(DecisionCursor, CURSOR, with_for_update=True)
            if cursor is None:
                cursor = DecisionCursor(name=CURSOR, sequence=0)
                session.add(cursor)
            cursor.sequence = max(cursor.sequence, d.sequence)
            status_name = pb.DecisionStatus.Name(d.status) if d.status in STATUSES else ""
            verified = bool(status_name) and verifier.verify(d, status_name)
            if verified:
                seen = (
                    await session.execute(
                        select(CentralDecision.outcome).where(
                            CentralDecision.decision_id == d.decision_id,
                            CentralDecision.reason.is_distinct_from("signature"),
                        )
                    )
                ).first()
                if seen is not None:
                    log.info("decision seen before", extra={"decision_id": d.decision_id})
                    return Taken(d.decision_id, seen[0] == "applied")
            row = CentralDecision(
                organisation_id=d.organisation_id[:64],
                decision_id=d.decision_id[:64],
                sequence=d.sequence,
                technical_id=d.technical_id[:64],
                version=d.version,
                status=STATUSES[d.status].value if d.status in STATUSES else "unknown",
                comment=d.comment,
                fields=list(d.fields),
                decided_at=d.decided_at[:40],
                received_at=utcnow(),
            )
            try:
                if not status_name:
                    raise Refused("unknown-status")
                if not verified:
                    raise Refused("signature")
                await self._apply(session, d, STATUSES[d.status], row)
                row.outcome, row.reason = "applied", None
            except Refused as refused:
                row.outcome, row.reason = "refused", refused.reason
                if refused.reason == "unknown-fields":
                    # Nothing of it is kept: names the DCD does not have, and what was said of them.
                    row.fields, row.comment = [], ""
            session.add(row)
        log.info(
            "central decision taken",
            extra={"decision_id": d.decision_id, "outcome": row.outcome, "reason": row.reason},
        )
        return Taken(d.decision_id, row.outcome == "applied", row.reason)

    async def _apply(
        self, session: AsyncSession, d: pb.Decision, status: RegistrationStatus, row: CentralDecision
    ) -> None:
        """Move the registration the decision is about (``row`` names it, applied or
        refused). Refused when unknown, when it changed since the version decided on, when
        it names a field the registration's DCD version does not have, or when the
        lifecycle does not allow it."""
        delivery = (
            await session.execute(
                select(DeliveryRow).where(DeliveryRow.technical_id == d.technical_id).with_for_update()
            )
        ).scalar_one_or_none()
        if delivery is None or delivery.organisation_id != d.organisation_id:
            raise Refused("unknown-registration")
        reg = await session.get(Registration, delivery.registration_id, with_for_update=True)
        if reg is None:
            raise Refused("unknown-registration")
        row.registration_id = reg.id
        current = RegistrationStatus(reg.status)
        # Changed since: resubmitted (a newer version delivered), or reopened, saved or
        # deleted (no longer where the central platform saw it).
        if delivery.content_version != d.version or current in (
            RegistrationStatus.OPEN,
            RegistrationStatus.SENDING,
            RegistrationStatus.DELETED,
        ):
            raise Refused("registration-changed")
        if d.fields:
            entry = await self.catalogue.get(reg.dcd_code, reg.dcd_version)
            known = {n for f in entry.definition.fields for n in (f.technical_name, *f.flat_names)}
            if not set(d.fields) <= known:
                raise Refused("unknown-fields")
        try:
            target = lifecycle.next_status(lifecycle.DECISIONS[status], current)
        except TransitionRefused:
            raise Refused("transition-not-allowed") from None
        rule = None
        if target == RegistrationStatus.FOLLOW_UP_NEEDED:
            rule = follow_up_of(reg.dcd_code)
            if rule is None:
                raise Refused("no-follow-up-defined")
        now = self.clock.now()
        reg.version += 1
        reg.status = target
        reg.updated_at = now
        if target in lifecycle.NO_CONFIRMATION:
            reg.status_confirmation = None
        await session.flush()
        record_change(
            session,
            reg,
            action=f"central_{target.value}",
            actor=CENTRAL,
            before=None,
            comment=d.comment or None,
        )
        if rule is not None:
            follow_up = (
                await session.execute(
                    select(FollowUp).where(
                        FollowUp.registration_id == reg.id, FollowUp.dcd_code == rule.dcd_code
                    )
                )
            ).scalar_one_or_none()
            if follow_up is None:
                session.add(
                    FollowUp(
                        organisation_id=reg.organisation_id,
                        registration_id=reg.id,
                        registration_code=reg.registration_code,
                        decision_id=d.decision_id,
                        project_code=reg.project_code,
                        dcd_code=rule.dcd_code,
                        comment=d.comment,
                        due_at=rule.due(reg.values, now),
                        created_at=now,
                    )
                )
            else:  # asked again (the registration corrected since): due from its values now
                follow_up.decision_id, follow_up.comment = d.decision_id, d.comment
                follow_up.due_at = rule.due(reg.values, now)

    async def acknowledge(self) -> int:
        """Send the outcomes the central platform does not have yet; how many it took."""
        async with self.db.system_session() as session:
            rows = (
                await session.execute(
                    select(
                        CentralDecision.id,
                        CentralDecision.decision_id,
                        CentralDecision.outcome,
                        CentralDecision.reason,
                    )
                    .where(CentralDecision.acknowledged_at.is_(None))
                    .order_by(CentralDecision.sequence)
                    .limit(500)
                )
            ).all()
        if not rows:
            return 0
        outcomes = [
            pb.DecisionOutcome(
                decision_id=r.decision_id, applied=r.outcome == "applied", reason=r.reason or ""
            )
            for r in rows
        ]
        if not await self.central.acknowledge(outcomes):
            return 0
        async with self.db.system_session() as session:
            await session.execute(
                update(CentralDecision)
                .where(self.db.among(CentralDecision.id, [r.id for r in rows]))
                .values(acknowledged_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return len(rows)
