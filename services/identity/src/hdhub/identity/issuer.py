"""The embedded OIDC issuer: Keycloak's endpoints and token shapes for realm ``hdhub``.

Production uses Keycloak; on a laptop this issuer stands in, minting RS256 tokens with the
same claims (``realm_access``, ``azp``, ``preferred_username``, and the ``organisations``
claim our Keycloak protocol mapper adds) so services cannot tell the two apart.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.auth import ORGANISATIONS_CLAIM, SERVICE_POLICY, SERVICE_ROLE_PREFIX
from hdhub.common.config import is_placeholder, platform
from hdhub.identity.store import Account, Membership, Organisation, SigningKey, SystemClient

hasher = PasswordHasher()
# Verifying against this when the account does not exist keeps timing uniform.
_DUMMY_HASH = hasher.hash("no-such-account")


def verify_secret(hash_: str | None, secret: str) -> bool:
    try:
        return hasher.verify(hash_ or _DUMMY_HASH, secret) and hash_ is not None
    except (VerificationError, InvalidHashError):
        return False


#: Argon2 takes about 0.2 s of CPU and 64 MiB per check. Checked in the event loop, every
#: token request, sign-in and SFTP login stalled every other request of the process (all
#: of the platform's, in `hdhub run all`) for that long. Checked on these threads instead
#: (argon2 releases the GIL), two at a time: a burst of logins queues here rather than
#: taking the memory.
_ARGON2 = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def check_secret(hash_: str | None, secret: str) -> bool:
    """:func:`verify_secret` off the event loop (same answer, same time either way)."""
    return await asyncio.get_running_loop().run_in_executor(_ARGON2, verify_secret, hash_, secret)


async def hash_secret(secret: str) -> str:
    """A new password's or secret's argon2 hash, off the event loop as :func:`check_secret`."""
    return await asyncio.get_running_loop().run_in_executor(_ARGON2, hasher.hash, secret)


def new_signing_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(kid=uuid.uuid4().hex, private_pem=pem, active=True)


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@functools.lru_cache(maxsize=8)
def private_key(pem: str) -> rsa.RSAPrivateKey:
    """A signing key's PEM, loaded once: loading (with its RSA checks) takes about 50 ms,
    which every token minted and every JWKS answer paid in the event loop."""
    private = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return private


def jwk(key: SigningKey) -> dict[str, Any]:
    private = private_key(key.private_pem)
    numbers = private.public_key().public_numbers()
    return {
        "kid": key.kid,
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "n": _b64(numbers.n),
        "e": _b64(numbers.e),
    }


def discovery(issuer: str) -> dict[str, Any]:
    oidc = f"{issuer}/protocol/openid-connect"
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{oidc}/auth",
        "token_endpoint": f"{oidc}/token",
        "jwks_uri": f"{oidc}/certs",
        "userinfo_endpoint": f"{oidc}/userinfo",
        "end_session_endpoint": f"{oidc}/logout",
        "grant_types_supported": ["authorization_code", "refresh_token", "password", "client_credentials"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": ["sub", "iss", "preferred_username", "email", "name", ORGANISATIONS_CLAIM],
    }


@dataclass
class OAuthError(Exception):
    """An OAuth 2.0 error answer, as Keycloak words them."""

    status: int
    error: str
    description: str


async def signing_key(session: AsyncSession) -> SigningKey:
    key = (
        await session.execute(
            select(SigningKey).where(SigningKey.active).order_by(SigningKey.created_at.desc()).limit(1)
        )
    ).scalar_one_or_none()
    if key is None:
        key = new_signing_key()
        session.add(key)
        await session.flush()
    return key


async def organisations_claim(session: AsyncSession, account_id: str) -> dict[str, Any]:
    rows = await session.execute(
        select(Membership, Organisation)
        .join(Organisation, Organisation.id == Membership.organisation_id)
        .where(Membership.account_id == account_id)
    )
    return {
        org.id: {
            "name": org.title,
            "nihdi": org.nihdi_number,
            "roles": sorted(m.roles),
            "registries": sorted(m.registries),
        }
        for m, org in rows.tuples()
    }


def mint(key: SigningKey, claims: dict[str, Any]) -> str:
    return jwt.encode(
        claims, private_key(key.private_pem), algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"}
    )


def _base_claims(issuer: str, lifetime: int, azp: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "exp": now + lifetime,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "aud": ["hdhub", "account"],
        "typ": "Bearer",
        "azp": azp,
        "scope": "openid profile email",
    }


def token_response(token: str, lifetime: int) -> dict[str, Any]:
    return {
        "access_token": token,
        "expires_in": lifetime,
        "refresh_expires_in": 0,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": "openid profile email",
    }


async def password_grant(
    session: AsyncSession, *, issuer: str, lifetime: int, client_id: str, username: str, password: str
) -> dict[str, Any]:
    account = (
        await session.execute(
            select(Account).where((Account.username == username) | (Account.email == username))
        )
    ).scalar_one_or_none()
    if not await check_secret(account.password_hash if account else None, password) or account is None:
        raise OAuthError(401, "invalid_grant", "Invalid user credentials")
    if not account.enabled:
        raise OAuthError(400, "invalid_grant", "Account disabled")
    if account.must_change_password:
        # Keycloak's answer while the UPDATE_PASSWORD required action is pending.
        raise OAuthError(400, "invalid_grant", "Account is not fully set up")
    claims = await person_claims(
        session, account, issuer=issuer, lifetime=lifetime, client_id=client_id, sid=str(uuid.uuid4())
    )
    return token_response(mint(await signing_key(session), claims), lifetime)


async def person_claims(
    session: AsyncSession, account: Account, *, issuer: str, lifetime: int, client_id: str, sid: str
) -> dict[str, Any]:
    """A person's access-token claims, memberships read now (so a refresh sees new roles)."""
    return _base_claims(issuer, lifetime, client_id) | {
        "sub": account.id,
        "sid": sid,
        "email_verified": True,
        "name": f"{account.first_name} {account.last_name}".strip(),
        "preferred_username": account.username,
        "given_name": account.first_name,
        "family_name": account.last_name,
        "email": account.email,
        "realm_access": {"roles": sorted({"default-roles-hdhub", *account.realm_roles})},
        "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
        ORGANISATIONS_CLAIM: await organisations_claim(session, account.id),
    }


def service_client(client_id: str) -> str | None:
    """The platform service a confidential client ``hdhub-<service>`` stands for, if any."""
    name = client_id.removeprefix("hdhub-")
    return name if client_id.startswith("hdhub-") and name in SERVICE_POLICY else None


def service_grant(
    *, issuer: str, lifetime: int, service: str, client_secret: str, key: SigningKey
) -> dict[str, Any]:
    """A platform service's own token: realm role ``hdhub-service:<service>``, no
    organisation. The secret is the installation's service client secret, as the
    Keycloak realm export gives each ``hdhub-<service>`` client. A placeholder (the shipped
    default, an empty one) is refused in every environment, on either side: it is no secret."""
    expected = platform().service_client_secret
    if (
        is_placeholder(expected)
        or is_placeholder(client_secret)
        or not hmac.compare_digest(client_secret.encode(), expected.encode())
    ):
        raise OAuthError(401, "unauthorized_client", "Invalid client or Invalid client credentials")
    client_id = f"hdhub-{service}"
    claims = _base_claims(issuer, lifetime, client_id) | {
        "sub": f"service-account-{client_id}",
        "preferred_username": f"service-account-{client_id}",
        "clientId": client_id,
        "email_verified": False,
        "realm_access": {"roles": ["default-roles-hdhub", f"{SERVICE_ROLE_PREFIX}{service}"]},
        ORGANISATIONS_CLAIM: {},
    }
    return token_response(mint(key, claims), lifetime)


async def client_credentials_grant(
    session: AsyncSession, *, issuer: str, lifetime: int, client_id: str, client_secret: str
) -> dict[str, Any]:
    service = service_client(client_id)
    if service is not None:
        return service_grant(
            issuer=issuer,
            lifetime=lifetime,
            service=service,
            client_secret=client_secret,
            key=await signing_key(session),
        )
    client = await session.get(SystemClient, client_id)
    if (
        not await check_secret(client.secret_hash if client else None, client_secret)
        or client is None
        or not client.enabled
    ):
        raise OAuthError(401, "unauthorized_client", "Invalid client or Invalid client credentials")
    org = await session.get(Organisation, client.organisation_id)
    assert org is not None
    claims = _base_claims(issuer, lifetime, client.client_id) | {
        "sub": f"service-account-{client.client_id}",
        "preferred_username": f"service-account-{client.client_id}",
        "clientId": client.client_id,
        "email_verified": False,
        "realm_access": {"roles": ["default-roles-hdhub"]},
        ORGANISATIONS_CLAIM: {
            org.id: {
                "name": org.title,
                "nihdi": org.nihdi_number,
                "roles": sorted(client.roles),
                "registries": sorted(client.registries),
            }
        },
    }
    return token_response(mint(await signing_key(session), claims), lifetime)


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, _, secret = raw.partition(":")
    return client_id, secret


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
