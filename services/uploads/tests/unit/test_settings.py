"""The uploads service's settings: what production refuses to start without."""

from __future__ import annotations

import base64

import pytest

from hdhub.common.config import platform
from hdhub.uploads.settings import UploadsSettings


def test_production_needs_the_uploads_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDHUB_ENVIRONMENT", "production")
    monkeypatch.setenv("HDHUB_UPLOADS_SECRET_KEY", "a-real-secret")
    # Production's other refusals, each naming its own setting, are tested apart:
    monkeypatch.setenv("HDHUB_UPLOADS_DATABASE_URL", "postgresql+psycopg://uploads@db/uploads")
    monkeypatch.setenv("HDHUB_OBJECT_STORE_URL", "s3://hdhub")
    monkeypatch.setenv("HDHUB_SERVICE_CLIENT_SECRET", "a-real-service-secret")  # checked first
    monkeypatch.setenv("HDHUB_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.delenv("HDHUB_UPLOADS_MASTER_KEY", raising=False)  # a test stack may have set one
    platform.cache_clear()
    try:
        with pytest.raises(ValueError, match="HDHUB_UPLOADS_MASTER_KEY is unset or a placeholder"):
            UploadsSettings()
        monkeypatch.setenv("HDHUB_UPLOADS_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
        monkeypatch.setenv("HDHUB_UPLOADS_SOURCE_RETENTION_DAYS", "2")
        settings = UploadsSettings()
        assert settings.master_keys() == [bytes(range(32))] and settings.source_retention_days == 2
    finally:
        monkeypatch.undo()
        platform.cache_clear()
