"""The v1 account-request flow with real SMTP (aiosmtpd on loopback): form, confirmation
mails, the manager's decision, the outcome mail."""

from __future__ import annotations

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
    assert len(confirmation) == 1 and body["requester_email"] in confirmation[0]["To"]
    assert "received" in confirmation[0]["Subject"]
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
    assert "approved" in outcome["Subject"]
    text = outcome.get_content()
    password = text.split("initial password is ")[1].split(";")[0]
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


async def test_duplicate_email_and_bad_form_are_refused(stack: Stack, inbox: Inbox) -> None:
    r = await stack.client.post("/api/v1/account-requests", json=form(email="nurse@az-demo.test"))
    assert r.status_code == 409 and r.json()["type"] == "/problems/duplicate-email"
    body = form()
    assert (await stack.client.post("/api/v1/account-requests", json=body)).status_code == 201
    r = await stack.client.post("/api/v1/account-requests", json=form(email=body["email"]))
    assert r.status_code == 409
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
