"""Late VCFs: an NGS registration names its VCF (``TX_VCF_FILE_NAME``) and no file linked to
it has arrived ``vcf_late_hours`` after the registration was created. The data provider
sees its organisation's list (REST) and operators a count (metric), never a name or an
SSIN: the list carries the registration's id and code and the file name it expects, which
the provider entered and may read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc
from sqlalchemy import distinct, func, select

from hdhub.common.auth import ActingFor
from hdhub.common.db import utcnow
from hdhub.common.errors import Problem
from hdhub.common.grpc import channel
from hdhub.common.service_auth import acting_as_service
from hdhub.intake import metrics
from hdhub.intake.domain.names import NGS
from hdhub.intake.files import Files
from hdhub.intake.linking import LOOKUP_LIMIT, VCF_FIELD
from hdhub.intake.store import FileLink, IntakeFile
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc

log = logging.getLogger("hdhub.intake.late")


@dataclass(frozen=True)
class LateVcf:
    registration_id: str
    registration_code: str
    status: str
    filename: str
    created_at: datetime
    late_since: datetime


async def late_vcfs(
    files: Files, organisation_id: str, actor: str, now: datetime | None = None
) -> list[LateVcf]:
    """The organisation's NGS registrations whose VCF is late, oldest first (at most
    ``LOOKUP_LIMIT`` registrations are looked at). Raises a 503 problem when registrations
    cannot be asked."""
    wait = timedelta(hours=files.settings.vcf_late_hours)
    before = (now or utcnow()) - wait
    stub = pb_grpc.RegistrationsServiceStub(channel("registrations"))
    try:
        async with acting_as_service("intake", ActingFor(organisation_id, actor)):
            answer = await stub.FindRegistrationsByField(
                pb.FindRegistrationsByFieldRequest(
                    organisation_id=organisation_id,
                    field=VCF_FIELD,
                    any_value=True,
                    project_code=NGS.project_code,
                    created_before=before.isoformat(),
                    limit=LOOKUP_LIMIT,
                )
            )
    except (grpc.aio.AioRpcError, Problem):
        raise Problem(503, "registrations-unavailable", "The registrations cannot be read now") from None
    found = [r for r in answer.registrations if r.status not in ("open", "deleted")]
    if not found:
        return []
    async with files.db.session([organisation_id]) as session:
        linked = set(
            (
                await session.execute(
                    select(distinct(FileLink.registration_id)).where(
                        FileLink.registration_id.in_([r.id for r in found])
                    )
                )
            ).scalars()
        )
    out = []
    for r in found:
        if r.id in linked:
            continue
        created = datetime.fromisoformat(r.created_at)
        out.append(
            LateVcf(
                registration_id=r.id,
                registration_code=r.registration_code,
                status=r.status,
                filename=str(json.loads(r.values_json or "{}").get(VCF_FIELD, "")),
                created_at=created,
                late_since=created + wait,
            )
        )
    return sorted(out, key=lambda late: (late.created_at, late.registration_id))


async def watch(files: Files, now: datetime | None = None) -> int:
    """The late-VCF gauge, over the organisations that have sent intake a file (the labs
    that send VCFs); the REST list answers for any organisation."""
    async with files.db.system_session() as session:
        # Acting for each organisation as one of its senders (whose work the check is).
        rows = (
            await session.execute(
                select(IntakeFile.organisation_id, func.max(IntakeFile.sender)).group_by(
                    IntakeFile.organisation_id
                )
            )
        ).all()
    total = 0
    for organisation_id, sender in rows:
        try:
            total += len(await late_vcfs(files, organisation_id, sender, now))
        except Problem:
            log.info("late VCFs not checked", extra={"organisation_id": organisation_id})
            return total
    metrics.LATE_VCFS.set(total)
    return total
