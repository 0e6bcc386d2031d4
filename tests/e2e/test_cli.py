"""The one `hdhub` command: migrate, seed, and refusals that say what is wrong."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from hdhub.common.config import PLACEHOLDER, SERVICES, is_placeholder
from hdhub.common.local_secrets import FILE_NAME, GENERATED
from tests.e2e.conftest import base_env, run_all
from tests.support.stack import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def hdhub(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HDHUB_")} | {"HDHUB_DATA_DIR": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "hdhub.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_shape(tmp_path: Path) -> None:
    out = hdhub("--help", data=tmp_path).stdout
    for command in ("run", "worker", "migrate", "seed"):
        assert command in out


def test_migrate_then_seed_is_repeatable(tmp_path: Path) -> None:
    first = hdhub("migrate", "all", data=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "identity: migrated" in first.stdout and "registrations: migrated" in first.stdout
    for _ in range(2):  # seeding twice changes nothing and does not fail
        seeded = hdhub("seed", data=tmp_path)
        assert seeded.returncode == 0, seeded.stderr + seeded.stdout
    assert (tmp_path / "registrations.db").exists() and (tmp_path / "identity.db").exists()


def test_unknown_service_is_refused_clearly(tmp_path: Path) -> None:
    out = hdhub("migrate", "billing", data=tmp_path)
    assert out.returncode != 0
    assert "unknown service 'billing'" in out.stderr
    assert "Traceback" not in out.stderr


# --- secrets: none has a usable default -------------------------------------------------


def _production(data: Path, **secrets: str) -> dict[str, str]:
    # Free ports throughout: should a refusal fail, nothing binds another run's ports.
    return base_env(data) | {"HDHUB_DATA_DIR": str(data), "HDHUB_ENVIRONMENT": "production", **secrets}


# The secrets of the services `hdhub` runs (GENERATED also covers reserved service names).
NEEDED = sorted(
    {
        "HDHUB_SERVICE_CLIENT_SECRET",
        "HDHUB_PORTAL_MASTER_KEY",
        "HDHUB_PSEUDONYMISATION_MASTER_KEY",
        "HDHUB_UPLOADS_MASTER_KEY",
        "HDHUB_INTAKE_MASTER_KEY",
        "HDHUB_NIPPIN_MASTER_KEY",
        "HDHUB_REGISTRATIONS_MASTER_KEY",
    }
    | {f"HDHUB_{name.upper()}_SECRET_KEY" for name in SERVICES}
)
# Where production keeps what a pod must not keep for itself: no default either.
KEPT_ELSEWHERE = sorted(
    {"HDHUB_OBJECT_STORE_URL", "HDHUB_INTAKE_SFTP_HOST_KEY", "HDHUB_REDIS_URL"}
    | {f"HDHUB_{name.upper()}_DATABASE_URL" for name in SERVICES if name != "pseudonymisation"}
)


def _setting(name: str, data: Path) -> str:
    if name.endswith("_MASTER_KEY"):
        return base64.b64encode(os.urandom(32)).decode()
    if name.endswith("_DATABASE_URL"):
        return f"sqlite+aiosqlite:///{data / name.lower()}.db"
    if name == "HDHUB_REDIS_URL":
        return "redis://127.0.0.1:6379/0"
    if name == "HDHUB_OBJECT_STORE_URL":
        return f"file://{data / 'objects'}"
    if name == "HDHUB_INTAKE_SFTP_HOST_KEY":
        import asyncssh

        return asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    return f"given-{uuid.uuid4().hex}"


@pytest.mark.parametrize("missing", NEEDED + KEPT_ELSEWHERE)
def test_production_refuses_to_start_without_each_secret(tmp_path: Path, missing: str) -> None:
    given = {name: _setting(name, tmp_path) for name in NEEDED + KEPT_ELSEWHERE if name != missing}
    out = subprocess.run(
        [sys.executable, "-m", "hdhub.cli.main", "run", "all", "--port", str(free_port())],
        cwd=ROOT,
        env=_production(tmp_path, **given),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    said = " ".join((out.stderr + out.stdout).split()).replace("│", "").replace(" ", "")
    assert missing.replace("_", "") in said.replace("_", "").upper(), said
    assert "Traceback" not in out.stderr and not any(v in out.stderr + out.stdout for v in given.values())
    assert not (tmp_path / FILE_NAME).exists()  # production never generates its secrets


def test_production_never_seeds_demo_data(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hdhub.cli.main", "seed"],
        cwd=ROOT,
        env=_production(
            tmp_path, HDHUB_SERVICE_CLIENT_SECRET=uuid.uuid4().hex, HDHUB_REDIS_URL="redis://127.0.0.1:6379/0"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "never loaded in production" in " ".join(out.stderr.split()).replace(
        "│ ", ""
    )
    assert not (tmp_path / "identity.db").exists()


def test_run_all_generates_random_secrets_once_never_prints_them_and_reuses_them(tmp_path: Path) -> None:
    with run_all(tmp_path) as first:
        path = first.data_dir / FILE_NAME
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secrets = json.loads(path.read_text())
        assert sorted(secrets) == sorted(GENERATED) and not any(is_placeholder(v) for v in secrets.values())
        assert len(set(secrets.values())) == len(secrets)  # each drawn on its own
        # The service secret works for the services, the shipped placeholder for no one.
        assert first.token("hdhub-uploads", secrets["HDHUB_SERVICE_CLIENT_SECRET"])
        with pytest.raises(httpx.HTTPStatusError):
            first.token("hdhub-uploads", PLACEHOLDER)
        # The demo hospital system, seeded by `make run`, still logs in as README says.
        his = first.token("az-demo-his", "demo-his-secret")
        with first.client(his) as client:
            assert client.get("/api/v1/organisations").status_code == 200
    log = first.log.read_text()
    assert not any(v in log for v in secrets.values())
    with run_all(tmp_path) as again:
        assert json.loads((again.data_dir / FILE_NAME).read_text()) == secrets
        assert again.token("hdhub-uploads", secrets["HDHUB_SERVICE_CLIENT_SECRET"])
    assert not any(v in again.log.read_text() for v in secrets.values())


def test_demo_p12_writes_a_two_key_p12_the_portal_accepts_and_prints_its_password(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from hdhub.portal.domain.p12 import inspect_p12

    out = hdhub(
        "demo", "p12", "--organisation", "lab-demo", "--out", str(tmp_path / "lab.p12"), data=tmp_path
    )
    assert out.returncode == 0, out.stderr
    password = out.stdout.strip()
    keystore = inspect_p12(
        (tmp_path / "lab.p12").read_bytes(), password, now=datetime.now(UTC), max_bytes=1 << 20
    )
    assert "82000137" in keystore.authentication.describe()  # lab-demo's NIHDI number
    refused = hdhub("demo", "p12", "--organisation", "az-nowhere", data=tmp_path)
    assert refused.returncode != 0 and "unknown demo organisation 'az-nowhere'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_appoint_user_manager_prints_the_initial_password_once_and_refuses_clearly(tmp_path: Path) -> None:
    import asyncio

    from hdhub.common.db import Database
    from hdhub.identity.embedded import EmbeddedBackend
    from hdhub.identity.runtime import MIGRATIONS

    args = ["appoint-user-manager", "--title", "AZ Start", "--nihdi", "71000436", "--email", "uma@start.test"]
    unmigrated = hdhub(*args, data=tmp_path)
    assert unmigrated.returncode != 0 and "hdhub migrate identity" in unmigrated.stderr
    assert hdhub("migrate", "identity", data=tmp_path).returncode == 0
    done = hdhub(*args, "--first-name", "Uma", data=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    password = lines["initial password"].split()[0]
    assert lines["user manager"] == "uma@start.test" and len(password) == 16

    async def check() -> tuple[bool, list[str]]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}", migrations=MIGRATIONS)
        backend = EmbeddedBackend(db)
        account = await backend.check_password("uma@start.test", password)
        assert account is not None
        roles = await backend.memberships(account.id)
        await db.dispose()
        return account.must_change_password, [sorted(r) for r in roles.values()][0]

    assert asyncio.run(check()) == (True, ["manager"])
    again = hdhub(*args, data=tmp_path)  # the same NIHDI number: refused, saying why
    assert again.returncode != 0 and "NIHDI number exists already" in again.stderr
    bad = hdhub("appoint-user-manager", "--title", "X", "--nihdi", "123", "--email", "no", data=tmp_path)
    assert bad.returncode != 0 and "nihdi_number" in bad.stderr and "email" in bad.stderr
    assert "Traceback" not in again.stderr + bad.stderr


def test_run_refuses_at_once_naming_each_port_in_use_and_its_setting(tmp_path: Path) -> None:
    # A second `make run` (or anything on 8000, 2222, 5006x) failed half a minute later with
    # a gRPC stack trace ("Failed to bind to address 127.0.0.1:50061").
    import socket

    env = base_env(tmp_path)
    http, sftp = free_port(), int(env["HDHUB_INTAKE_SFTP_PORT"])
    grpc = int(env["HDHUB_REGISTRATIONS_GRPC_BIND"].rsplit(":", 1)[1])
    held = []
    for number in (http, sftp, grpc):
        s = socket.socket()
        s.bind(("127.0.0.1", number))
        s.listen()
        held.append(s)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "hdhub.cli.main", "run", "all", "--port", str(http)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for s in held:
            s.close()
    said = " ".join((out.stderr + out.stdout).replace("│", " ").split())
    assert out.returncode == 2, said
    assert f"HTTP port 127.0.0.1:{http} is not free" in said and "make run PORT=" in said, said
    assert f"SFTP port 127.0.0.1:{sftp} is not free" in said and "HDHUB_INTAKE_SFTP_PORT" in said, said
    assert f"registrations gRPC port 127.0.0.1:{grpc} is not free" in said, said
    assert "HDHUB_REGISTRATIONS_GRPC_BIND" in said and "identity gRPC" not in said, said
    assert "Traceback" not in out.stderr


def test_make_run_takes_another_port() -> None:
    out = subprocess.run(
        ["make", "-n", "run", "PORT=8123"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "hdhub run all --port 8123" in out.stdout
