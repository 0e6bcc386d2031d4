"""The embedded OIDC issuer answers at Keycloak's paths with Keycloak's shapes."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import jwt

from tests.support.stack import ISSUER, TOKEN_PATH, Stack

REALM = "/realms/hdhub"


async def test_discovery_and_jwks_at_keycloak_paths(stack: Stack) -> None:
    conf = (await stack.client.get(f"{REALM}/.well-known/openid-configuration")).json()
    assert conf["issuer"] == ISSUER
    assert conf["token_endpoint"] == f"{ISSUER}/protocol/openid-connect/token"
    assert conf["jwks_uri"] == f"{ISSUER}/protocol/openid-connect/certs"
    assert {"password", "client_credentials"} <= set(conf["grant_types_supported"])
    keys = (await stack.client.get(f"{REALM}/protocol/openid-connect/certs")).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["alg"] == "RS256" and k["use"] == "sig" for k in keys)
    assert not any("d" in k for k in keys)  # never a private part


async def test_password_grant_token_is_shaped_like_keycloaks(stack: Stack) -> None:
    r = await stack.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": "manager@az-demo.test",
            "password": "demo-manager",
        },
    )
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256" and header["kid"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["azp"] == "hdhub-portal" and claims["typ"] == "Bearer"
    assert claims["preferred_username"] == "manager@az-demo.test"
    assert "default-roles-hdhub" in claims["realm_access"]["roles"]
    # (other tests' organisations may have joined the demo manager's since it was seeded)
    assert claims["organisations"]["az-demo"] == {
        "name": "AZ Demo Hospital",
        "nihdi": "71000436",
        "roles": ["dp_manager", "manager"],
        "registries": ["*"],
    }


async def test_client_credentials_with_basic_auth_bind_the_client_to_its_organisation(stack: Stack) -> None:
    basic = base64.b64encode(b"lab-demo-lims:demo-lims-secret").decode()
    r = await stack.client.post(
        TOKEN_PATH, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert r.status_code == 200
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["preferred_username"] == "service-account-lab-demo-lims"
    assert list(claims["organisations"]) == ["lab-demo"]


async def test_wrong_credentials_get_keycloaks_errors(stack: Stack) -> None:
    r = await stack.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": "nurse@az-demo.test",
            "password": "nope",
        },
    )
    assert r.status_code == 401 and r.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid user credentials",
    }
    r = await stack.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": "nobody@x.test",
            "password": "x",
        },
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_grant"
    r = await stack.client.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials", "client_id": "az-demo-his", "client_secret": "wrong"},
    )
    assert r.status_code == 401 and r.json()["error"] == "unauthorized_client"
    r = await stack.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "unknown-app",
            "username": "nurse@az-demo.test",
            "password": "demo-nurse",
        },
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await stack.client.post(TOKEN_PATH, data={"grant_type": "implicit"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await stack.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "authorization_code",
            "client_id": "hdhub-portal",
            "code": "x",
            "redirect_uri": "y",
        },
    )
    assert r.status_code == 400 and r.json() == {
        "error": "invalid_grant",
        "error_description": "Code not valid",
    }


async def test_organisations_endpoint_shows_only_ones_own(stack: Stack) -> None:
    r = await stack.client.get(
        "/api/v1/organisations", headers=await stack.headers("biologist@lab-demo.test")
    )
    assert [o["id"] for o in r.json()["items"]] == ["lab-demo"] and r.json()["total"] == 1
    r = await stack.client.get(
        "/api/v1/organisations/az-demo", headers=await stack.headers("biologist@lab-demo.test")
    )
    assert r.status_code == 404
    r = await stack.client.get(
        "/api/v1/organisations/az-demo", headers=await stack.headers("nurse@az-demo.test")
    )
    assert r.status_code == 200 and r.json()["roles"] == ["registrant"]
    assert (await stack.client.get("/api/v1/organisations")).status_code == 401


async def test_forged_or_symmetric_tokens_are_refused(stack: Stack) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {
            "sub": "x",
            "iss": ISSUER,
            "aud": "hdhub",
            "exp": 9999999999,
            "iat": 0,
            "organisations": {"az-demo": {"roles": ["registrant"]}},
        },
        key,
        algorithm="RS256",
        headers={"kid": "forged"},
    )
    r = await stack.client.get("/api/v1/registrations", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    hs = jwt.encode({"sub": "x", "iss": ISSUER}, "a-shared-secret-that-is-long-enough-32b", algorithm="HS256")
    r = await stack.client.get("/api/v1/registrations", headers={"Authorization": f"Bearer {hs}"})
    assert r.status_code == 401


async def test_expired_token_is_refused(stack: Stack) -> None:
    import time

    from hdhub.identity.issuer import signing_key

    async with stack.service("identity").db.system_session() as session:
        key = await signing_key(session)
    now = int(time.time())
    claims = {
        "sub": "x",
        "iss": ISSUER,
        "aud": ["hdhub"],
        "exp": now - 3600,
        "iat": now - 7200,
        "organisations": {},
    }
    expired = jwt.encode(claims, key.private_pem, algorithm="RS256", headers={"kid": key.kid})
    r = await stack.client.get("/api/v1/registrations", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_a_secret_is_checked_off_the_event_loop(stack: Stack) -> None:
    """Argon2 takes a fifth of a second: checked in the event loop, each token request,
    sign-in and SFTP login held up every other request of the process that long."""
    from hdhub.identity.issuer import hasher, verify_secret

    # A client made as a manager makes one: its secret hashed as any real secret is (the
    # demo clients' are hashed cheaply: their secrets are in the README).
    manager = await stack.headers("manager@az-demo.test")
    client_id = f"az-demo-{uuid.uuid4().hex[:6]}"
    made = await stack.client.post(
        "/api/v1/organisations/az-demo/clients",
        json={"client_id": client_id, "name": "PACS"},
        headers=manager,
    )
    assert made.status_code == 201, made.text
    secret = made.json()["client_secret"]
    hashed = hasher.hash(secret)
    started = time.perf_counter()
    assert verify_secret(hashed, secret)
    one_check = time.perf_counter() - started
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    answers = await asyncio.gather(
        *(
            stack.client.post(
                TOKEN_PATH,
                data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": attempt},
            )
            for attempt in (secret, "wrong", secret)
        )
    )
    stop.set()
    await ticker
    assert [a.status_code for a in answers] == [200, 401, 200]
    # Three checks ran meanwhile; the loop was never held for as long as one takes.
    assert max(gaps) < one_check / 2, (max(gaps), one_check)


async def test_the_demo_secrets_are_hashed_cheaply_and_still_checked(stack: Stack) -> None:
    """Their passwords are printed in the README: a real password's hashing cost would
    protect nothing. Argon2 carries its parameters in the hash: the same check reads it."""
    from hdhub.identity.issuer import verify_secret
    from hdhub.identity.seed import demo_hasher

    hashed = demo_hasher.hash("demo-lims-secret")
    assert "m=8192,t=1,p=1" in hashed
    assert verify_secret(hashed, "demo-lims-secret") and not verify_secret(hashed, "demo-lims-secreT")
    form = {"grant_type": "client_credentials", "client_id": "lab-demo-lims"}
    assert (
        await stack.client.post(TOKEN_PATH, data=form | {"client_secret": "demo-lims-secret"})
    ).status_code == 200
    assert (await stack.client.post(TOKEN_PATH, data=form | {"client_secret": "wrong"})).status_code == 401
