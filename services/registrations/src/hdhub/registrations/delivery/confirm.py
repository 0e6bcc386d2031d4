"""Confirm: Pending -> OK, or NOK and resends, or parked.

The central side is asked which deliveries arrived whole. Without a confirmation within
``confirmation_timeout_hours`` (HD4DP: 48 h) a delivery is NOK and is resent every
``resend_interval_hours`` until ``park_after_days`` (10 days) after its first send, then
parked where the organisation and the operator see it. Each change of a registration's
status confirmation is a new version with a history entry saying why.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import Database
from hdhub.common.jobs import JobQueue
from hdhub.registrations.delivery import rows
from hdhub.registrations.delivery.outgoing import Outgoing, load, with_values_read
from hdhub.registrations.delivery.rows import DeliveryState
from hdhub.registrations.delivery.send import Sender
from hdhub.registrations.records.lifecycle import RegistrationStatus, StatusConfirmation
from hdhub.registrations.settings import RegistrationsSettings
from hdhub.registrations.store import Delivery as DeliveryRow
from hdhub.registrations.store import Registration, worker_history

log = logging.getLogger("hdhub.registrations.delivery")


@dataclass(frozen=True)
class ConfirmationChange:
    """A registration's new status confirmation, why (the history's comment), and the
    history's action when it is not ``confirmation_<value>``."""

    registration_id: str
    confirmation: StatusConfirmation
    comment: str
    action: str | None = None


@dataclass
class _Verdicts:
    """What one confirmation check decided, registration by registration."""

    resend: list[Outgoing] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    changes: list[ConfirmationChange] = field(default_factory=list)


class Confirmer:
    def __init__(self, db: Database, jobs: JobQueue, settings: RegistrationsSettings, sender: Sender) -> None:
        self.db, self.jobs, self.settings, self.sender = db, jobs, settings, sender

    async def confirm(self, jobs: Sequence[Any], now: datetime) -> None:
        """The ``confirm`` jobs: ask, judge each delivery, resend those due, then schedule
        the next check of those still open."""
        outgoing, superseded = await load(
            self.db, jobs, now, want_status=RegistrationStatus.SUBMITTED, with_values=False
        )
        if superseded:
            async with self.db.system_session() as session:
                await self.jobs.finish_many(session, [j.id for j in superseded])
        if not outgoing:
            return
        confirmed = await self.sender.central.confirmed(outgoing)
        async with self.db.system_session() as session:
            found = await rows.locked(session, self.db, [o.registration_id for o in outgoing])
            verdicts = _Verdicts()
            for o in outgoing:
                self._judge(
                    found[o.registration_id], o, (o.technical_id, o.version) in confirmed, now, verdicts
                )
            await self._set_confirmations(session, verdicts.changes, now)
            if verdicts.finished:
                await self.jobs.finish_many(session, verdicts.finished)
        resend = verdicts.resend
        if resend:
            resend = await with_values_read(self.db, resend)
            await self.sender.send(resend)
        await self._schedule(outgoing, resend, now)
        for o in resend:
            log.info(
                "delivery resent",
                extra={"registration_id": o.registration_id, "outcome": o.failure or "sent"},
            )

    def _judge(
        self, row: DeliveryRow, o: Outgoing, confirmed: bool, now: datetime, verdicts: _Verdicts
    ) -> None:
        s = self.settings
        if row.state in (DeliveryState.OK, DeliveryState.PARKED):
            verdicts.finished.append(o.job.id)
            return
        assert row.first_sent_at is not None
        if confirmed:
            row.state, row.confirmed_at, row.reason, row.updated_at = DeliveryState.OK, now, None, now
            verdicts.changes.append(
                ConfirmationChange(
                    o.registration_id, StatusConfirmation.OK, "Arrival confirmed by the central platform"
                )
            )
            verdicts.finished.append(o.job.id)
            return
        if now >= row.first_sent_at + timedelta(days=s.park_after_days):
            row.state, row.parked_at, row.updated_at = DeliveryState.PARKED, now, now
            row.archived_at = row.archived_by = row.archive_reason = None  # parked anew
            verdicts.changes.append(
                ConfirmationChange(
                    o.registration_id,
                    StatusConfirmation.NOK,
                    f"No confirmation {s.park_after_days:g} days after the first send: resends stopped (parked)",
                    "delivery_parked",
                )
            )
            verdicts.finished.append(o.job.id)
            return
        turned_nok = False  # resent at once when it turns NOK
        if row.state == DeliveryState.PENDING and now >= row.first_sent_at + timedelta(
            hours=s.confirmation_timeout_hours
        ):
            row.state, row.updated_at, turned_nok = DeliveryState.NOK, now, True
            verdicts.changes.append(
                ConfirmationChange(
                    o.registration_id,
                    StatusConfirmation.NOK,
                    f"No confirmation within {s.confirmation_timeout_hours:g} hours: resending",
                )
            )
        if turned_nok or rows.resend_due(s, row, now):
            verdicts.resend.append(o)

    async def _schedule(
        self, outgoing: Sequence[Outgoing], resend: Sequence[Outgoing], now: datetime
    ) -> None:
        """Record the resends, and give every job still open back for its next check."""
        resent = {id(o) for o in resend}
        async with self.db.system_session() as session:
            found = await rows.locked(session, self.db, [o.registration_id for o in outgoing])
            deferred: dict[tuple[datetime, int, int], list[str]] = defaultdict(list)
            for o in outgoing:
                row = found[o.registration_id]
                if row.state in (DeliveryState.OK, DeliveryState.PARKED):
                    continue
                if id(o) in resent:
                    row.last_attempt_at, row.updated_at = now, now
                    row.reason = o.failure
                    if o.failure is None:
                        row.attempts += 1
                        row.last_sent_at = now
                # A resend that went out starts the clock again: its confirmation is asked for
                # seconds later, not at the long interval the unanswered checks had reached.
                sent_now = id(o) in resent and o.failure is None
                checks = 0 if sent_now else int((o.job.payload or {}).get("checks", 0)) + 1
                deferred[(rows.next_check(self.settings, row, now, checks), o.version, checks)].append(
                    o.job.id
                )
            for (until, version, checks), job_ids in deferred.items():
                await rows.defer(
                    session, self.db, job_ids, until, payload={"version": version, "checks": checks}
                )

    async def _set_confirmations(
        self, session: AsyncSession, changes: Sequence[ConfirmationChange], at: datetime
    ) -> None:
        """Set registrations' status confirmation, each with a history entry saying why (a
        new version, as every change of a registration; parking is recorded too, though
        the confirmation stays NOK). A statement pair per kind of change, not per
        registration; one no longer Submitted is left as it is."""
        groups: dict[tuple[StatusConfirmation, str, str | None], list[str]] = defaultdict(list)
        for c in changes:
            groups[(c.confirmation, c.comment, c.action)].append(c.registration_id)
        for (confirmation, comment, action), ids in groups.items():
            moved = list(
                (
                    await session.execute(
                        update(Registration)
                        .where(
                            self.db.among(Registration.id, ids),
                            Registration.status == RegistrationStatus.SUBMITTED,
                        )
                        .values(
                            status_confirmation=confirmation, version=Registration.version + 1, updated_at=at
                        )
                        .returning(Registration.id)
                        .execution_options(synchronize_session=False)
                    )
                ).scalars()
            )
            if moved:
                await session.execute(
                    worker_history(
                        self.db.among(Registration.id, moved),
                        action=action or f"confirmation_{confirmation.value}",
                        at=at,
                        comment=comment,
                    )
                )
