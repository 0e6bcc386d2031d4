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
