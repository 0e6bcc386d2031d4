"""Identity's internal edge: organisations for other services."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from typing import Any, cast

import grpc
from sqlalchemy import func, select

from hdhub.common.auth import Action
from hdhub.common.db import utcnow
from hdhub.common.errors import FieldProblem, Problem, forbidden, invalid, not_found
from hdhub.common.grpc import ServicerContext, require_operator, require_principal
from hdhub.common.jobs import PLAIN_TEXT_MESSAGE, plain_text
from hdhub.identity import nihdi
from hdhub.identity.backend import ClientRecord, MemberRecord
from hdhub.identity.directory import AuditSearch, Directory, requested_registries
from hdhub.identity.ratelimit import Throttled, throttled_problem
from hdhub.identity.store import AccountRequest, AuditEntry, Organisation, SftpCredential
from hdhub.proto.identity.v1 import identity_pb2 as pb
from hdhub.proto.identity.v1 import identity_pb2_grpc as pb_grpc


def _org(o: Organisation) -> pb.Organisation:
    return pb.Organisation(id=o.id, title=o.title, nihdi_number=o.nihdi_number)


#: An operator action's name (stored as ``operator.<action>``): ``catalogue.published``.
_OPERATOR_ACTION = re.compile(r"[a-z][a-z_]{0,30}(?:\.[a-z][a-z_]{0,30}){1,2}")


class _OwnMethods(pb_grpc.IdentityServiceServicer):
    def __init__(self, service: Any) -> None:
        self.service = service

    async def ListMyOrganisations(
        self, request: pb.ListMyOrganisationsRequest, context: ServicerContext
    ) -> pb.ListMyOrganisationsResponse:
        """The caller's organisations (from the forwarded token) with the caller's roles."""
        principal = require_principal()
        ids = principal.organisations_for(Action.ORGANISATION_READ)
        async with self.service.db.system_session() as session:
            orgs = (
                await session.execute(
                    select(Organisation).where(Organisation.id.in_(ids)).order_by(Organisation.title)
                )
            ).scalars()
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
        return pb.VerifySftpPasswordResponse(
            username=credential.username, organisation_id=credential.organisation_id
        )


# --- the Self-Service Portal's administration (the portal's pages) -----------------------
# Thin: each method is the REST route's twin over Directory, which holds every rule.


def _member(m: MemberRecord) -> pb.Member:
    a = m.account
    return pb.Member(
        account_id=a.id,
        username=a.username,
        email=a.email,
        first_name=a.first_name,
        last_name=a.last_name,
        roles=sorted(m.roles),
        must_change_password=a.must_change_password,
        registries=sorted(m.registries),
    )


def _client(c: ClientRecord) -> pb.Client:
    return pb.Client(
        client_id=c.client_id,
        organisation_id=c.organisation_id,
        name=c.name,
        roles=sorted(c.roles),
        enabled=c.enabled,
        registries=sorted(c.registries),
    )


def _time(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _sftp(c: SftpCredential) -> pb.SftpLogin:
    return pb.SftpLogin(
        username=c.username,
        organisation_id=c.organisation_id,
        name=c.name,
        enabled=c.enabled,
        created_at=_time(c.created_at),
        created_by=c.created_by,
        rotated_at=_time(c.rotated_at),
        last_login_at=_time(c.last_login_at),
    )


def _request(r: AccountRequest) -> pb.AccountRequest:
    return pb.AccountRequest(
        id=r.id,
        organisation_id=r.organisation_id,
        username=r.username,
        first_name=r.first_name,
        last_name=r.last_name,
        email=r.email,
        data_collections=list(r.data_collections),
        requested_registries=sorted(requested_registries(r.data_collections)),
        requester_email=r.requester_email or "",
        status=r.status,
        created_at=_time(r.created_at),
        decided_at=_time(r.decided_at),
        decided_by=r.decided_by or "",
        reason=r.reason or "",
    )


def _day(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid([FieldProblem(field, "date", "A date is written YYYY-MM-DD.")]) from None


def _size(requested: int) -> int:
    return max(1, min(requested or 50, 200))


class AdministrationMethods:
    """The administration half of :class:`IdentityServicer` (mixed in)."""

    service: Any

    @property
    def _d(self) -> Directory:
        return cast(Directory, self.service.directory)

    async def CreateOrganisation(
        self, request: pb.CreateOrganisationRequest, context: ServicerContext
    ) -> pb.CreateOrganisationResponse:
        """Create an organisation; the caller (a User Manager) becomes its User Manager."""
        org = await self._d.create_organisation(
            require_principal(), title=request.title, nihdi_number=request.nihdi_number
        )
        return pb.CreateOrganisationResponse(
            organisation=pb.Organisation(id=org.id, title=org.title, nihdi_number=org.nihdi_number)
        )

    async def AppointFirstUserManager(
        self, request: pb.AppointFirstUserManagerRequest, context: ServicerContext
    ) -> pb.AppointFirstUserManagerResponse:
        """A new organisation and its first User Manager (the central operator only)."""
        org, added = await self._d.appoint_first_user_manager(
            require_principal(),
            title=request.title,
            nihdi_number=request.nihdi_number,
            email=request.email,
            first_name=request.first_name,
            last_name=request.last_name,
            username=request.username or None,
        )
        return pb.AppointFirstUserManagerResponse(
            organisation=pb.Organisation(id=org.id, title=org.title, nihdi_number=org.nihdi_number),
            user_manager=_member(added.member),
            initial_password=added.initial_password or "",
        )

    async def UpdateOrganisation(
        self, request: pb.UpdateOrganisationRequest, context: ServicerContext
    ) -> pb.UpdateOrganisationResponse:
        """Change an organisation's title or NIHDI number (its User Manager)."""
        org = await self._d.update_organisation(
            require_principal(), request.id, title=request.title, nihdi_number=request.nihdi_number
        )
        return pb.UpdateOrganisationResponse(
            organisation=pb.Organisation(id=org.id, title=org.title, nihdi_number=org.nihdi_number)
        )

    async def CheckNihdiNumber(
        self, request: pb.CheckNihdiNumberRequest, context: ServicerContext
    ) -> pb.CheckNihdiNumberResponse:
        """The problems of a NIHDI number as typed, by the one rule (hdhub.identity.nihdi)."""
        found = nihdi.problems(request.nihdi_number)
        return pb.CheckNihdiNumberResponse(
            problems=[pb.FieldProblem(field=p.field, rule=p.rule, message=p.message) for p in found],
            normalised="" if found else nihdi.normalise(request.nihdi_number),
        )

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: ServicerContext
    ) -> pb.ListMembersResponse:
        """One page of an organisation's members (User Manager, DP Manager)."""
        page, total, _skipped, after = await self._d.members_page(
            require_principal(),
            request.organisation_id,
            query=request.query,
            role=request.role,
            after_email=request.after_email,
            size=_size(request.page_size),
        )
        return pb.ListMembersResponse(members=[_member(m) for m in page], total=total, next_after_email=after)

    async def AddMember(self, request: pb.AddMemberRequest, context: ServicerContext) -> pb.AddMemberResponse:
        """Add a member by e-mail; a new account's initial password is answered once."""
        added = await self._d.add_member(
            require_principal(),
            request.organisation_id,
            email=request.email,
            first_name=request.first_name,
            last_name=request.last_name,
            roles=list(request.roles),
            registries=list(request.registries) or None,
        )
        return pb.AddMemberResponse(
            member=_member(added.member), initial_password=added.initial_password or ""
        )

    async def SetMemberRoles(
        self, request: pb.SetMemberRolesRequest, context: ServicerContext
    ) -> pb.SetMemberRolesResponse:
        """Set a member's roles."""
        m = await self._d.set_roles(
            require_principal(), request.organisation_id, request.account_id, list(request.roles)
        )
        return pb.SetMemberRolesResponse(member=_member(m))

    async def SetMemberRegistries(
        self, request: pb.SetMemberRegistriesRequest, context: ServicerContext
    ) -> pb.SetMemberRegistriesResponse:
        """Grant a member exactly these registries."""
        m = await self._d.set_registries(
            require_principal(), request.organisation_id, request.account_id, list(request.registries)
        )
        return pb.SetMemberRegistriesResponse(member=_member(m))

    async def RemoveMember(
        self, request: pb.RemoveMemberRequest, context: ServicerContext
    ) -> pb.RemoveMemberResponse:
        """Remove a member from the organisation; the account stays."""
        await self._d.remove_member(require_principal(), request.organisation_id, request.account_id)
        return pb.RemoveMemberResponse()

    async def CancelAccount(
        self, request: pb.CancelAccountRequest, context: ServicerContext
    ) -> pb.CancelAccountResponse:
        """Cancel an account everywhere, with the reason in the audit log."""
        await self._d.cancel_account(
            require_principal(), request.account_id, reason=request.reason.strip() or None
        )
        return pb.CancelAccountResponse()

    async def ChangeOwnPassword(
        self, request: pb.ChangeOwnPasswordRequest, context: ServicerContext
    ) -> pb.ChangeOwnPasswordResponse:
        """Change the caller's password; wrong current passwords count towards the login throttle."""
        principal = require_principal()
        if principal.is_system:
            raise Problem(400, "not-a-person", "Hospital-system clients have secrets, not passwords")
        logins, source = self.service.logins, request.client_address or None
        try:
            await logins.check(principal.username, source)
            try:
                await self._d.change_password(
                    principal.username, request.current_password, request.new_password
                )
            except Problem as exc:
                if exc.slug != "invalid-credentials":
                    raise
                await logins.failed(principal.username, source)
                raise invalid(
                    [FieldProblem("current_password", "wrong-password", "The current password is wrong")]
                ) from exc
            await logins.succeeded(principal.username, source)
        except Throttled as exc:
            raise throttled_problem(exc) from exc
        return pb.ChangeOwnPasswordResponse()

    async def ListClients(
        self, request: pb.ListClientsRequest, context: ServicerContext
    ) -> pb.ListClientsResponse:
        """Hospital-system clients of an organisation."""
        return pb.ListClientsResponse(
            clients=[_client(c) for c in await self._d.clients(require_principal(), request.organisation_id)]
        )

    async def CreateClient(
        self, request: pb.CreateClientRequest, context: ServicerContext
    ) -> pb.CreateClientResponse:
        """Create a client; the secret is answered once."""
        client, secret = await self._d.create_client(
            require_principal(),
            request.organisation_id,
            client_id=request.client_id or None,
            name=request.name,
            roles=list(request.roles),
            registries=list(request.registries) or None,
        )
        return pb.CreateClientResponse(client=_client(client), client_secret=secret)

    async def RotateClientSecret(
        self, request: pb.RotateClientSecretRequest, context: ServicerContext
    ) -> pb.RotateClientSecretResponse:
        """A new secret for a client, answered once; the old one's tokens stop."""
        client, secret = await self._d.rotate_client_secret(
            require_principal(), request.organisation_id, request.client_id
        )
        return pb.RotateClientSecretResponse(client=_client(client), client_secret=secret)

    async def DeleteClient(
        self, request: pb.DeleteClientRequest, context: ServicerContext
    ) -> pb.DeleteClientResponse:
        """Delete a client."""
        await self._d.delete_client(require_principal(), request.organisation_id, request.client_id)
        return pb.DeleteClientResponse()

    async def ListSftpLogins(
        self, request: pb.ListSftpLoginsRequest, context: ServicerContext
    ) -> pb.ListSftpLoginsResponse:
        """SFTP logins of an organisation."""
        found = await self._d.sftp_credentials(require_principal(), request.organisation_id)
        return pb.ListSftpLoginsResponse(logins=[_sftp(c) for c in found])

    async def CreateSftpLogin(
        self, request: pb.CreateSftpLoginRequest, context: ServicerContext
    ) -> pb.CreateSftpLoginResponse:
        """Create an SFTP login; the password is answered once."""
        credential, password = await self._d.create_sftp_credential(
            require_principal(), request.organisation_id, username=request.username or None, name=request.name
        )
        return pb.CreateSftpLoginResponse(login=_sftp(credential), password=password)

    async def RotateSftpPassword(
        self, request: pb.RotateSftpPasswordRequest, context: ServicerContext
    ) -> pb.RotateSftpPasswordResponse:
        """A new password for an SFTP login, answered once."""
        credential, password = await self._d.rotate_sftp_password(
            require_principal(), request.organisation_id, request.username
        )
        return pb.RotateSftpPasswordResponse(login=_sftp(credential), password=password)

    async def DeleteSftpLogin(
        self, request: pb.DeleteSftpLoginRequest, context: ServicerContext
    ) -> pb.DeleteSftpLoginResponse:
        """Delete an SFTP login."""
        await self._d.delete_sftp_credential(require_principal(), request.organisation_id, request.username)
        return pb.DeleteSftpLoginResponse()

    async def SubmitAccountRequest(
        self, request: pb.SubmitAccountRequestRequest, context: ServicerContext
    ) -> pb.SubmitAccountRequestResponse:
        """The public v1 account request; throttled like the REST form."""
        logins, source = self.service.logins, request.client_address or None
        try:
            await logins.check(request.email, source)
        except Throttled as exc:
            raise throttled_problem(exc) from exc
        created = await self._d.request_account(
            organisation_id=request.organisation_id,
            username=request.username,
            first_name=request.first_name,
            last_name=request.last_name,
            email=request.email,
            data_collections=list(request.data_collections),
            requester_email=request.requester_email or None,
        )
        return pb.SubmitAccountRequestResponse(request=_request(created))

    async def ListAccountRequests(
        self, request: pb.ListAccountRequestsRequest, context: ServicerContext
    ) -> pb.ListAccountRequestsResponse:
        """An organisation's account requests (its managers)."""
        found = await self._d.account_requests(
            require_principal(), request.organisation_id, request.status or None
        )
        return pb.ListAccountRequestsResponse(requests=[_request(r) for r in found])

    async def DecideAccountRequest(
        self, request: pb.DecideAccountRequestRequest, context: ServicerContext
    ) -> pb.DecideAccountRequestResponse:
        """Approve (the account is created, the applicant mailed) or reject a request."""
        decided, _ = await self._d.decide_account_request(
            require_principal(),
            request.organisation_id,
            request.request_id,
            approve=request.approve,
            reason=request.reason or None,
            registries=list(request.registries) or None,
        )
        return pb.DecideAccountRequestResponse(request=_request(decided))

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: ServicerContext
    ) -> pb.ListAuditEntriesResponse:
        """The organisation's audit log, newest first, filtered and paged (its managers)."""
        search = AuditSearch(
            actor=request.actor,
            action=request.action,
            from_date=_day(request.from_date, "from_date"),
            to_date=_day(request.to_date, "to_date"),
            before_id=request.before_id,
            size=_size(request.page_size),
        )
        rows, total, _skipped, before = await self._d.audit_page(
            require_principal(), request.organisation_id, search
        )
        entries = [
            pb.AuditEntry(
                id=e.id,
                at=_time(e.at),
                actor=e.actor,
                action=e.action,
                target=e.target,
                details_json=json.dumps(e.details, default=str),
            )
            for e in rows
        ]
        return pb.ListAuditEntriesResponse(entries=entries, total=total, next_before_id=before)


class OperatorMethods(AdministrationMethods):
    """The operator's console: installation-wide reads, operator only."""

    async def ListStaleAccountRequests(
        self, request: pb.ListStaleAccountRequestsRequest, context: ServicerContext
    ) -> pb.ListStaleAccountRequestsResponse:
        """Per organisation, account requests pending after ``older_than_days`` (7): how many,
        and the oldest. Counts only: the applicants stay with the organisation's managers."""
        require_operator()
        cutoff = utcnow() - timedelta(days=request.older_than_days or 7)
        r = AccountRequest
        async with self._d.db.system_session() as session:
            rows = await session.execute(
                select(r.organisation_id, func.count(), func.min(r.created_at))
                .where(r.status == "pending", r.created_at < cutoff)
                .group_by(r.organisation_id)
                .order_by(func.min(r.created_at))
            )
            return pb.ListStaleAccountRequestsResponse(
                organisations=[
                    pb.StaleAccountRequests(organisation_id=org, pending=n, oldest_at=_time(oldest))
                    for org, n, oldest in rows
                ]
            )

    async def ListInstallationOrganisations(
        self, request: pb.ListInstallationOrganisationsRequest, context: ServicerContext
    ) -> pb.ListInstallationOrganisationsResponse:
        """Every organisation, by title: the console names those its counts are about."""
        require_operator()
        async with self._d.db.system_session() as session:
            orgs = list((await session.execute(select(Organisation).order_by(Organisation.title))).scalars())
        members = await self._d.backend.member_counts([o.id for o in orgs])
        return pb.ListInstallationOrganisationsResponse(
            organisations=[_org(o) for o in orgs], members=members
        )

    async def RecordOperatorAction(
        self, request: pb.RecordOperatorActionRequest, context: ServicerContext
    ) -> pb.RecordOperatorActionResponse:
        """The operator's action elsewhere in the installation's audit log, as
        ``operator.<action>`` with who, on which organisation, what, why and how many."""
        principal = require_operator()
        problems = []
        if not _OPERATOR_ACTION.fullmatch(request.action):
            problems.append(
                FieldProblem("action", "format", "Lower-case words joined by dots: catalogue.published.")
            )
        if len(request.target) > 200:
            problems.append(FieldProblem("target", "length", "At most 200 characters."))
        if len(request.reason) > 500:
            problems.append(FieldProblem("reason", "length", "At most 500 characters."))
        for name in ("target", "reason"):
            if not plain_text(getattr(request, name)):
                problems.append(FieldProblem(name, "characters", PLAIN_TEXT_MESSAGE))
        if problems:
            raise invalid(problems)
        if (
            request.organisation_id
            and await self._d.backend.get_organisation(request.organisation_id) is None
        ):
            raise not_found("Organisation")
        details: dict[str, Any] = {}
        if request.reason.strip():
            details["reason"] = request.reason.strip()
        if request.count:
            details["count"] = request.count
        async with self._d.db.system_session() as session:
            entry = AuditEntry(
                organisation_id=request.organisation_id,
                actor=principal.username,
                actor_id=principal.subject,
                action=f"operator.{request.action}",
                target=request.target,
                details=details,
            )
            session.add(entry)
            await session.flush()
            return pb.RecordOperatorActionResponse(id=entry.id)

    async def ListInstallationAudit(
        self, request: pb.ListInstallationAuditRequest, context: ServicerContext
    ) -> pb.ListInstallationAuditResponse:
        """Every organisation's audit entries, newest first, a page at a time (keyset on id)."""
        require_operator()
        size = _size(request.page_size)
        q = select(AuditEntry)
        if request.action:
            q = q.where(AuditEntry.action.startswith(request.action, autoescape=True))
        if request.before_id:
            q = q.where(AuditEntry.id < request.before_id)
        async with self._d.db.system_session() as session:
            rows = list((await session.execute(q.order_by(AuditEntry.id.desc()).limit(size + 1))).scalars())
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListInstallationAuditResponse(
            entries=[
                pb.AuditEntry(
                    id=e.id,
                    at=_time(e.at),
                    actor=e.actor,
                    action=e.action,
                    target=e.target,
                    organisation_id=e.organisation_id,
                    # The operator's own reason and count; other entries' details stay
                    # with their organisation.
                    details_json=json.dumps(e.details) if e.action.startswith("operator.") else "",
                )
                for e in rows
            ],
            next_before_id=rows[-1].id if more and rows else 0,
        )


class IdentityServicer(OperatorMethods, _OwnMethods):
    """Identity's gRPC service: organisations for every service, administration for the portal."""
