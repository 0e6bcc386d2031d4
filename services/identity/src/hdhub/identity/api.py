"""Identity's REST edge: the embedded OIDC issuer at Keycloak's paths, the caller's
organisations, and the mails a development platform sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select

from hdhub.common.auth import Action
from hdhub.common.config import platform
from hdhub.common.errors import not_found
from hdhub.common.paging import Limit, Offset, Page, count
from hdhub.common.web import CurrentPrincipal
from hdhub.identity import codeflow, issuer
from hdhub.identity.deps import OutboxDep, ServiceDep
from hdhub.identity.ratelimit import Throttled
from hdhub.identity.settings import IdentitySettings
from hdhub.identity.store import Organisation, SigningKey

REALM = "/realms/hdhub"


def _throttled(exc: Throttled) -> JSONResponse:
    # Keycloak words a throttled token request as an OAuth error; the wait is in Retry-After.
    return JSONResponse(
        {
            "error": "too_many_requests",
            "error_description": f"After repeated failures from your address, wait {exc.retry_after} s "
            "before trying again (Retry-After)",
        },
        status_code=429,
        headers={"Retry-After": str(exc.retry_after)},
    )


def _oauth_error(description: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# The token endpoint answers as Keycloak does (RFC 6749 section 5.2), not with problem+json.
OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _oauth_error("invalid_request, invalid_grant or unsupported_grant_type"),
    401: _oauth_error("invalid_client or unauthorized_client"),
    429: _oauth_error("Too many attempts; see Retry-After"),
}

TOKEN_RESPONSE: dict[str, Any] = {
    "description": "An access token (RFC 6749 section 5.1)",
    "content": {
        "application/json": {
            "schema": {
                "title": "TokenResponse",
                "type": "object",
                "required": ["access_token", "token_type", "expires_in"],
                "properties": {
                    "access_token": {"type": "string"},
                    "token_type": {"type": "string", "enum": ["Bearer"]},
                    "expires_in": {"type": "integer", "description": "Seconds"},
                    "refresh_expires_in": {"type": "integer"},
                    "not-before-policy": {"type": "integer"},
                    "scope": {"type": "string"},
                },
            }
        }
    },
    "headers": {"Cache-Control": {"schema": {"type": "string", "example": "no-store"}}},
}


class OrganisationOut(BaseModel):
    id: str
    title: str
    nihdi_number: str
    roles: list[str]


oidc = APIRouter(prefix=f"{REALM}", tags=["oidc (embedded issuer)"])
organisations = APIRouter(prefix="/api/v1", tags=["organisations"])
#: Development only, without an SMTP host (``IdentityService.routers``): nowhere else does it exist.
dev_mail = APIRouter(tags=["development"])


@oidc.get("/.well-known/openid-configuration")
async def openid_configuration() -> dict[str, Any]:
    return issuer.discovery(platform().oidc_issuer)


@oidc.get("/protocol/openid-connect/certs")
async def certs(service: ServiceDep) -> dict[str, Any]:
    async with service.db.system_session() as session:
        await issuer.signing_key(session)
        keys = (await session.execute(select(SigningKey).where(SigningKey.active))).scalars()
        return {"keys": [issuer.jwk(k) for k in keys]}


@oidc.post(
    "/protocol/openid-connect/token",
    responses={200: TOKEN_RESPONSE, **OAUTH_ERRORS},
    # No bearer token: the client's id and secret in the form (or as HTTP Basic, RFC 6749
    # section 2.3.1, which the document leaves out so a generated client needs no token).
    openapi_extra={"security": []},
)
async def token(
    request: Request,
    service: ServiceDep,
    grant_type: Annotated[str, Form()],
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    username: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form()] = None,
    code: Annotated[str | None, Form()] = None,
    redirect_uri: Annotated[str | None, Form()] = None,
    code_verifier: Annotated[str | None, Form()] = None,
    refresh_token: Annotated[str | None, Form()] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> JSONResponse:
    basic = issuer.parse_basic_auth(authorization)
    if basic:
        client_id, client_secret = basic
    form = _TokenForm(
        grant_type,
        client_id,
        client_secret,
        username,
        password,
        code,
        redirect_uri,
        code_verifier,
        refresh_token,
    )
    # Before the credential is checked only the source's own failures and rate count:
    # someone else's failures never stop it (docs/identity.md, login throttling).
    who = username if grant_type == "password" else f"client:{client_id}" if client_id else None
    source = service.logins.source(request)
    try:
        await service.logins.check(who, source)
    except Throttled as exc:
        return _throttled(exc)
    taken = None
    if grant_type == "authorization_code" and code:
        async with service.db.system_session() as session:
            taken = await codeflow.take_code(session, code)
    try:
        async with service.db.system_session() as session:
            body = await _grant(service.settings, session, form, taken)
    except issuer.OAuthError as exc:
        if exc.error in ("invalid_grant", "unauthorized_client") and exc.description.startswith("Invalid"):
            await service.logins.failed(who, source)
        return JSONResponse(
            {"error": exc.error, "error_description": exc.description}, status_code=exc.status
        )
    if who is None:  # a code or refresh token: random, nothing to throttle per account
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
    try:
        await service.logins.succeeded(who, source)
    except Throttled as exc:
        return _throttled(exc)
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@dataclass(frozen=True, slots=True)
class _TokenForm:
    """A token request's form (RFC 6749 section 4), the client's credentials included."""

    grant_type: str
    client_id: str | None
    client_secret: str | None
    username: str | None
    password: str | None
    code: str | None
    redirect_uri: str | None
    code_verifier: str | None
    refresh_token: str | None


_INVALID_CLIENT = (401, "invalid_client", "Invalid client or Invalid client credentials")


async def _grant(
    settings: IdentitySettings, session: Any, form: _TokenForm, taken: codeflow.TakenCode | None
) -> dict[str, Any]:
    """The token response of a grant; :class:`~hdhub.identity.issuer.OAuthError` when refused."""
    lifetime = settings.access_token_seconds
    if form.grant_type == "password":
        if not form.client_id or form.client_id not in settings.public_clients:
            raise issuer.OAuthError(*_INVALID_CLIENT)
        if not form.username or form.password is None:
            raise issuer.OAuthError(400, "invalid_request", "Missing parameter: username")
        return await issuer.password_grant(
            session,
            issuer=platform().oidc_issuer,
            lifetime=lifetime,
            client_id=form.client_id,
            username=form.username,
            password=form.password,
        )
    if form.grant_type in ("authorization_code", "refresh_token"):
        if not form.client_id or form.client_id not in settings.public_clients:
            raise issuer.OAuthError(*_INVALID_CLIENT)
        return await _code_or_refresh(settings, session, form, form.client_id, taken)
    if form.grant_type == "client_credentials":
        if not form.client_id or form.client_secret is None:
            raise issuer.OAuthError(*_INVALID_CLIENT)
        return await issuer.client_credentials_grant(
            session,
            issuer=platform().oidc_issuer,
            lifetime=lifetime,
            client_id=form.client_id,
            client_secret=form.client_secret,
        )
    raise issuer.OAuthError(400, "unsupported_grant_type", "Unsupported grant_type")


async def _code_or_refresh(
    settings: IdentitySettings,
    session: Any,
    form: _TokenForm,
    client_id: str,
    taken: codeflow.TakenCode | None,
) -> dict[str, Any]:
    lifetimes = {"lifetime": settings.access_token_seconds, "refresh_idle": settings.session_idle_seconds}
    if form.grant_type == "authorization_code":
        if not form.code or not form.redirect_uri:
            raise issuer.OAuthError(400, "invalid_request", "Missing parameter: code")
        return await codeflow.redeem_code(
            session,
            taken,
            client_id=client_id,
            redirect_uri=form.redirect_uri,
            code_verifier=form.code_verifier or "",
            issuer=platform().oidc_issuer,
            **lifetimes,
        )
    if not form.refresh_token:
        raise issuer.OAuthError(400, "invalid_request", "Missing parameter: refresh_token")
    return await codeflow.refresh(
        session,
        client_id=client_id,
        refresh_token=form.refresh_token,
        issuer=platform().oidc_issuer,
        **lifetimes,
    )


class OrganisationPage(Page[OrganisationOut]):
    """A page of the caller's organisations, by title."""


@organisations.get(
    "/organisations", response_model=OrganisationPage, summary="Organisations you are a member of"
)
async def my_organisations(
    principal: CurrentPrincipal, service: ServiceDep, limit: Limit = 100, offset: Offset = 0
) -> OrganisationPage:
    ids = principal.organisations_for(Action.ORGANISATION_READ)
    async with service.db.system_session() as session:
        query = select(Organisation).where(Organisation.id.in_(ids))
        total = await count(session, query)
        window = query.order_by(Organisation.title, Organisation.id).limit(limit).offset(offset)
        orgs = (await session.execute(window)).scalars()
        items = [
            OrganisationOut(
                id=o.id,
                title=o.title,
                nihdi_number=o.nihdi_number,
                roles=sorted(principal.roles_in(o.id)),
            )
            for o in orgs
        ]
    return OrganisationPage(items=items, total=total, limit=limit, offset=offset)


@organisations.get("/organisations/{organisation_id}", response_model=OrganisationOut)
async def get_organisation(
    organisation_id: str, principal: CurrentPrincipal, service: ServiceDep
) -> OrganisationOut:
    if not principal.can(Action.ORGANISATION_READ, organisation_id):
        raise not_found("Organisation")  # never confirm another organisation exists
    async with service.db.system_session() as session:
        org = await session.get(Organisation, organisation_id)
        if org is None:
            raise not_found("Organisation")
        return OrganisationOut(
            id=org.id,
            title=org.title,
            nihdi_number=org.nihdi_number,
            roles=sorted(principal.roles_in(org.id)),
        )


@dev_mail.get("/dev/mail", summary="Mails sent by this development platform (no SMTP host)")
async def sent_mails(outbox: OutboxDep, to: str | None = None) -> list[dict[str, object]]:
    """What was mailed, newest first (``?to=`` one recipient)."""
    return [
        {"to": m.to, "subject": m.subject, "body": m.body, "sent_at": m.sent_at.isoformat()}
        for m in outbox.mails(to)
    ]
