"""Each service's Alembic history builds exactly the schema its models declare."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.support.stack import Stack


@pytest.mark.parametrize("service", ["identity", "registrations"])
async def test_migrations_match_the_models(stack: Stack, service: str) -> None:
    svc = stack.service(service)
    metadata = __import__(f"hdhub.{service}.store", fromlist=["Base"]).Base.metadata

    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)

    async with svc.db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []
