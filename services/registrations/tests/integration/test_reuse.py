"""Data reuse on PostgreSQL: the organisation's read-only role reads views that equal the
registrations' current values, and can neither write nor read beyond its organisation.
The operator's and the hospital's commands of docs/reuse.md run here as written."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.support.samples import record
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[4]
OWN, FOREIGN = "az-demo", "lab-demo"
PASSWORD = "a-reuse-password-for-tests"


def _conninfo(stack: Stack, role: str) -> str:
    url = urlsplit(os.environ["HDHUB_REGISTRATIONS_DATABASE_URL"])
    return f"host={url.hostname} port={url.port or 5432} dbname={url.path.strip('/')} user={role} password={PASSWORD}"


@pytest.fixture
async def postgres(stack: Stack) -> AsyncIterator[Stack]:
    """The PostgreSQL stack; the reuse roles (the cluster's, not the database's) are
    dropped afterwards, access taken away as an operator would."""
    if stack.backend != "postgres":
        pytest.skip("data reuse is PostgreSQL's")
    yield stack
    reuse = stack.service("registrations").reuse
    for org in (OWN, FOREIGN):
        await reuse.revoke(org)


async def test_views_equal_current_values_and_the_role_stays_in_its_organisation(postgres: Stack) -> None:
    stack = postgres
    headers = await stack.headers("nurse@az-demo.test")
    ids = []
    for submit in (False, True):
        r = await stack.client.post(
            "/api/v1/registrations",
            json={"organisation_id": OWN, "dcd": "ANGIO_HOSP", "values": record(), "submit": submit},
            headers=headers,
        )
        ids.append(r.json()["id"])
    lab = await stack.headers("lab-demo-lims")
    await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": FOREIGN, "dcd": "ANGIO_HOSP", "values": record(), "submit": False},
        headers=lab,
    )
    reuse = stack.service("registrations").reuse
    granted = await reuse.grant(OWN, PASSWORD)
    other = await reuse.grant(FOREIGN, PASSWORD + "-lab")
    assert "reuse_az_demo.angio_hosp_1_0_0" in granted.views
    # A change after the grant is seen at once: the views are live.
    r = await stack.client.get(f"/api/v1/registrations/{ids[0]}", headers=headers)
    changed = {**r.json()["values"], "MS_HEIGHT": 188}
    r = await stack.client.put(
        f"/api/v1/registrations/{ids[0]}",
        json={"values": record() | {"MS_HEIGHT": "188", "IDC_PAT": changed["IDC_PAT"]}},
        headers={**headers, "If-Match": r.headers["ETag"]},
    )
    assert r.status_code == 200, r.text

    async with await psycopg.AsyncConnection.connect(_conninfo(stack, granted.role)) as conn:
        rows = await (
            await conn.execute("SELECT * FROM reuse_az_demo.angio_hosp_1_0_0 ORDER BY created_at")
        ).fetchall()
        cursor = await conn.execute("SELECT * FROM reuse_az_demo.angio_hosp_1_0_0 LIMIT 0")
        names = [d.name for d in cursor.description or []]
    seen = {row[0]: dict(zip(names, row, strict=True)) for row in rows}
    assert set(ids) <= set(seen)
    for registration_id, row in seen.items():
        current = (await stack.client.get(f"/api/v1/registrations/{registration_id}", headers=headers)).json()
        assert row["status"] == current["status"] or {row["status"], current["status"]} <= {
            "sending",
            "submitted",
        }
        for name, value in current["values"].items():
            assert _shown(row[name]) == _shown(value), (name, row[name], value)
    assert seen[ids[0]]["MS_HEIGHT"] == 188

    async with await psycopg.AsyncConnection.connect(_conninfo(stack, granted.role), autocommit=True) as conn:
        for statement in (
            "DELETE FROM reuse_az_demo.angio_hosp_1_0_0",
            "UPDATE reuse_az_demo.angio_hosp_1_0_0 SET status = 'x'",
            "SELECT count(*) FROM public.registrations",
            f"SELECT count(*) FROM {other.schema}.angio_hosp_1_0_0",
            "CREATE TABLE public.mine (x int)",
            "CREATE TABLE reuse_az_demo.mine (x int)",
        ):
            with pytest.raises(psycopg.Error) as refused:
                await conn.execute(statement)
            assert isinstance(
                refused.value, psycopg.errors.InsufficientPrivilege | psycopg.errors.ReadOnlySqlTransaction
            ), statement
    # The other organisation's role sees its own rows only.
    async with await psycopg.AsyncConnection.connect(
        _conninfo(stack, other.role).replace(PASSWORD, PASSWORD + "-lab")
    ) as conn:
        orgs = await (
            await conn.execute(
                f"SELECT count(*) FROM {other.schema}.angio_hosp_1_0_0 WHERE registration_id = ANY(%s)",
                (ids,),
            )
        ).fetchone()
        assert orgs == (0,)


def _shown(value: object) -> object:
    """A typed column's value as the API shows it (dates ISO, numbers as text)."""
    if isinstance(value, datetime.time):
        return value.isoformat(timespec="minutes")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return [str(v) for v in value]
    return None if value is None else str(value)


def _snippets() -> list[str]:
    text = (ROOT / "docs" / "reuse.md").read_text()
    return re.findall(
        r"<!-- snippet: skip \(PostgreSQL: run by [^)]*test_reuse.py\) -->\n```sh\n(.*?)```", text, re.S
    )


async def test_reuse_doc_commands_run_as_written(postgres: Stack, tmp_path: Path) -> None:
    blocks = _snippets()
    assert len(blocks) == 2
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    url = urlsplit(os.environ["HDHUB_REGISTRATIONS_DATABASE_URL"])
    env = {
        **os.environ,
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGDATABASE": url.path.strip("/"),
    }
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(blocks)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.split()
    assert lines[0].endswith("_reuse_az_demo")
    assert all("|" in line for line in lines[1:]) and lines[1:], done.stdout
