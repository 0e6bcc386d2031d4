"""Install and upgrade without ordering: every pod migrates first (its init container runs
`hdhub migrate`, pods taking turns on an advisory lock), and a process whose database is
behind its code stays alive but not ready, saying which revision it found and expects,
until it is migrated. Production refuses what would silently be one pod's own state."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from pydantic import ValidationError

from hdhub.common import local_secrets
from hdhub.common.config import SettingRefused, platform
from hdhub.common.db import MIGRATION_LOCK, Database
from tests.support.stack import create_database, drop_database, free_port

pytestmark = pytest.mark.postgres


@pytest.fixture
def sim_database() -> Iterator[str]:
    name = f"hdhub_test_schema_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


def _sim_migrations() -> Path:
    from hdhub.sim.runtime import MIGRATIONS

    return MIGRATIONS


def test_pods_starting_together_migrate_one_at_a_time(sim_database: str, tmp_path: Path) -> None:
    """Three pods' init containers (`hdhub migrate sim`, processes as in a cluster) while
    another migration holds the lock: all three wait on it, then one migrates and the
    other two find the work done."""
    held = psycopg.connect(sim_database.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    held.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    pods = []
    try:
        for n in range(3):
            env = {k: v for k, v in os.environ.items() if not k.startswith("HDHUB_")} | {
                "HDHUB_ENVIRONMENT": "test",
                "HDHUB_DATA_DIR": str(tmp_path / f"pod{n}"),
                "HDHUB_SIM_DATABASE_URL": sim_database,
            }
            pods.append(
                subprocess.Popen(
                    [sys.executable, "-m", "hdhub.cli.main", "migrate", "sim"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        waiting = 0
        for _ in range(600):  # until the three wait on the lock (each process starts first)
            waiting = held.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()[0]  # type: ignore[index]
            if waiting == 3 or any(p.poll() is not None for p in pods):
                break
            time.sleep(0.1)
        assert waiting == 3, [p.communicate() for p in pods if p.poll() is not None]
        held.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        said = []
        for pod in pods:
            out, err = pod.communicate(timeout=120)
            assert pod.returncode == 0, err
            said.append(out.strip())
        head = "sim_0004_files_to_central"  # the sim's newest migration
        assert sorted(said) == [
            f"sim: already at {head}",
            f"sim: already at {head}",
            f"sim: migrated from an empty database to {head}",
        ]
    finally:
        held.close()
        for pod in pods:
            pod.kill()


async def test_a_schema_ahead_of_the_code_is_served_and_left_as_it_is(sim_database: str) -> None:
    db = Database(sim_database, migrations=_sim_migrations())
    try:
        await db.migrate()
        async with db.engine.begin() as conn:  # a newer release's revision, unknown to this code
            from sqlalchemy import text

            await conn.execute(text("UPDATE alembic_version SET version_num = '9999_newer'"))
        schema = await db.schema()
        assert schema.ahead and schema.usable and not schema.current
        assert (await db.migrate()).ahead  # a rollback's init container leaves it alone
        assert (await db.schema()).found == {"9999_newer"}
    finally:
        await db.dispose()


@pytest.fixture
async def sim_process_env(sim_database: str, tmp_path: Path) -> AsyncIterator[str]:
    saved = dict(os.environ)
    os.environ.update(
        {
            "HDHUB_ENVIRONMENT": "test",
            "HDHUB_DATA_DIR": str(tmp_path),
            "HDHUB_SIM_DATABASE_URL": sim_database,
            "HDHUB_SIM_GRPC_BIND": f"127.0.0.1:{free_port()}",
        }
    )
    local_secrets.ensure(tmp_path)
    platform.cache_clear()
    try:
        yield sim_database
    finally:
        os.environ.clear()
        os.environ.update(saved)
        platform.cache_clear()


async def test_a_service_behind_its_schema_is_alive_not_ready_and_says_why_until_migrated(
    sim_process_env: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hdhub.cli import services

    monkeypatch.setattr(services, "SCHEMA_POLL_SECONDS", 0.1)
    pod = services.Platform(["sim"], migrate=False, seed=False, workers=False)
    app = pod.app()
    caplog.set_level(logging.WARNING, logger="hdhub.runtime")
    await pod.start()  # returns: the process serves while it waits
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pod") as c:
            assert (await c.get("/healthz")).status_code == 200
            r = await c.get("/readyz")
            assert r.status_code == 503
            said = r.json()["checks"]["sim"]
            assert "revision none (not migrated), this code expects sim_0004_files_to_central" in said
            assert "hdhub migrate sim" in said
            assert r.json()["checks"]["startup"] == "waiting for the database schema"
            logged = [rec.getMessage() for rec in caplog.records if "expects" in rec.getMessage()]
            assert logged == [f"sim: {said}"]  # once, however often it is asked
            await Database(sim_process_env, migrations=_sim_migrations()).migrate()  # the init container
            for _ in range(100):
                r = await c.get("/readyz")
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 200, r.text
            assert r.json()["checks"] == {"sim": "ok"}
    finally:
        await pod.stop()


def test_production_refuses_a_missing_database_url_or_object_store_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hdhub.common.objectstore import open_store
    from hdhub.intake.settings import IntakeSettings
    from hdhub.pseudonymisation.settings import PseudonymisationSettings
    from hdhub.registrations.settings import RegistrationsSettings

    for name in [k for k in os.environ if k.startswith("HDHUB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HDHUB_ENVIRONMENT", "production")
    monkeypatch.setenv("HDHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HDHUB_SERVICE_CLIENT_SECRET", uuid.uuid4().hex)
    monkeypatch.setenv("HDHUB_REDIS_URL", "redis://127.0.0.1:6379/0")
    for service in ("REGISTRATIONS", "INTAKE", "PSEUDONYMISATION"):
        monkeypatch.setenv(f"HDHUB_{service}_SECRET_KEY", uuid.uuid4().hex)
    for service in ("INTAKE", "PSEUDONYMISATION"):
        monkeypatch.setenv(f"HDHUB_{service}_MASTER_KEY", "A" * 43 + "=")
    monkeypatch.setenv("HDHUB_REGISTRATIONS_CENTRAL_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----")
    platform.cache_clear()
    try:
        with pytest.raises(ValidationError, match="HDHUB_REGISTRATIONS_DATABASE_URL is unset"):
            RegistrationsSettings()
        monkeypatch.setenv("HDHUB_INTAKE_DATABASE_URL", "postgresql+psycopg://db/intake")
        with pytest.raises(ValidationError, match="HDHUB_INTAKE_SFTP_HOST_KEY is unset"):
            IntakeSettings()
        with pytest.raises(SettingRefused, match="HDHUB_OBJECT_STORE_URL is unset"):
            open_store()
        # pseudonymisation keeps nothing: no database to name, an empty one in memory.
        assert PseudonymisationSettings().resolved_database_url() == "sqlite+aiosqlite://"
        assert not list(tmp_path.iterdir())  # nothing fell back to a file of this pod
    finally:
        platform.cache_clear()
