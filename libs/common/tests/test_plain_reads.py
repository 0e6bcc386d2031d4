"""``Database.plain_reads``: read statements run on psycopg itself (SQLAlchemy Core on
SQLite), bounded to the organisations given, surviving a dropped connection, traced as
SQLAlchemy's statements are."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import String, bindparam, func, literal, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import PLAIN_CONNECTIONS, TYPE_MAP, Database, TenancyViolation, TenantScoped


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Note(TenantScoped, Base):
    __tablename__ = "plain_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))
    data: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)


SLOW = select(Note.id, func.pg_sleep(0.05)).where(Note.organisation_id == bindparam("organisation"))
NOTES = select(Note.id, Note.text).where(Note.organisation_id == bindparam("organisation")).order_by(Note.id)
# A literal ('x%') travels beside the parameters the caller gives.
LIKE = NOTES.where(Note.text.like("a%"))


@contextlib.asynccontextmanager
async def _database(kind: str, tmp_path: Path) -> AsyncIterator[Database]:
    name = None
    if kind == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    else:
        from tests.support.stack import create_database

        name = f"hdhub_plain_{uuid.uuid4().hex[:10]}"
        database = Database(create_database(name))
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with database.system_session() as s:
        s.add_all(
            [
                Note(id=1, organisation_id="a", text="a1"),
                Note(id=2, organisation_id="a", text="b2"),
                Note(id=3, organisation_id="b", text="a3"),
            ]
        )
    yield database
    await database.dispose()
    if name:
        from tests.support.stack import drop_database

        drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with _database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Database]:
    """PostgreSQL only: where statements run on psycopg itself."""
    async with _database("postgres", tmp_path) as database:
        yield database


async def test_a_plain_read_sees_the_organisation_it_names(db: Database) -> None:
    async with db.plain_reads(["a"]) as reader:
        assert [tuple(r) for r in await reader.rows(NOTES, {"organisation": "a"})] == [(1, "a1"), (2, "b2")]
        assert [tuple(r) for r in await reader.rows(LIKE, {"organisation": "a"})] == [(1, "a1")]


async def test_a_plain_read_of_another_organisation_is_refused(db: Database) -> None:
    async with db.plain_reads(["a"]) as reader:
        with pytest.raises(TenancyViolation):
            await reader.rows(NOTES, {"organisation": "b"})
        with pytest.raises(TenancyViolation):
            await reader.rows(NOTES, {})


async def test_a_statement_that_names_no_organisation_is_refused(db: Database) -> None:
    every = select(Note.id, Note.text).where(Note.id > bindparam("least"))
    async with db.plain_reads(["a"]) as reader:
        with pytest.raises(TenancyViolation):
            await reader.rows(every, {"organisation": "a", "least": 0})


async def _read_together(db: Database, n: int) -> set[int]:
    """``n`` reads at once: the backends that answered them."""

    async def one() -> int:
        async with db.plain_reads(["a"]) as reader:
            await reader.rows(SLOW, {"organisation": "a"})
            return int(reader._conn.info.backend_pid)  # type: ignore[attr-defined]

    return set(await asyncio.gather(*(one() for _ in range(n))))


@pytest.mark.postgres
async def test_after_postgresql_dropped_every_connection_the_next_read_is_done(pg: Database) -> None:
    """As after a restart or a failover: the pooled connections are all dead; the first
    read finds one broken, lets the others go and is done on a new connection."""
    db = pg
    pids = await _read_together(db, 3)  # three idle connections in the pool
    async with db.engine.connect() as conn:
        for pid in pids:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    async with db.plain_reads(["a"]) as reader:
        assert [tuple(r) for r in await reader.rows(NOTES, {"organisation": "a"})] == [(1, "a1"), (2, "b2")]
        assert reader._conn.info.backend_pid not in pids  # type: ignore[attr-defined]
    async with db.plain_reads(["a"]) as reader:  # and the next one too
        assert len(await reader.rows(NOTES, {"organisation": "a"})) == 2


@pytest.mark.postgres
def test_plain_reads_work_from_one_event_loop_to_the_next() -> None:
    """A command or a test runs its own event loop: the pool's slots are the current loop's,
    even after reads waited for one in another loop."""
    from tests.support.stack import create_database, drop_database

    name = f"hdhub_plain_{uuid.uuid4().hex[:10]}"
    db = Database(create_database(name))

    async def setup() -> None:
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with db.system_session() as s:
            s.add(Note(id=1, organisation_id="a", text="a1"))
        await db.engine.dispose()

    try:
        asyncio.run(setup())
        for _ in range(2):  # two more reads than connections: two wait for a slot
            assert asyncio.run(_read_together(db, PLAIN_CONNECTIONS + 2))
    finally:
        asyncio.run(db.dispose())
        drop_database(name)


@pytest.mark.postgres
async def test_a_reader_runs_one_statement_at_a_time(pg: Database) -> None:
    async with pg.plain_reads(["a"]) as reader:
        slow, second = await asyncio.gather(
            reader.rows(SLOW, {"organisation": "a"}),
            reader.rows(NOTES, {"organisation": "a"}),
            return_exceptions=True,
        )
    assert len(slow) == 2 and isinstance(second, RuntimeError)  # type: ignore[arg-type]
    async with pg.plain_reads(["a"]) as reader:  # and the pool lost no connection
        assert len(await reader.rows(NOTES, {"organisation": "a"})) == 2


@pytest.mark.postgres
async def test_a_literal_none_travels_and_an_in_list_is_refused(pg: Database) -> None:
    with_none = select(Note.id, literal(None, String)).where(
        Note.organisation_id == bindparam("organisation")
    )
    listed = NOTES.where(Note.text.in_(["a1", "b2"]))
    async with pg.plain_reads(["a"]) as reader:
        assert [tuple(r) for r in await reader.rows(with_none, {"organisation": "a"})] == [
            (1, None),
            (2, None),
        ]
        with pytest.raises(ValueError, match="plain parameters"):
            await reader.rows(listed, {"organisation": "a"})


@pytest.mark.postgres
async def test_a_plain_read_is_a_client_span_with_its_statement_never_its_values(
    pg: Database, spans: InMemorySpanExporter
) -> None:
    db = pg
    spans.clear()
    async with db.plain_reads(["a"]) as reader:
        await reader.rows(LIKE, {"organisation": "a"})
    (span,) = [
        s
        for s in spans.get_finished_spans()
        if s.attributes and "plain_notes" in str(s.attributes.get("db.statement"))
    ]
    database = db.engine.url.database
    assert span.name == f"SELECT {database}"
    assert span.kind == SpanKind.CLIENT
    assert span.attributes is not None
    assert span.attributes["db.system"] == "postgresql"
    assert span.attributes["db.name"] == database
    statement = str(span.attributes["db.statement"])
    assert "%(organisation)s" in statement
    assert "'a'" not in statement and "a%" not in str(dict(span.attributes))


@pytest.mark.postgres
async def test_a_read_cancelled_midway_leaves_no_busy_connection_in_the_pool(pg: Database) -> None:
    """A request abandoned while its statement runs (the caller went away): the next read
    is answered at once, not by a connection still busy with the abandoned statement."""
    slow = select(func.pg_sleep(2), Note.id).where(Note.organisation_id == bindparam("organisation"))

    async def abandoned() -> None:
        async with pg.plain_reads(["a"]) as reader:
            await reader.rows(slow, {"organisation": "a"})

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(abandoned(), 0.3)
    async with pg.plain_reads(["a"]) as reader:
        rows = await asyncio.wait_for(reader.rows(NOTES, {"organisation": "a"}), 1.5)
    assert [tuple(r) for r in rows] == [(1, "a1"), (2, "b2")]


async def test_json_is_read_as_the_engines_read_it(db: Database) -> None:
    """A JSON column (a page's values and errors) is read with the engines' reader: orjson,
    a page's fifty error lists in 3-15 us against 77-104 us, and the standard library
    for what orjson refuses (an integer past 64 bits)."""
    data = {"big": 2**70, "text": "Liège", "list": [1.5, None]}
    async with db.system_session() as s:
        s.add(Note(id=4, organisation_id="a", text="j", data=data))
    statement = select(Note.id, Note.data).where(Note.organisation_id == bindparam("organisation"))
    async with db.plain_reads(["a"]) as reader:
        rows = await reader.rows(statement, {"organisation": "a"})
    assert dict(rows) == {1: None, 2: None, 4: data}


async def test_reads_together_answer_each_in_order_within_the_organisations(db: Database) -> None:
    async with db.plain_reads(["a"]) as reader:
        notes, like = await reader.together([(NOTES, {"organisation": "a"}), (LIKE, {"organisation": "a"})])
        assert [tuple(r) for r in notes] == [(1, "a1"), (2, "b2")]
        assert [tuple(r) for r in like] == [(1, "a1")]
        with pytest.raises(TenancyViolation):  # refused before anything is sent
            await reader.together([(NOTES, {"organisation": "a"}), (LIKE, {"organisation": "b"})])


def _traced(conn: Any, path: Path) -> contextlib.AbstractContextManager[None]:
    """libpq's own trace of the protocol messages on ``conn`` written to ``path``."""
    from psycopg.pq import Trace

    @contextlib.contextmanager
    def tracing() -> Any:
        with path.open("w") as out:
            conn.pgconn.trace(out.fileno())
            conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
            try:
                yield
            finally:
                conn.pgconn.untrace()

    return tracing()


@pytest.mark.postgres
async def test_reads_together_are_sent_before_the_first_answer_is_read(pg: Database, tmp_path: Path) -> None:
    """Pipeline mode: both statements go out, then one Sync, and one ReadyForQuery comes
    back; read one by one, each statement is its own exchange."""
    trace = tmp_path / "libpq.trace"
    async with pg.plain_reads(["a"]) as reader:
        await reader.rows(NOTES, {"organisation": "a"})  # the reader's connection taken
        conn = reader._conn  # type: ignore[attr-defined]
        with _traced(conn, trace):
            notes, like = await reader.together(
                [(NOTES, {"organisation": "a"}), (LIKE, {"organisation": "a"})]
            )
        together = trace.read_text().splitlines()
        with _traced(conn, trace):
            await reader.rows(NOTES, {"organisation": "a"})
            await reader.rows(LIKE, {"organisation": "a"})
        apart = trace.read_text().splitlines()
    assert len(notes) == 2 and len(like) == 1

    def count(lines: list[str], direction: str, message: str) -> int:
        return sum(1 for line in lines if line.split("\t")[:1] == [direction] and f"\t{message}" in line)

    assert count(together, "F", "Execute") == 2 and count(together, "F", "Sync") == 1
    assert count(together, "B", "ReadyForQuery") == 1
    sent = [line.split("\t")[2].split()[0] for line in together if line.startswith("F\t")]
    assert sent.index("Sync") > max(i for i, m in enumerate(sent) if m == "Execute")
    assert count(apart, "F", "Sync") == 2 and count(apart, "B", "ReadyForQuery") == 2


@pytest.mark.postgres
async def test_reads_together_survive_a_dropped_connection_and_a_failing_statement(pg: Database) -> None:
    async with pg.plain_reads(["a"]) as reader:
        await reader.rows(NOTES, {"organisation": "a"})
        pid = reader._conn.info.backend_pid  # type: ignore[attr-defined]
    async with pg.engine.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    async with pg.plain_reads(["a"]) as reader:
        notes, like = await reader.together([(NOTES, {"organisation": "a"}), (LIKE, {"organisation": "a"})])
        assert (len(notes), len(like)) == (2, 1)
    failing = select(Note.id, literal(1) / (Note.id - 1)).where(
        Note.organisation_id == bindparam("organisation")
    )
    async with pg.plain_reads(["a"]) as reader:
        with pytest.raises(Exception, match="division by zero"):
            await reader.together([(NOTES, {"organisation": "a"}), (failing, {"organisation": "a"})])
        # The same reader and the pool go on.
        assert len(await reader.rows(NOTES, {"organisation": "a"})) == 2
    async with pg.plain_reads(["a"]) as reader:
        assert len(await reader.rows(LIKE, {"organisation": "a"})) == 1


@pytest.mark.postgres
async def test_reads_together_are_a_client_span_each(pg: Database, spans: InMemorySpanExporter) -> None:
    spans.clear()
    async with pg.plain_reads(["a"]) as reader:
        await reader.together([(NOTES, {"organisation": "a"}), (LIKE, {"organisation": "a"})])
    found = [
        s
        for s in spans.get_finished_spans()
        if "plain_notes" in str((s.attributes or {}).get("db.statement"))
    ]
    assert len(found) == 2 and all(s.kind == SpanKind.CLIENT for s in found)
    assert sorted("LIKE" in str(s.attributes) for s in found) == [False, True]
    assert found[0].parent == found[1].parent  # siblings: neither is made current


@pytest.mark.postgres
async def test_reads_together_cancelled_midway_leave_no_busy_connection_in_the_pool(pg: Database) -> None:
    slow = select(func.pg_sleep(2), Note.id).where(Note.organisation_id == bindparam("organisation"))

    async def abandoned() -> None:
        async with pg.plain_reads(["a"]) as reader:
            await reader.together([(NOTES, {"organisation": "a"}), (slow, {"organisation": "a"})])

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(abandoned(), 0.3)
    async with pg.plain_reads(["a"]) as reader:
        notes, like = await asyncio.wait_for(
            reader.together([(NOTES, {"organisation": "a"}), (LIKE, {"organisation": "a"})]), 1.5
        )
    assert [tuple(r) for r in notes] == [(1, "a1"), (2, "b2")] and len(like) == 1
