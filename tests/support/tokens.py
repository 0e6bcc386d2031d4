"""Tokens as the stack's issuer (identity's embedded one) signs them, minted for any
caller a test needs: a member with roles in organisations, the operator, a platform
service. Tests of other services get identity's signing key only through here."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import jwt

from tests.support.stack import ISSUER, Stack

_keys: dict[int, tuple[str, Any]] = {}


async def _signing_key(stack: Stack) -> tuple[str, Any]:
    # Loading an RSA key checks it at length: once per stack.
    if id(stack) not in _keys:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        from hdhub.identity.issuer import signing_key

        async with stack.service("identity").db.system_session() as session:
            key = await signing_key(session)
        _keys[id(stack)] = (key.kid, load_pem_private_key(key.private_pem.encode(), None))
    return _keys[id(stack)]


async def mint(
    stack: Stack,
    username: str,
    organisations: dict[str, list[str]],
    realm_roles: Sequence[str] = (),
    registries: Sequence[str] = ("*",),
) -> str:
    """A bearer token for ``username`` with ``roles`` in each organisation, granted
    ``registries`` there (every one unless told), and the realm roles given
    (``hdhub-operator``, ``hdhub-service:<name>``)."""
    kid, key = await _signing_key(stack)
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "iss": ISSUER,
        "aud": ["hdhub"],
        "azp": "hdhub-portal",
        "exp": now + 600,
        "iat": now,
        "typ": "Bearer",
        "preferred_username": username,
        "realm_access": {"roles": ["default-roles-hdhub", *realm_roles]},
        "organisations": {
            org: {"name": org.title(), "nihdi": "71000436", "roles": roles, "registries": list(registries)}
            for org, roles in organisations.items()
        },
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def bearer(
    stack: Stack,
    organisations: dict[str, list[str]],
    realm_roles: Sequence[str] = (),
    *,
    username: str = "someone@org.test",
    registries: Sequence[str] = ("*",),
) -> dict[str, str]:
    """The Authorization header of :func:`mint`'s token."""
    return {"Authorization": f"Bearer {await mint(stack, username, organisations, realm_roles, registries)}"}
