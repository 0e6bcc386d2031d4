"""Login throttling: failures slow down their own source (per account and source address,
and per source address), never the right credentials from a source that has not failed;
against the real Redis at 127.0.0.1:6379 and the in-memory fallback, and through the
token endpoint and the password route of the running stack."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from hdhub.identity.ratelimit import LoginGuard, SourceAddresses, Throttled
from tests.support.stack import TOKEN_PATH, Stack

REDIS = os.environ.get("HDHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["redis", "memory"])
async def guard_factory(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., LoginGuard]]:
    made: list[LoginGuard] = []

    def make(**kwargs: Any) -> LoginGuard:
        g = LoginGuard(
            REDIS if request.param == "redis" else None, prefix=f"hdhub:test:{uuid.uuid4().hex}", **kwargs
        )
        made.append(g)
        return g

    yield make
    for g in made:
        await g.close()


async def test_failures_slow_down_their_own_source_with_a_doubling_wait(
    guard_factory: Callable[..., LoginGuard],
) -> None:
    guard = guard_factory(free_failures=3, wait_base=0.2, wait_max=0.5)
    waits = []
    for _ in range(3):
        await guard.before_attempt("d@x.test", "203.0.113.1")
        waits.append((await guard.failed("d@x.test", "203.0.113.1")).wait)
    assert waits == [0, 0, 0.2]
    with pytest.raises(Throttled) as exc:
        await guard.before_attempt("D@x.test ", "203.0.113.1")  # the same account, however written
    assert exc.value.reason == "wait" and exc.value.retry_after == 1
    await guard.before_attempt("d@x.test", "198.51.100.1")  # another source is not stopped
    await asyncio.sleep(0.25)
    await guard.before_attempt("d@x.test", "203.0.113.1")
    assert (await guard.failed("d@x.test", "203.0.113.1")).wait == 0.4
    await asyncio.sleep(0.45)
    assert (await guard.failed("d@x.test", "203.0.113.1")).wait == 0.5  # the cap
    await asyncio.sleep(0.55)
    assert await guard.succeeded("d@x.test", "203.0.113.1")  # it had been made to wait: released
    assert (await guard.failed("d@x.test", "203.0.113.1")).wait == 0  # a success forgives


async def test_one_source_failing_on_many_accounts_waits(guard_factory: Callable[..., LoginGuard]) -> None:
    guard = guard_factory(free_failures=5, address_free_failures=4, wait_base=5)
    for n in range(4):
        await guard.failed(f"user{n}@x.test", "203.0.113.2")
    with pytest.raises(Throttled) as exc:
        await guard.before_attempt("someone-else@x.test", "203.0.113.2")
    assert exc.value.reason == "wait" and exc.value.retry_after == 5
    await guard.before_attempt("someone-else@x.test", "198.51.100.2")


async def test_attempts_per_source_and_logins_per_principal_are_limited(
    guard_factory: Callable[..., LoginGuard],
) -> None:
    guard = guard_factory(per_address=3, per_principal=2, window=60)
    for n in range(3):
        await guard.before_attempt(f"user{n}@x.test", "203.0.113.3")
    with pytest.raises(Throttled) as exc:
        await guard.before_attempt("a@x.test", "203.0.113.3")
    assert exc.value.reason == "rate" and 0 < exc.value.retry_after <= 60
    await guard.before_attempt("a@x.test", "198.51.100.3")
    # Only an authenticated login counts against the principal: a claimed name spends nothing.
    for n in range(5):
        await guard.before_attempt("client:az-demo-his", f"198.51.100.{10 + n}")
    await guard.authenticated("client:az-demo-his")
    await guard.authenticated("client:az-demo-his")
    with pytest.raises(Throttled):
        await guard.authenticated("client:az-demo-his")


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "source"),
    [
        ([], "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # no trusted proxy: the header is ignored
        (["10.0.0.0/8"], "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted peer wrote it
        (["10.0.0.0/8"], "10.1.2.3", "198.51.100.1", "198.51.100.1"),
        (
            ["10.0.0.0/8"],
            "10.1.2.3",
            "1.2.3.4, 198.51.100.1",
            "198.51.100.1",
        ),  # the client's own claim is not believed
        (
            ["10.0.0.0/8", "192.168.0.1"],
            "10.1.2.3",
            "198.51.100.1, 192.168.0.1",
            "198.51.100.1",
        ),  # two proxies
        (["10.0.0.0/8"], "10.1.2.3", "not-an-address", "10.1.2.3"),
        (["10.0.0.0/8"], "10.1.2.3", None, "10.1.2.3"),
        (["fd00::/8"], "fd00::1", "2001:db8::7", "2001:db8::7"),
    ],
)
def test_the_source_address_comes_from_x_forwarded_for_only_through_trusted_proxies(
    trusted: list[str], peer: str, forwarded: str | None, source: str
) -> None:
    assert SourceAddresses(trusted).resolve(peer, forwarded) == source


# --- through the running stack ---------------------------------------------------------


async def _member_with_password(stack: Stack) -> tuple[str, str]:
    """A new member of az-demo who has set a password (no initial password pending)."""
    h = await stack.headers("manager@az-demo.test")
    email = f"{uuid.uuid4().hex[:8]}@example.test"
    r = await stack.client.post(
        "/api/v1/organisations/az-demo/members", json={"email": email, "roles": ["reader"]}, headers=h
    )
    password = "the-holders-own-password"
    async with stack.from_address(f"198.51.100.{uuid.uuid4().int % 250 + 1}") as own:
        r = await own.post(
            "/api/v1/accounts/password",
            json={
                "username": email,
                "current_password": r.json()["initial_password"],
                "new_password": password,
            },
        )
    assert r.status_code == 204, r.text
    return email, password


def _login(username: str, password: str) -> dict[str, str]:
    return {"grant_type": "password", "client_id": "hdhub-portal", "username": username, "password": password}


async def _fail(client: httpx.AsyncClient, form: dict[str, str], times: int) -> None:
    """Fail ``times`` times, sitting out each wait (kept short by the caller)."""
    failed = 0
    while failed < times:
        r = await client.post(TOKEN_PATH, data=form)
        if r.status_code == 429:
            await asyncio.sleep(0.06)
            continue
        assert r.status_code == 401, r.text
        failed += 1


@pytest.fixture
def short_waits(stack: Stack) -> Any:
    guard = stack.service("identity").login_guard
    saved = guard.wait_base, guard.wait_max
    guard.wait_base, guard.wait_max = 0.01, 0.05
    yield
    guard.wait_base, guard.wait_max = saved


@pytest.mark.usefixtures("short_waits")
async def test_an_address_failing_20_times_does_not_stop_the_right_credentials_from_elsewhere(
    stack: Stack,
) -> None:
    email, password = await _member_with_password(stack)
    async with (
        stack.from_address("203.0.113.20") as attacker,
        stack.from_address("198.51.100.20") as hospital,
    ):
        await _fail(attacker, _login(email, "guess"), 20)
        r = await hospital.post(TOKEN_PATH, data=_login(email, password))
        assert r.status_code == 200, r.text
        # A hospital system's client_credentials login likewise: never locked from elsewhere.
        await _fail(
            attacker,
            {"grant_type": "client_credentials", "client_id": "az-demo-his", "client_secret": "guess"},
            20,
        )
        r = await hospital.post(
            TOKEN_PATH,
            data={
                "grant_type": "client_credentials",
                "client_id": "az-demo-his",
                "client_secret": "demo-his-secret",
            },
        )
        assert r.status_code == 200, r.text


async def test_the_attackers_own_attempts_wait_1_then_2_seconds_and_the_audit_shows_it(stack: Stack) -> None:
    email, password = await _member_with_password(stack)
    async with stack.from_address("203.0.113.21") as attacker:
        for _ in range(5):
            assert (await attacker.post(TOKEN_PATH, data=_login(email, "guess"))).status_code == 401
        r = await attacker.post(TOKEN_PATH, data=_login(email, password))  # even the right one, from here
        assert (
            r.status_code == 429
            and r.json()["error"] == "too_many_requests"
            and r.headers["Retry-After"] == "1"
        )
        await asyncio.sleep(1.05)
        assert (await attacker.post(TOKEN_PATH, data=_login(email, "guess"))).status_code == 401
        r = await attacker.post(TOKEN_PATH, data=_login(email, password))
        assert r.status_code == 429 and r.headers["Retry-After"] == "2"
        await asyncio.sleep(2.05)
        assert (await attacker.post(TOKEN_PATH, data=_login(email, password))).status_code == 200
    audit = await stack.client.get(
        "/api/v1/audit?organisation_id=az-demo", headers=await stack.headers("manager@az-demo.test")
    )
    mine = [e for e in audit.json()["items"] if e["target"] == email and e["action"].startswith("login.")]
    assert [e["action"] for e in reversed(mine)] == ["login.throttled", "login.released"]
    assert mine[-1]["details"] == {"address": "203.0.113.21", "failures": 5, "wait_seconds": 1.0}
    assert mine[0]["details"] == {"address": "203.0.113.21"}


async def test_wrong_current_passwords_on_the_open_password_route_slow_down_only_their_source(
    stack: Stack,
) -> None:
    email, password = await _member_with_password(stack)
    change = {
        "username": email,
        "current_password": "guess-guess-guess",
        "new_password": "yet-another-long-one",
    }
    async with stack.from_address("203.0.113.22") as attacker, stack.from_address("198.51.100.22") as holder:
        for _ in range(5):
            assert (await attacker.post("/api/v1/accounts/password", json=change)).status_code == 400
        r = await attacker.post("/api/v1/accounts/password", json=change | {"current_password": password})
        assert (
            r.status_code == 429
            and r.json()["type"] == "/problems/too-many-failures"
            and r.headers["Retry-After"] == "1"
        )
        r = await holder.post("/api/v1/accounts/password", json=change | {"current_password": password})
        assert r.status_code == 204, r.text


async def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(stack: Stack) -> None:
    email, password = await _member_with_password(stack)
    logins = stack.service("identity").logins
    async with stack.from_address("10.9.0.1") as proxy:
        for n in range(5):  # a new "client" in the header each time: still one source
            r = await proxy.post(
                TOKEN_PATH, data=_login(email, "guess"), headers={"X-Forwarded-For": f"198.51.100.{n + 1}"}
            )
            assert r.status_code == 401
        r = await proxy.post(
            TOKEN_PATH, data=_login(email, password), headers={"X-Forwarded-For": "198.51.100.99"}
        )
        assert r.status_code == 429
        saved = logins.sources
        logins.sources = SourceAddresses(["10.9.0.0/16"])  # now it is the ingress
        try:
            r = await proxy.post(
                TOKEN_PATH, data=_login(email, password), headers={"X-Forwarded-For": "198.51.100.99"}
            )
            assert r.status_code == 200, r.text
        finally:
            logins.sources = saved
