"""Each service's Alembic history builds exactly the schema its models declare."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.support.stack import Stack


@pytest.mark.parametrize("service", ["identity", "registrations", "intake"])
async def test_migrations_match_the_models(stack: Stack, service: str) -> None:
    svc = stack.service(service)
    metadata = __import__(f"hdhub.{service}.store", fromlist=["Base"]).Base.metadata

    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)

    async with svc.db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


@pytest.mark.postgres
async def test_history_written_before_batch_history_stays_readable_and_goes_back_down() -> None:
    """Migration 0008 (history per batch): registrations and version rows written before
    it read as they did; downgrading writes a batch's shared entries back as version rows."""
    import asyncio
    import uuid
    from pathlib import Path

    import psycopg
    from alembic import command

    import hdhub.registrations
    from hdhub.common.db import Database, alembic_config, upgrade
    from hdhub.common.errors import Problem
    from hdhub.registrations.records.service import Registrations
    from tests.support.stack import create_database, drop_database

    migrations = Path(hdhub.registrations.__file__).parent / "migrations"
    name = f"hdhub_storage_migration_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    values = {"A": 1, "B": "x"}
    columns = (
        'organisation_id, id, project_code, dcd_code, dcd_version, business_key, status, "values",'
        " errors, version, created_by, created_at, updated_at"
    )
    try:
        await asyncio.to_thread(upgrade, url, migrations, "0007_reuse")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO registrations ({columns}) VALUES ('az-demo', 'old', 'P', 'D', '1.0.0', 'k1',"
                " 'open', %s, '[]', 2, 'nurse', now(), now())",
                (json.dumps({"A": 2, "B": "x"}),),
            )
            conn.execute(
                "INSERT INTO registration_versions (organisation_id, registration_id, version, action,"
                " status, dcd_version, changed_fields, actor, via, at, replaced) VALUES"
                " ('az-demo', 'old', 1, 'create', 'open', '1.0.0', '[\"A\", \"B\"]', 'nurse', 'api', now(), NULL),"
                " ('az-demo', 'old', 2, 'save', 'open', '1.0.0', '[\"A\"]', 'nurse', 'api', now(), %s)",
                (json.dumps({"A": 1}),),
            )
        await asyncio.to_thread(upgrade, url, migrations)
        db = Database(url)
        try:
            registrations = Registrations(db, None, None, secret=b"")  # type: ignore[arg-type]
            old = await registrations.history(["az-demo"], "old")
            assert [(v.version, v.action, v.changed_fields, values) for v, values in old] == [
                (1, "create", ["A", "B"], {"A": 1, "B": "x"}),
                (2, "save", ["A"], {"A": 2, "B": "x"}),
            ]
            with psycopg.connect(plain, autocommit=True) as conn:
                [[shared]] = conn.execute(
                    "INSERT INTO batch_history (organisation_id, batch_id, submitted, dcd_version, actor, via, at)"
                    " VALUES ('az-demo', 'u:1', true, '1.0.0', 'his', 'upload', now()) RETURNING id"
                ).fetchall()
                conn.execute(
                    f"INSERT INTO registrations ({columns}, batch_history_id) VALUES ('az-demo', 'new', 'P', 'D',"
                    " '1.0.0', 'k2', 'sending', %s, '[]', 2, 'his', now(), now(), %s)",
                    (json.dumps(values), shared),
                )
            new = await registrations.history(["az-demo"], "new")
            assert [(v.version, v.action, v.status, v.changed_fields, values) for v, values in new] == [
                (1, "create", "open", ["A", "B"], values),
                (2, "submit", "sending", [], values),
            ]
            with pytest.raises(Problem):  # another organisation's: not found
                await registrations.history(["lab-demo"], "new")
        finally:
            await db.dispose()
        await asyncio.to_thread(command.downgrade, alembic_config(url, migrations), "0008_console_catalogue")
        with psycopg.connect(plain, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT registration_id, version, action, status, changed_fields, actor, via"
                " FROM registration_versions ORDER BY registration_id, version"
            ).fetchall()
        assert rows == [
            ("new", 1, "create", "open", ["A", "B"], "his", "upload"),
            ("new", 2, "submit", "sending", [], "his", "upload"),
            ("old", 1, "create", "open", ["A", "B"], "nurse", "api"),
            ("old", 2, "save", "open", ["A"], "nurse", "api"),
        ]
    finally:
        drop_database(name)
