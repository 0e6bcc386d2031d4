"""The embedded issuer's authorization code flow with PKCE, its login page (first-login
password change, the throttled message), refresh tokens and end-session."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.support.stack import TOKEN_PATH, Stack

AUTH = "/realms/hdhub/protocol/openid-connect/auth"
LOGOUT = "/realms/hdhub/protocol/openid-connect/logout"
CALLBACK = "http://127.0.0.1:8000/portal/callback"


def request_params(verifier: str, **extra: str) -> dict[str, str]:
    return {
        "client_id": "hdhub-portal",
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": "openid profile email",
        "state": "state-1",
        "nonce": "nonce-1",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        **extra,
    }


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


async def code_for(stack: Stack, username: str, password: str, verifier: str) -> str:
    page = await stack.client.get(AUTH, params=request_params(verifier))
    assert page.status_code == 200 and "Sign in to hdhub" in page.text
    r = await stack.client.post(
        AUTH, data={**hidden_fields(page.text), "username": username, "password": password}
    )
    assert r.status_code == 302, r.text
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert r.headers["location"].startswith(CALLBACK) and query["state"] == ["state-1"]
    return query["code"][0]


async def exchange(stack: Stack, code: str, verifier: str) -> Any:
    return await stack.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "authorization_code",
            "client_id": "hdhub-portal",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
    )


async def test_untrusted_requests_get_an_error_page_never_a_redirect(stack: Stack) -> None:
    verifier = generate_token(48)
    for bad in (
        {"redirect_uri": "https://evil.example/cb"},
        {"client_id": "unknown"},
        {"code_challenge_method": "plain"},
    ):
        r = await stack.client.get(AUTH, params=request_params(verifier, **bad))
        assert r.status_code == 400 and "location" not in r.headers
        assert "cannot be served" in r.text
    page = await stack.client.get(AUTH, params=request_params(verifier))
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "<script" not in page.text


async def test_code_with_pkce_gives_tokens_once_and_refresh_rotates(stack: Stack) -> None:
    verifier = generate_token(48)
    code = await code_for(stack, "nurse@az-demo.test", "demo-nurse", verifier)
    wrong = await exchange(stack, code, generate_token(48))
    assert (
        wrong.status_code == 400
        and wrong.json()["error_description"] == "PKCE verification failed: Code mismatch"
    )
    again = await exchange(stack, code, verifier)  # a code is used once, even by a wrong verifier
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    code = await code_for(stack, "nurse@az-demo.test", "demo-nurse", verifier)
    r = await exchange(stack, code, verifier)
    assert r.status_code == 200, r.text
    tokens = r.json()
    id_claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert id_claims["aud"] == "hdhub-portal" and id_claims["nonce"] == "nonce-1"
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["organisations"]["az-demo"]["roles"] == ["registrant"] and access["sid"] == id_claims["sid"]
    assert (
        await stack.client.get(
            "/api/v1/organisations", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
    ).status_code == 200

    refresh = {
        "grant_type": "refresh_token",
        "client_id": "hdhub-portal",
        "refresh_token": tokens["refresh_token"],
    }
    renewed = await stack.client.post(TOKEN_PATH, data=refresh)
    assert renewed.status_code == 200 and renewed.json()["refresh_token"] != tokens["refresh_token"]
    stale = await stack.client.post(TOKEN_PATH, data=refresh)
    assert stale.status_code == 400 and stale.json() == {
        "error": "invalid_grant",
        "error_description": "Session not active",
    }

    ended = await stack.client.post(
        LOGOUT, data={"client_id": "hdhub-portal", "refresh_token": renewed.json()["refresh_token"]}
    )
    assert ended.status_code == 204
    after = await stack.client.post(
        TOKEN_PATH, data={**refresh, "refresh_token": renewed.json()["refresh_token"]}
    )
    assert after.status_code == 400


async def test_first_login_changes_the_initial_password_on_the_login_page(stack: Stack) -> None:
    manager = await stack.headers("manager@az-demo.test")
    added = await stack.client.post(
        "/api/v1/organisations/az-demo/members",
        json={"email": "first-login@example.test", "roles": ["reader"]},
        headers=manager,
    )
    initial = added.json()["initial_password"]
    verifier = generate_token(48)
    page = await stack.client.get(AUTH, params=request_params(verifier, ui_locales="nl"))
    step = await stack.client.post(
        AUTH, data={**hidden_fields(page.text), "username": "first-login@example.test", "password": initial}
    )
    assert step.status_code == 200 and "Wijzig uw wachtwoord" in step.text
    fields = hidden_fields(step.text)
    assert initial not in step.text  # the form carries a ticket, never the password
    mismatch = await stack.client.post(
        AUTH, data={**fields, "new_password": "long-enough-pass-1", "new_password_again": "other-pass-2"}
    )
    assert mismatch.status_code == 422 and "niet gelijk" in mismatch.text
    short = await stack.client.post(
        AUTH, data={**fields, "new_password": "short", "new_password_again": "short"}
    )
    assert short.status_code == 422 and "minstens 12 tekens" in short.text
    done = await stack.client.post(
        AUTH,
        data={**fields, "new_password": "long-enough-pass-1", "new_password_again": "long-enough-pass-1"},
    )
    assert done.status_code == 302 and "code=" in done.headers["location"]
    replay = await stack.client.post(
        AUTH,
        data={**fields, "new_password": "long-enough-pass-3", "new_password_again": "long-enough-pass-3"},
    )
    assert replay.status_code == 400  # the ticket is spent
    code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
    assert (await exchange(stack, code, verifier)).status_code == 200


async def test_refresh_sees_a_new_role_and_a_cancelled_account_ends_its_sessions(stack: Stack) -> None:
    manager = await stack.headers("manager@az-demo.test")
    added = await stack.client.post(
        "/api/v1/organisations/az-demo/members",
        json={"email": "refresh@example.test", "roles": ["reader"]},
        headers=manager,
    )
    account_id, initial = added.json()["account_id"], added.json()["initial_password"]
    await stack.client.post(
        "/api/v1/accounts/password",
        json={
            "username": "refresh@example.test",
            "current_password": initial,
            "new_password": "refresh-password-1",
        },
    )
    verifier = generate_token(48)
    tokens = (
        await exchange(
            stack, await code_for(stack, "refresh@example.test", "refresh-password-1", verifier), verifier
        )
    ).json()
    await stack.client.put(
        f"/api/v1/organisations/az-demo/members/{account_id}/roles",
        json={"roles": ["reader", "registrant"]},
        headers=manager,
    )
    refresh = {
        "grant_type": "refresh_token",
        "client_id": "hdhub-portal",
        "refresh_token": tokens["refresh_token"],
    }
    renewed = await stack.client.post(TOKEN_PATH, data=refresh)
    claims = jwt.decode(renewed.json()["access_token"], options={"verify_signature": False})
    assert claims["organisations"]["az-demo"]["roles"] == ["reader", "registrant"]  # given since sign-in
    assert (await stack.client.delete(f"/api/v1/accounts/{account_id}", headers=manager)).status_code == 204
    gone = await stack.client.post(
        TOKEN_PATH, data={**refresh, "refresh_token": renewed.json()["refresh_token"]}
    )
    assert gone.status_code == 400


async def test_the_login_page_says_when_sign_in_is_paused(stack: Stack) -> None:
    verifier = generate_token(48)
    page = await stack.client.get(AUTH, params=request_params(verifier))
    fields = {**hidden_fields(page.text), "username": "paused@example.test", "password": "wrong"}
    answers = [await stack.client.post(AUTH, data=fields) for _ in range(8)]
    assert answers[0].status_code == 401 and "Invalid username or password." in answers[0].text
    assert answers[-1].status_code == 429 and "sign-in is paused: try again in" in answers[-1].text
