"""Revoked access: the verifier refuses tokens issued before their subject's "not before",
cached verifications included; on the real Redis at 127.0.0.1:6379 (the production shape,
seen by every process within the cache time) and in memory (one process)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from hdhub.common.auth import TokenVerifier
from hdhub.common.errors import Problem
from hdhub.common.revocation import Revocations

REDIS = os.environ.get("HDHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ISSUER = "http://issuer.test/realms/hdhub"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(_: httpx.Request) -> httpx.Response:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    return httpx.Response(200, json={"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]})


def token(subject: str, *, issued: float, **claims: Any) -> str:
    payload = {
        "iss": ISSUER,
        "aud": "hdhub",
        "sub": subject,
        "iat": int(issued),
        "exp": int(issued) + 300,
    } | claims
    return jwt.encode(payload, KEY, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(params=["redis", "memory"])
async def revoked(request: pytest.FixtureRequest) -> AsyncIterator[Revocations]:
    url = REDIS if request.param == "redis" else None
    r = Revocations(url, prefix=f"hdhub:test:{uuid.uuid4().hex}:revoked", cache_seconds=0.3)
    yield r
    await r.close()


def verifier(revoked: Revocations) -> TokenVerifier:
    return TokenVerifier(
        issuer=ISSUER,
        jwks_url="http://issuer.test/certs",
        audience="hdhub",
        transport=httpx.MockTransport(_jwks),
        revocations=revoked,
    )


async def test_tokens_issued_before_a_revocation_are_refused_cached_or_not(revoked: Revocations) -> None:
    v = verifier(revoked)
    before = token("alice", issued=time.time() - 5)
    other = token("bob", issued=time.time() - 5)
    assert (await v.verify(before)).subject == "alice"  # verified, and so cached
    not_before = await revoked.revoke("alice")
    with pytest.raises(Problem) as exc:
        await v.verify(before)
    assert exc.value.status == 401 and "revoked" in (exc.value.detail or "")
    assert (await v.verify(other)).subject == "bob"
    # A login after the change (the same second included, as Keycloak's not-before) works.
    assert (await v.verify(token("alice", issued=not_before))).subject == "alice"


async def test_a_hospital_systems_tokens_are_revoked_by_client_id(revoked: Revocations) -> None:
    v = verifier(revoked)
    t = token(
        "3f1c-uuid-of-keycloaks-service-account",
        issued=time.time() - 5,
        azp="az-demo-his",
        preferred_username="service-account-az-demo-his",
    )
    await revoked.revoke("client:az-demo-his")
    with pytest.raises(Problem):
        await v.verify(t)


async def test_another_process_sees_a_revocation_within_the_cache_time() -> None:
    prefix = f"hdhub:test:{uuid.uuid4().hex}:revoked"
    identity, elsewhere = (
        Revocations(REDIS, prefix=prefix),
        Revocations(REDIS, prefix=prefix, cache_seconds=0.3),
    )
    try:
        assert await elsewhere.not_before("carol") == 0
        not_before = await identity.revoke("carol")
        assert await elsewhere.not_before("carol") == 0  # still cached
        await asyncio.sleep(0.35)
        assert await elsewhere.not_before("carol") == not_before
    finally:
        await identity.close()
        await elsewhere.close()


async def test_an_unreachable_redis_lets_tokens_through_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = Revocations("redis://127.0.0.1:1/0", cache_seconds=0)
    try:
        assert await r.not_before("dave") == 0
        assert "revocation list unreachable" in caplog.text
    finally:
        await r.close()
