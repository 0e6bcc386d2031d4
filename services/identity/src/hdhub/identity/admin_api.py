"""The Self-Service Portal's administration over REST: organisations, members, accounts,
hospital-system clients, v1 account requests and the audit log. Rules live in
:mod:`hdhub.identity.directory`; this module only translates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from hdhub.common.errors import Problem
from hdhub.common.openapi_problems import problems
from hdhub.common.paging import After, Limit, Offset, Page
from hdhub.common.web import CurrentPrincipal
from hdhub.identity.backend import ClientRecord, MemberRecord
from hdhub.identity.deps import DirectoryDep, LoginsDep, SourceAddress
from hdhub.identity.directory import (
    MAX_DATA_COLLECTION_LENGTH,
    MAX_DATA_COLLECTIONS,
    AuditSearch,
    Directory,
    requested_registries,
)
from hdhub.identity.logins import Logins
from hdhub.identity.ratelimit import Throttled, throttled_problem


class OrganisationIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    nihdi_number: str = Field(
        max_length=32, description="8 digits: 6-digit base and 2 check digits (97 - base mod 97)"
    )


class OrganisationCreated(BaseModel):
    id: str
    title: str
    nihdi_number: str
    roles: list[str]


class MemberIn(BaseModel):
    email: str = Field(max_length=254)
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    username: str | None = Field(default=None, max_length=200, description="Defaults to the e-mail")
    roles: list[str] = Field(default_factory=list)
    registries: list[str] | None = Field(
        default=None,
        max_length=100,
        description="Project codes (HDBP0012) or * for every registry; not given: every registry",
    )


class FirstUserManagerIn(OrganisationIn):
    email: str = Field(max_length=254, description="The first User Manager's e-mail")
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    username: str | None = Field(default=None, max_length=200, description="Defaults to the e-mail")


class MemberOut(BaseModel):
    account_id: str
    username: str
    email: str
    first_name: str
    last_name: str
    roles: list[str]
    registries: list[str] = Field(
        description="The registries granted here (project codes), or * for every one"
    )
    must_change_password: bool


class MemberPage(Page[MemberOut]):
    """A page of an organisation's members by e-mail (keyset: ``next`` is the last e-mail)."""


class MemberAdded(MemberOut):
    initial_password: str | None = Field(
        default=None,
        description="Only when the account was created: shown once, to be changed at first login",
    )


class FirstUserManagerOut(BaseModel):
    organisation: OrganisationCreated
    user_manager: MemberAdded


class RolesIn(BaseModel):
    roles: list[str]


class RegistriesIn(BaseModel):
    registries: list[str] = Field(
        max_length=100, description="Project codes (HDBP0012), or * for every registry; [] for none"
    )


class ApprovalIn(BaseModel):
    registries: list[str] | None = Field(
        default=None,
        max_length=100,
        description="The registries to grant; not given: the project codes among the data collections asked for",
    )


class OwnPasswordIn(BaseModel):
    current_password: str = Field(max_length=256)
    new_password: str = Field(max_length=256)


class PasswordChangeIn(OwnPasswordIn):
    username: str = Field(max_length=254)


class ClientIn(BaseModel):
    client_id: str | None = Field(default=None, max_length=100)
    name: str = Field(default="", max_length=200)
    roles: list[str] = Field(default_factory=lambda: ["registrant"])
    registries: list[str] | None = Field(
        default=None,
        max_length=100,
        description="Project codes (HDBP0012) or * for every registry; not given: every registry",
    )


class ClientOut(BaseModel):
    client_id: str
    organisation_id: str
    name: str
    roles: list[str]
    enabled: bool
    registries: list[str]


class ClientPage(Page[ClientOut]):
    """A page of an organisation's hospital-system clients, by client id."""


class ClientWithSecret(ClientOut):
    client_secret: str = Field(description="Shown once: store it in the hospital system now")


class SftpCredentialIn(BaseModel):
    username: str | None = Field(
        default=None, max_length=64, description="Defaults to <organisation>-sftp-<random>"
    )
    name: str = Field(default="", max_length=200)


class SftpCredentialOut(BaseModel):
    username: str
    organisation_id: str
    name: str
    enabled: bool
    created_at: datetime
    created_by: str
    rotated_at: datetime | None
    last_login_at: datetime | None


class SftpCredentialPage(Page[SftpCredentialOut]):
    """A page of an organisation's SFTP logins, by username."""


class SftpCredentialWithPassword(SftpCredentialOut):
    password: str = Field(description="Shown once: store it in the laboratory's SFTP client or script now")


class AccountRequestIn(BaseModel):
    organisation_id: str = Field(max_length=64)
    username: str = Field(max_length=200)
    first_name: str = Field(max_length=100)
    last_name: str = Field(max_length=100)
    email: str = Field(max_length=254)
    data_collections: list[Annotated[str, Field(max_length=MAX_DATA_COLLECTION_LENGTH)]] = Field(
        default_factory=list,
        max_length=MAX_DATA_COLLECTIONS,
        description="One data collection each, by its project code (HDBP0012) and name; an entry "
        "naming exactly one code is granted that registry on approval unless the manager chooses",
    )
    requester_email: str | None = Field(default=None, max_length=254)


class AccountRequestOut(BaseModel):
    id: str
    organisation_id: str
    username: str
    first_name: str
    last_name: str
    email: str
    data_collections: list[str]
    requested_registries: list[str] = Field(
        default_factory=list,
        description="What approving grants unless the manager chooses: the code of each data "
        "collection naming exactly one",
    )
    requester_email: str | None
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None


class AccountRequestPage(Page[AccountRequestOut]):
    """A page of an organisation's account requests, oldest first."""


class DecisionIn(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


class AuditOut(BaseModel):
    at: datetime
    organisation_id: str
    actor: str
    action: str
    target: str
    details: dict[str, Any]


class AuditPage(Page[AuditOut]):
    """A page of the audit log, newest first (keyset: ``next`` is the last entry's id)."""


AFTER_ENTRY = "The `next` of the page before: the entries older than it"


def _member(m: MemberRecord) -> MemberOut:
    a = m.account
    return MemberOut(
        account_id=a.id,
        username=a.username,
        email=a.email,
        first_name=a.first_name,
        last_name=a.last_name,
        roles=sorted(m.roles),
        registries=sorted(m.registries),
        must_change_password=a.must_change_password,
    )


def _client(c: ClientRecord) -> dict[str, Any]:
    return {
        "client_id": c.client_id,
        "organisation_id": c.organisation_id,
        "name": c.name,
        "roles": sorted(c.roles),
        "enabled": c.enabled,
        "registries": sorted(c.registries),
    }


def _request(r: Any) -> AccountRequestOut:
    out = AccountRequestOut.model_validate(r, from_attributes=True)
    out.requested_registries = sorted(requested_registries(r.data_collections))
    return out


organisations = APIRouter(prefix="/api/v1/organisations", tags=["organisations"])
accounts = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])
account_requests = APIRouter(prefix="/api/v1/account-requests", tags=["account requests"])
audit = APIRouter(prefix="/api/v1/audit", tags=["audit"])
operator = APIRouter(prefix="/api/v1/operator", tags=["operator"])


@operator.post(
    "/organisations",
    status_code=201,
    response_model=FirstUserManagerOut,
    summary="Start an installation: an organisation and its first User Manager (the central operator)",
)
async def appoint_first_user_manager(
    body: FirstUserManagerIn, principal: CurrentPrincipal, response: Response, directory: DirectoryDep
) -> FirstUserManagerOut:
    """A new account's initial password is answered once (``user_manager.initial_password``),
    for the service desk to hand over; the person changes it at first login."""
    org, added = await directory.appoint_first_user_manager(
        principal,
        title=body.title,
        nihdi_number=body.nihdi_number,
        email=body.email,
        first_name=body.first_name,
        last_name=body.last_name,
        username=body.username,
    )
    response.headers["Location"] = f"/api/v1/organisations/{org.id}"
    response.headers["Cache-Control"] = "no-store"
    return FirstUserManagerOut(
        organisation=OrganisationCreated(id=org.id, title=org.title, nihdi_number=org.nihdi_number, roles=[]),
        user_manager=MemberAdded(
            **_member(added.member).model_dump(), initial_password=added.initial_password
        ),
    )


@organisations.post(
    "",
    status_code=201,
    response_model=OrganisationCreated,
    summary="Create an organisation (User Manager)",
)
async def create_organisation(
    body: OrganisationIn, principal: CurrentPrincipal, response: Response, directory: DirectoryDep
) -> OrganisationCreated:
    org = await directory.create_organisation(principal, title=body.title, nihdi_number=body.nihdi_number)
    response.headers["Location"] = f"/api/v1/organisations/{org.id}"
    return OrganisationCreated(id=org.id, title=org.title, nihdi_number=org.nihdi_number, roles=["manager"])


@organisations.get("/{organisation_id}/members", response_model=MemberPage, summary="Members and their roles")
async def list_members(
    organisation_id: str,
    principal: CurrentPrincipal,
    directory: DirectoryDep,
    limit: Limit = 100,
    after: After = None,
) -> MemberPage:
    """By e-mail; ``after`` (the page before's ``next``) goes on after that e-mail."""
    found, total, skipped, next_email = await directory.members_page(
        principal, organisation_id, after_email=after or "", size=limit
    )
    items = [_member(m) for m in found]
    return MemberPage(items=items, total=total, limit=limit, offset=skipped, next=next_email or None)


@organisations.post(
    "/{organisation_id}/members",
    status_code=201,
    response_model=MemberAdded,
    summary="Add a member by e-mail (a new account gets an initial password, shown once)",
)
async def add_member(
    organisation_id: str,
    body: MemberIn,
    principal: CurrentPrincipal,
    response: Response,
    directory: DirectoryDep,
) -> MemberAdded:
    added = await directory.add_member(
        principal,
        organisation_id,
        email=body.email,
        first_name=body.first_name,
        last_name=body.last_name,
        username=body.username,
        roles=body.roles,
        registries=body.registries,
    )
    response.headers["Location"] = (
        f"/api/v1/organisations/{organisation_id}/members/{added.member.account.id}"
    )
    response.headers["Cache-Control"] = "no-store"
    return MemberAdded(**_member(added.member).model_dump(), initial_password=added.initial_password)


@organisations.put(
    "/{organisation_id}/members/{account_id}/roles",
    response_model=MemberOut,
    summary="Set a member's roles",
)
async def set_roles(
    organisation_id: str, account_id: str, body: RolesIn, principal: CurrentPrincipal, directory: DirectoryDep
) -> MemberOut:
    return _member(await directory.set_roles(principal, organisation_id, account_id, body.roles))


@organisations.put(
    "/{organisation_id}/members/{account_id}/registries",
    response_model=MemberOut,
    summary="Set the registries a member works on (project codes, or * for every one)",
)
async def set_registries(
    organisation_id: str,
    account_id: str,
    body: RegistriesIn,
    principal: CurrentPrincipal,
    directory: DirectoryDep,
) -> MemberOut:
    return _member(await directory.set_registries(principal, organisation_id, account_id, body.registries))


@organisations.delete(
    "/{organisation_id}/members/{account_id}",
    status_code=204,
    summary="Remove a member (the account stays)",
)
async def remove_member(
    organisation_id: str, account_id: str, principal: CurrentPrincipal, directory: DirectoryDep
) -> Response:
    await directory.remove_member(principal, organisation_id, account_id)
    return Response(status_code=204)


@organisations.get("/{organisation_id}/clients", response_model=ClientPage, summary="Hospital-system clients")
async def list_clients(
    organisation_id: str,
    principal: CurrentPrincipal,
    directory: DirectoryDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ClientPage:
    clients = sorted(await directory.clients(principal, organisation_id), key=lambda c: c.client_id)
    items = [ClientOut.model_validate(_client(c)) for c in clients]
    return ClientPage.window(items, limit=limit, offset=offset)


@organisations.post(
    "/{organisation_id}/clients",
    status_code=201,
    response_model=ClientWithSecret,
    summary="Create a client (secret shown once)",
)
async def create_client(
    organisation_id: str,
    body: ClientIn,
    principal: CurrentPrincipal,
    response: Response,
    directory: DirectoryDep,
) -> dict[str, Any]:
    client, secret = await directory.create_client(
        principal,
        organisation_id,
        client_id=body.client_id,
        name=body.name,
        roles=body.roles,
        registries=body.registries,
    )
    response.headers["Location"] = f"/api/v1/organisations/{organisation_id}/clients/{client.client_id}"
    response.headers["Cache-Control"] = "no-store"
    return _client(client) | {"client_secret": secret}


@organisations.post(
    "/{organisation_id}/clients/{client_id}/secret",
    response_model=ClientWithSecret,
    summary="Rotate a client's secret (shown once)",
)
async def rotate_secret(
    organisation_id: str,
    client_id: str,
    principal: CurrentPrincipal,
    response: Response,
    directory: DirectoryDep,
) -> dict[str, Any]:
    client, secret = await directory.rotate_client_secret(principal, organisation_id, client_id)
    response.headers["Cache-Control"] = "no-store"
    return _client(client) | {"client_secret": secret}


@organisations.delete("/{organisation_id}/clients/{client_id}", status_code=204, summary="Delete a client")
async def delete_client(
    organisation_id: str, client_id: str, principal: CurrentPrincipal, directory: DirectoryDep
) -> Response:
    await directory.delete_client(principal, organisation_id, client_id)
    return Response(status_code=204)


@organisations.get(
    "/{organisation_id}/sftp-credentials",
    response_model=SftpCredentialPage,
    summary="SFTP logins (file intake)",
)
async def list_sftp_credentials(
    organisation_id: str,
    principal: CurrentPrincipal,
    directory: DirectoryDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> SftpCredentialPage:
    credentials = sorted(
        await directory.sftp_credentials(principal, organisation_id), key=lambda c: c.username
    )
    items = [SftpCredentialOut.model_validate(c, from_attributes=True) for c in credentials]
    return SftpCredentialPage.window(items, limit=limit, offset=offset)


@organisations.post(
    "/{organisation_id}/sftp-credentials",
    status_code=201,
    response_model=SftpCredentialWithPassword,
    summary="Create an SFTP login for file intake (password shown once)",
)
async def create_sftp_credential(
    organisation_id: str,
    body: SftpCredentialIn,
    principal: CurrentPrincipal,
    response: Response,
    directory: DirectoryDep,
) -> SftpCredentialWithPassword:
    credential, password = await directory.create_sftp_credential(
        principal, organisation_id, username=body.username, name=body.name
    )
    response.headers["Location"] = (
        f"/api/v1/organisations/{organisation_id}/sftp-credentials/{credential.username}"
    )
    response.headers["Cache-Control"] = "no-store"
    out = SftpCredentialOut.model_validate(credential, from_attributes=True)
    return SftpCredentialWithPassword(**out.model_dump(), password=password)


@organisations.post(
    "/{organisation_id}/sftp-credentials/{username}/password",
    response_model=SftpCredentialWithPassword,
    summary="Rotate an SFTP login's password (shown once)",
)
async def rotate_sftp_password(
    organisation_id: str,
    username: str,
    principal: CurrentPrincipal,
    response: Response,
    directory: DirectoryDep,
) -> SftpCredentialWithPassword:
    credential, password = await directory.rotate_sftp_password(principal, organisation_id, username)
    response.headers["Cache-Control"] = "no-store"
    out = SftpCredentialOut.model_validate(credential, from_attributes=True)
    return SftpCredentialWithPassword(**out.model_dump(), password=password)


@organisations.delete(
    "/{organisation_id}/sftp-credentials/{username}", status_code=204, summary="Delete an SFTP login"
)
async def delete_sftp_credential(
    organisation_id: str, username: str, principal: CurrentPrincipal, directory: DirectoryDep
) -> Response:
    await directory.delete_sftp_credential(principal, organisation_id, username)
    return Response(status_code=204)


async def _throttle(logins: Logins, who: str, source: str | None) -> None:
    """Return once ``source`` may try ``who``; a 429 problem while it must wait."""
    try:
        await logins.check(who, source)
    except Throttled as exc:
        raise throttled_problem(exc) from exc


async def _change_password(
    directory: Directory, logins: Logins, source: str | None, username: str, current: str, new: str
) -> None:
    await _throttle(logins, username, source)
    try:
        await directory.change_password(username, current, new)
    except Problem as exc:
        if exc.slug == "invalid-credentials":
            await logins.failed(username, source)
        raise
    try:
        await logins.succeeded(username, source)
    except Throttled as exc:
        raise throttled_problem(exc) from exc


@accounts.post("/me/password", status_code=204, summary="Change your own password", responses=problems(429))
async def change_own_password(
    body: OwnPasswordIn,
    principal: CurrentPrincipal,
    directory: DirectoryDep,
    logins: LoginsDep,
    source: SourceAddress,
) -> Response:
    if principal.is_system:
        raise Problem(400, "not-a-person", "Hospital-system clients have secrets, not passwords")
    try:
        await _change_password(
            directory, logins, source, principal.username, body.current_password, body.new_password
        )
    except Problem as exc:
        if exc.slug == "invalid-credentials":
            raise Problem(422, "wrong-password", "The current password is wrong") from exc
        raise
    return Response(status_code=204)


@accounts.post(
    "/password",
    status_code=204,
    responses=problems(429),
    summary="Change a password with the current one, e.g. the initial password before the first login (no token)",
    description="The embedded store's UPDATE_PASSWORD required action; failures slow down their own source address "
    "(429 `too-many-failures` with Retry-After), never the account's holder elsewhere.",
)
async def change_password(
    body: PasswordChangeIn, directory: DirectoryDep, logins: LoginsDep, source: SourceAddress
) -> Response:
    await _change_password(directory, logins, source, body.username, body.current_password, body.new_password)
    return Response(status_code=204)


@accounts.delete("/me", status_code=204, summary="Cancel your own account (removes it everywhere)")
async def cancel_own_account(principal: CurrentPrincipal, directory: DirectoryDep) -> Response:
    if principal.is_system:
        raise Problem(400, "not-a-person", "Hospital-system clients are deleted by their managers")
    await directory.cancel_account(principal, principal.subject)
    return Response(status_code=204)


@accounts.delete(
    "/{account_id}", status_code=204, summary="Cancel an account (removes it from every organisation)"
)
async def cancel_account(account_id: str, principal: CurrentPrincipal, directory: DirectoryDep) -> Response:
    await directory.cancel_account(principal, account_id)
    return Response(status_code=204)


@account_requests.post(
    "",
    status_code=201,
    response_model=AccountRequestOut,
    summary="Request an account (v1 form, no token)",
    responses=problems(429),
)
async def request_account(
    body: AccountRequestIn, directory: DirectoryDep, logins: LoginsDep, source: SourceAddress
) -> AccountRequestOut:
    await _throttle(logins, body.email, source)
    return _request(await directory.request_account(**body.model_dump()))


@account_requests.get(
    "",
    response_model=AccountRequestPage,
    summary="Account requests of an organisation (its managers)",
)
async def list_requests(
    organisation_id: str,
    principal: CurrentPrincipal,
    directory: DirectoryDep,
    status: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AccountRequestPage:
    items = [_request(r) for r in await directory.account_requests(principal, organisation_id, status)]
    return AccountRequestPage.window(items, limit=limit, offset=offset)


@account_requests.post(
    "/{request_id}/approve",
    response_model=AccountRequestOut,
    summary="Approve: the account is created, the applicant mailed",
)
async def approve(
    request_id: str,
    organisation_id: str,
    principal: CurrentPrincipal,
    directory: DirectoryDep,
    body: ApprovalIn | None = None,
) -> AccountRequestOut:
    r, _ = await directory.decide_account_request(
        principal,
        organisation_id,
        request_id,
        approve=True,
        registries=body.registries if body is not None else None,
    )
    return _request(r)


@account_requests.post(
    "/{request_id}/reject", response_model=AccountRequestOut, summary="Reject: the applicant is mailed"
)
async def reject(
    request_id: str,
    organisation_id: str,
    principal: CurrentPrincipal,
    directory: DirectoryDep,
    body: DecisionIn | None = None,
) -> AccountRequestOut:
    r, _ = await directory.decide_account_request(
        principal, organisation_id, request_id, approve=False, reason=body.reason if body else None
    )
    return _request(r)


@audit.get("", response_model=AuditPage, summary="Admin actions on an organisation (its managers)")
async def audit_log(
    organisation_id: str,
    principal: CurrentPrincipal,
    directory: DirectoryDep,
    limit: Limit = 100,
    after: Annotated[str | None, Query(pattern="^[1-9][0-9]{0,17}$", description=AFTER_ENTRY)] = None,
) -> AuditPage:
    search = AuditSearch(before_id=int(after or 0), size=limit)
    entries, total, skipped, before = await directory.audit_page(principal, organisation_id, search)
    items = [AuditOut.model_validate(e, from_attributes=True) for e in entries]
    return AuditPage(
        items=items, total=total, limit=limit, offset=skipped, next=str(before) if before else None
    )
