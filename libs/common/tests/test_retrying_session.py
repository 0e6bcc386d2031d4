"""Database.retrying_session: a write that loses a race is applied again on fresh state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import TYPE_MAP, Database, TenantScoped
from hdhub.common.errors import Problem


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Counter(TenantScoped, Base):
    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    __mapper_args__ = {"version_id_col": version}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield database
    await database.dispose()


async def test_an_insert_that_lost_the_race_is_applied_again_on_fresh_state(db: Database) -> None:
    attempts = 0

    async def create_or_bump(session: AsyncSession) -> int:
        nonlocal attempts
        attempts += 1
        found = await session.get(Counter, "a")
        if attempts == 1:  # another writer creates the same key between our read and write
            async with db.session(["org"]) as other:
                other.add(Counter(name="a", organisation_id="org", value=10))
        if found is None:
            session.add(Counter(name="a", organisation_id="org", value=1))
            await session.flush()
            return 1
        found.value += 1
        return found.value

    assert await db.retrying_session(["org"], create_or_bump) == 11
    assert attempts == 2


async def test_an_update_of_a_row_changed_meanwhile_is_applied_again(db: Database) -> None:
    async with db.session(["org"]) as session:
        session.add(Counter(name="a", organisation_id="org", value=1))
    attempts = 0

    async def bump(session: AsyncSession) -> int:
        nonlocal attempts
        attempts += 1
        row = (await session.execute(select(Counter))).scalar_one()
        if attempts == 1:
            async with db.session(["org"]) as other:
                (await other.execute(select(Counter))).scalar_one().value = 5
        row.value += 1
        await session.flush()
        return row.value

    assert await db.retrying_session(["org"], bump) == 6
    assert attempts == 2


async def test_a_write_that_keeps_losing_answers_409_and_keeps_nothing(db: Database) -> None:
    async with db.session(["org"]) as session:
        session.add(Counter(name="a", organisation_id="org"))

    async def always_collides(session: AsyncSession) -> None:
        session.add(Counter(name="b", organisation_id="org"))
        session.add(Counter(name="a", organisation_id="org"))
        await session.flush()

    with pytest.raises(Problem) as caught:
        await db.retrying_session(["org"], always_collides, attempts=3)
    assert (caught.value.status, caught.value.slug) == (409, "concurrent-write")
    async with db.session(["org"]) as session:
        assert await session.get(Counter, "b") is None
