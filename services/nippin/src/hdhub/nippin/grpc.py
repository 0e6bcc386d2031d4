"""NIPPIN's internal edge (hdhub.nippin.v1): registrations hands over submissions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hdhub.common.errors import Problem, forbidden
from hdhub.common.grpc import ServicerContext, register_idempotent, require_principal
from hdhub.nippin.domain.statuses import ARCHIVED, ERROR, INVALID, SENT, TO_SEND
from hdhub.nippin.service import Submission
from hdhub.proto.nippin.v1 import nippin_pb2 as pb
from hdhub.proto.nippin.v1 import nippin_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from hdhub.nippin.runtime import NippinService

# Idempotent per (registration_id, registration_version): safe to retry on UNAVAILABLE.
register_idempotent("hdhub.nippin.v1.NippinService", ["SubmitRegistration"])

STATUSES = {
    TO_SEND: pb.MESSAGE_STATUS_TO_SEND,
    SENT: pb.MESSAGE_STATUS_SENT,
    ERROR: pb.MESSAGE_STATUS_ERROR,
    INVALID: pb.MESSAGE_STATUS_INVALID,
    ARCHIVED: pb.MESSAGE_STATUS_ARCHIVED,
}


class NippinServicer(pb_grpc.NippinServiceServicer):
    def __init__(self, service: NippinService) -> None:
        self.service = service

    async def SubmitRegistration(
        self, request: pb.SubmitRegistrationRequest, context: ServicerContext
    ) -> pb.SubmitRegistrationResponse:
        """Make the NIPPIN message of one submission (once: a repeat answers the first)."""
        principal = require_principal()
        # Only registrations hands over, acting for the organisation (checked by the
        # acting-for interceptor against ``organisation_id``).
        if not principal.is_service("registrations"):
            raise forbidden("Only registrations hands submissions over to NIPPIN.")
        if not request.organisation_id or not request.registration_id or not request.registration_version:
            raise Problem(
                400,
                "submission-incomplete",
                "organisation_id, registration_id and registration_version are required",
            )
        message, duplicate = await self.service.messages.submit(
            Submission(
                organisation_id=request.organisation_id,
                registration_id=request.registration_id,
                registration_version=request.registration_version,
                registration_code=request.registration_code,
                project_code=request.project_code,
                dcd_code=request.dcd_code,
                dcd_version=request.dcd_version,
                fields=tuple((f.xml_name or f.technical_name, f.value) for f in request.fields),
            )
        )
        return pb.SubmitRegistrationResponse(
            message_id=message.id,
            status=STATUSES.get(message.status, pb.MESSAGE_STATUS_UNSPECIFIED),
            duplicate=duplicate,
        )
