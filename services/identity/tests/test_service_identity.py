"""Platform services call each other as themselves: client ``hdhub-<service>``, realm role
``hdhub-service:<service>``, a secret that is never a placeholder, and exactly the actions
SERVICE_POLICY gives that role, in the one organisation whose work they are doing."""

from __future__ import annotations

import jwt
import pytest

from hdhub.common import service_auth
from hdhub.common.auth import ActingFor, Action, Principal
from hdhub.common.config import PLACEHOLDER, is_placeholder, platform
from hdhub.identity.issuer import OAuthError, new_signing_key, service_grant
from tests.support.stack import TOKEN_PATH, Stack


def _principal(*roles: str, acting_for: ActingFor | None = None) -> Principal:
    return Principal("s", "s", None, True, {}, realm_roles=frozenset(roles), acting_for=acting_for)


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
    for client_id, secret in (
        ("hdhub-uploads", "not-the-secret"),
        ("hdhub-nosuch", platform().service_client_secret),
    ):
        r = await stack.client.post(
            TOKEN_PATH,
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )
        assert r.status_code == 401 and r.json()["error"] == "unauthorized_client"


async def test_service_principal_is_cached_and_acts_as_the_service(stack: Stack) -> None:
    service_auth.reset()
    first = await service_auth.service_principal("uploads")
    again = await service_auth.service_principal("uploads")
    assert first.token and first.token == again.token  # one token request for many calls
    assert first.services == {"uploads"} and first.is_service("uploads") and not first.is_service("intake")
    async with service_auth.acting_as_service("intake") as intake:
        from hdhub.common.auth import current_principal

        assert current_principal.get() is intake and intake.is_service("intake")
    assert current_principal.get() is not intake


def test_service_policy_is_exactly_what_each_role_may_do_for_the_organisation_it_acts_for() -> None:
    for_az = ActingFor("az-demo", "nurse@az-demo.test")
    uploads = _principal("hdhub-service:uploads", acting_for=for_az)
    assert uploads.can(Action.REGISTRATION_WRITE, "az-demo") and not uploads.can(
        Action.REGISTRATION_WRITE, "lab-demo"
    )
    assert not uploads.can(Action.MEMBER_MANAGE, "az-demo") and not uploads.can(
        Action.CERTIFICATE_MANAGE, "az-demo"
    )
    assert uploads.organisations_for(Action.REGISTRATION_READ) == ["az-demo"]
    assert uploads.author == "nurse@az-demo.test"
    intake = _principal("hdhub-service:intake", acting_for=for_az)
    assert intake.can(Action.REGISTRATION_READ, "az-demo") and not intake.can(
        Action.REGISTRATION_WRITE, "az-demo"
    )
    nobody = _principal("hdhub-service:pseudonymisation", acting_for=for_az)
    assert not any(nobody.can(a, "az-demo") for a in Action)
    # A realm role that merely looks like one grants nothing.
    assert not _principal("hdhub-service-uploads").can(Action.REGISTRATION_READ, "az-demo")


def test_a_service_token_alone_opens_no_organisation() -> None:
    alone = _principal("hdhub-service:uploads")
    assert not any(
        alone.can(a, org) for a in Action for org in ("az-demo", "lab-demo") if a != Action.CATALOGUE_READ
    )
    assert alone.organisations_for(Action.REGISTRATION_READ) == []
    assert alone.roles_in("az-demo") == frozenset()  # no KeyError for a non-member
    assert alone.can(Action.CATALOGUE_READ)  # the catalogue belongs to no organisation


@pytest.mark.parametrize("environment", ["development", "test"])
@pytest.mark.parametrize("secret", [PLACEHOLDER, "", "  Change-Me ", "secret", "**********"])
def test_a_placeholder_service_secret_is_refused_in_every_environment(
    monkeypatch: pytest.MonkeyPatch, environment: str, secret: str
) -> None:
    """Even when the installation itself is left on the placeholder, the placeholder buys
    no token (production does not start with one at all, see libs/common/tests)."""
    monkeypatch.setenv("HDHUB_ENVIRONMENT", environment)
    monkeypatch.setenv("HDHUB_SERVICE_CLIENT_SECRET", secret)
    platform.cache_clear()
    try:
        with pytest.raises(OAuthError) as refused:
            service_grant(
                issuer="http://x/realms/hdhub",
                lifetime=60,
                service="uploads",
                client_secret=secret,
                key=new_signing_key(),
            )
        assert refused.value.error == "unauthorized_client"
    finally:
        platform.cache_clear()


async def test_the_shipped_placeholder_gets_no_service_token(stack: Stack) -> None:
    r = await stack.client.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials", "client_id": "hdhub-uploads", "client_secret": PLACEHOLDER},
    )
    assert r.status_code == 401 and r.json()["error"] == "unauthorized_client"
    assert not is_placeholder(platform().service_client_secret)  # the stack's is generated


@pytest.mark.parametrize("service", ["uploads", "intake"])
async def test_a_service_token_opens_no_rest_route(stack: Stack, service: str) -> None:
    """Not even an organisation's page (intake's token once got a 500 there: a KeyError
    on the roles of an organisation it is no member of)."""
    principal = await service_auth.service_principal(service)
    headers = {"Authorization": f"Bearer {principal.token}"}
    for method, path in (
        ("GET", "/api/v1/organisations"),
        ("GET", "/api/v1/organisations/az-demo"),
        ("GET", "/api/v1/uploads?organisation_id=az-demo"),
        ("PUT", "/api/v1/upload-settings/az-demo/ANGIO"),
    ):
        r = await stack.client.request(method, path, headers=headers, json={})
        assert r.status_code == 403 and r.json()["type"].endswith("/forbidden"), (method, path, r.text)


async def test_organisation_clients_cannot_take_a_service_name(stack: Stack) -> None:
    r = await stack.client.post(
        "/api/v1/organisations/az-demo/clients",
        json={"client_id": "hdhub-uploads", "name": "impostor", "roles": ["registrant"]},
        headers=await stack.headers("manager@az-demo.test"),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "reserved", r.text
