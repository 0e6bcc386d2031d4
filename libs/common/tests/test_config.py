"""Settings read from mounted Secrets: every key of a Secret is a file in HDHUB_SECRETS_DIR."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = """
import json
from hdhub.common.config import platform
from hdhub.registrations.settings import RegistrationsSettings
s = RegistrationsSettings()
print(json.dumps({"database_url": s.database_url, "secret_key": s.secret_key,
                  "redis_url": platform().redis_url}))
"""


def test_service_and_platform_settings_are_read_from_files_in_the_secrets_dir(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "HDHUB_REGISTRATIONS_DATABASE_URL").write_text("postgresql+psycopg://u:p@db/registrations")
    (secrets / "HDHUB_REGISTRATIONS_SECRET_KEY").write_text("s3cret-from-a-file")
    (secrets / "HDHUB_REDIS_URL").write_text("redis://redis:6379/0")
    (secrets / "HDHUB_SERVICE_CLIENT_SECRET").write_text("a-random-service-secret")
    # In production registrations also refuses to start without the central platform's key.
    (secrets / "HDHUB_REGISTRATIONS_CENTRAL_PUBLIC_KEY").write_text("-----BEGIN PUBLIC KEY-----\n...")
    # And the key its exports are encrypted with at rest.
    (secrets / "HDHUB_REGISTRATIONS_MASTER_KEY").write_text(base64.b64encode(bytes(range(32))).decode())
    env = {k: v for k, v in os.environ.items() if not k.startswith("HDHUB_")}
    env |= {"HDHUB_SECRETS_DIR": str(secrets), "HDHUB_ENVIRONMENT": "production"}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "database_url": "postgresql+psycopg://u:p@db/registrations",
        "secret_key": "s3cret-from-a-file",
        "redis_url": "redis://redis:6379/0",
    }


def test_production_refuses_to_start_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pod would keep its own revocations, sign-in counters and locks: a token revoked on
    one replica would still open the others."""
    from hdhub.common.config import PlatformSettings

    monkeypatch.delenv("HDHUB_REDIS_URL", raising=False)
    monkeypatch.setenv("HDHUB_ENVIRONMENT", "production")
    monkeypatch.setenv("HDHUB_SERVICE_CLIENT_SECRET", "a-real-service-secret")
    with pytest.raises(ValueError, match="HDHUB_REDIS_URL is unset"):
        PlatformSettings()
    monkeypatch.setenv("HDHUB_REDIS_URL", "redis://redis:6379/0")
    assert PlatformSettings().redis_url == "redis://redis:6379/0"
