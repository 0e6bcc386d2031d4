"""Platform services call each other as themselves: client ``hdhub-<service>``, realm role
``hdhub-service:<service>``, and exactly the actions SERVICE_POLICY gives that role."""

from __future__ import annotations

import jwt

from hdhub.common import service_auth
from hdhub.common.auth import Action, Principal
from hdhub.common.config import platform
from tests.support.stack import TOKEN_PATH, Stack


def _principal(*roles: str) -> Principal:
    return Principal("s", "s", None, True, {}, realm_roles=frozenset(roles))


async def test_service_client_gets_a_service_token(stack: Stack) -> None:
    r = await stack.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_id": "hdhub-uploads",
            "client_secret": platform().service_client_secret,
        },
    )
    assert r.status_code == 200, r.text
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["azp"] == "hdhub-uploads" and claims["organisations"] == {}
    assert "hdhub-service:uploads" in claims["realm_access"]["roles"]


async def test_wrong_secret_and_unknown_service_are_refused(stack: Stack) -> None:
    for client_id, secret in (("hdhub-uploads", "not-the-secret"), ("hdhub-nosuch", platform().service_client_secret)):
        r = await stack.client.post(
            TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        )
        assert r.status_code == 401 and r.json()["error"] == "unauthorized_client"


async def test_service_principal_is_cached_and_acts_as_the_service(stack: Stack) -> None:
    service_auth.reset()
    first = await service_auth.service_principal("uploads")
    again = await service_auth.service_principal("uploads")
    assert first is again and first.token  # one token request for many calls
    assert first.services == {"uploads"} and first.is_service("uploads") and not first.is_service("intake")
    async with service_auth.acting_as_service("intake") as intake:
        from hdhub.common.auth import current_principal

        assert current_principal.get() is intake and intake.is_service("intake")
    assert current_principal.get() is not intake


def test_service_policy_is_exactly_what_each_role_may_do() -> None:
    uploads = _principal("hdhub-service:uploads")
    assert uploads.can(Action.REGISTRATION_WRITE, "az-demo") and uploads.can(Action.REGISTRATION_WRITE, "lab-demo")
    assert not uploads.can(Action.MEMBER_MANAGE, "az-demo") and not uploads.can(Action.CERTIFICATE_MANAGE, "az-demo")
    intake = _principal("hdhub-service:intake")
    assert intake.can(Action.REGISTRATION_READ, "az-demo") and not intake.can(Action.REGISTRATION_WRITE, "az-demo")
    nobody = _principal("hdhub-service:pseudonymisation")
    assert not any(nobody.can(a, "az-demo") for a in Action)
    # A realm role that merely looks like one grants nothing.
    assert not _principal("hdhub-service-uploads").can(Action.REGISTRATION_READ, "az-demo")


async def test_organisation_clients_cannot_take_a_service_name(stack: Stack) -> None:
    r = await stack.client.post(
        "/api/v1/organisations/az-demo/clients",
        json={"client_id": "hdhub-uploads", "name": "impostor", "roles": ["registrant"]},
        headers=await stack.headers("manager@az-demo.test"),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "reserved", r.text
