"""`hdhub` outside production: random secrets drawn once into var/secrets.json (0600) and
read again on every later start; what the environment or a mounted Secret gives wins."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from hdhub.common import local_secrets
from hdhub.common.config import is_placeholder


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in local_secrets.GENERATED:  # set, then unset: the values drawn go at teardown
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setenv("HDHUB_SECRETS_DIR", str(tmp_path / "mounted"))


def test_first_start_draws_every_secret_at_random_into_a_private_file(tmp_path: Path) -> None:
    path = local_secrets.ensure(tmp_path / "var")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700  # patient data lies there too
    stored = json.loads(path.read_text())
    assert sorted(stored) == sorted(local_secrets.GENERATED)
    assert not any(is_placeholder(v) for v in stored.values()) and len(set(stored.values())) == len(stored)
    assert all(os.environ[name] == value for name, value in stored.items())
    assert len(base64.b64decode(stored["HDHUB_PORTAL_MASTER_KEY"])) == 32  # an AES-256 key


def test_later_starts_reuse_the_same_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = json.loads(local_secrets.ensure(tmp_path).read_text())
    for name in local_secrets.GENERATED:
        monkeypatch.delenv(name)
    assert json.loads(local_secrets.ensure(tmp_path).read_text()) == first
    assert os.environ["HDHUB_SERVICE_CLIENT_SECRET"] == first["HDHUB_SERVICE_CLIENT_SECRET"]


def test_the_environment_and_mounted_secrets_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDHUB_SERVICE_CLIENT_SECRET", "given-in-the-environment")
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    (mounted / "HDHUB_PORTAL_MASTER_KEY").write_text("from-a-secret")
    local_secrets.ensure(tmp_path / "var")
    assert os.environ["HDHUB_SERVICE_CLIENT_SECRET"] == "given-in-the-environment"
    assert "HDHUB_PORTAL_MASTER_KEY" not in os.environ  # the settings read the mounted file
