"""Fixtures shared by every test folder: the in-process stack on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Identity and registrations with workers, migrated and seeded, on each backend."""
    async with running_stack(request.param, tmp_path_factory.mktemp(request.param)) as s:
        yield s
