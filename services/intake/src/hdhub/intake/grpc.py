"""Intake's internal edge (hdhub.intake.v1): an organisation's files, for the services that
link them and for the portal's Files pages, and the web upload for a person (a file
streamed in chunks into the same path as SFTP files). The REST routes' rules: reading
needs ``registration:read`` in the organisation, sending ``registration:write``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING

from hdhub.common.auth import Action, Principal
from hdhub.common.errors import Problem, forbidden, not_found, organisation_required
from hdhub.common.grpc import ServicerContext, require_operator, require_principal
from hdhub.common.parked_jobs import archive_parked_jobs, list_parked_jobs, retry_parked_jobs
from hdhub.common.tallies import read_tallies
from hdhub.intake.deps import granted_folders, require_folder
from hdhub.intake.files import Listing, TransferRefused
from hdhub.intake.store import (
    ABORTED,
    ACCEPTED,
    ACKNOWLEDGED,
    LINKED,
    LOADED,
    RECEIVED,
    RECEIVING,
    REJECTED,
    SENT,
    IntakeFile,
    IntakeFileTally,
    Job,
)
from hdhub.proto.intake.v1 import intake_pb2 as pb
from hdhub.proto.intake.v1 import intake_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from hdhub.intake.runtime import IntakeService

STATES = {
    RECEIVING: pb.FILE_STATE_RECEIVING,
    RECEIVED: pb.FILE_STATE_RECEIVED,
    ABORTED: pb.FILE_STATE_ABORTED,
    ACCEPTED: pb.FILE_STATE_ACCEPTED,
    REJECTED: pb.FILE_STATE_REJECTED,
    LOADED: pb.FILE_STATE_LOADED,
    LINKED: pb.FILE_STATE_LINKED,
    SENT: pb.FILE_STATE_SENT,
    ACKNOWLEDGED: pb.FILE_STATE_ACKNOWLEDGED,
}


def moment(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def file_message(f: IntakeFile, listing: Listing) -> pb.IntakeFile:
    total, linked = listing.records.get(f.id, (0, 0))
    return pb.IntakeFile(
        id=f.id,
        organisation_id=f.organisation_id,
        registry=f.registry_folder,
        filename=f.filename,
        size=f.size or 0,
        sha256=f.sha256 or "",
        state=STATES.get(f.state, pb.FILE_STATE_UNSPECIFIED),
        rejection_rule=f.rule,
        rejection=f.reason,
        send_problem=f.send_problem or "",
        unmatched=f.unmatched,
        links=[
            pb.Link(registration_id=k.registration_id, field=k.field, recordname=k.recordname)
            for k in listing.links.get(f.id, [])
        ],
        received_at=moment(f.received_at),
        source=f.source,
        sender=f.sender,
        bytes_received=f.bytes_received or 0,
        recordnames=total,
        recordnames_linked=linked,
        started_at=moment(f.started_at),
        delivered_at=moment(f.delivered_at),
        linked_at=moment(f.linked_at),
        loaded_at=moment(f.loaded_at),
        content_purged=f.content_purged_at is not None,
        sent_at=moment(f.sent_at),
        acknowledged_at=moment(f.acknowledged_at),
        central_offset=f.central_offset or 0,
    )


def _organisation(organisation_id: str) -> str:
    if not organisation_id:
        raise organisation_required()
    return organisation_id


class IntakeServicer(pb_grpc.IntakeServiceServicer):
    def __init__(self, service: IntakeService) -> None:
        self.service = service

    def _reader(self, organisation_id: str) -> Principal:
        """A caller that may read the organisation's registrations (a member, or a service
        listed in ``file_reader_services`` acting for it); PERMISSION_DENIED otherwise."""
        principal = require_principal()
        # Registrations shows a registration's files, uploads checks a linked upload's file:
        # both as themselves (their service roles carry no registration:read of their own).
        if not (
            principal.can(Action.REGISTRATION_READ, organisation_id)
            or principal.is_service(*self.service.settings.file_reader_services)
        ):
            raise forbidden()
        return principal

    async def ListFiles(self, request: pb.ListFilesRequest, context: ServicerContext) -> pb.ListFilesResponse:
        """A page of an organisation's files, newest first, with their total, optionally by
        state, registry, unmatched or registration, for a caller that may read the organisation's registrations (a
        member or a service)."""
        organisation_id = _organisation(request.organisation_id)
        reader = self._reader(organisation_id)
        state = next((name for name, value in STATES.items() if value == request.state), None)
        listing = await self.service.files.listing(
            organisation_id,
            state=state,
            registry=request.registry or None,
            unmatched=True if request.unmatched else None,
            registration_id=request.registration_id or None,
            limit=min(request.limit or 100, 1000),
            offset=request.offset,
            folders=granted_folders(reader, organisation_id),
        )
        return pb.ListFilesResponse(
            files=[file_message(f, listing) for f in listing.files], total=listing.total
        )

    async def GetFile(self, request: pb.GetFileRequest, context: ServicerContext) -> pb.GetFileResponse:
        """One file of an organisation, for a caller that may read its registrations;
        NOT_FOUND when it has no file by that id."""
        organisation_id = _organisation(request.organisation_id)
        reader = self._reader(organisation_id)
        listing = await self.service.files.listing(
            organisation_id, file_id=request.id, limit=1, folders=granted_folders(reader, organisation_id)
        )
        if not listing.files:
            raise not_found("File")
        return pb.GetFileResponse(file=file_message(listing.files[0], listing))

    async def UploadFile(
        self, request_iterator: AsyncIterator[pb.UploadFileRequest], context: ServicerContext
    ) -> pb.UploadFileResponse:
        """A file sent as the web upload does: header, then chunks, streamed into the object
        store as they arrive and delivered (checked, accepted or rejected) when the stream
        ends. Whoever may write the organisation's registrations may (PERMISSION_DENIED
        otherwise); a refused name, an empty file or one over the limit is the problem the
        REST route answers, and the file is listed with its rule."""
        principal = require_principal()
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            raise Problem(400, "header-required", "The first message is the file's header")
        h = first.header
        principal.require(Action.REGISTRATION_WRITE, _organisation(h.organisation_id))
        require_folder(principal, h.organisation_id, h.registry)

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.WhichOneof("part") != "chunk":
                    raise Problem(400, "header-once", "Only the first message is a header")
                yield message.chunk

        files = self.service.files
        try:
            f = await files.receive(
                organisation_id=h.organisation_id,
                registry=h.registry,
                filename=h.filename,
                source="http",
                sender=principal.username,
                body=chunks(),
            )
        except TransferRefused as exc:
            raise exc.problem() from None
        listing = await files.listing(h.organisation_id, file_id=f.id, limit=1)
        return pb.UploadFileResponse(file=file_message(listing.files[0], listing))

    async def OrganisationHealth(
        self, request: pb.OrganisationHealthRequest, context: ServicerContext
    ) -> pb.OrganisationHealthResponse:
        """Files refused (a check failed) and files unmatched (no registration names them)
        per organisation, from the tally the database keeps. Operator only."""
        require_operator()
        async with self.service.db.system_session() as session:
            found = await read_tallies(session, IntakeFileTally)
        return pb.OrganisationHealthResponse(
            organisations=[
                pb.OrganisationCounts(
                    organisation_id=org,
                    counts={
                        "refused": sum(n for b, n in states.items() if b.split("/")[0] == REJECTED),
                        "unmatched": sum(n for b, n in states.items() if b.endswith("/unmatched")),
                    },
                )
                for org, states in sorted(found.items())
            ]
        )

    # --- late VCFs for the portal's Files page (portalret) ---------------------------------

    async def ListParkedJobs(
        self, request: pb.ListParkedJobsRequest, context: ServicerContext
    ) -> pb.ListParkedJobsResponse:
        """This service's parked (or archived) background jobs, grouped; counts only. Operator only."""
        answer: pb.ListParkedJobsResponse = await list_parked_jobs(pb, request, self.service.db, Job)
        return answer

    async def RetryParkedJobs(
        self, request: pb.RetryParkedJobsRequest, context: ServicerContext
    ) -> pb.RetryParkedJobsResponse:
        """Queue an organisation's parked jobs again (one group, or all). Operator only."""
        answer: pb.RetryParkedJobsResponse = await retry_parked_jobs(
            pb, request, self.service.db, Job, service="intake", wake=self.service.files.wake.notify
        )
        return answer

    async def ArchiveParkedJobs(
        self, request: pb.ArchiveParkedJobsRequest, context: ServicerContext
    ) -> pb.ArchiveParkedJobsResponse:
        """Set an organisation's parked jobs aside (one group, or all). Operator only."""
        answer: pb.ArchiveParkedJobsResponse = await archive_parked_jobs(
            pb, request, self.service.db, Job, service="intake"
        )
        return answer

    async def ListLateVcfs(
        self, request: pb.ListLateVcfsRequest, context: ServicerContext
    ) -> pb.ListLateVcfsResponse:
        """The organisation's NGS registrations whose VCF is late, oldest first, as
        ``GET /api/v1/files/{org}/late-vcfs``: a member who may read the organisation's
        registrations (none for one without the NGS registry); PERMISSION_DENIED otherwise."""
        from hdhub.intake.domain.names import NGS
        from hdhub.intake.late import late_vcfs

        organisation_id = _organisation(request.organisation_id)
        principal = require_principal()
        if principal.is_service() or not principal.can(Action.REGISTRATION_READ, organisation_id):
            raise forbidden()
        hours = self.service.files.settings.vcf_late_hours
        if not principal.can_registry(Action.REGISTRATION_READ, organisation_id, NGS.project_code):
            return pb.ListLateVcfsResponse(late_hours=hours)
        found = await late_vcfs(self.service.files, organisation_id, principal.username)
        limit = min(request.limit or 100, 500)
        return pb.ListLateVcfsResponse(
            late=[
                pb.LateVcf(
                    registration_id=v.registration_id,
                    registration_code=v.registration_code,
                    status=v.status,
                    filename=v.filename,
                    created_at=moment(v.created_at),
                    late_since=moment(v.late_since),
                )
                for v in found[request.offset : request.offset + limit]
            ],
            total=len(found),
            late_hours=hours,
        )
