"""The pages' server-side sessions: the cookie holds a random id only, the tokens are
sealed at rest, sessions end after their idle time and maximum; the sign-in's return
address is never another site."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from hdhub.common.db import Database, utcnow
from hdhub.portal.pages.auth import _safe_next
from hdhub.portal.pages.sessions import Sessions, Tokens
from hdhub.portal.store import Base, PortalSession


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sessions]:
    name = None
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    else:
        from tests.support.stack import create_database

        name = f"hdhub_sessions_{uuid.uuid4().hex[:10]}"
        database = Database(create_database(name))
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield Sessions(database, secret=lambda: b"k" * 32, idle_seconds=1800, max_seconds=36000)
    await database.dispose()
    if name:
        from tests.support.stack import drop_database

        drop_database(name)


async def test_tokens_are_sealed_at_rest_and_bound_to_their_session(sessions: Sessions) -> None:
    session_id, row = await sessions.create(username="nurse@az-demo.test")
    await sessions.store_tokens(row, Tokens("access.jwt", "refresh-secret", "id.jwt"), utcnow())
    stored = await sessions.get(session_id)
    assert stored is not None and stored.id_hash != session_id
    assert b"refresh-secret" not in (stored.tokens or b"")
    assert sessions.unseal(stored) == Tokens("access.jwt", "refresh-secret", "id.jwt")
    other_id, other = await sessions.create()
    other.tokens = stored.tokens  # sealed for one session, it opens in no other
    assert sessions.unseal(other) is None
    rekeyed = Sessions(sessions.db, secret=lambda: b"another-key", idle_seconds=1800, max_seconds=36000)
    assert rekeyed.unseal(stored) is None  # a new secret key: everyone signs in again
    assert await sessions.get("not-a-session") is None


async def test_a_session_ends_after_its_idle_time_and_its_maximum(sessions: Sessions) -> None:
    idle_id, _ = await sessions.create()
    old_id, _ = await sessions.create()
    async with sessions.db.system_session() as s:
        await s.execute(update(PortalSession).values(last_seen_at=utcnow() - timedelta(seconds=1801)))
    assert await sessions.get(idle_id) is None  # and it is gone
    fresh_id, fresh = await sessions.create()
    await sessions.save(fresh, expires_at=utcnow() - timedelta(seconds=1))
    assert await sessions.get(fresh_id) is None
    assert await sessions.get(old_id) is None


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/portal/o/az-demo/members?q=x", "/portal/o/az-demo/members?q=x"),
        ("https://evil.example/portal/", "/portal/"),
        ("//evil.example/portal/", "/portal/"),
        ("/portal/\\\\evil.example", "/portal/"),
        ("/api/v1/organisations", "/portal/"),
        (None, "/portal/"),
    ],
)
def test_the_return_address_after_sign_in_is_a_page_of_the_portal(asked: str | None, kept: str) -> None:
    assert _safe_next(asked) == kept
