"""Linking files to registrations through registrations' gRPC API, as the intake service.

- NGS: the VCF's name equals TX_VCF_FILE_NAME of exactly one registration of the
  organisation (project HDBP0257). None yet: the file stays unmatched. Several: it stays
  unmatched with the reason, until exactly one names it.
- HIV_Sequence: every metadata registration whose TX_ATT is the file's ``filename`` is
  linked to the file (1-to-many), and each recordname to the one registration whose
  TX_ATT_RECRD it is (1-to-1). The file is matched once every recordname is.

Unmatched files are linked again on each relink run (a cheap periodic retry, every
``relink_seconds``), so a registration that arrives later finds its file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from hdhub.common.auth import ActingFor
from hdhub.common.db import after_commit, utcnow
from hdhub.common.grpc import channel
from hdhub.common.service_auth import acting_as_service
from hdhub.intake.domain.names import HIV_SEQUENCE, NGS
from hdhub.intake.files import SEND_JOB, Files
from hdhub.intake.store import ACCEPTED, ACKNOWLEDGED, LINKED, SENT, FileLink, FileRecord, IntakeFile
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc

log = logging.getLogger("hdhub.intake.linking")

VCF_FIELD, FILE_FIELD, RECORD_FIELD = "TX_VCF_FILE_NAME", "TX_ATT", "TX_ATT_RECRD"
#: Registrations fetched per look-up: a sequence file has at most this many metadata records.
LOOKUP_LIMIT = 1000
#: States of a file that was fully linked.
LINKED_ON = (LINKED, SENT, ACKNOWLEDGED)


@dataclass
class Match:
    links: list[tuple[str, str, str]] = field(default_factory=list)  # registration, field, recordname
    records: dict[str, str] = field(default_factory=dict)  # recordname -> registration
    problem: str = ""
    complete: bool = False


async def _find(f: IntakeFile, field_name: str, value: str, project: str) -> list[pb.Registration]:
    stub = pb_grpc.RegistrationsServiceStub(channel("registrations"))
    # For the file's organisation and sender only: whoever delivered it started this work.
    async with acting_as_service("intake", ActingFor(f.organisation_id, f.sender)):
        response = await stub.FindRegistrationsByField(
            pb.FindRegistrationsByFieldRequest(
                organisation_id=f.organisation_id,
                field=field_name,
                value=value,
                project_code=project,
                limit=LOOKUP_LIMIT,
            )
        )
    return list(response.registrations)


async def match(f: IntakeFile, recordnames: list[str]) -> Match:
    if f.registry_folder == NGS.folder:
        found = await _find(f, VCF_FIELD, f.filename, NGS.project_code)
        if len(found) == 1:
            return Match(links=[(found[0].id, VCF_FIELD, "")], complete=True)
        if len(found) > 1:
            return Match(
                problem=f"{len(found)} registrations name this VCF file; it is linked once exactly one does"
            )
        return Match(problem="no registration names this VCF file yet")
    found = await _find(f, FILE_FIELD, f.filename_value, HIV_SEQUENCE.project_code)
    result = Match(links=[(r.id, FILE_FIELD, "") for r in found])
    by_record: dict[str, list[str]] = {}
    for r in found:
        values = json.loads(r.values_json or "{}")
        by_record.setdefault(str(values.get(RECORD_FIELD, "")), []).append(r.id)
    missing = 0
    for name in recordnames:
        ids = by_record.get(name, [])
        if len(ids) == 1:
            result.records[name] = ids[0]
            result.links.append((ids[0], RECORD_FIELD, name))
        else:
            missing += 1
    result.complete = missing == 0
    if missing:
        result.problem = (
            f"{missing} of {len(recordnames)} recordnames have no single registration naming them yet"
        )
    return result


async def link(files: Files, file_id: str) -> bool:
    """Link one accepted file as far as its registrations allow; True when fully matched."""
    async with files.db.system_session() as session:
        f = await session.get(IntakeFile, file_id)
        if f is None or f.state != ACCEPTED:
            return f is not None and f.state in LINKED_ON  # linked before: matched
        recordnames = list(
            (
                await session.execute(
                    select(FileRecord.recordname).where(FileRecord.file_id == file_id).order_by(FileRecord.id)
                )
            ).scalars()
        )
    found = await match(f, recordnames)
    async with files.db.session([f.organisation_id]) as session:
        # Two linkers of one file (its link job and a relink run) take turns on its row, so
        # the second sees the first's links instead of inserting them again.
        current = await session.get(IntakeFile, file_id, with_for_update=True)
        if current is None or current.state != ACCEPTED:
            return current is not None and current.state in LINKED_ON
        existing = {
            (link.registration_id, link.recordname)
            for link in (await session.execute(select(FileLink).where(FileLink.file_id == file_id))).scalars()
        }
        for registration_id, field_name, recordname in found.links:
            if (registration_id, recordname) not in existing:
                session.add(
                    FileLink(
                        organisation_id=f.organisation_id,
                        file_id=file_id,
                        registration_id=registration_id,
                        field=field_name,
                        recordname=recordname,
                    )
                )
        if found.records:
            for record in (
                await session.execute(select(FileRecord).where(FileRecord.file_id == file_id))
            ).scalars():
                if record.recordname in found.records:
                    record.registration_id = found.records[record.recordname]
        current.unmatched = not found.complete
        current.link_problem = found.problem
        current.updated_at = utcnow()
        if found.complete:
            current.linked_at = utcnow()
            current.state = LINKED
            files.jobs.enqueue(
                session, SEND_JOB, organisation_id=f.organisation_id, subject_id=file_id, actor=f.sender
            )
            after_commit(session, files.wake.notify)
    log.info(
        "file linked" if found.complete else "file not yet matched",
        extra={"organisation_id": f.organisation_id, "file_id": file_id, "links": len(found.links)},
    )
    return found.complete
