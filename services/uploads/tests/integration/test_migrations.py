"""The uploads service's Alembic history builds exactly the schema its models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hdhub.uploads.store import Base
from tests.support.stack import Stack


async def test_uploads_migrations_match_the_models(stack: Stack) -> None:
    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with stack.service("uploads").db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
