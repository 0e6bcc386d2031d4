"""Fixtures shared by every test folder: the in-process stack on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.support.stack import Stack, free_port, running_stack

# Property tests judge answers, not speed (the benches in bench/ do): on a loaded machine
# one slow example must not fail a run with hypothesis's 200 ms deadline or its
# too-slow health check.
settings.register_profile("hdhub", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hdhub")


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """Identity and registrations with workers, migrated and seeded, on each backend."""
    async with running_stack(request.param, tmp_path_factory.mktemp(request.param)) as s:
        yield s


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """A real S3-speaking server (moto's) on loopback, as ``s3://key:secret@host:port/bucket``."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"s3://hdhub-test:hdhub-test-secret@127.0.0.1:{port}/hdhub-test?region=us-east-1"
    finally:
        server.stop()
