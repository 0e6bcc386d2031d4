"""Databases: async SQLAlchemy on PostgreSQL (psycopg) or SQLite (aiosqlite), Alembic
migrations per service, and the one tenant-scoping mechanism.

Tenancy: every table that belongs to an organisation mixes in :class:`TenantScoped`.
A session opened with :meth:`Database.session` for a set of organisations sees only
their rows (a loader criterion added to every ORM query) and may only write rows of
those organisations. A session with no scope refuses to touch tenant tables unless it
was opened as :meth:`Database.system_session` (workers, migrations, seeding).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import math
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import JSON, DateTime, Select, String, TypeDecorator, any_, bindparam, event, insert, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column, with_loader_criteria
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import NullPool

from hdhub.common.errors import Problem

JSONType = JSON().with_variant(JSONB(), "postgresql")
T = TypeVar("T")
#: How often :meth:`Database.retrying_session` applies a write that lost a race.
WRITE_ATTEMPTS = 8


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both engines (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return (
            value.astimezone(UTC)
            if dialect.name == "postgresql"
            else value.astimezone(UTC).replace(tzinfo=None)
        )

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class TenantScoped:
    """Mixin for rows owned by one organisation."""

    organisation_id: Mapped[str] = mapped_column(String(64), index=True, nullable=False)


class TenancyViolation(RuntimeError):
    """Code tried to read or write outside the session's organisations: a bug, not input."""


SCOPE_KEY = "hdhub_tenant_scope"
SYSTEM_KEY = "hdhub_system"
READ_ONLY_KEY = "hdhub_read_only"


@event.listens_for(Session, "do_orm_execute")
def _scope_queries(state: ORMExecuteState) -> None:
    if not state.is_select and state.session.info.get(READ_ONLY_KEY):
        raise TenancyViolation("write from a read-only session")
    if (
        not (state.is_select or state.is_update or state.is_delete)
        or state.is_column_load
        or state.is_relationship_load
    ):
        return
    info = state.session.info
    scope: frozenset[str] | None = info.get(SCOPE_KEY)
    if scope is None:
        if info.get(SYSTEM_KEY):
            return
        mappers = [m for m in (state.all_mappers or []) if issubclass(m.class_, TenantScoped)]
        if mappers:
            raise TenancyViolation("query on a tenant table from an unscoped session")
        return
    state.statement = state.statement.options(_tenant_criteria(scope))


@functools.lru_cache(maxsize=1024)
def _tenant_criteria(scope: frozenset[str]) -> Any:
    """The loader criteria of a scope, built once per scope rather than for every query
    (building them analyses their lambda again)."""
    ids = tuple(sorted(scope))
    return with_loader_criteria(TenantScoped, lambda cls: cls.organisation_id.in_(ids), include_aliases=True)


def registry_condition(organisations: Sequence[str], organisation_column: Any, registry_column: Any) -> Any:
    """The SQL condition that keeps a search inside a caller's registry grants
    (:class:`hdhub.common.auth.Scope`), or None when no grant limits it: rows of an
    organisation limited to some registries must be of one of them."""
    from sqlalchemy import and_, false, or_

    from hdhub.common.auth import Scope

    if not isinstance(organisations, Scope):
        return None
    limits = organisations.limits()
    if not limits:
        return None
    open_ = [o for o in organisations if o not in limits]
    parts = [organisation_column.in_(open_)] if open_ else []
    parts += [
        and_(organisation_column == o, registry_column.in_(sorted(g)) if g else false())
        for o, g in sorted(limits.items())
    ]
    return or_(*parts)


@event.listens_for(Session, "before_flush")
def _check_writes(session: Session, _ctx: Any, _instances: Any) -> None:
    scope: frozenset[str] | None = session.info.get(SCOPE_KEY)
    if session.info.get(READ_ONLY_KEY) and (session.new or session.dirty or session.deleted):
        raise TenancyViolation("write from a read-only session")
    if session.info.get(SYSTEM_KEY):
        return
    for obj in list(session.new) + list(session.dirty) + list(session.deleted):
        if isinstance(obj, TenantScoped):
            if scope is None:
                raise TenancyViolation("write to a tenant table from an unscoped session")
            if obj.organisation_id not in scope:
                raise TenancyViolation("write outside the session's organisations")


AFTER_COMMIT_KEY = "hdhub_after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction has committed (never on rollback).

    For effects outside the database that must not run ahead of it: waking a worker for a
    job this transaction enqueued.
    """
    callbacks: list[Callable[[], None]] = session.info.setdefault(AFTER_COMMIT_KEY, [])
    if callback not in callbacks:
        callbacks.append(callback)


def _run_after_commit(session: AsyncSession) -> None:
    for callback in session.info.pop(AFTER_COMMIT_KEY, []):
        callback()


def new_ids(count: int, *, millis: int | None = None) -> list[str]:
    """``count`` new ids for rows inserted together: time-ordered UUIDs (version 7, RFC
    9562: 48 bits of Unix milliseconds, then random bits), from one read of the OS's
    random source.

    Ids of one batch sort together, so the B-tree indexes they go into (the primary key,
    history and jobs by registration) are appended to instead of written all over: with
    random ids a million-row upload spent its time in PostgreSQL paging index leaves once
    they outgrew its buffers. They look like any other id (36 characters)."""
    if millis is None:
        millis = time.time_ns() // 1_000_000
    raw = os.urandom(10 * count)
    ids = []
    for i in range(count):
        rand = int.from_bytes(raw[10 * i : 10 * i + 10], "big")  # 80 random bits
        value = (
            (millis & 0xFFFF_FFFF_FFFF) << 80
            | 0x7 << 76
            | (rand >> 68) << 64  # 12 bits
            | 0b10 << 62
            | rand & 0x3FFF_FFFF_FFFF_FFFF  # 62 bits
        )
        h = f"{value:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


_JSON_FALLBACK = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def json_text(value: Any) -> str:
    """Compact JSON text of ``value``: orjson (ten times the standard library's speed on a
    registration's values), the standard library for what orjson refuses (an integer
    beyond 64 bits that a user typed into an integer field)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return _JSON_FALLBACK(value)


def json_value(text: str | bytes) -> Any:
    """The value of JSON text read from the database: orjson (a registration's values in a
    tenth of the standard library's time, which a nightly report over a million of them
    feels), the standard library for what orjson refuses (an integer beyond 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# Text-format COPY: backslash, newline, carriage return and tab are escaped; NULL is \N.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_COPY_CHUNK_CHARS = 1 << 20
#: Up to this many rows ``bulk_insert`` sends one multi-row INSERT, not a COPY: a COPY
#: costs a round trip to start and another to end whatever it carries, which made the
#: rows of a single submission (a registration, its history, its job) cost more than
#: the submission's validation (bench/README.md, bench_submissions).
_INSERT_ROWS = 16


def _copy_text(value: str) -> str:
    if "\\" in value or "\n" in value or "\r" in value or "\t" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_value(value: Any) -> str:
    """One non-JSON cell in COPY's text format, as PostgreSQL reads it back."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _copy_text(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(value)]
        )
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()  # bytea's hex format, its backslash escaped for COPY
    return _copy_text(str(value))


async def bulk_insert(
    session: AsyncSession,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    chunk: int = 1000,
    json_memo: dict[int, str] | None = None,
    constants: Mapping[str, Any] | None = None,
) -> None:
    """Insert many rows in the session's transaction, fast: PostgreSQL ``COPY`` through
    psycopg, multi-row ``INSERT`` elsewhere. No ORM events run (so no tenancy checks:
    callers insert only rows of their scope). ``table`` is a Table or a mapped class.

    On PostgreSQL the rows are written as COPY's text format in megabyte chunks, not cell
    by cell through psycopg's adapters (which cost more than the database's own work).
    ``json_memo`` lets a caller that inserts the same JSON object into several rows or
    tables (a registration's values and its history) serialise it once: it maps
    ``id(obj)`` to its JSON text, so the caller must keep the objects alive while the
    memo is in use. ``constants`` are cells every row has (the organisation, the actor, the
    time): formatted once, not per row.
    """
    if not rows:
        return
    table = getattr(table, "__table__", table)
    fixed = dict(constants or {})
    columns = list(rows[0].keys())
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        import psycopg

        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        memo: dict[int, str] = {} if json_memo is None else json_memo
        dumps = json_text

        def json_cell(value: Any) -> str:
            if value is None:
                return "\\N"
            key = id(value)
            text = memo.get(key)
            if text is None:
                text = memo[key] = _copy_text(dumps(value))
            return text

        def text_cell(value: Any) -> str:
            return _copy_text(value) if value.__class__ is str else _copy_value(value)

        def formatter(name: str) -> Any:
            if name in json_columns:
                return json_cell
            column = table.columns.get(name)
            if column is not None and isinstance(column.type, String):
                return text_cell
            return _copy_value

        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        names = ", ".join(f'"{c}"' for c in [*fixed, *columns])
        if len(rows) <= _INSERT_ROWS:
            await _insert_few(driver, table.name, names, json_columns, fixed, columns, rows)
            return
        pairs = [(c, formatter(c)) for c in columns]
        prefix = "".join(formatter(c)(v) + "\t" for c, v in fixed.items())
        try:
            async with driver.cursor() as cursor:
                async with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
                    lines: list[str] = []
                    size = 0
                    for row in rows:
                        line = prefix + "\t".join([f(row[c]) for c, f in pairs])
                        lines.append(line)
                        size += len(line)
                        if size >= _COPY_CHUNK_CHARS:
                            lines.append("")
                            await copy.write("\n".join(lines).encode())
                            lines, size = [], 0
                    if lines:
                        lines.append("")
                        await copy.write("\n".join(lines).encode())
        except psycopg.IntegrityError as exc:  # callers handle SQLAlchemy's, as for any insert
            raise IntegrityError(f"COPY {table.name}", None, exc) from exc
        return
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        await session.execute(insert(table).values([{**fixed, **r} for r in part] if fixed else list(part)))


async def _insert_few(
    driver: Any,
    table: str,
    names: str,
    json_columns: set[str],
    fixed: Mapping[str, Any],
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """A few rows in one ``INSERT ... VALUES (...), (...)`` (one round trip; the same text
    for the same row count, so psycopg prepares it once it recurs). Cells as
    ``bulk_insert``'s COPY stores them: JSON as its text (NULL for None), the rest as
    psycopg adapts them. Its own memo: the caller's holds COPY-escaped text."""
    import psycopg

    memo: dict[int, str] = {}

    def cell(name: str, value: Any) -> Any:
        if name not in json_columns or value is None:
            return value
        text = memo.get(id(value))
        if text is None:
            text = memo[id(value)] = json_text(value)
        return text

    shared = [cell(c, v) for c, v in fixed.items()]
    params: list[Any] = []
    for row in rows:
        params += shared
        params += [cell(c, row[c]) for c in columns]
    one = "(" + ", ".join(["%s"] * (len(fixed) + len(columns))) + ")"
    statement = f'INSERT INTO "{table}" ({names}) VALUES ' + ", ".join([one] * len(rows))
    try:
        async with driver.cursor() as cursor:
            await cursor.execute(statement, params)
    except psycopg.IntegrityError as exc:  # callers handle SQLAlchemy's, as for any insert
        raise IntegrityError(f"INSERT {table}", None, exc) from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _in_memory(url: str) -> bool:
    return url.startswith("sqlite") and url.endswith(("://", ":memory:"))


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url`` with sane defaults for each backend."""
    kwargs.setdefault("json_serializer", json_text)
    kwargs.setdefault("json_deserializer", json_value)
    if url.startswith("sqlite"):
        # In memory (a service that keeps nothing): one connection, SQLAlchemy's StaticPool.
        pooled = {} if _in_memory(url) else {"pool_size": 5, "max_overflow": 5}
        engine = create_async_engine(url, **(pooled | kwargs))
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            url, **({"pool_size": 10, "max_overflow": 10, "pool_pre_ping": True} | kwargs)
        )
    try:
        from hdhub.common.telemetry import instrument_sqlalchemy

        instrument_sqlalchemy(engine)
    except ImportError:  # pragma: no cover - telemetry is optional during bootstrap
        pass
    return engine


class _TaskLock:
    """An asyncio lock the holding task may take again (a session opened inside another)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if self._owner is task and task is not None:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        async with self._lock:
            self._owner, self._depth = task, 1
            try:
                yield
            finally:
                self._owner, self._depth = None, 0


class Database:
    """A service's database: engine, sessions scoped to organisations, migrations.

    On SQLite (one process on a laptop) transactions take turns through an in-process lock:
    SQLite has one writer, and waiting on its file lock by polling made latency spiky and,
    past the busy timeout, failed requests.
    """

    def __init__(self, url: str, *, migrations: Path | None = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.migrations = migrations
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._turns = _TaskLock() if self.engine.dialect.name == "sqlite" else None
        self._autocommit: AsyncEngine | None = None
        self._plain: _DriverPool | None = None

    @property
    def autocommit(self) -> AsyncEngine:
        """An engine whose connections are in autocommit from the moment they connect, for
        a read of one statement on every request (the portal's session): no BEGIN or COMMIT,
        and no isolation level set when a connection is checked out and reset when it is
        returned (on SQLite each of those is a hop to aiosqlite's thread and back). Its own
        small pool; nothing is reset on return, as no transaction is ever open. An
        in-memory SQLite database is one connection: the sessions' engine, switched per
        connection as before."""
        if self._autocommit is None:
            if _in_memory(self.url):
                self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            else:
                self._autocommit = make_engine(
                    self.url,
                    isolation_level="AUTOCOMMIT",
                    pool_reset_on_return=None,
                    pool_size=3,
                    max_overflow=7,
                )
        return self._autocommit

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        if self._turns is None:
            yield
        else:
            async with self._turns.held():
                yield

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def among(self, column: Any, values: Iterable[Any]) -> Any:
        """``column IN values``; on PostgreSQL ``column = ANY(:array)``, one parameter
        whatever the count, so a batch's statement has the same text at every size (psycopg
        parses a long ``IN`` list of parameters again for every statement)."""
        values = list(values)
        if self.is_postgres:
            return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
        return column.in_(values)

    @asynccontextmanager
    async def session(self, organisations: Iterable[str]) -> AsyncIterator[AsyncSession]:
        """A transaction that sees and writes only the given organisations' rows."""
        async with self._turn(), self._sessions() as session:
            session.info[SCOPE_KEY] = frozenset(organisations)
            async with session.begin():
                yield session
        _run_after_commit(session)

    @asynccontextmanager
    async def reading(self, organisations: Iterable[str]) -> AsyncIterator[AsyncSession]:
        """A session that reads the given organisations' rows, as :meth:`session` does
        (the same tenancy criteria), on :attr:`autocommit`: no BEGIN, no COMMIT, each
        statement on its own. For reads on every request whose statements need no common
        snapshot (PostgreSQL's READ COMMITTED, which the transactions of :meth:`session`
        run at, gives each statement its own anyway); it refuses to write."""
        async with AsyncSession(self.autocommit, expire_on_commit=False) as session:
            session.info[SCOPE_KEY] = frozenset(organisations)
            session.info[READ_ONLY_KEY] = True
            yield session

    @asynccontextmanager
    async def plain_reads(self, organisations: Iterable[str]) -> AsyncIterator[PlainReader]:
        """Statements that read the given organisations' rows, run on the driver itself on
        PostgreSQL: no ORM, no compiling per call, no liveness ping per checkout (a dropped
        connection is replaced and the statement run again). For reads on every request
        whose cost is mostly SQLAlchemy's (the grid: a page of 50 rows in 0.6 ms of
        PostgreSQL against 2 ms through the ORM session). Unlike :meth:`session`, nothing
        adds a criterion: each statement must filter on its ``organisation`` parameter
        itself; a statement without that parameter is refused, and so is a value not among
        ``organisations``. Parameters reach psycopg as given (no SQLAlchemy type processing:
        aware datetimes, plain values); one statement at a time per reader. On SQLite,
        SQLAlchemy Core runs the same statements."""
        scope = frozenset(organisations)
        if not self.is_postgres:
            async with self.autocommit.connect() as conn:
                yield _CoreReader(conn, scope)
            return
        if self._plain is None:
            self._plain = _DriverPool(self.engine.url)
        reader = _DriverReader(self._plain, scope)
        try:
            yield reader
        finally:
            reader.release()

    @asynccontextmanager
    async def system_session(self) -> AsyncIterator[AsyncSession]:
        """A transaction across all organisations: background workers and seeding only."""
        async with self._turn(), self._sessions() as session:
            session.info[SYSTEM_KEY] = True
            async with session.begin():
                yield session
        _run_after_commit(session)

    async def retrying_session(
        self,
        organisations: Iterable[str],
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        attempts: int = WRITE_ATTEMPTS,
    ) -> T:
        """``work(session)`` in a transaction of :meth:`session`, applied again on fresh state
        when it loses a race: a concurrent writer inserted the same unique key first
        (``IntegrityError``) or changed a row it updates (``StaleDataError``, the ORM's
        version check). Each attempt rolls back whole before the next, after a short random
        pause; after ``attempts`` the caller gets 409 ``concurrent-write`` (retry later)."""
        scope = list(organisations)
        for attempt in range(attempts):
            try:
                async with self.session(scope) as session:
                    return await work(session)
            except (IntegrityError, StaleDataError):
                if attempt == attempts - 1:
                    break
                await asyncio.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise Problem(409, "concurrent-write", "Someone changed the same records at the same time; retry")

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """One holder at a time across every process on this database (a PostgreSQL advisory
        lock named ``name``, held on a connection of its own); on SQLite, where one process
        owns the file, no lock. For start-up work each replica would otherwise race to do."""
        if not self.is_postgres:
            yield
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})

    async def migrate(self) -> Schema:
        """Bring the schema to this code's revision (Alembic, in a thread: env.py runs its own
        loop), under a PostgreSQL advisory lock so that pods starting together take turns.
        A schema already ahead of this code (a release rolled back: expand/contract keeps it
        compatible) is left as it is. What it found, for the caller to say."""
        if self.migrations is None:
            return Schema(frozenset(), frozenset(), known=frozenset())
        found = await asyncio.to_thread(upgrade, self.url, self.migrations)
        return Schema(found, self.expected_revisions(), known=_script_revisions(self.migrations))

    def expected_revisions(self) -> frozenset[str]:
        """The head revisions of this code's migrations (none: the service keeps nothing)."""
        return _script_heads(self.migrations) if self.migrations else frozenset()

    async def schema(self) -> Schema:
        """Where the database's schema stands against this code's migrations."""
        expected = self.expected_revisions()
        if not expected:
            return Schema(frozenset(), expected, known=frozenset())
        async with self.engine.connect() as conn:
            found = await conn.run_sync(_current_revisions)
        assert self.migrations is not None
        return Schema(found, expected, known=_script_revisions(self.migrations))

    async def dispose(self) -> None:
        if self._plain is not None:
            await self._plain.close()
            self._plain = None
        if (
            self._autocommit is not None
            and self._autocommit.sync_engine.pool is not self.engine.sync_engine.pool
        ):
            await self._autocommit.dispose()
        await self.engine.dispose()


class PlainReader:
    """Runs read statements for :meth:`Database.plain_reads`: rows as tuples, in the
    statement's column order."""

    def __init__(self, scope: frozenset[str]) -> None:
        self._scope = scope

    def _check(self, statement: Select[Any], params: Mapping[str, Any]) -> None:
        if not _names_organisation(statement):
            raise TenancyViolation(f"a plain read that names no organisation: {statement}")
        if params.get("organisation") not in self._scope:
            raise TenancyViolation(f"a plain read outside the session's organisations: {statement}")

    async def rows(self, statement: Select[Any], params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        return (await self.together([(statement, params)]))[0]

    async def together(
        self, reads: Sequence[tuple[Select[Any], Mapping[str, Any]]]
    ) -> list[Sequence[Sequence[Any]]]:
        """The rows of each statement, in order; on PostgreSQL all sent before the first
        answer is read (one round trip for the lot, psycopg's pipeline mode)."""
        raise NotImplementedError


class _CoreReader(PlainReader):
    def __init__(self, conn: AsyncConnection, scope: frozenset[str]) -> None:
        super().__init__(scope)
        self._conn = conn

    async def together(
        self, reads: Sequence[tuple[Select[Any], Mapping[str, Any]]]
    ) -> list[Sequence[Sequence[Any]]]:
        for statement, params in reads:
            self._check(statement, params)
        return [(await self._conn.execute(statement, dict(params))).all() for statement, params in reads]


class _DriverPool:
    """psycopg connections in autocommit for :meth:`Database.plain_reads`: at most
    :data:`PLAIN_CONNECTIONS` open (waiting at most :data:`PLAIN_WAIT_SECONDS` for one),
    up to :data:`PLAIN_IDLE` of them kept between reads. No liveness ping on checkout (one
    round trip of three for the grid's page): a connection PostgreSQL dropped is found
    broken by its next statement, which is then run again on a new one, the idle ones
    (as old, after a restart) let go too (:class:`_DriverReader`)."""

    def __init__(self, url: Any) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.database = url.database or ""
        self.attributes = {
            "db.system": "postgresql",
            "db.name": url.database or "",
            "db.user": url.username or "",
            "net.peer.name": url.host or "",
            "net.peer.port": url.port or 5432,
        }
        self._idle: list[Any] = []
        # The slots of the event loop the pool last served (made at its first read there).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    async def take(self) -> tuple[Any, asyncio.Semaphore]:
        """A connection and the slot it holds (give both back)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or loop is not self._loop:  # a semaphore that waited belongs to its loop
            self._loop, self._slots = loop, asyncio.Semaphore(PLAIN_CONNECTIONS)
        slots = self._slots
        async with asyncio.timeout(PLAIN_WAIT_SECONDS):
            await slots.acquire()
        try:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, slots
            import psycopg
            from psycopg.types.json import set_json_loads

            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            set_json_loads(json_value, conn)  # as the engines read JSON (a page: 50 error lists)
            return conn, slots
        except BaseException:
            slots.release()
            raise

    def give_back(self, conn: Any, slots: asyncio.Semaphore) -> None:
        """A connection back to the pool: kept when it is idle (not closed, broken or still
        busy with a statement whose caller went away), else let go."""
        from psycopg.pq import TransactionStatus

        slots.release()
        idle = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        if idle and not self._closed and len(self._idle) < PLAIN_IDLE:
            self._idle.append(conn)
        elif not conn.closed:
            self._close_soon(conn)

    def let_idle_go(self) -> None:
        """Close the idle connections: one was found broken, so they are as old."""
        idle, self._idle = self._idle, []
        for conn in idle:
            self._close_soon(conn)

    @staticmethod
    def _close_soon(conn: Any) -> None:
        task = asyncio.ensure_future(conn.close())
        _closing_connections.add(task)
        task.add_done_callback(_closing_connections.discard)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()


#: The plain reads' connections, at most, and idle ones kept, per database; and how long a
#: read waits for a connection when all are in use (SQLAlchemy's pool waits as long).
PLAIN_CONNECTIONS = 10
PLAIN_IDLE = 3
PLAIN_WAIT_SECONDS = 30.0
_closing_connections: set[asyncio.Future[Any]] = set()


@functools.lru_cache(maxsize=512)
def _names_organisation(statement: Select[Any]) -> bool:
    """Whether ``statement`` has the ``organisation`` parameter a plain read must name."""
    return "organisation" in statement.compile().binds


@functools.lru_cache(maxsize=512)
def _driver_sql(statement: Select[Any]) -> tuple[str, str, dict[str, Any]]:
    """The statement as psycopg runs it (its parameters by name, never inlined), its first
    word (the span's name, as the SQLAlchemy instrumentation names its own) and the values
    of its literals."""
    from sqlalchemy.dialects import postgresql

    compiled = statement.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    sql = compiled.string
    if "POSTCOMPILE" in sql or compiled.escaped_bind_names:
        # An IN of a list, or a parameter name psycopg would not find: not for plain reads.
        raise ValueError(f"a plain read needs plain parameters: {sql}")
    # The values the statement carries itself (literals, None included): not the caller's.
    literals = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
    return sql, sql.split(None, 1)[0], literals


class _DriverReader(PlainReader):
    """Statements on one connection of the pool, taken at the first and given back at the
    end of :meth:`Database.plain_reads`; one at a time."""

    def __init__(self, pool: _DriverPool, scope: frozenset[str]) -> None:
        super().__init__(scope)
        self._pool = pool
        self._conn: Any = None
        self._slots: asyncio.Semaphore | None = None
        self._busy = False

    async def together(
        self, reads: Sequence[tuple[Select[Any], Mapping[str, Any]]]
    ) -> list[Sequence[Sequence[Any]]]:
        runs = []
        for statement, params in reads:
            self._check(statement, params)
            sql, operation, literals = _driver_sql(statement)
            runs.append((sql, operation, literals | dict(params) if literals else params))
        if self._busy:
            raise RuntimeError("a plain reader runs one read at a time")
        from hdhub.common.telemetry import database_span

        self._busy = True
        try:
            with contextlib.ExitStack() as spans:
                for sql, operation, _ in runs:
                    spans.enter_context(
                        database_span(f"{operation} {self._pool.database}", sql, self._pool.attributes)
                    )
                for attempt in (1, 2):
                    if self._conn is None:
                        self._conn, self._slots = await self._pool.take()
                    try:
                        return await self._send(self._conn, runs)
                    except Exception:
                        # A connection PostgreSQL dropped (a restart, an idle timeout):
                        # replaced once, the statements run again (they only read).
                        if attempt == 2 or not self._conn.broken:
                            raise
                        self._pool.let_idle_go()
                        self.release()
        finally:
            self._busy = False
        raise AssertionError("unreachable")

    @staticmethod
    async def _send(
        conn: Any, runs: list[tuple[str, str, Mapping[str, Any]]]
    ) -> list[Sequence[Sequence[Any]]]:
        if len(runs) == 1:
            sql, _, params = runs[0]
            return [await (await conn.execute(sql, params)).fetchall()]
        async with conn.pipeline():
            cursors = [await conn.execute(sql, params) for sql, _, params in runs]
        return [await cursor.fetchall() for cursor in cursors]

    def release(self) -> None:
        if self._conn is not None and self._slots is not None:
            conn, slots, self._conn, self._slots = self._conn, self._slots, None, None
            self._pool.give_back(conn, slots)


def alembic_config(url: str, migrations: Path) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(url: str, migrations: Path, revision: str = "head") -> frozenset[str]:
    """Migrate to ``revision``; the revisions the database was at before (read under the
    migration lock, so a process that waited for another finds its work done)."""
    from alembic import command

    config = alembic_config(url, migrations)
    command.upgrade(config, revision)
    return frozenset(config.attributes.get(FOUND_REVISIONS, ()))


@dataclass(frozen=True)
class Schema:
    """A database's schema against the migrations of the code reading it: the revisions
    found (``alembic_version``), the code's heads, and every revision the code knows."""

    found: frozenset[str]
    expected: frozenset[str]
    known: frozenset[str]

    @property
    def current(self) -> bool:
        return self.found == self.expected

    @property
    def ahead(self) -> bool:
        """A revision this code does not know: a newer release migrated (a rollback, or
        old pods during a roll). Migrations expand, then contract a release later, so this
        code still works on it."""
        return bool(self.found - self.known)

    @property
    def usable(self) -> bool:
        """Whether this code may serve on it: at its revision, or ahead of it."""
        return self.current or self.ahead

    def describe(self) -> str:
        found = ", ".join(sorted(self.found)) or "none (not migrated)"
        return f"revision {found}, this code expects {', '.join(sorted(self.expected))}"


FOUND_REVISIONS = "hdhub_found_revisions"
#: The advisory lock `hdhub migrate` holds while it migrates (per database: PostgreSQL keeps
#: advisory locks per database, and each service has its own).
MIGRATION_LOCK = 0x68646875_62_6D67  # "hdhub", "mg"


@cache
def _script_heads(migrations: Path) -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://", migrations)).get_heads())


@cache
def _script_revisions(migrations: Path) -> frozenset[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://", migrations))
    return frozenset(r.revision for r in script.walk_revisions())


def _current_revisions(connection: Any) -> frozenset[str]:
    from alembic.runtime.migration import MigrationContext

    return frozenset(MigrationContext.configure(connection).get_current_heads())


def run_migrations(target_metadata: Any) -> None:
    """The body of every service's Alembic ``env.py`` (online mode, async engine)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url

    def do_run(connection: Any) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Pods of one service start together, each migrating first: one at a time;
                # the next finds the schema current. Released with the transaction.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            found = frozenset(context.get_context().get_current_heads())
            context.config.attributes[FOUND_REVISIONS] = found
            known = {r.revision for r in context.script.walk_revisions()}
            if found - known:
                return  # ahead of this code (a rollback): expand/contract keeps it usable
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(main())


# Each service declares ``class Base(DeclarativeBase): type_annotation_map = TYPE_MAP`` so
# that its tables live in its own MetaData (and its own Alembic history).
TYPE_MAP: dict[Any, Any] = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: UTCDateTime()}
