"""Access taken away is taken at once: the installation keeps an operator, and a cancelled
account, a removed member or a deleted hospital system's token is refused on the next
request, by identity and by every other service (the revocation list the verifiers read)."""

from __future__ import annotations

import asyncio
import uuid

from services.identity.tests.test_administration import ORGS, bearer, new_person
from tests.support.stack import TOKEN_PATH, Stack

MANAGER = "manager@az-demo.test"
OPERATOR = "operator@hdhub.test"
# A registrations route any member may read, to show another service refuses the token too.
REGISTRIES = "/api/v1/registries"


async def _after_this_second() -> None:
    # ``iat`` has whole seconds and a token from the same second as the change still passes
    # (docs/identity.md); the tokens here are minted at least a second before it.
    await asyncio.sleep(1.0)


async def test_the_only_operator_cannot_cancel_their_own_account(stack: Stack) -> None:
    h = await stack.headers(OPERATOR)
    r = await stack.client.delete("/api/v1/accounts/me", headers=h)
    assert r.status_code == 409 and r.json()["type"] == "/problems/last-operator", r.text
    assert (await stack.client.get(REGISTRIES, headers=h)).status_code == 200
    assert (await bearer(stack, OPERATOR, "demo-operator"))["Authorization"]


async def test_a_cancelled_accounts_token_is_refused_at_once_everywhere(stack: Stack) -> None:
    manager = await stack.headers(MANAGER)
    _, _, h = await new_person(stack, "az-demo", manager, ["registrant"])
    assert (await stack.client.get(f"{ORGS}/az-demo", headers=h)).status_code == 200
    assert (await stack.client.get(REGISTRIES, headers=h)).status_code == 200
    await _after_this_second()
    assert (await stack.client.delete("/api/v1/accounts/me", headers=h)).status_code == 204
    for path in (f"{ORGS}/az-demo", REGISTRIES, "/api/v1/accounts/me/password"):
        r = (
            await stack.client.get(path, headers=h)
            if path != "/api/v1/accounts/me/password"
            else await stack.client.post(
                path, json={"current_password": "x", "new_password": "y" * 12}, headers=h
            )
        )
        assert r.status_code == 401 and "revoked" in r.json()["detail"], (path, r.text)


async def test_a_removed_member_loses_the_organisation_at_once_and_logs_in_again(stack: Stack) -> None:
    manager = await stack.headers(MANAGER)
    password = f"pw-{uuid.uuid4().hex}"
    account_id, address, h = await new_person(stack, "az-demo", manager, ["registrant"], password=password)
    await _after_this_second()
    assert (
        await stack.client.delete(f"{ORGS}/az-demo/members/{account_id}", headers=manager)
    ).status_code == 204
    assert (await stack.client.get(f"{ORGS}/az-demo", headers=h)).status_code == 401
    fresh = await bearer(stack, address, password)  # the account stays; its new token has no az-demo
    assert (await stack.client.get(f"{ORGS}/az-demo", headers=fresh)).status_code == 404


async def test_a_role_taken_takes_the_tokens_carrying_it(stack: Stack) -> None:
    manager = await stack.headers(MANAGER)
    account_id, _, h = await new_person(stack, "az-demo", manager, ["registrant", "dp_manager"])
    assert (await stack.client.get(f"{ORGS}/az-demo/members", headers=h)).status_code == 200
    await _after_this_second()
    r = await stack.client.put(
        f"{ORGS}/az-demo/members/{account_id}/roles", json={"roles": ["registrant"]}, headers=manager
    )
    assert r.status_code == 200
    assert (await stack.client.get(f"{ORGS}/az-demo/members", headers=h)).status_code == 401


async def test_a_deleted_hospital_systems_token_is_refused_at_once(stack: Stack) -> None:
    manager = await stack.headers(MANAGER)
    client_id = f"az-demo-{uuid.uuid4().hex[:6]}"
    r = await stack.client.post(f"{ORGS}/az-demo/clients", json={"client_id": client_id}, headers=manager)
    secret = r.json()["client_secret"]
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    h = {"Authorization": f"Bearer {(await stack.client.post(TOKEN_PATH, data=form)).json()['access_token']}"}
    assert (await stack.client.get(REGISTRIES, headers=h)).status_code == 200
    await _after_this_second()
    assert (
        await stack.client.delete(f"{ORGS}/az-demo/clients/{client_id}", headers=manager)
    ).status_code == 204
    assert (await stack.client.get(REGISTRIES, headers=h)).status_code == 401
