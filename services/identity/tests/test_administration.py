"""The Self-Service Portal's administration over REST, on the embedded store: the demo
path, the rules of DOMAIN.md, bad input that changes nothing, and foreign organisations."""

from __future__ import annotations

import random
import uuid
from typing import Any

import jwt
import pytest

from hdhub.identity.nihdi import check_digits
from tests.support.stack import TOKEN_PATH, Stack

MANAGER = "manager@az-demo.test"  # az-demo: manager, dp_manager
NURSE = "nurse@az-demo.test"  # az-demo: registrant
LAB = "biologist@lab-demo.test"  # lab-demo: registrant, manager
ORGS = "/api/v1/organisations"


def valid_nihdi() -> str:
    base = f"{random.randrange(100000, 999999)}"
    return base + check_digits(base)


def email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.test"


async def password_token(stack: Stack, username: str, password: str) -> Any:
    return await stack.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": username,
            "password": password,
        },
    )


async def bearer(stack: Stack, username: str, password: str) -> dict[str, str]:
    r = await password_token(stack, username, password)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def new_person(
    stack: Stack, org: str, by: dict[str, str], roles: list[str], password: str | None = None
) -> tuple[str, str, dict[str, str]]:
    """A member who has set their password; returns (account_id, e-mail, headers)."""
    address = email()
    r = await stack.client.post(
        f"{ORGS}/{org}/members",
        json={"email": address, "first_name": "T", "last_name": "Est", "roles": roles},
        headers=by,
    )
    assert r.status_code == 201, r.text
    password = password or f"pw-{uuid.uuid4().hex}"
    r2 = await stack.client.post(
        "/api/v1/accounts/password",
        json={
            "username": address,
            "current_password": r.json()["initial_password"],
            "new_password": password,
        },
    )
    assert r2.status_code == 204, r2.text
    return r.json()["account_id"], address, await bearer(stack, address, password)


async def new_organisation(stack: Stack, by: dict[str, str]) -> str:
    r = await stack.client.post(
        ORGS, json={"title": f"Org {uuid.uuid4().hex[:6]}", "nihdi_number": valid_nihdi()}, headers=by
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_user_manager_creates_organisation_and_member_must_change_initial_password(
    stack: Stack,
) -> None:
    h = await stack.headers(MANAGER)
    nihdi = valid_nihdi()
    r = await stack.client.post(
        ORGS, json={"title": "AZ Nieuw", "nihdi_number": f"{nihdi[:1]}-{nihdi[1:6]}-{nihdi[6:]}"}, headers=h
    )
    assert r.status_code == 201, r.text
    org = r.json()
    assert org["nihdi_number"] == nihdi and org["roles"] == ["manager"]
    assert r.headers["Location"] == f"{ORGS}/{org['id']}"
    # The creator's next token carries the new organisation.
    h = await bearer(stack, MANAGER, "demo-manager")
    assert (await stack.client.get(f"{ORGS}/{org['id']}", headers=h)).json()["roles"] == ["manager"]

    address = email()
    r = await stack.client.post(
        f"{ORGS}/{org['id']}/members",
        json={"email": address, "first_name": "Nina", "last_name": "New", "roles": ["registrant"]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    member = r.json()
    assert member["must_change_password"] is True and member["roles"] == ["registrant"]
    initial = member["initial_password"]
    assert initial and r.headers["Cache-Control"] == "no-store"

    r = await password_token(stack, address, initial)
    assert r.status_code == 400 and r.json() == {
        "error": "invalid_grant",
        "error_description": "Account is not fully set up",
    }
    r = await stack.client.post(
        "/api/v1/accounts/password",
        json={"username": address, "current_password": initial, "new_password": "short"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "password-length"
    r = await stack.client.post(
        "/api/v1/accounts/password",
        json={
            "username": address,
            "current_password": "wrong-one-here",
            "new_password": "a-long-new-password",
        },
    )
    assert r.status_code == 400 and r.json()["type"] == "/problems/invalid-credentials"
    r = await stack.client.post(
        "/api/v1/accounts/password",
        json={"username": address, "current_password": initial, "new_password": "a-long-new-password"},
    )
    assert r.status_code == 204
    r = await password_token(stack, address, "a-long-new-password")
    assert r.status_code == 200
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["organisations"] == {
        org["id"]: {"name": "AZ Nieuw", "nihdi": nihdi, "roles": ["registrant"], "registries": ["*"]}
    }

    members = (await stack.client.get(f"{ORGS}/{org['id']}/members", headers=h)).json()["items"]
    assert {m["email"]: m["roles"] for m in members} == {MANAGER: ["manager"], address: ["registrant"]}
    assert not any(m["must_change_password"] for m in members)
    entries = (
        await stack.client.get("/api/v1/audit", params={"organisation_id": org["id"]}, headers=h)
    ).json()["items"]
    assert [e["action"] for e in entries][:3] == ["account.password", "member.add", "organisation.create"]
    assert [e["actor"] for e in entries][:3] == [address, MANAGER, MANAGER]
    assert entries[1]["target"] == address and entries[1]["details"]["roles"] == ["registrant"]


async def test_own_password_change(stack: Stack) -> None:
    org = await new_organisation(stack, await bearer(stack, MANAGER, "demo-manager"))
    h = await bearer(stack, MANAGER, "demo-manager")
    _, address, mh = await new_person(stack, org, h, ["reader"], password="first-password-1")
    r = await stack.client.post(
        "/api/v1/accounts/me/password",
        json={"current_password": "nope-nope-nope", "new_password": "second-password-2"},
        headers=mh,
    )
    assert r.status_code == 422 and r.json()["type"] == "/problems/wrong-password"
    r = await stack.client.post(
        "/api/v1/accounts/me/password",
        json={"current_password": "first-password-1", "new_password": "first-password-1"},
        headers=mh,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "password-reused"
    r = await stack.client.post(
        "/api/v1/accounts/me/password",
        json={"current_password": "first-password-1", "new_password": "second-password-2"},
        headers=mh,
    )
    assert r.status_code == 204
    assert (await password_token(stack, address, "first-password-1")).status_code == 401
    assert (await password_token(stack, address, "second-password-2")).status_code == 200


@pytest.mark.parametrize(
    ("nihdi", "rule"),
    [
        ("7100043", "nihdi-length"),
        ("710004361", "nihdi-length"),
        ("7100043X", "nihdi-length"),
        ("71000437", "nihdi-check"),
    ],
)
async def test_bad_nihdi_number_is_refused_and_nothing_is_created(
    stack: Stack, nihdi: str, rule: str
) -> None:
    h = await stack.headers(MANAGER)
    title = f"Bad {uuid.uuid4().hex}"
    r = await stack.client.post(ORGS, json={"title": title, "nihdi_number": nihdi}, headers=h)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [
        {"field": "nihdi_number", "rule": rule, "message": r.json()["errors"][0]["message"]}
    ]
    async with stack.service("identity").db.system_session() as session:
        from sqlalchemy import select

        from hdhub.identity.store import Organisation

        assert (
            await session.execute(select(Organisation).where(Organisation.title == title))
        ).first() is None


async def test_duplicate_nihdi_and_duplicate_email_conflict(stack: Stack) -> None:
    h = await stack.headers(MANAGER)
    r = await stack.client.post(ORGS, json={"title": "Copy", "nihdi_number": "71000436"}, headers=h)
    assert r.status_code == 409 and r.json()["type"] == "/problems/duplicate-nihdi"
    r = await stack.client.post(
        f"{ORGS}/az-demo/members", json={"email": NURSE, "roles": ["reader"]}, headers=h
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/duplicate-email"
    members = (await stack.client.get(f"{ORGS}/az-demo/members", headers=h)).json()["items"]
    assert next(m for m in members if m["email"] == NURSE)["roles"] == ["registrant"]  # unchanged


async def test_only_user_managers_create_organisations(stack: Stack) -> None:
    for who in (NURSE, "az-demo-his"):
        r = await stack.client.post(
            ORGS, json={"title": "X", "nihdi_number": valid_nihdi()}, headers=await stack.headers(who)
        )
        assert r.status_code == 403
    assert (
        await stack.client.post(ORGS, json={"title": "X", "nihdi_number": valid_nihdi()})
    ).status_code == 401


async def test_last_user_manager_cannot_drop_the_role_leave_or_cancel(stack: Stack) -> None:
    h = await bearer(stack, MANAGER, "demo-manager")
    org = await new_organisation(stack, h)
    h = await bearer(stack, MANAGER, "demo-manager")
    me = next(
        m
        for m in (await stack.client.get(f"{ORGS}/{org}/members", headers=h)).json()["items"]
        if m["email"] == MANAGER
    )
    r = await stack.client.put(
        f"{ORGS}/{org}/members/{me['account_id']}/roles", json={"roles": ["registrant"]}, headers=h
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/last-user-manager"
    r = await stack.client.delete(f"{ORGS}/{org}/members/{me['account_id']}", headers=h)
    assert r.status_code == 409
    r = await stack.client.delete("/api/v1/accounts/me", headers=h)
    assert r.status_code == 409
    members = (await stack.client.get(f"{ORGS}/{org}/members", headers=h)).json()["items"]
    assert [m["roles"] for m in members] == [["manager"]]
    # With a second User Manager, the first may step down.
    other, _, _ = await new_person(stack, org, h, ["manager"])
    r = await stack.client.put(
        f"{ORGS}/{org}/members/{me['account_id']}/roles", json={"roles": ["dp_manager"]}, headers=h
    )
    assert r.status_code == 200 and r.json()["roles"] == ["dp_manager"]
    # Now a DP Manager there: it may not touch the User Manager.
    r = await stack.client.delete(
        f"{ORGS}/{org}/members/{other}", headers=await bearer(stack, MANAGER, "demo-manager")
    )
    assert r.status_code == 403


async def test_dp_manager_adds_members_only_where_it_manages_and_gives_data_roles_and_certificate_editor(
    stack: Stack,
) -> None:
    h = await bearer(stack, MANAGER, "demo-manager")
    org = await new_organisation(stack, h)
    h = await bearer(stack, MANAGER, "demo-manager")
    _, _, dp = await new_person(stack, org, h, ["dp_manager"])
    r = await stack.client.post(
        f"{ORGS}/{org}/members", json={"email": email(), "roles": ["registrant"]}, headers=dp
    )
    assert r.status_code == 201
    before = (await stack.client.get(f"{ORGS}/{org}/members", headers=h)).json()["items"]
    r = await stack.client.post(
        f"{ORGS}/{org}/members", json={"email": email(), "roles": ["manager"]}, headers=dp
    )
    assert r.status_code == 403
    # ... but it makes a Certificate Editor (SSP seed: "defined by the User Manager or DP Manager").
    r = await stack.client.post(
        f"{ORGS}/{org}/members", json={"email": email(), "roles": ["certificate_editor"]}, headers=dp
    )
    assert r.status_code == 201, r.text
    editor = r.json()["account_id"]
    for roles, status in ((["certificate_editor", "dp_manager"], 403), (["reader"], 200)):
        r = await stack.client.put(f"{ORGS}/{org}/members/{editor}/roles", json={"roles": roles}, headers=dp)
        assert r.status_code == status, r.text
    reg = next(m for m in before if m["roles"] == ["registrant"])
    r = await stack.client.put(
        f"{ORGS}/{org}/members/{reg['account_id']}/roles",
        json={"roles": ["registrant", "manager"]},
        headers=dp,
    )
    assert r.status_code == 403
    r = await stack.client.put(
        f"{ORGS}/{org}/members/{reg['account_id']}/roles", json={"roles": ["reader"]}, headers=dp
    )
    assert r.status_code == 200
    # An organisation it does not manage: it is not even told it exists.
    for method, url, body in [
        ("POST", f"{ORGS}/az-demo/members", {"email": email(), "roles": ["registrant"]}),
        ("GET", f"{ORGS}/az-demo/members", None),
        ("POST", f"{ORGS}/lab-demo/members", {"email": email(), "roles": []}),
    ]:
        r = await stack.client.request(method, url, json=body, headers=dp)
        assert r.status_code == 404, (url, r.text)
    after = (await stack.client.get(f"{ORGS}/{org}/members", headers=h)).json()["items"]
    assert len(after) == len(before) + 1  # the Certificate Editor, nobody refused
    # A DP Manager is no Certificate Editor.
    from hdhub.common.auth import Action, Principal

    claims = jwt.decode(dp["Authorization"][7:], options={"verify_signature": False})
    assert not Principal.from_claims(claims).can(Action.CERTIFICATE_MANAGE, org)


async def test_removing_a_member_keeps_the_account_cancelling_removes_it_everywhere(stack: Stack) -> None:
    h = await bearer(stack, MANAGER, "demo-manager")
    org1 = await new_organisation(stack, h)
    org2 = await new_organisation(stack, h)
    h = await bearer(stack, MANAGER, "demo-manager")
    account_id, address, _ = await new_person(stack, org1, h, ["registrant"], password="member-password-1")
    r = await stack.client.post(
        f"{ORGS}/{org2}/members", json={"email": address.upper(), "roles": ["reader"]}, headers=h
    )
    assert r.status_code == 201 and r.json()["initial_password"] is None  # same account, second organisation
    r = await stack.client.delete(f"{ORGS}/{org1}/members/{account_id}", headers=h)
    assert r.status_code == 204
    r = await password_token(stack, address, "member-password-1")
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert list(claims["organisations"]) == [org2]
    # A manager of only one of its organisations may not cancel it; lab-demo's is not told it exists.
    r = await stack.client.delete(f"/api/v1/accounts/{account_id}", headers=await stack.headers(LAB))
    assert r.status_code == 404
    r = await stack.client.delete(f"/api/v1/accounts/{account_id}", headers=h)
    assert r.status_code == 204
    assert (await password_token(stack, address, "member-password-1")).status_code == 401
    assert all(
        m["email"] != address
        for m in (await stack.client.get(f"{ORGS}/{org2}/members", headers=h)).json()["items"]
    )


async def test_hospital_system_clients_created_rotated_deleted_by_managers(stack: Stack) -> None:
    h = await stack.headers(MANAGER)
    client_id = f"az-demo-{uuid.uuid4().hex[:6]}"
    r = await stack.client.post(
        f"{ORGS}/az-demo/clients", json={"client_id": client_id, "name": "PACS"}, headers=h
    )
    assert r.status_code == 201 and r.json()["roles"] == ["registrant"]
    secret = r.json()["client_secret"]
    assert client_id in [
        c["client_id"] for c in (await stack.client.get(f"{ORGS}/az-demo/clients", headers=h)).json()["items"]
    ]
    assert all(
        "client_secret" not in c
        for c in (await stack.client.get(f"{ORGS}/az-demo/clients", headers=h)).json()["items"]
    )
    form = {"grant_type": "client_credentials", "client_id": client_id}
    r = await stack.client.post(TOKEN_PATH, data=form | {"client_secret": secret})
    assert list(
        jwt.decode(r.json()["access_token"], options={"verify_signature": False})["organisations"]
    ) == ["az-demo"]
    r = await stack.client.post(f"{ORGS}/az-demo/clients", json={"client_id": client_id}, headers=h)
    assert r.status_code == 409
    r = await stack.client.post(f"{ORGS}/az-demo/clients", json={"roles": ["manager"]}, headers=h)
    assert r.status_code == 422
    r = await stack.client.post(f"{ORGS}/az-demo/clients/{client_id}/secret", headers=h)
    new_secret = r.json()["client_secret"]
    assert r.status_code == 200 and new_secret != secret
    assert (await stack.client.post(TOKEN_PATH, data=form | {"client_secret": secret})).status_code == 401
    assert (await stack.client.post(TOKEN_PATH, data=form | {"client_secret": new_secret})).status_code == 200
    # lab-demo's manager cannot see, rotate or delete it.
    lab = await stack.headers(LAB)
    assert (
        await stack.client.post(f"{ORGS}/lab-demo/clients/{client_id}/secret", headers=lab)
    ).status_code == 404
    assert (await stack.client.delete(f"{ORGS}/az-demo/clients/{client_id}", headers=lab)).status_code == 404
    assert (await stack.client.delete(f"{ORGS}/az-demo/clients/{client_id}", headers=h)).status_code == 204
    assert (await stack.client.post(TOKEN_PATH, data=form | {"client_secret": new_secret})).status_code == 401


async def test_every_admin_endpoint_refuses_a_foreign_organisations_member(stack: Stack) -> None:
    """lab-demo's User Manager against az-demo: 404 everywhere, and nothing changes."""
    lab = await stack.headers(LAB)
    nurse_id = next(
        m["account_id"]
        for m in (
            await stack.client.get(f"{ORGS}/az-demo/members", headers=await stack.headers(MANAGER))
        ).json()["items"]
        if m["email"] == NURSE
    )
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"{ORGS}/az-demo", None),
        ("GET", f"{ORGS}/az-demo/members", None),
        ("POST", f"{ORGS}/az-demo/members", {"email": email(), "roles": ["registrant"]}),
        ("PUT", f"{ORGS}/az-demo/members/{nurse_id}/roles", {"roles": ["reader"]}),
        ("DELETE", f"{ORGS}/az-demo/members/{nurse_id}", None),
        ("GET", f"{ORGS}/az-demo/clients", None),
        ("POST", f"{ORGS}/az-demo/clients", {"name": "x"}),
        ("POST", f"{ORGS}/az-demo/clients/az-demo-his/secret", None),
        ("DELETE", f"{ORGS}/az-demo/clients/az-demo-his", None),
        ("GET", "/api/v1/audit?organisation_id=az-demo", None),
        ("GET", "/api/v1/account-requests?organisation_id=az-demo", None),
        ("POST", "/api/v1/account-requests/x/approve?organisation_id=az-demo", None),
        ("POST", "/api/v1/account-requests/x/reject?organisation_id=az-demo", None),
        ("DELETE", f"/api/v1/accounts/{nurse_id}", None),
    ]
    for method, url, body in calls:
        r = await stack.client.request(method, url, json=body, headers=lab)
        assert r.status_code == 404, (method, url, r.status_code)
        assert r.headers["content-type"] == "application/problem+json"
    assert (
        await stack.client.get("/api/v1/organisations/az-demo", headers=await stack.headers(NURSE))
    ).status_code == 200
    assert await stack.token("az-demo-his")  # the client still works
    # A member without the right gets 403 (it knows the organisation exists).
    nurse = await stack.headers(NURSE)
    manager_id = (
        await stack.client.get(f"{ORGS}/az-demo/members", headers=await stack.headers(MANAGER))
    ).json()["items"]
    manager_id = next(m["account_id"] for m in manager_id if m["email"] == MANAGER)
    for method, url, body in [*calls[1:-1], ("DELETE", f"/api/v1/accounts/{manager_id}", None)]:
        r = await stack.client.request(method, url, json=body, headers=nurse)
        assert r.status_code in (403, 404), (method, url, r.status_code)


async def test_audit_log_readable_by_the_organisations_managers_only(stack: Stack) -> None:
    h = await stack.headers(MANAGER)
    await stack.client.post(f"{ORGS}/az-demo/clients", json={"name": "audited"}, headers=h)
    entries = (
        await stack.client.get("/api/v1/audit", params={"organisation_id": "az-demo"}, headers=h)
    ).json()["items"]
    e = next(e for e in entries if e["action"] == "client.create")
    assert e["actor"] == MANAGER and e["organisation_id"] == "az-demo" and e["at"]
    assert (
        await stack.client.get(
            "/api/v1/audit", params={"organisation_id": "az-demo"}, headers=await stack.headers(NURSE)
        )
    ).status_code == 403
    lab = (
        await stack.client.get(
            "/api/v1/audit", params={"organisation_id": "lab-demo"}, headers=await stack.headers(LAB)
        )
    ).json()["items"]
    assert all(e["organisation_id"] == "lab-demo" for e in lab)


async def test_the_audit_log_pages_by_key_newest_first(stack: Stack) -> None:
    """New entries arriving while a client pages move no entry from one page to the next."""
    h = await stack.headers(MANAGER)
    for i in range(3):
        await stack.client.post(f"{ORGS}/az-demo/clients", json={"name": f"paged {i}"}, headers=h)
    audit = {"organisation_id": "az-demo", "limit": 2}
    first = (await stack.client.get("/api/v1/audit", params=audit, headers=h)).json()
    assert (len(first["items"]), first["limit"], first["offset"]) == (2, 2, 0) and first["next"]
    await stack.client.post(f"{ORGS}/az-demo/clients", json={"name": "arrived meanwhile"}, headers=h)
    second = (
        await stack.client.get("/api/v1/audit", params={**audit, "after": first["next"]}, headers=h)
    ).json()
    assert second["total"] == first["total"] + 1 and second["offset"] == 3  # the new one is ahead
    assert [e["at"] for e in first["items"] + second["items"]] == sorted(
        (e["at"] for e in first["items"] + second["items"]), reverse=True
    )
    whole = (await stack.client.get("/api/v1/audit", params={**audit, "limit": 1000}, headers=h)).json()[
        "items"
    ]
    assert whole[1:5] == first["items"] + second["items"]
    bad = await stack.client.get("/api/v1/audit", params={**audit, "after": "x"}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "after"


async def test_members_page_by_email_and_say_where_the_next_page_starts(stack: Stack) -> None:
    h = await stack.headers(MANAGER)
    everyone = (await stack.client.get(f"{ORGS}/az-demo/members", headers=h)).json()
    assert everyone["next"] is None and everyone["total"] == len(everyone["items"]) >= 3
    emails = [m["email"] for m in everyone["items"]]
    assert emails == sorted(emails, key=str.lower)
    first = (await stack.client.get(f"{ORGS}/az-demo/members", params={"limit": 2}, headers=h)).json()
    assert [m["email"] for m in first["items"]] == emails[:2] and first["next"] == emails[1]
    rest = (
        await stack.client.get(f"{ORGS}/az-demo/members", params={"after": first["next"]}, headers=h)
    ).json()
    assert [m["email"] for m in rest["items"]] == emails[2:]
    assert (rest["offset"], rest["total"], rest["next"]) == (2, everyone["total"], None)


async def test_readme_demo_a_new_user_manager_creates_an_organisation_and_adds_a_member(stack: Stack) -> None:
    """README, "Try it as a User Manager", step by step."""
    mia = await stack.headers(MANAGER)
    nina = email()
    r = await stack.client.post(
        f"{ORGS}/az-demo/members",
        json={"email": nina, "first_name": "Nina", "last_name": "Nieuw", "roles": ["manager"]},
        headers=mia,
    )
    assert r.status_code == 201 and r.json()["must_change_password"] and r.json()["roles"] == ["manager"]
    initial = r.json()["initial_password"]
    r = await password_token(stack, nina, initial)
    assert r.status_code == 400 and r.json()["error_description"] == "Account is not fully set up"
    r = await stack.client.post(
        "/api/v1/accounts/password",
        json={"username": nina, "current_password": initial, "new_password": "nina-own-password"},
    )
    assert r.status_code == 204
    h = await bearer(stack, nina, "nina-own-password")
    r = await stack.client.post(ORGS, json={"title": "AZ Nieuw", "nihdi_number": valid_nihdi()}, headers=h)
    assert r.status_code == 201
    org = r.json()["id"]
    h = await bearer(stack, nina, "nina-own-password")
    piet = email()
    r = await stack.client.post(
        f"{ORGS}/{org}/members",
        json={"email": piet, "first_name": "Piet", "last_name": "Nieuw", "roles": ["registrant"]},
        headers=h,
    )
    assert r.status_code == 201
    r = await password_token(stack, piet, r.json()["initial_password"])
    assert r.status_code == 400 and r.json()["error_description"] == "Account is not fully set up"
    members = (await stack.client.get(f"{ORGS}/{org}/members", headers=h)).json()["items"]
    assert {m["email"]: (m["roles"], m["must_change_password"]) for m in members} == {
        nina: (["manager"], False),
        piet: (["registrant"], True),
    }


async def test_two_user_managers_stepping_down_together_leave_one(stack: Stack) -> None:
    import asyncio

    h = await bearer(stack, MANAGER, "demo-manager")
    org = await new_organisation(stack, h)
    h = await bearer(stack, MANAGER, "demo-manager")
    me = next(
        m["account_id"] for m in (await stack.client.get(f"{ORGS}/{org}/members", headers=h)).json()["items"]
    )
    other, _, oh = await new_person(stack, org, h, ["manager"])
    oh = {"Authorization": oh["Authorization"]}
    results = await asyncio.gather(
        stack.client.put(f"{ORGS}/{org}/members/{me}/roles", json={"roles": ["reader"]}, headers=h),
        stack.client.put(f"{ORGS}/{org}/members/{other}/roles", json={"roles": ["reader"]}, headers=oh),
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    members = (
        await stack.client.get(f"{ORGS}/{org}/members", headers=h if results[1].status_code == 200 else oh)
    ).json()["items"]
    assert sum("manager" in m["roles"] for m in members) == 1
