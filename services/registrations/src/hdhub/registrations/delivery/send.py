"""Deliver: Sending -> Submitted (confirmation Pending).

Both halves of a registration go out under one technical id: the identifiers to
pseudonymisation, the sealed register variables to the central platform. Once
pseudonymisation has taken its half the registration is Submitted with confirmation
Pending: hdhub has done its part, and arrival is what the confirmation tracks (confirm.py).
Until pseudonymisation takes the identifiers (no published certificate, pseudonymisation
unreachable) the registration stays Sending with the reason on its delivery row.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import Database, utcnow
from hdhub.common.jobs import PARKED, JobQueue
from hdhub.common.sealed_record import seal
from hdhub.common.telemetry import job_context
from hdhub.proto.sim.v1 import central_pb2
from hdhub.registrations.catalogue.service import Catalogue
from hdhub.registrations.delivery import rows
from hdhub.registrations.delivery.clients import CentralPlatform, Certificates, pseudonymise
from hdhub.registrations.delivery.outgoing import Member, Outgoing, grouped, load, members, own_jobs
from hdhub.registrations.delivery.queue import CONFIRM, DELIVER
from hdhub.registrations.delivery.rows import DeliveryState
from hdhub.registrations.delivery.split import Splitters
from hdhub.registrations.records.lifecycle import Action, RegistrationStatus, StatusConfirmation
from hdhub.registrations.settings import RegistrationsSettings
from hdhub.registrations.store import Delivery as DeliveryRow
from hdhub.registrations.store import Registration, worker_history

log = logging.getLogger("hdhub.registrations.delivery")


class Sender:
    def __init__(
        self, db: Database, jobs: JobQueue, settings: RegistrationsSettings, catalogue: Catalogue
    ) -> None:
        self.db, self.jobs, self.settings = db, jobs, settings
        self.certificates = Certificates(settings)
        self.central = CentralPlatform(settings)
        self.splitters = Splitters(catalogue)

    async def deliver(self, jobs: Sequence[Any], now: datetime) -> None:
        """The ``deliver`` jobs: send each registration, then record what became of it."""
        outgoing, superseded = await load(self.db, jobs, now, want_status=RegistrationStatus.SENDING)
        if superseded:
            async with self.db.system_session() as session:
                await self.jobs.finish_many(session, [j.id for j in superseded])
        if not outgoing:
            return
        await self.send(outgoing)
        await self._record(outgoing, now)

    async def deliver_batch(self, jobs: Sequence[Any], now: datetime) -> None:
        """The ``deliver_batch`` jobs: each of their registrations goes as it would with a
        ``deliver`` job of its own (a :class:`Member` stands in for it). The transaction
        that records what became of them also finishes the batch jobs, and gives a
        registration that waits or was refused a ``deliver`` job of its own, deferred or
        parked as its own job would have been; one superseded meanwhile (reopened,
        resubmitted: a newer job delivers it) needs nothing. A worker that dies before
        that commit leaves the batch job to the next worker, which sends them again under
        the same technical ids, as with ``deliver`` jobs."""
        outgoing, _superseded = await load(
            self.db, [m for job in jobs for m in members(job)], now, want_status=RegistrationStatus.SENDING
        )
        done = [j.id for j in jobs]
        if not outgoing:
            async with self.db.system_session() as session:
                await self.jobs.finish_many(session, done)
            return
        await self.send(outgoing)
        await self._record(outgoing, now, done=done)

    async def send(self, outgoing: Sequence[Outgoing]) -> None:
        """Both halves of each registration, grouped by organisation and project; each
        Outgoing ends with ``failure`` None (sent), waiting (stays with hdhub), refused,
        or a failure of the central side."""
        by_org: dict[str, list[Outgoing]] = defaultdict(list)
        for o in outgoing:
            by_org[o.organisation_id].append(o)
        sealed: list[tuple[Outgoing, central_pb2.SealedRecord]] = []
        for org, items in by_org.items():
            signer = await self.certificates.signer(org, items)
            if signer is None:
                continue
            central = await self.central.public_key(items)
            if central is None:
                continue
            for o in items:
                o.identifier, o.variables = (await self.splitters.of(o.dcd_code, o.dcd_version))(o.values)
            await pseudonymise(items)
            for o in items:
                if o.waiting or o.refused:
                    continue
                assert o.variables is not None
                record = seal(header=_header(o), variables=o.variables, central=central, signer=signer)
                sealed.append((o, record))
        if sealed:
            await self.central.receive(sealed)

    async def _record(self, outgoing: Sequence[Outgoing], now: datetime, done: Sequence[str] = ()) -> None:
        """After an attempt: waiting ones stay Sending (job deferred), refused ones are parked,
        the others are Submitted (Pending) with a confirmation check scheduled; the batch
        jobs ``done`` are finished in the same transaction."""
        async with self.db.system_session() as session:
            await rows.lock(session, self.db, [o.registration_id for o in outgoing])
            await self._waiting(session, [o for o in outgoing if o.waiting], now)
            await self._refused(session, [o for o in outgoing if o.refused], now)
            await self._handed(session, [o for o in outgoing if not o.waiting and not o.refused], now)
            if done:
                await self.jobs.finish_many(session, list(done))
        for o in outgoing:
            # Never the technical id next to the registration id: that pair is the link
            # pseudonymisation exists to keep apart (the trace id leads to the rest).
            log.info(
                "delivery attempt",
                extra={
                    "registration_id": o.registration_id,
                    "outcome": "sent" if o.failure is None else o.failure,
                },
            )

    async def _waiting(self, session: AsyncSession, waiting: Sequence[Outgoing], now: datetime) -> None:
        for (version, reason), group in grouped(waiting, lambda o: (o.version, o.failure)):
            await rows.set_rows(
                session,
                self.db,
                group,
                state=DeliveryState.SENDING,
                content_version=version,
                reason=reason,
                updated_at=now,
            )
        if waiting:
            until = now + timedelta(seconds=self.settings.waiting_retry_seconds)
            if own := own_jobs(o.job for o in waiting):
                await rows.defer(session, self.db, own, until)
            await self._split_off(session, waiting, run_after=until)

    async def _refused(self, session: AsyncSession, refused: Sequence[Outgoing], now: datetime) -> None:
        for (reason,), group in grouped(refused, lambda o: (o.failure,)):
            await rows.set_rows(
                session,
                self.db,
                group,
                state=DeliveryState.PARKED,
                reason=reason,
                parked_at=now,
                archived_at=None,  # parked anew: not the one the operator set aside
                archived_by=None,
                archive_reason=None,
                updated_at=now,
            )
            if own := own_jobs(o.job for o in group):
                await rows.park(session, self.db, own, reason)
            await self._split_off(session, group, status=PARKED, last_error=reason)

    async def _split_off(self, session: AsyncSession, items: Sequence[Outgoing], **job: Any) -> None:
        """A ``deliver`` job of its own for each member of a batch job in ``items`` (waiting
        or refused), as its own job would stand after this attempt."""
        split = [o for o in items if isinstance(o.job, Member)]
        if split:
            await self.jobs.enqueue_many(
                session,
                DELIVER,
                [
                    {
                        "organisation_id": o.organisation_id,
                        "subject_id": o.registration_id,
                        "payload": dict(o.job.payload),
                        "trace_context": o.job.trace_context,
                        **job,
                    }
                    for o in split
                ],
            )

    async def _handed(self, session: AsyncSession, handed: Sequence[Outgoing], now: datetime) -> None:
        """Pseudonymisation took these: Submitted (Pending), unless resubmitted or reopened
        while they were sent (the newer job delivers)."""
        if not handed:
            return
        current = {
            r.id: r
            for r in await session.execute(
                select(Registration.id, Registration.status, Registration.version)
                .where(self.db.among(Registration.id, [o.registration_id for o in handed]))
                .with_for_update()  # the version checked below holds until commit
            )
        }
        moving: list[Outgoing] = []
        stale: list[Outgoing] = []
        for o in handed:
            r = current.get(o.registration_id)
            ok = r is not None and r.status == RegistrationStatus.SENDING and r.version == o.version
            (moving if ok else stale).append(o)
        if stale and (own := own_jobs(o.job for o in stale)):
            await self.jobs.finish_many(session, own)
        if moving:
            await mark_submitted(session, self.db, self.jobs, [o.job for o in moving])
        confirm_items: list[dict[str, Any]] = []
        for (version, reason), group in grouped(moving, lambda o: (o.version, o.failure)):
            sent = reason is None
            await rows.set_rows(
                session,
                self.db,
                group,
                content_version=version,
                state=DeliveryState.PENDING,
                first_sent_at=now,
                last_attempt_at=now,
                updated_at=now,
                confirmed_at=None,
                parked_at=None,
                archived_at=None,
                archived_by=None,
                archive_reason=None,
                attempts=1 if sent else 0,
                last_sent_at=now if sent else None,
                reason=reason,
            )
            # What the group's rows now hold, for the first check's time.
            row = DeliveryRow(
                state=DeliveryState.PENDING,
                reason=reason,
                first_sent_at=now,
                last_attempt_at=now,
                last_sent_at=now if sent else None,
            )
            run_after = rows.next_check(self.settings, row, now, 0)
            confirm_items.extend(
                {
                    "organisation_id": o.organisation_id,
                    "subject_id": o.registration_id,
                    "payload": {"version": o.version, "checks": 0},
                    "actor": o.actor,
                    "run_after": run_after,
                    # The confirmation stays in its registration's trace.
                    "trace_context": job_context(o.job),
                }
                for o in group
            )
        if confirm_items:
            await self.jobs.enqueue_many(session, CONFIRM, confirm_items)


def _header(o: Outgoing) -> central_pb2.SealedRecord:
    """What identifies a sealed record (never the patient)."""
    return central_pb2.SealedRecord(
        technical_id=o.technical_id,
        version=o.version,
        organisation_id=o.organisation_id,
        project_code=o.project_code,
        dcd_code=o.dcd_code,
        dcd_version=o.dcd_version,
        registration_code=o.registration_code,
    )


async def mark_submitted(session: AsyncSession, db: Database, jobs: JobQueue, sent: Sequence[Any]) -> None:
    """Sending -> Submitted (confirmation Pending) for the registrations of the ``deliver``
    jobs ``sent``, in one UPDATE, with their history entries in one INSERT ... SELECT
    (nothing read back; the values stay stored once, in the registration: a status change
    replaced none); the jobs are done. One no longer Sending (reopened, replaced
    meanwhile) is left as it is."""
    now = utcnow()
    moved = list(
        (
            await session.execute(
                update(Registration)
                .where(
                    db.among(Registration.id, [j.subject_id for j in sent]),
                    Registration.status == RegistrationStatus.SENDING,
                )
                .values(
                    status=RegistrationStatus.SUBMITTED,
                    status_confirmation=StatusConfirmation.PENDING,
                    version=Registration.version + 1,
                    updated_at=now,
                )
                .returning(Registration.id)
                .execution_options(synchronize_session=False)
            )
        ).scalars()
    )
    if moved:
        await session.execute(
            worker_history(db.among(Registration.id, moved), action=Action.PROCESSED.value, at=now)
        )
    if own := own_jobs(sent):
        await jobs.finish_many(session, own)
