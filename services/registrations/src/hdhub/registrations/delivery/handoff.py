"""Submissions of reimbursed registrations handed over to NIPPIN.

When a registration of a DCD with fields bound for NIPPIN is submitted (or corrected and
resubmitted), a ``nippin`` job is written in the same transaction as the submit; the worker
sends the bound values (and nothing else) to nippin over gRPC, acting for the organisation
and the person or system who submitted. The job's id is derived from the registration and
its version, so a submission makes one job; nippin makes one message per (registration,
version), so a job redone after a crash makes no second message: exactly once, end to end.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import Database
from hdhub.common.grpc import channel
from hdhub.common.jobs import JobQueue
from hdhub.common.service_auth import acting_as_service
from hdhub.proto.nippin.v1 import nippin_pb2 as pb
from hdhub.proto.nippin.v1 import nippin_pb2_grpc as pb_grpc
from hdhub.registrations.catalogue.service import Catalogue
from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.engine.nippin import bound_values, is_reimbursed, makes_message
from hdhub.registrations.records.lifecycle import RegistrationStatus
from hdhub.registrations.store import Job, Registration

log = logging.getLogger("hdhub.registrations.nippin")

NIPPIN_JOB = "nippin"
_JOB_IDS = uuid.UUID("6f1c7a52-3d0e-4a57-9d1e-4d3b8f2a9c10")
#: Statuses whose values are no longer the submitted ones: the hand-over waits for the next submit.
_NOT_SUBMITTED = frozenset({RegistrationStatus.OPEN.value, RegistrationStatus.DELETED.value})


def job_id(registration_id: str, version: int) -> str:
    """One job per submission: enqueueing it twice fails the insert instead of sending twice."""
    return str(uuid.uuid5(_JOB_IDS, f"{registration_id}:{version}"))


class Handoff:
    def __init__(self, db: Database, catalogue: Catalogue) -> None:
        self.db, self.catalogue = db, catalogue
        # nippin may be down for hours: retried with back-off for about a day before parking.
        self.jobs = JobQueue(db, Job, max_attempts=30)

    def enqueue(
        self, session: AsyncSession, reg: Registration, definition: DcdDefinition, actor: str
    ) -> None:
        """In the submit's transaction: hand the submission over, if the DCD is reimbursed
        and the values make a message."""
        if not is_reimbursed(definition) or not makes_message(definition, reg.values):
            return
        self.jobs.enqueue(
            session,
            NIPPIN_JOB,
            organisation_id=reg.organisation_id,
            subject_id=reg.id,
            payload={"version": reg.version},
            job_id=job_id(reg.id, reg.version),
            actor=actor,
        )

    def items(
        self, definition: DcdDefinition, rows: Sequence[dict[str, Any]], organisation_id: str, actor: str
    ) -> list[dict[str, Any]]:
        """The jobs of registrations submitted in bulk (upload batches), for ``enqueue_many``."""
        if not is_reimbursed(definition):
            return []
        return [
            {
                "organisation_id": organisation_id,
                "actor": actor,
                "subject_id": r["id"],
                "payload": {"version": r["version"]},
            }
            for r in rows
            if makes_message(definition, r["values"])
        ]

    async def process_jobs(self, *, limit: int = 50, now: datetime | None = None) -> int:
        """Hand over claimed submissions; the number claimed."""
        jobs = await self.jobs.claim([NIPPIN_JOB], limit=limit, now=now)
        for job in jobs:
            try:
                await self._hand_over(job)
            except Exception as exc:  # retried with back-off, then parked where an operator sees it
                log.warning(
                    "NIPPIN hand-over failed", extra={"job_id": job.id, "error_type": type(exc).__name__}
                )
                await self.jobs.fail(job.id, type(exc).__name__)
        return len(jobs)

    async def _hand_over(self, job: Any) -> None:
        async with self.db.system_session() as session:
            reg = await session.get(Registration, job.subject_id)
            if reg is None or reg.status in _NOT_SUBMITTED:
                await self.jobs.finish(session, job.id)
                return
            entry = await self.catalogue.get(reg.dcd_code, reg.dcd_version)
            request = pb.SubmitRegistrationRequest(
                organisation_id=reg.organisation_id,
                registration_id=reg.id,
                registration_version=int(job.payload.get("version") or reg.version),
                registration_code=reg.registration_code or "",
                project_code=reg.project_code,
                dcd_code=reg.dcd_code,
                dcd_version=reg.dcd_version,
                fields=[
                    pb.BoundField(xml_name=b.xml_name, technical_name=b.technical_name, value=b.value)
                    for b in bound_values(entry.definition, reg.values)
                ],
                submitted_at=reg.submitted_at.isoformat() if reg.submitted_at else "",
            )
        async with acting_as_service("registrations", self.jobs.acting_for(job)):
            await pb_grpc.NippinServiceStub(channel("nippin")).SubmitRegistration(request, timeout=30.0)
        async with self.db.system_session() as session:
            await self.jobs.finish(session, job.id)


__all__ = ["NIPPIN_JOB", "Handoff", "job_id"]
