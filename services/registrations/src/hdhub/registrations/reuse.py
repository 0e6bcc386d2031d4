"""Data reuse (docs/reuse.md): a read-only relational view of one organisation's
registrations for BI tools (Metabase, Superset, a notebook), PostgreSQL only.

Per organisation: a schema ``reuse_<org>`` holding one view per DCD version
(``angio_hosp_1_0_0``) with the registration's own columns and a typed column per field
(dates as ``date``, numbers as ``bigint``/``numeric``, multi-selects as ``text[]``), and a
login role that may read that schema and nothing else. The views read the live
``registrations`` table filtered by the organisation (a literal in the view, not a
setting the caller could change), so they are current with every change, and they are
``security_barrier`` views: no function of the caller's is run on rows the filter
drops. The role has no privilege on ``public`` tables (it reads through the views, which
run with their owner's rights), its transactions are read-only, and it cannot see another
organisation's schema. Views follow the catalogue: :meth:`Reuse.refresh` after an import.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from sqlalchemy import select, text

from hdhub.common.db import Database
from hdhub.registrations.catalogue.service import Catalogue, CatalogueEntry
from hdhub.registrations.engine.dcd import FieldType
from hdhub.registrations.exports.formats import analyst_columns
from hdhub.registrations.store import DcdVersion, ReuseAccess

_SQL_TYPES = {
    FieldType.INTEGER: "bigint",
    FieldType.DECIMAL: "numeric",
    FieldType.DATE: "date",
    FieldType.DATETIME: "timestamp",
    FieldType.TIME: "time",
}


def _slug(text_: str, room: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text_.lower()).strip("_") or "x"
    if len(slug) > room:
        slug = slug[: room - 9] + "_" + hashlib.sha256(text_.encode()).hexdigest()[:8]
    return slug


def schema_name(organisation_id: str) -> str:
    return "reuse_" + _slug(organisation_id, 57)


def role_name(database: str, organisation_id: str) -> str:
    """Roles belong to the whole PostgreSQL cluster: the database's name keeps two
    installations (or test databases) on one cluster apart."""
    return _slug(f"{database}_reuse_{organisation_id}", 63)


def view_name(dcd_code: str, version: str) -> str:
    return _slug(f"{dcd_code}_{version}", 63)


log = logging.getLogger("hdhub.registrations.reuse")

#: Columns a reuse view may have besides the registration's own (PostgreSQL allows 1,664).
MAX_VIEW_COLUMNS = 1600


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _column(name: str, kind: FieldType) -> str:
    key = _literal(name)
    if kind is FieldType.SELECT_MULTIPLE:
        expr = (
            f"CASE jsonb_typeof(r.\"values\" -> {key}) WHEN 'array' THEN "
            f'ARRAY(SELECT jsonb_array_elements_text(r."values" -> {key})) END'
        )
    elif kind in _SQL_TYPES:
        expr = f'(r."values" ->> {key})::{_SQL_TYPES[kind]}'
    else:
        expr = f'r."values" ->> {key}'
    return f"{expr} AS {_ident(name)}"


def view_sql(schema: str, organisation_id: str, entry: CatalogueEntry) -> str:
    columns = [_column(c.name, c.type) for c in analyst_columns(entry.definition)]
    return (
        f"CREATE OR REPLACE VIEW {_ident(schema)}.{_ident(view_name(entry.definition.dcd_code, entry.version))} "
        "WITH (security_barrier = true) AS SELECT "
        "r.id AS registration_id, r.registration_code, r.business_key, r.status, r.status_confirmation, "
        "r.created_at, r.updated_at, r.submitted_at"
        + "".join(", " + c for c in columns)
        + f" FROM public.registrations r WHERE r.organisation_id = {_literal(organisation_id)}"
        f" AND r.dcd_code = {_literal(entry.definition.dcd_code)}"
        f" AND r.dcd_version = {_literal(entry.version)} AND r.status <> 'deleted'"
    )


@dataclass(frozen=True)
class Granted:
    schema: str
    role: str
    views: list[str]


class Reuse:
    def __init__(self, db: Database, catalogue: Catalogue) -> None:
        self.db, self.catalogue = db, catalogue

    async def grant(self, organisation_id: str, password: str) -> Granted:
        """Create (or update) the organisation's schema, views and read-only login role."""
        if not self.db.is_postgres:
            raise RuntimeError("data reuse needs PostgreSQL")
        if len(password) < 16:
            raise ValueError("the reuse role's password must have at least 16 characters")
        async with self.db.system_session() as session:
            database = (await session.execute(text("SELECT current_database()"))).scalar_one()
            schema, role = schema_name(organisation_id), role_name(str(database), organisation_id)
            exists = (
                await session.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
            ).first()
            verb = "ALTER" if exists else "CREATE"
            await session.execute(
                text(
                    f"{verb} ROLE {_ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
                    f"CONNECTION LIMIT 10 PASSWORD {_literal(password)}"
                )
            )
            await session.execute(text(f"ALTER ROLE {_ident(role)} SET default_transaction_read_only = on"))
            await session.execute(text(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}"))
            await session.execute(text(f"REVOKE ALL ON SCHEMA {_ident(schema)} FROM PUBLIC"))
            await session.execute(text(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {_ident(role)}"))
            await session.execute(text(f"REVOKE CREATE ON SCHEMA public FROM {_ident(role)}"))
            await session.execute(
                text(
                    f"ALTER DEFAULT PRIVILEGES IN SCHEMA {_ident(schema)} GRANT SELECT ON TABLES TO {_ident(role)}"
                )
            )
            if await session.get(ReuseAccess, organisation_id) is None:
                session.add(ReuseAccess(organisation_id=organisation_id, schema=schema, role=role))
        views = await self.refresh(organisation_id)
        return Granted(schema, role, views)

    async def revoke(self, organisation_id: str) -> bool:
        """Take an organisation's access away: its schema, views and role are dropped."""
        if not self.db.is_postgres:
            return False
        async with self.db.system_session() as session:
            grant = await session.get(ReuseAccess, organisation_id)
            if grant is None:
                return False
            await session.execute(text(f"DROP SCHEMA IF EXISTS {_ident(grant.schema)} CASCADE"))
            await session.execute(text(f"DROP OWNED BY {_ident(grant.role)}"))
            await session.execute(text(f"DROP ROLE IF EXISTS {_ident(grant.role)}"))
            await session.delete(grant)
        return True

    async def refresh(self, organisation_id: str | None = None) -> list[str]:
        """(Re)create the views of every DCD version for one organisation (or all given
        access); the views' names."""
        if not self.db.is_postgres:
            return []
        async with self.db.system_session() as session:
            query = select(ReuseAccess)
            if organisation_id is not None:
                query = query.where(ReuseAccess.organisation_id == organisation_id)
            grants = list((await session.execute(query)).scalars())
            versions = list((await session.execute(select(DcdVersion.dcd_code, DcdVersion.version))).all())
        entries = [await self.catalogue.get(code, version) for code, version in versions]
        names: list[str] = []
        async with self.db.system_session() as session:
            for grant in grants:
                for entry in entries:
                    if len(analyst_columns(entry.definition)) > MAX_VIEW_COLUMNS:
                        # PostgreSQL's limit on a select list (1,664 entries): such a form
                        # has no view (docs/reuse.md); its data is exported as Parquet.
                        log.warning(
                            "no reuse view for %s %s: more than %d fields",
                            entry.definition.dcd_code,
                            entry.version,
                            MAX_VIEW_COLUMNS,
                        )
                        continue
                    await session.execute(text(view_sql(grant.schema, grant.organisation_id, entry)))
                    name = view_name(entry.definition.dcd_code, entry.version)
                    await session.execute(
                        text(f"GRANT SELECT ON {_ident(grant.schema)}.{_ident(name)} TO {_ident(grant.role)}")
                    )
                    names.append(f"{grant.schema}.{name}")
        return names
