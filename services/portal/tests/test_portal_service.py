"""The portal's schema and settings."""

from __future__ import annotations

import base64

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hdhub.common.config import platform
from hdhub.portal.settings import PortalSettings
from hdhub.portal.store import Base
from tests.support.stack import Stack


async def test_migrations_match_the_models(stack: Stack) -> None:
    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with stack.service("portal").db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


def test_production_needs_a_real_master_key(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("HDHUB_ENVIRONMENT", "production")
    monkeypatch.setenv("HDHUB_PORTAL_SECRET_KEY", "a-real-secret")
    # Production's other refusals, each naming its own setting, are tested apart:
    monkeypatch.setenv("HDHUB_PORTAL_DATABASE_URL", "postgresql+psycopg://portal@db/portal")
    monkeypatch.setenv("HDHUB_OBJECT_STORE_URL", "s3://hdhub")
    monkeypatch.setenv("HDHUB_SERVICE_CLIENT_SECRET", "a-real-service-secret")
    monkeypatch.setenv("HDHUB_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.delenv("HDHUB_PORTAL_MASTER_KEY", raising=False)  # the stack's generated one
    platform.cache_clear()
    try:
        with pytest.raises(ValueError, match="MASTER_KEY is unset or a placeholder"):
            PortalSettings()
        key = base64.b64encode(bytes(range(32))).decode()
        monkeypatch.setenv("HDHUB_PORTAL_MASTER_KEY", key)
        assert PortalSettings().master_keys() == [bytes(range(32))]
        monkeypatch.setenv("HDHUB_PORTAL_MASTER_KEY", base64.b64encode(b"short").decode())
        with pytest.raises(ValueError, match="32 bytes"):
            PortalSettings().master_keys()
    finally:
        monkeypatch.undo()
        platform.cache_clear()


async def test_a_page_the_router_never_reached_is_refused_as_a_page(stack: Stack) -> None:
    """No such page, or a GET on a form's address: a browser gets the portal's error page
    in the person's language, with the page's security headers; an API client problem+json."""
    html = {"Accept": "text/html,application/xhtml+xml", "Accept-Language": "fr"}
    for path, status in (("/portal/operator/nonexistent", 404), ("/portal/operator/deliveries/retry", 405)):
        r = await stack.client.get(path, headers=html)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert "Content-Security-Policy" in r.headers and '<html lang="fr"' in r.text
    r = await stack.client.get("/portal/operator/nonexistent", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    r = await stack.client.get("/api/v1/nonexistent", headers=html)
    assert r.headers["content-type"].startswith("application/problem+json")  # not a page's address
