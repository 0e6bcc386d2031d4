"""What a submission leaves for the worker, in the submit's own transaction: its delivery
to the central platform (a ``deliver`` job) and, for a reimbursed DCD, its hand-over to
NIPPIN (handoff.py); the worker is woken once that transaction commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.config import platform
from hdhub.common.db import Database, after_commit
from hdhub.common.jobs import JobQueue
from hdhub.common.wakeup import Wakeup
from hdhub.registrations.catalogue.service import Catalogue
from hdhub.registrations.delivery.handoff import NIPPIN_JOB, Handoff
from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.store import Job, Registration

#: The job kinds of delivery to the central platform: send a submission, then ask whether
#: it arrived. ``deliver_batch``: send the registrations a batch created submitted, up to
#: ``REGISTRATIONS_PER_JOB`` per job (one job row per chunk, not one per registration).
DELIVER = "deliver"
DELIVER_BATCH = "deliver_batch"
CONFIRM = "confirm"
#: About one delivery step of the worker (``delivery_batch``).
REGISTRATIONS_PER_JOB = 200


class DeliveryQueue:
    def __init__(self, db: Database, catalogue: Catalogue) -> None:
        self.jobs = JobQueue(db, Job, service="registrations")
        self.handoff = Handoff(db, catalogue)
        #: "There is work" after a commit, here or (over Redis) in another process.
        self.wake = Wakeup("hdhub:registrations:deliver", platform().redis_url)

    def submitted(
        self, session: AsyncSession, reg: Registration, definition: DcdDefinition, actor: str
    ) -> None:
        """``reg`` was just submitted (its new version): deliver it, and hand it to NIPPIN."""
        self.jobs.enqueue(
            session,
            DELIVER,
            organisation_id=reg.organisation_id,
            subject_id=reg.id,
            payload={"version": reg.version},
            actor=actor,
        )
        self.handoff.enqueue(session, reg, definition, actor)
        after_commit(session, self.wake.notify)

    async def submitted_many(
        self,
        session: AsyncSession,
        definition: DcdDefinition,
        rows: Sequence[dict[str, Any]],
        organisation_id: str,
        actor: str,
        *,
        batch: bool = False,
    ) -> None:
        """Registrations created submitted in bulk (``rows`` as inserted: id, version, values):
        a ``deliver`` job each, or for a ``batch`` a ``deliver_batch`` job per
        ``REGISTRATIONS_PER_JOB`` of them (delivery/send.py)."""
        if batch:
            by_version: dict[int, list[str]] = {}
            for r in rows:
                by_version.setdefault(int(r["version"]), []).append(str(r["id"]))
            items = [
                {
                    "organisation_id": organisation_id,
                    "actor": actor,
                    "payload": {"version": version, "registrations": ids[i : i + REGISTRATIONS_PER_JOB]},
                }
                for version, ids in by_version.items()
                for i in range(0, len(ids), REGISTRATIONS_PER_JOB)
            ]
            await self.jobs.enqueue_many(session, DELIVER_BATCH, items)
        else:
            await self.jobs.enqueue_many(
                session,
                DELIVER,
                [
                    {
                        "organisation_id": organisation_id,
                        "actor": actor,
                        "subject_id": r["id"],
                        "payload": {"version": r["version"]},
                    }
                    for r in rows
                ],
            )
        handoffs = self.handoff.items(definition, rows, organisation_id, actor)
        if handoffs:
            await self.jobs.enqueue_many(session, NIPPIN_JOB, handoffs)
        after_commit(session, self.wake.notify)
