"""Intake's internal edge (hdhub.intake.v1): which files an organisation's registration has."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hdhub.common.auth import Action
from hdhub.common.errors import Problem, forbidden
from hdhub.common.grpc import ServicerContext, register_idempotent, require_principal
from hdhub.intake.files import Listing
from hdhub.intake.store import ABORTED, ACCEPTED, LOADED, RECEIVED, RECEIVING, REJECTED, IntakeFile
from hdhub.proto.intake.v1 import intake_pb2 as pb
from hdhub.proto.intake.v1 import intake_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from hdhub.intake.runtime import IntakeService

register_idempotent("hdhub.intake.v1.IntakeService", ["ListFiles"])

STATES = {
    RECEIVING: pb.FILE_STATE_RECEIVING,
    RECEIVED: pb.FILE_STATE_RECEIVED,
    ABORTED: pb.FILE_STATE_ABORTED,
    ACCEPTED: pb.FILE_STATE_ACCEPTED,
    REJECTED: pb.FILE_STATE_REJECTED,
    LOADED: pb.FILE_STATE_LOADED,
}


def file_message(f: IntakeFile, listing: Listing) -> pb.IntakeFile:
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
        unmatched=f.unmatched,
        links=[
            pb.Link(registration_id=k.registration_id, field=k.field, recordname=k.recordname)
            for k in listing.links.get(f.id, [])
        ],
        received_at=f.received_at.isoformat() if f.received_at else "",
    )


class IntakeServicer(pb_grpc.IntakeServiceServicer):
    def __init__(self, service: IntakeService) -> None:
        self.service = service

    async def ListFiles(self, request: pb.ListFilesRequest, context: ServicerContext) -> pb.ListFilesResponse:
        """Files of an organisation (optionally those linked to one registration), for a
        caller that may read the organisation's registrations (a member or a service)."""
        principal = require_principal()
        if not request.organisation_id:
            raise Problem(400, "organisation-required", "organisation_id is required")
        # Registrations shows a registration's files, uploads checks a linked upload's file:
        # both as themselves (their service roles carry no registration:read of their own).
        if not (
            principal.can(Action.REGISTRATION_READ, request.organisation_id)
            or principal.is_service(*self.service.settings.file_reader_services)
        ):
            raise forbidden()
        listing = await self.service.files.listing(
            request.organisation_id,
            registration_id=request.registration_id or None,
            limit=min(request.limit or 100, 1000),
        )
        return pb.ListFilesResponse(files=[file_message(f, listing) for f in listing.files])
