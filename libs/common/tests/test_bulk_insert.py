"""bulk_insert writes COPY's text format itself on PostgreSQL: every awkward value must
come back as it went in, on both engines."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, Float, Integer, LargeBinary, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import TYPE_MAP, Database, bulk_insert, new_ids


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Cell(Base):
    __tablename__ = "bulk_cells"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    flag: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    blob: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    doc: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    items: Mapped[list[Any]] = mapped_column(default=list)
    at: Mapped[datetime | None] = mapped_column(nullable=True)


AWKWARD = [
    "plain",
    "tab\there",
    "new\nline and \r\n",
    "back\\slash \\N \\.",
    "quote ' and \" ; , |",
    "é ü 中文 😀",
    "",
    "\\",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
        name = None
    else:
        from tests.support.stack import create_database, drop_database

        name = f"hdhub_bulk_{uuid.uuid4().hex[:10]}"
        database = Database(create_database(name))
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield database
    await database.dispose()
    if name:
        drop_database(name)


# Ten rows go in one multi-row INSERT, thirty through COPY (bulk_insert._INSERT_ROWS).
@pytest.mark.parametrize("copies", [1, 3], ids=["insert", "copy"])
async def test_values_come_back_as_they_went_in(db: Database, copies: int) -> None:
    shared = {"shared": "one object in several rows", "nested": {"a": [1, 2.5, None, True]}}
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    rows = []
    for i, text in enumerate(AWKWARD * copies):
        rows.append(
            {
                "id": f"r{i}",
                "text": text,
                "number": i * 1_000_000 - 3,
                "ratio": i / 3,
                "flag": i % 2 == 0,
                "blob": bytes([i, 0, 255, 92, 10]),
                "doc": {"value": text, "list": [text, i], "unicode": "\u2028 \\u0041"} if i % 3 else shared,
                "items": [text, {"k": text}],
                "at": at + timedelta(days=i),
            }
        )
    rows.append(
        {
            "id": "nulls",
            "text": None,
            "number": None,
            "ratio": None,
            "flag": None,
            "blob": None,
            "doc": None,
            "items": [],
            "at": None,
        }
    )
    # Integers past 64 bits (typed into an integer field) take the standard library's path.
    big = {"id": "big", "doc": {"big": 2**70, "é": "ü"}, "items": [-(2**65), 1.5]}
    rows.append({**dict.fromkeys(rows[0]), **big})
    async with db.system_session() as session:
        await bulk_insert(session, Cell, rows, json_memo={})
    async with db.system_session() as session:
        got = {c.id: c for c in (await session.execute(select(Cell))).scalars()}
    assert len(got) == len(rows)
    for row in rows:
        cell = got[row["id"]]
        for key, value in row.items():
            if key == "at" and value is not None:
                assert cell.at == value.astimezone(UTC)
            else:
                assert getattr(cell, key) == value, (row["id"], key)


@pytest.mark.parametrize("others", [0, 30], ids=["insert", "copy"])
async def test_a_unique_violation_is_an_integrity_error(db: Database, others: int) -> None:
    rows = [{"id": "same", "items": []}, {"id": "same", "items": []}]
    rows += [{"id": f"other{i}", "items": []} for i in range(others)]
    with pytest.raises(IntegrityError):
        async with db.system_session() as session:
            await bulk_insert(session, Cell, rows)


async def test_rows_past_one_copy_chunk(db: Database) -> None:
    long = "x" * 5000
    rows = [{"id": f"n{i}", "text": long, "items": [i]} for i in range(600)]  # ~3 MB: several chunks
    async with db.system_session() as session:
        await bulk_insert(session, Cell, rows)
    async with db.system_session() as session:
        got = (await session.execute(select(Cell.id, Cell.items))).all()
    assert sorted(i for _, [i] in got) == list(range(600))


def test_new_ids_are_time_ordered_uuids_and_distinct() -> None:
    ids = new_ids(5000)
    assert len(set(ids)) == 5000
    for value in ids[:200]:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value)
        assert uuid.UUID(value).version == 7
        assert str(uuid.UUID(value)) == value
    assert new_ids(1, millis=1_000_001)[0] > new_ids(3, millis=1_000_000)[2]  # batches sort by time
    millis = int(ids[0].replace("-", "")[:12], 16)
    assert abs(millis / 1000 - time.time()) < 60


async def test_constants_are_cells_every_row_has(db: Database) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    shared = {"text": "same\tfor all", "at": at, "doc": {"k": "v"}, "flag": None}
    rows = [{"id": f"c{i}", "number": i, "items": [i]} for i in range(3)]
    async with db.system_session() as session:
        await bulk_insert(session, Cell, rows, constants=shared)
    async with db.system_session() as session:
        got = sorted((await session.execute(select(Cell))).scalars(), key=lambda c: c.id)
    assert [(c.id, c.number, c.items, c.text, c.at, c.doc, c.flag) for c in got] == [
        (f"c{i}", i, [i], "same\tfor all", at, {"k": "v"}, None) for i in range(3)
    ]
