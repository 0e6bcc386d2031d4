"""The one `hdhub` command: migrate, seed, and refusals that say what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
