"""Identity's internal edge: organisations for other services."""

from __future__ import annotations

from typing import Any

import grpc
from sqlalchemy import select

from hdhub.common.auth import Action
from hdhub.common.errors import Problem, forbidden
from hdhub.common.grpc import ServicerContext, register_idempotent, require_principal
from hdhub.identity.store import Organisation
from hdhub.proto.identity.v1 import identity_pb2 as pb
from hdhub.proto.identity.v1 import identity_pb2_grpc as pb_grpc

register_idempotent("hdhub.identity.v1.IdentityService", ["ListMyOrganisations", "GetOrganisation"])


def _org(o: Organisation) -> pb.Organisation:
    return pb.Organisation(id=o.id, title=o.title, nihdi_number=o.nihdi_number)


class IdentityServicer(pb_grpc.IdentityServiceServicer):
    def __init__(self, service: Any) -> None:
        self.service = service

    async def ListMyOrganisations(
        self, request: pb.ListMyOrganisationsRequest, context: ServicerContext
    ) -> pb.ListMyOrganisationsResponse:
        """The caller's organisations (from the forwarded token) with the caller's roles."""
        principal = require_principal()
        ids = principal.organisations_for(Action.ORGANISATION_READ)
        async with self.service.db.system_session() as session:
            orgs = (await session.execute(select(Organisation).where(Organisation.id.in_(ids)).order_by(Organisation.title))).scalars()
            return pb.ListMyOrganisationsResponse(
                memberships=[
                    pb.OrganisationMembership(organisation=_org(o), roles=sorted(principal.roles_in(o.id)))
                    for o in orgs
                ]
            )

    async def GetOrganisation(
        self, request: pb.GetOrganisationRequest, context: ServicerContext
    ) -> pb.GetOrganisationResponse:
        """One organisation the caller belongs to; NOT_FOUND otherwise (existence is not revealed)."""
        principal = require_principal()
        if not principal.can(Action.ORGANISATION_READ, request.id):
            await context.abort(grpc.StatusCode.NOT_FOUND, "organisation not found")
        async with self.service.db.system_session() as session:
            org = await session.get(Organisation, request.id)
            if org is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, "organisation not found")
            return pb.GetOrganisationResponse(organisation=_org(org))

    async def VerifySftpPassword(
        self, request: pb.VerifySftpPasswordRequest, context: ServicerContext
    ) -> pb.VerifySftpPasswordResponse:
        """An SFTP login's organisation when its password is right. Only the intake service
        asks (it runs the SFTP server); failures count towards the same throttle as portal
        logins, keyed ``sftp:<username>`` and the SFTP client's address, so a password cannot be
        guessed over SFTP either."""
        from hdhub.identity.ratelimit import Throttled, throttled_problem

        principal = require_principal()
        if not principal.is_service("intake"):
            raise forbidden("Only the intake service verifies SFTP passwords.")
        logins, who = self.service.logins, f"sftp:{request.username.strip().lower()}"
        source = request.client_address or None
        try:
            await logins.check(who, source)
            credential = await self.service.directory.verify_sftp_password(request.username, request.password)
            if credential is None:
                await logins.failed(who, source)
                raise Problem(401, "invalid-credentials", "Wrong SFTP username or password")
            await logins.succeeded(who, source)
        except Throttled as exc:
            raise throttled_problem(exc) from exc
        return pb.VerifySftpPasswordResponse(username=credential.username, organisation_id=credential.organisation_id)
