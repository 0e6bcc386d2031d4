"""The central operator starts an installation: an organisation and its first User Manager
(SSP seed: "the initial User Manager is appointed internally"), over REST and gRPC, audited,
the initial password answered once; nobody else may."""

from __future__ import annotations

import uuid

import grpc
import pytest

from hdhub.common import auth
from hdhub.common.grpc import channel
from hdhub.identity.nihdi import check_digits
from hdhub.proto.identity.v1 import identity_pb2 as pb
from hdhub.proto.identity.v1 import identity_pb2_grpc as pb_grpc
from tests.support.stack import TOKEN_PATH, Stack

ROUTE = "/api/v1/operator/organisations"
OPERATOR = "operator@hdhub.test"


def valid_nihdi() -> str:
    base = f"{uuid.uuid4().int % 900000 + 100000}"
    return base + check_digits(base)


async def bearer(stack: Stack, username: str, password: str) -> dict[str, str]:
    form = {"grant_type": "password", "client_id": "hdhub-portal", "username": username, "password": password}
    r = await stack.client.post(TOKEN_PATH, data=form)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def body(**changes: str) -> dict[str, str]:
    return {
        "title": f"AZ Start {uuid.uuid4().hex[:6]}",
        "nihdi_number": valid_nihdi(),
        "email": f"um-{uuid.uuid4().hex[:8]}@start.test",
        "first_name": "Uma",
        "last_name": "Manager",
    } | changes


async def test_operator_appoints_the_first_user_manager_who_then_runs_the_organisation(stack: Stack) -> None:
    wanted = body()
    r = await stack.client.post(ROUTE, json=wanted, headers=await stack.headers(OPERATOR))
    assert r.status_code == 201, r.text
    assert r.headers["Cache-Control"] == "no-store"
    out = r.json()
    org, manager = out["organisation"]["id"], out["user_manager"]
    assert out["organisation"]["title"] == wanted["title"]
    assert manager["roles"] == ["manager"] and manager["must_change_password"]
    initial = manager["initial_password"]
    assert initial and len(initial) == 16
    # The first login needs a password of their own; then they manage the organisation.
    r = await stack.client.post(
        "/api/v1/accounts/password",
        json={"username": wanted["email"], "current_password": initial, "new_password": "uma-own-password"},
    )
    assert r.status_code == 204, r.text
    uma = await bearer(stack, wanted["email"], "uma-own-password")
    r = await stack.client.post(
        f"/api/v1/organisations/{org}/members",
        json={"email": f"dp-{uuid.uuid4().hex[:6]}@start.test", "roles": ["dp_manager"]},
        headers=uma,
    )
    assert r.status_code == 201, r.text
    audit = (await stack.client.get("/api/v1/audit", params={"organisation_id": org}, headers=uma)).json()
    entries = {(e["action"], e["actor"]) for e in audit["items"]}
    assert {("organisation.create", OPERATOR), ("member.add", OPERATOR)} <= entries
    first = next(e for e in audit["items"] if e["actor"] == OPERATOR and e["action"] == "member.add")
    assert first["details"]["first_user_manager"] is True and initial not in str(audit)


async def test_an_existing_account_is_appointed_without_a_new_password(stack: Stack) -> None:
    r = await stack.client.post(
        ROUTE, json=body(email="manager@az-demo.test"), headers=await stack.headers(OPERATOR)
    )
    assert r.status_code == 201, r.text
    assert r.json()["user_manager"]["initial_password"] is None
    assert r.json()["user_manager"]["username"] == "manager@az-demo.test"


@pytest.mark.parametrize(
    "caller", ["manager@az-demo.test", "nurse@az-demo.test", "az-demo-his", "biologist@lab-demo.test"]
)
async def test_only_the_operator_appoints_a_first_user_manager(stack: Stack, caller: str) -> None:
    wanted = body()
    r = await stack.client.post(ROUTE, json=wanted, headers=await stack.headers(caller))
    assert r.status_code == 403, r.text
    # Nothing was created: the operator can still use the same NIHDI number and e-mail.
    r = await stack.client.post(ROUTE, json=wanted, headers=await stack.headers(OPERATOR))
    assert r.status_code == 201, r.text
    assert (await stack.client.post(ROUTE, json=wanted)).status_code == 401


async def test_bad_input_is_refused_by_field_and_creates_nothing(stack: Stack) -> None:
    operator = await stack.headers(OPERATOR)
    wanted = body(nihdi_number="12345678", email="not-an-email", title=" ")
    r = await stack.client.post(ROUTE, json=wanted, headers=operator)
    assert r.status_code == 422, r.text
    rules = {(e["field"], e["rule"]) for e in r.json()["errors"]}
    assert {("nihdi_number", "nihdi-check"), ("email", "email"), ("title", "required")} <= rules
    # Addresses a mail header or a page would have to defuse: refused as addresses.
    for email in ("<script>alert(1)</script>@x.test", 'a"b@x.test', "ümlaut@x.test", "a@b"):
        r = await stack.client.post(ROUTE, json=body(email=email), headers=operator)
        assert r.status_code == 422 and ("email", "email") in {
            (e["field"], e["rule"]) for e in r.json()["errors"]
        }, (email, r.text)
    taken = body()
    assert (await stack.client.post(ROUTE, json=taken, headers=operator)).status_code == 201
    again = body(nihdi_number=taken["nihdi_number"])
    r = await stack.client.post(ROUTE, json=again, headers=operator)
    assert r.status_code == 409 and r.json()["type"] == "/problems/duplicate-nihdi"
    # The refused e-mail got no account: appointing it elsewhere makes a new one.
    r = await stack.client.post(ROUTE, json=body(email=again["email"]), headers=operator)
    assert r.status_code == 201 and r.json()["user_manager"]["initial_password"]


async def test_grpc_twin_answers_the_operator_and_refuses_a_user_manager(stack: Stack) -> None:
    stub = pb_grpc.IdentityServiceStub(channel("identity"))
    wanted = body()
    request = pb.AppointFirstUserManagerRequest(
        title=wanted["title"], nihdi_number=wanted["nihdi_number"], email=wanted["email"]
    )
    for who in ("manager@az-demo.test", "nurse@az-demo.test"):
        token = auth.current_principal.set(await auth.verifier().verify(await stack.token(who)))
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.AppointFirstUserManager(request)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            auth.current_principal.reset(token)
    token = auth.current_principal.set(await auth.verifier().verify(await stack.token(OPERATOR)))
    try:
        answer = await stub.AppointFirstUserManager(request)
    finally:
        auth.current_principal.reset(token)
    assert answer.organisation.nihdi_number == wanted["nihdi_number"]
    assert list(answer.user_manager.roles) == ["manager"] and len(answer.initial_password) == 16
