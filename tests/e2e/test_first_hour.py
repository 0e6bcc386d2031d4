"""A newcomer's first requests to `make run`: the start page, readiness, the API docs'
Authorize button against the running issuer, and the development outbox."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


def test_the_start_page_and_readiness(platform: Platform) -> None:
    with platform.client() as c:
        page = c.get("/")  # the portal is served: it is the front door (the start page otherwise)
        assert page.status_code == 303 and page.headers["location"] == "/portal"
        assert c.get("/portal").headers["location"] == "/portal/"
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        assert set(ready.json()["checks"]) >= {"identity", "registrations", "uploads", "intake", "portal"}


@pytest.mark.parametrize(
    ("flow", "form", "auth"),
    [
        ("clientCredentials", {"grant_type": "client_credentials"}, ("az-demo-his", "demo-his-secret")),
        (
            "password",
            {"grant_type": "password", "username": "nurse@az-demo.test", "password": "demo-nurse"},
            ("hdhub-portal", ""),
        ),
    ],
)
def test_authorize_gets_a_token_from_the_declared_flow_that_the_api_accepts(
    platform: Platform, flow: str, form: dict[str, str], auth: tuple[str, str]
) -> None:
    with platform.client() as c:
        document = c.get("/openapi.json").json()
        page = c.get("/docs").text
        token_url = document["components"]["securitySchemes"]["oidc"]["flows"][flow]["tokenUrl"]
        assert token_url.startswith(platform.base_url)  # the issuer this platform serves
        # As Swagger UI sends it: the client in a Basic header, the rest as a form.
        token = httpx.post(token_url, data=form, auth=auth).json()["access_token"]
        # Global security, which the route inherits.
        assert document["security"] == [{"oidc": []}]
        assert "security" not in document["paths"]["/api/v1/registrations"]["get"]
        r = c.get("/api/v1/registrations", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        for asset in re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page):
            assert c.get(asset).status_code == 200


def test_the_development_outbox_shows_an_account_request_mail(platform: Platform) -> None:
    with platform.client() as c:
        r = c.post(
            "/api/v1/account-requests",
            json={
                "organisation_id": "lab-demo",
                "username": "outbox@lab-demo.test",
                "first_name": "Out",
                "last_name": "Box",
                "email": "outbox@lab-demo.test",
            },
        )
        assert r.status_code == 201, r.text
        mails = c.get("/dev/mail", params={"to": "outbox@lab-demo.test"}).json()
        assert [m["subject"] for m in mails] == ["hdhub: your account request was received"]
        assert mails[0]["to"] == ["outbox@lab-demo.test"]
