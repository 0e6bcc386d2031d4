"""The v1 account-request flow with real SMTP (aiosmtpd on loopback): form, confirmation
mails, the manager's decision, the outcome mail."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support.stack import TOKEN_PATH, Stack, free_port

MANAGER = "manager@az-demo.test"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in m["To"]]


@pytest.fixture
def inbox(stack: Stack) -> Iterator[Inbox]:
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    mailer = stack.service("identity").mailer
    saved = (mailer.host, mailer.port)
    mailer.host, mailer.port = "127.0.0.1", controller.port
    try:
        yield box
    finally:
        mailer.host, mailer.port = saved
        controller.stop()


def form(**overrides: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {
        "organisation_id": "az-demo",
        "username": f"applicant-{tag}",
        "first_name": "Ann",
        "last_name": "Applicant",
        "email": f"ann-{tag}@example.test",
        "data_collections": ["ANGIO"],
        "requester_email": f"boss-{tag}@example.test",
    } | overrides


async def test_request_confirmed_by_mail_approved_by_manager_and_applicant_told(
    stack: Stack, inbox: Inbox
) -> None:
    body = form()
    r = await stack.client.post("/api/v1/account-requests", json=body)
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["status"] == "pending"
    confirmation = inbox.to(body["email"])
    assert len(confirmation) == 1 and body["requester_email"] not in confirmation[0]["To"]
    assert "received" in confirmation[0]["Subject"]
    # The colleague who filed it (an address anyone may give) hears of it in fixed words,
    # without what the form carried.
    (told,) = inbox.to(body["requester_email"])
    assert body["username"] not in told.get_content() and "was received" in told.get_content()
    assert inbox.to(MANAGER) and body["email"] in inbox.to(MANAGER)[0].get_content()

    h = await stack.headers(MANAGER)
    pending = (
        await stack.client.get(
            "/api/v1/account-requests",
            params={"organisation_id": "az-demo", "status": "pending", "limit": 1000},
            headers=h,
        )
    ).json()
    assert req["id"] in [p["id"] for p in pending["items"]] and pending["total"] == len(pending["items"])
    r = await stack.client.post(
        f"/api/v1/account-requests/{req['id']}/approve", params={"organisation_id": "az-demo"}, headers=h
    )
    assert r.status_code == 200 and r.json()["status"] == "approved" and r.json()["decided_by"] == MANAGER
    outcome = inbox.to(body["email"])[-1]
    assert "approved" in outcome["Subject"] and body["requester_email"] not in outcome["To"]
    text = outcome.get_content()
    password = text.split("initial password is ")[1].split(";")[0]
    # The initial password goes to the account's own address, never to the requester's.
    assert all(password not in m.get_content() for m in inbox.to(body["requester_email"]))
    assert "was approved" in inbox.to(body["requester_email"])[-1].get_content()
    r = await stack.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": body["username"],
            "password": password,
        },
    )
    assert r.status_code == 400 and r.json()["error_description"] == "Account is not fully set up"
    r = await stack.client.post(
        f"/api/v1/account-requests/{req['id']}/reject", params={"organisation_id": "az-demo"}, headers=h
    )
    assert r.status_code == 409  # decided once


async def test_rejection_mails_the_reason_and_creates_nothing(stack: Stack, inbox: Inbox) -> None:
    body = form()
    req = (await stack.client.post("/api/v1/account-requests", json=body)).json()
    h = await stack.headers(MANAGER)
    r = await stack.client.post(
        f"/api/v1/account-requests/{req['id']}/reject",
        params={"organisation_id": "az-demo"},
        json={"reason": "unknown person"},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert "unknown person" in inbox.to(body["email"])[-1].get_content()
    members = (await stack.client.get("/api/v1/organisations/az-demo/members", headers=h)).json()["items"]
    assert body["email"] not in [m["email"] for m in members]


async def test_a_request_for_an_existing_account_tells_nobody_but_its_owner(
    stack: Stack, inbox: Inbox
) -> None:
    """The form answers anyone: a request naming an account's e-mail, or an e-mail with a
    request pending, is answered as any other (not a 409 that would list the
    installation's accounts), kept nowhere, and the address given is told by mail."""
    manager = await stack.headers(MANAGER)

    async def queue() -> list[str]:
        r = await stack.client.get(
            "/api/v1/account-requests",
            params={"organisation_id": "az-demo", "status": "pending"},
            headers=manager,
        )
        return [q["id"] for q in r.json()["items"]]

    from hdhub.identity.directory import ANSWER_FLOOR_SECONDS

    started = time.monotonic()
    fresh = await stack.client.post("/api/v1/account-requests", json=form())
    # Kept or not, no answer comes sooner than the floor: the time told who had an account.
    assert time.monotonic() - started >= ANSWER_FLOOR_SECONDS
    for body in (form(email="nurse@az-demo.test"), form(email=fresh.json()["email"])):
        started = time.monotonic()
        r = await stack.client.post("/api/v1/account-requests", json=body)
        assert time.monotonic() - started >= ANSWER_FLOOR_SECONDS
        assert r.status_code == fresh.status_code == 201, r.text
        assert set(r.json()) == set(fresh.json()) and r.json()["status"] == "pending"
        assert r.json()["id"] not in await queue()
    assert "An account exists already" in inbox.to("nurse@az-demo.test")[-1].get_content()
    assert "waits for its manager already" in inbox.to(fresh.json()["email"])[-1].get_content()
    assert fresh.json()["id"] in await queue()
    # A username another account has: nothing said to the address given; the request waits
    # for the manager, whose approval is refused, saying why.
    taken = form(username="nurse@az-demo.test")
    r = await stack.client.post("/api/v1/account-requests", json=taken)
    assert r.status_code == 201 and r.json()["id"] in await queue()
    assert all("exists already" not in m.get_content() for m in inbox.to(taken["email"]))
    r = await stack.client.post(
        f"/api/v1/account-requests/{r.json()['id']}/approve",
        params={"organisation_id": "az-demo"},
        headers=manager,
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/duplicate-email", r.text


async def test_bad_form_is_refused(stack: Stack, inbox: Inbox) -> None:
    r = await stack.client.post(
        "/api/v1/account-requests", json=form(email="not-an-email", organisation_id="nope")
    )
    assert r.status_code == 422
    r = await stack.client.post("/api/v1/account-requests", json=form(organisation_id="no-such-org"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "organisation_id"
    # A registrant cannot review requests.
    r = await stack.client.get(
        "/api/v1/account-requests",
        params={"organisation_id": "az-demo"},
        headers=await stack.headers("nurse@az-demo.test"),
    )
    assert r.status_code == 403
