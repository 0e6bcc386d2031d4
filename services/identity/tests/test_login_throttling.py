"""Login throttling per account and per address, and the lock after repeated failures:
against the real Redis at 127.0.0.1:6379 and the in-memory fallback."""

from __future__ import annotations

import os
import uuid

import pytest

from hdhub.identity.ratelimit import LoginGuard, Throttled
from tests.support.stack import TOKEN_PATH, Stack

REDIS = os.environ.get("HDHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["redis", "memory"])
async def guard_factory(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    made: list[LoginGuard] = []

    def make(**kwargs: int) -> LoginGuard:
        g = LoginGuard(REDIS if request.param == "redis" else None, prefix=f"hdhub:test:{uuid.uuid4().hex}", **kwargs)
        made.append(g)
        return g

    yield make
    for g in made:
        await g.close()


async def test_attempts_are_limited_per_account_and_per_address(guard_factory) -> None:  # type: ignore[no-untyped-def]
    guard = guard_factory(per_account=3, per_address=5, window=60)
    for _ in range(3):
        await guard.before_attempt("a@x.test", "10.0.0.1")
    with pytest.raises(Throttled) as exc:
        await guard.before_attempt("A@x.test ", "10.0.0.1")  # same account, however written
    assert exc.value.reason == "rate" and 0 < exc.value.retry_after <= 60
    await guard.before_attempt("b@x.test", "10.0.0.1")
    with pytest.raises(Throttled):
        await guard.before_attempt("c@x.test", "10.0.0.1")  # the address is spent
    await guard.before_attempt("c@x.test", "10.0.0.2")


async def test_repeated_failures_lock_the_account_for_a_while(guard_factory) -> None:  # type: ignore[no-untyped-def]
    guard = guard_factory(max_failures=3, lock_seconds=1)
    for _ in range(2):
        await guard.before_attempt("d@x.test", None)
        await guard.failed("d@x.test")
    await guard.succeeded("d@x.test")  # a success forgives earlier failures
    for _ in range(3):
        await guard.before_attempt("d@x.test", None)
        await guard.failed("d@x.test")
    with pytest.raises(Throttled) as exc:
        await guard.before_attempt("d@x.test", None)
    assert exc.value.reason == "locked" and exc.value.retry_after <= 1
    import asyncio

    await asyncio.sleep(1.1)
    await guard.before_attempt("d@x.test", None)


async def test_token_endpoint_locks_an_account_after_five_failures(stack: Stack) -> None:
    h = await stack.headers("manager@az-demo.test")
    address = f"{uuid.uuid4().hex[:8]}@example.test"
    r = await stack.client.post("/api/v1/organisations/az-demo/members", json={"email": address, "roles": ["reader"]}, headers=h)
    initial = r.json()["initial_password"]
    form = {"grant_type": "password", "client_id": "hdhub-portal", "username": address}
    for _ in range(5):
        r = await stack.client.post(TOKEN_PATH, data=form | {"password": "wrong"})
        assert r.status_code == 401
    r = await stack.client.post(TOKEN_PATH, data=form | {"password": initial})
    assert r.status_code == 429 and r.json()["error"] == "account_locked" and int(r.headers["Retry-After"]) > 0
    # The password-change endpoint obeys the same lock.
    r = await stack.client.post(
        "/api/v1/accounts/password", json={"username": address, "current_password": initial, "new_password": "a-long-new-password"}
    )
    assert r.status_code == 429 and r.json()["type"] == "/problems/account-locked"
