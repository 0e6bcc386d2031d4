"""The embedded issuer's authorization code flow (OIDC Core 3.1, PKCE RFC 7636), its
refresh tokens and end-session, as Keycloak answers them for realm ``hdhub``.

Sessions live in identity's database (:class:`~hdhub.identity.store.OidcSession`): a
refresh renews one and re-reads the person's memberships, so new roles and
organisations reach the portal without a new login; ending a session (logout, or the
directory cancelling an account or taking a role) makes its refresh token useless.
Codes, refresh tokens and password-change tickets are random and kept only as hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import utcnow
from hdhub.identity.issuer import OAuthError, mint, person_claims, signing_key
from hdhub.identity.store import Account, OidcCode, OidcSession

CODE_SECONDS = 60
PASSWORD_STEP_SECONDS = 600


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request: what the login page carries to its POST."""

    client_id: str
    redirect_uri: str
    state: str
    nonce: str
    code_challenge: str
    ui_locales: str = ""

    def fields(self) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
            "ui_locales": self.ui_locales,
        }


class BadAuthorizationRequest(ValueError):
    """A request the issuer answers with an error page, never a redirect (RFC 6749 4.1.2.1):
    its client or redirect URI cannot be trusted, or it lacks PKCE."""


def check_request(
    params: dict[str, str], *, public_clients: list[str], redirect_uris: list[str]
) -> AuthorizationRequest:
    client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
    if client_id not in public_clients:
        raise BadAuthorizationRequest("Unknown client")
    if redirect_uri not in redirect_uris:
        raise BadAuthorizationRequest("Invalid parameter: redirect_uri")
    if params.get("response_type") != "code":
        raise BadAuthorizationRequest("Unsupported response_type: only code")
    challenge = params.get("code_challenge", "")
    if params.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
        raise BadAuthorizationRequest("PKCE with code_challenge_method S256 is required")
    if "openid" not in params.get("scope", "openid").split():
        raise BadAuthorizationRequest("Invalid scopes: openid is required")
    return AuthorizationRequest(
        client_id=client_id,
        redirect_uri=redirect_uri,
        state=params.get("state", "")[:500],
        nonce=params.get("nonce", "")[:255],
        code_challenge=challenge,
        ui_locales=params.get("ui_locales", "")[:20],
    )


async def start_session(
    session: AsyncSession, account: Account, *, client_id: str, lifetime: int, pending_password: bool
) -> tuple[OidcSession, str | None]:
    """A new session; with ``pending_password`` it waits for the first-login password
    change, and the returned ticket (carried by the change form) names it."""
    ticket = secrets.token_urlsafe(32) if pending_password else None
    row = OidcSession(
        account_id=account.id,
        client_id=client_id,
        state="password" if pending_password else "active",
        ticket_hash=digest(ticket) if ticket else None,
        expires_at=utcnow() + timedelta(seconds=PASSWORD_STEP_SECONDS if pending_password else lifetime),
    )
    session.add(row)
    await session.flush()
    return row, ticket


async def pending_session(session: AsyncSession, ticket: str) -> tuple[OidcSession, Account] | None:
    """The session waiting for its password change, while the ticket is fresh."""
    row = (
        await session.execute(select(OidcSession).where(OidcSession.ticket_hash == digest(ticket)))
    ).scalar_one_or_none()
    if row is None or row.state != "password" or row.expires_at < utcnow():
        return None
    account = await session.get(Account, row.account_id)
    return (row, account) if account is not None else None


def activate(row: OidcSession, *, lifetime: int) -> None:
    row.state, row.ticket_hash = "active", None
    row.expires_at = utcnow() + timedelta(seconds=lifetime)


async def issue_code(
    session: AsyncSession, row: OidcSession, request: AuthorizationRequest, issuer: str
) -> str:
    """The redirect back to the client, carrying a fresh one-time code."""
    code = secrets.token_urlsafe(32)
    session.add(
        OidcCode(
            code_hash=digest(code),
            session_id=row.id,
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            nonce=request.nonce,
            expires_at=utcnow() + timedelta(seconds=CODE_SECONDS),
        )
    )
    await session.flush()
    query = urlencode({"code": code, "state": request.state, "session_state": row.id, "iss": issuer})
    return f"{request.redirect_uri}{'&' if '?' in request.redirect_uri else '?'}{query}"


def _invalid_grant(description: str) -> OAuthError:
    return OAuthError(400, "invalid_grant", description)


async def _tokens(
    session: AsyncSession, row: OidcSession, *, issuer: str, lifetime: int, refresh_idle: int, nonce: str = ""
) -> dict[str, Any]:
    account = await session.get(Account, row.account_id)
    if account is None or not account.enabled:
        await session.delete(row)
        raise _invalid_grant("Account disabled")
    claims = await person_claims(
        session, account, issuer=issuer, lifetime=lifetime, client_id=row.client_id, sid=row.id
    )
    key = await signing_key(session)
    id_claims = {
        k: claims[k]
        for k in (
            "exp",
            "iat",
            "iss",
            "sub",
            "sid",
            "email",
            "name",
            "preferred_username",
            "given_name",
            "family_name",
        )
    } | {
        "aud": row.client_id,
        "azp": row.client_id,
        "typ": "ID",
        "auth_time": int(row.created_at.timestamp()),
    }
    if nonce:
        id_claims["nonce"] = nonce
    refresh = secrets.token_urlsafe(48)
    row.refresh_hash, row.refreshed_at = digest(refresh), utcnow()
    refresh_expires = min(refresh_idle, int((row.expires_at - utcnow()).total_seconds()))
    return {
        "access_token": mint(key, claims),
        "expires_in": lifetime,
        "refresh_token": refresh,
        "refresh_expires_in": max(refresh_expires, 0),
        "id_token": mint(key, id_claims),
        "token_type": "Bearer",
        "not-before-policy": 0,
        "session_state": row.id,
        "scope": "openid profile email",
    }


@dataclass(frozen=True)
class TakenCode:
    session_id: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    expired: bool


async def take_code(session: AsyncSession, code: str) -> TakenCode | None:
    """Remove a code and return what it was issued for: in a transaction of its own, so a
    code is spent by its first use, whatever follows (RFC 6749 4.1.2)."""
    found = await session.get(OidcCode, digest(code))
    if found is None:
        return None
    await session.delete(found)
    return TakenCode(
        found.session_id,
        found.client_id,
        found.redirect_uri,
        found.code_challenge,
        found.nonce,
        found.expires_at < utcnow(),
    )


async def redeem_code(
    session: AsyncSession,
    taken: TakenCode | None,
    *,
    client_id: str,
    redirect_uri: str,
    code_verifier: str,
    issuer: str,
    lifetime: int,
    refresh_idle: int,
) -> dict[str, Any]:
    """grant_type=authorization_code: a taken code, from its client, with its verifier."""
    if taken is None or taken.expired:
        raise _invalid_grant("Code not valid")
    if taken.client_id != client_id:
        raise _invalid_grant("Code not issued to this client")
    if taken.redirect_uri != redirect_uri:
        raise _invalid_grant("Incorrect redirect_uri")
    expected = create_s256_code_challenge(code_verifier) if code_verifier else ""
    if not hmac.compare_digest(expected.encode(), taken.code_challenge.encode()):
        raise _invalid_grant("PKCE verification failed: Code mismatch")
    row = await session.get(OidcSession, taken.session_id)
    if row is None or row.state != "active" or row.expires_at < utcnow():
        raise _invalid_grant("Session not active")
    return await _tokens(
        session, row, issuer=issuer, lifetime=lifetime, refresh_idle=refresh_idle, nonce=taken.nonce
    )


async def _session_of(session: AsyncSession, refresh_token: str, client_id: str) -> OidcSession | None:
    row = (
        await session.execute(select(OidcSession).where(OidcSession.refresh_hash == digest(refresh_token)))
    ).scalar_one_or_none()
    return row if row is not None and row.client_id == client_id else None


async def refresh(
    session: AsyncSession,
    *,
    client_id: str,
    refresh_token: str,
    issuer: str,
    lifetime: int,
    refresh_idle: int,
) -> dict[str, Any]:
    """grant_type=refresh_token: a new access token with the memberships as they are now,
    and a new refresh token (the old one stops working)."""
    row = await _session_of(session, refresh_token, client_id)
    now = utcnow()
    if row is None or row.state != "active":
        raise _invalid_grant("Session not active")
    if row.expires_at < now or row.refreshed_at + timedelta(seconds=refresh_idle) < now:
        await session.delete(row)
        raise _invalid_grant("Session not active")
    return await _tokens(session, row, issuer=issuer, lifetime=lifetime, refresh_idle=refresh_idle)


async def end_by_refresh_token(session: AsyncSession, *, client_id: str, refresh_token: str) -> bool:
    row = await _session_of(session, refresh_token, client_id)
    if row is not None:
        await session.delete(row)
    return row is not None


async def end_by_id_token(session: AsyncSession, id_token: str, *, public_key: Any) -> bool:
    """End the session an ID token we issued names (its signature checked, expiry not)."""
    try:
        claims = jwt.decode(
            id_token, public_key, algorithms=["RS256"], options={"verify_exp": False, "verify_aud": False}
        )
    except jwt.PyJWTError:
        return False
    sid = claims.get("sid")
    if not sid:
        return False
    result = await session.execute(delete(OidcSession).where(OidcSession.id == str(sid)))
    return bool(getattr(result, "rowcount", 0))


async def end_account_sessions(session: AsyncSession, account_id: str) -> None:
    await session.execute(delete(OidcSession).where(OidcSession.account_id == account_id))
