"""nippin's settings: production refuses to start without the master key of the messages."""

from __future__ import annotations

import base64

import pytest

from hdhub.common.config import platform
from hdhub.nippin.settings import NippinSettings


def test_production_needs_the_nippin_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDHUB_ENVIRONMENT", "production")
    monkeypatch.setenv("HDHUB_NIPPIN_SECRET_KEY", "a-real-secret")
    # Production's other refusals, each naming its own setting, are tested apart:
    monkeypatch.setenv("HDHUB_NIPPIN_DATABASE_URL", "postgresql+psycopg://nippin@db/nippin")
    monkeypatch.setenv("HDHUB_OBJECT_STORE_URL", "s3://hdhub")
    monkeypatch.setenv("HDHUB_SERVICE_CLIENT_SECRET", "a-real-client-secret")
    monkeypatch.setenv("HDHUB_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.delenv("HDHUB_NIPPIN_MASTER_KEY", raising=False)  # a test stack may have set one
    platform.cache_clear()
    try:
        with pytest.raises(ValueError, match="HDHUB_NIPPIN_MASTER_KEY is unset or a placeholder"):
            NippinSettings()
        monkeypatch.setenv("HDHUB_NIPPIN_MASTER_KEY", base64.b64encode(b"k" * 32).decode())
        assert len(NippinSettings().master_keys()[0]) == 32
    finally:
        platform.cache_clear()


def test_the_default_mycarenet_url_is_the_sims_stand_in_at_the_public_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HDHUB_PUBLIC_URL", "http://127.0.0.1:8123")
    monkeypatch.delenv("HDHUB_NIPPIN_MYCARENET_URL", raising=False)
    platform.cache_clear()
    try:
        assert NippinSettings().resolved_mycarenet_url() == "http://127.0.0.1:8123/sim/mycarenet/messages"
    finally:
        platform.cache_clear()
