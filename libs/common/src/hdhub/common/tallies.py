"""Counts kept incrementally for the operator's console: a tally table per counted thing,
``(organisation_id, bucket, n)``, that database triggers on the source table keep in the
same transaction as each insert, update and delete. Every code path that changes a row
(ORM, bulk ``UPDATE``, ``COPY``) moves the counts with it, and reading an organisation's
health reads a few tally rows instead of scanning the source table.

On PostgreSQL the triggers are per statement, over the statement's transition tables:
one grouped upsert per statement, however many rows it touched (the worker's bulk steps
and ``COPY`` stay set-based). On SQLite (one process, development) they are per row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column


class TallyColumns:
    """The columns of a tally table, for a service's model (``__tablename__`` its own)."""

    organisation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(64), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, server_default="0")


@dataclass(frozen=True)
class Tally:
    """``table`` counts the rows of ``source`` matching ``where`` per organisation and
    ``bucket`` (a SQL expression). In ``bucket`` and ``where``, ``{r}`` stands for the row
    (``NEW.``/``OLD.`` in a row trigger, nothing over a transition table), and
    ``{hour}`` for the hour of a timestamp column, as ``YYYY-MM-DDTHH`` text in UTC."""

    table: str
    source: str
    bucket: str
    where: str = "TRUE"

    def columns(self) -> list[sa.Column[Any]]:
        """The tally table's columns (for the model and the migration alike)."""
        return [
            sa.Column("organisation_id", sa.String(64), primary_key=True),
            sa.Column("bucket", sa.String(64), primary_key=True),
            sa.Column("n", sa.BigInteger(), nullable=False, server_default="0"),
        ]

    def _sql(self, template: str, row: str, dialect: str) -> str:
        hour = (
            "to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"
            if dialect == "postgresql"
            else "strftime('%Y-%m-%dT%H', {0})"
        )
        text = template.replace("{r}", row)
        while "{hour:" in text:  # {hour:column}
            start = text.index("{hour:")
            end = text.index("}", start)
            text = text[:start] + hour.format(row + text[start + 6 : end]) + text[end + 1 :]
        return text

    def create(self, dialect: str) -> list[str]:
        """The triggers (and, on PostgreSQL, their functions), then the counts of the rows
        already there."""
        t, s = self.table, self.source
        backfill = (
            f"INSERT INTO {t} (organisation_id, bucket, n) "
            f"SELECT organisation_id, {self._sql(self.bucket, '', dialect)}, count(*) FROM {s} "
            f"WHERE {self._sql(self.where, '', dialect)} GROUP BY 1, 2"
        )
        if dialect == "postgresql":
            return [*self._postgresql(), backfill]
        return [*self._sqlite(), backfill]

    def drop(self, dialect: str) -> list[str]:
        t, s = self.table, self.source
        if dialect == "postgresql":
            return [
                *(f"DROP TRIGGER IF EXISTS {t}_{e} ON {s}" for e in ("ins", "upd", "del")),
                *(f"DROP FUNCTION IF EXISTS {t}_{e}()" for e in ("ins", "upd", "del")),
            ]
        return [f"DROP TRIGGER IF EXISTS {t}_{e}" for e in ("ins", "upd_old", "upd_new", "del")]

    def _postgresql(self) -> list[str]:
        t, s = self.table, self.source
        bucket, where = self._sql(self.bucket, "", "postgresql"), self._sql(self.where, "", "postgresql")

        def select(rows: str, sign: str) -> str:
            return f"SELECT organisation_id, {bucket} AS bucket, {sign}1 AS d FROM {rows} WHERE {where}"

        # Grouped and ordered, so that concurrent statements lock tally rows in one order.
        bodies = {
            "ins": (select("new_rows", ""), "INSERT", "NEW TABLE AS new_rows"),
            "upd": (
                f"{select('new_rows', '')} UNION ALL {select('old_rows', '-')}",
                "UPDATE",
                "NEW TABLE AS new_rows OLD TABLE AS old_rows",
            ),
            "del": (select("old_rows", "-"), "DELETE", "OLD TABLE AS old_rows"),
        }
        out = []
        for name, (rows, event, referencing) in bodies.items():
            out.append(
                f"CREATE OR REPLACE FUNCTION {t}_{name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n"
                f"  INSERT INTO {t} (organisation_id, bucket, n)\n"
                f"  SELECT organisation_id, bucket, sum(d) FROM ({rows}) AS changed\n"
                f"  WHERE bucket IS NOT NULL GROUP BY 1, 2 HAVING sum(d) <> 0 ORDER BY 1, 2\n"
                f"  ON CONFLICT (organisation_id, bucket) DO UPDATE SET n = {t}.n + EXCLUDED.n;\n"
                f"  RETURN NULL;\n"
                f"END $$"
            )
            out.append(
                f"CREATE TRIGGER {t}_{name} AFTER {event} ON {s} REFERENCING {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {t}_{name}()"
            )
        return out

    def _sqlite(self) -> list[str]:
        t, s = self.table, self.source

        def change(name: str, event: str, row: str, sign: str) -> str:
            bucket, where = self._sql(self.bucket, row, "sqlite"), self._sql(self.where, row, "sqlite")
            return (
                f"CREATE TRIGGER {t}_{name} AFTER {event} ON {s} "
                f"WHEN ({where}) AND ({bucket}) IS NOT NULL BEGIN "
                f"INSERT INTO {t} (organisation_id, bucket, n) "
                f"VALUES ({row}organisation_id, {bucket}, {sign}1) "
                f"ON CONFLICT (organisation_id, bucket) DO UPDATE SET n = n + ({sign}1); END"
            )

        return [
            change("ins", "INSERT", "NEW.", ""),
            change("upd_old", "UPDATE", "OLD.", "-"),
            change("upd_new", "UPDATE", "NEW.", ""),
            change("del", "DELETE", "OLD.", "-"),
        ]


def create_tally(op: Any, tally: Tally) -> None:
    """In a migration: the tally table, its triggers, and the counts of the rows there."""
    op.create_table(tally.table, *tally.columns())
    for statement in tally.create(op.get_bind().dialect.name):
        op.execute(statement)


def drop_tally(op: Any, tally: Tally) -> None:
    """In a migration's downgrade: the triggers, then the table."""
    for statement in tally.drop(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table(tally.table)


def hour_bucket(at: datetime) -> str:
    """The bucket ``{hour:column}`` puts a time in (``YYYY-MM-DDTHH``, UTC)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H")


async def read_tallies(
    session: AsyncSession, model: type[TallyColumns], *, since: str | None = None
) -> dict[str, dict[str, int]]:
    """A tally table's non-zero counts, by organisation then bucket (buckets from ``since``
    on, for hour buckets)."""
    query = select(model.organisation_id, model.bucket, model.n).where(model.n != 0)
    if since is not None:
        query = query.where(model.bucket >= since)
    found: dict[str, dict[str, int]] = {}
    for organisation_id, bucket, n in await session.execute(query):
        found.setdefault(organisation_id, {})[bucket] = int(n)
    return found
