"""One tenant-scoping mechanism: sessions see and write only their organisations' rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import TYPE_MAP, Database, TenancyViolation, TenantScoped


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Note(TenantScoped, Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with database.system_session() as s:
        s.add_all([Note(id=1, organisation_id="a", text="a1"), Note(id=2, organisation_id="b", text="b1")])
    yield database
    await database.dispose()


async def test_scoped_session_sees_only_its_organisations(db: Database) -> None:
    async with db.session(["a"]) as s:
        assert [n.text for n in (await s.execute(select(Note))).scalars()] == ["a1"]
        assert await s.get(Note, 2) is None
    async with db.session(["a", "b"]) as s:
        assert len(list((await s.execute(select(Note))).scalars())) == 2


async def test_writing_another_organisations_row_is_refused(db: Database) -> None:
    with pytest.raises(TenancyViolation):
        async with db.session(["a"]) as s:
            s.add(Note(id=3, organisation_id="b", text="sneaky"))
    async with db.system_session() as s:
        assert await s.get(Note, 3) is None


async def test_unscoped_session_cannot_touch_tenant_tables(db: Database) -> None:
    async with db._sessions() as s:
        with pytest.raises(TenancyViolation):
            await s.execute(select(Note))


async def test_the_autocommit_engine_reads_what_sessions_committed_without_a_transaction(
    db: Database,
) -> None:
    """The engine for one-statement reads on every request (the portal's session): its
    own pool, its connections in autocommit from the start, so nothing is set or reset
    per checkout; it sees each commit at once and leaves no transaction open."""
    assert db.autocommit.sync_engine.pool is not db.engine.sync_engine.pool
    async with db.autocommit.connect() as conn:
        sqlite = (await conn.get_raw_connection()).driver_connection
        assert sqlite is not None and sqlite.isolation_level is None  # sqlite3's autocommit
        assert [r.text for r in await conn.execute(select(Note.text).where(Note.id == 1))] == ["a1"]
        assert not sqlite.in_transaction
    async with db.system_session() as s:
        s.add(Note(id=3, organisation_id="a", text="a2"))
    async with db.autocommit.connect() as conn:
        assert [r.text for r in await conn.execute(select(Note.text).where(Note.id == 3))] == ["a2"]


async def test_in_memory_the_autocommit_engine_is_the_one_connection(tmp_path: Path) -> None:
    database = Database("sqlite+aiosqlite://")
    assert database.autocommit.sync_engine.pool is database.engine.sync_engine.pool
    await database.dispose()


async def test_a_reading_session_sees_only_its_organisations_and_writes_nothing(db: Database) -> None:
    from sqlalchemy import delete, update

    async with db.reading(["a"]) as s:
        assert [n.text for n in (await s.execute(select(Note))).scalars()] == ["a1"]
        assert await s.get(Note, 2) is None
    for write in (update(Note).values(text="x"), delete(Note)):
        async with db.reading(["a"]) as s:
            with pytest.raises(TenancyViolation):
                await s.execute(write)
    async with db.reading(["a"]) as s:
        s.add(Note(id=9, organisation_id="a", text="a9"))
        with pytest.raises(TenancyViolation):
            await s.flush()
    async with db.session(["a", "b"]) as s:
        assert sorted(n.text for n in (await s.execute(select(Note))).scalars()) == ["a1", "b1"]
