"""What a worker tells an SRE: job metrics by kind and outcome, a heartbeat from its claim
loop that drives its liveness endpoint, and, while its database is down, a useful log line
now and then rather than an exception type twice a second."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase

from hdhub.common import health, metrics
from hdhub.common.db import TYPE_MAP, Database
from hdhub.common.jobs import JobColumns, JobQueue
from hdhub.common.runtime import run_worker
from hdhub.common.wakeup import Wakeup

SERVICE = "worker-test"


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Job(JobColumns, Base):
    __tablename__ = "jobs"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[JobQueue]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'j.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield JobQueue(database, Job, max_attempts=2, service=SERVICE)
    await database.dispose()


async def test_jobs_are_counted_claimed_and_ended_by_kind_and_outcome(queue: JobQueue) -> None:
    def ended(kind: str, outcome: str) -> float:
        return sample("hdhub_jobs_ended_total", service=SERVICE, kind=kind, outcome=outcome)

    async with queue.db.system_session() as session:
        await queue.enqueue_many(session, "send", [{"subject_id": s} for s in ("a", "b", "c")])
    claimed = {j.subject_id: j.id for j in await queue.claim(["send"])}
    assert sample("hdhub_jobs_claimed_total", service=SERVICE, kind="send") == 3
    async with queue.db.system_session() as session:
        await queue.finish_many(session, [claimed["a"]])
        await queue.defer(session, claimed["b"], until=_now())
    assert await queue.fail(claimed["c"], "boom") == "queued"
    assert (ended("send", "done"), ended("send", "deferred"), ended("send", "failed")) == (1, 1, 1)
    # The failed one again, past its back-off: this time it is parked.
    again = await queue.claim(["send"], now=_now() + timedelta(hours=2))
    assert {j.subject_id for j in again} == {"b", "c"}
    by_subject = {j.subject_id: j.id for j in again}
    assert await queue.fail(by_subject["c"], "boom again") == "parked"
    assert ended("send", "parked") == 1
    assert sample("hdhub_job_duration_seconds_count", service=SERVICE, kind="send", outcome="done") == 1


def _now() -> Any:
    from hdhub.common.db import utcnow

    return utcnow()


async def test_the_claim_loop_beats_and_a_stopped_one_fails_liveness() -> None:
    """The worker's /healthz answers from the claim loop's heartbeat: 200 while it goes
    round, 503 once it has not for ``stale_after`` seconds; any other path is a 404."""
    name = "beating-test"
    stop = asyncio.Event()
    steps = 0

    async def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    loop = asyncio.ensure_future(run_worker(name, step, wake=Wakeup(None), poll_seconds=0.02, stop=stop))
    app = metrics.worker_app([name], stale_after=0.3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as client:
        await asyncio.sleep(0.1)
        assert steps >= 2
        beat = sample("hdhub_worker_heartbeat_timestamp_seconds", service=name)
        assert beat > 0
        assert (await client.get("/healthz")).status_code == 200
        scrape = await client.get("/metrics")
        assert scrape.status_code == 200 and "hdhub_worker_heartbeat_timestamp_seconds" in scrape.text
        for path in ("/", "/anything", "/metrics/x", "/healthz/deep"):
            assert (await client.get(path)).status_code == 404, path
        stop.set()  # the loop stops: no more heartbeats
        await loop
        await asyncio.sleep(0.4)
        r = await client.get("/healthz")
        assert r.status_code == 503 and r.json()["status"] == "stuck"


async def test_a_workers_readiness_is_its_database_and_its_liveness_ignores_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/readyz on the metrics port answers for the service's database: 200 while it
    answers, 503 naming why while it does not; /healthz stays 200 meanwhile (the claim loop
    keeps going round with back-off), so an outage takes workers out of rollouts' count
    without restarting them."""
    name = "readiness-test"
    up = Database(f"sqlite+aiosqlite:///{tmp_path / 'up.db'}")
    down = Database("postgresql+psycopg://postgres@127.0.0.1:1/nothing")  # nothing listens there
    database = up
    # Back-off well under stale_after, as in production (at most 30 s against 300 s).
    monkeypatch.setattr(health.FailureLog, "backoff", lambda self, poll: 0.05)

    async def readiness() -> dict[str, str]:
        return {name: await health.database_state(database)}

    stop = asyncio.Event()
    loop = asyncio.ensure_future(
        run_worker(name, lambda: _query(database), wake=Wakeup(None), poll_seconds=0.02, stop=stop)
    )
    app = metrics.worker_app([name], stale_after=0.5, readiness=readiness)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json() == {"status": "ok", "checks": {name: "ok"}}
            database = down
            unready = await client.get("/readyz")
            assert unready.status_code == 503 and unready.json()["status"] == "unavailable"
            assert unready.json()["checks"][name].startswith("database: OperationalError")
            await asyncio.sleep(0.7)  # longer than stale_after, the database still down
            assert (await client.get("/healthz")).status_code == 200
            database = up
            assert (await client.get("/readyz")).status_code == 200
    finally:
        stop.set()
        await loop
        await up.dispose()
        await down.dispose()


async def _query(database: Database) -> int:
    from sqlalchemy import text

    async with database.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return 0


async def test_a_database_outage_is_logged_once_then_now_and_then_with_its_cause(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "outage-test"
    stop = asyncio.Event()
    calls = 0
    down = True

    async def step() -> int:
        nonlocal calls
        calls += 1
        if down:
            raise OperationalError(
                "SELECT * FROM jobs WHERE x = %(p)s",
                {"p": "85040216932"},
                ConnectionRefusedError(111, "connection refused by 127.0.0.1:5432"),
            )
        return 0

    # Back-off from 10 ms doubling to 40 ms at most; a "still failing" line every 0.2 s.
    monkeypatch.setattr(health.FailureLog, "backoff", lambda self, poll: min(0.01 * 2**self.failures, 0.04))
    original_init = health.FailureLog.__init__
    monkeypatch.setattr(
        health.FailureLog,
        "__init__",
        lambda self, service, every=0.2: original_init(self, service, every=every),
    )
    with caplog.at_level(logging.INFO, logger="hdhub.health"):
        loop = asyncio.ensure_future(run_worker(name, step, wake=Wakeup(None), poll_seconds=0.01, stop=stop))
        await asyncio.sleep(0.5)
        down = False
        await asyncio.sleep(0.1)
        stop.set()
        await loop
    lines = [r for r in caplog.records if r.name == "hdhub.health"]
    messages = [r.getMessage() for r in lines]
    assert calls > 8  # it kept trying...
    assert messages[0] == "worker step failed; retrying with back-off"
    assert 1 <= messages.count("worker step still failing") <= 3  # ...but said so rarely
    assert messages[-1] == "worker step works again"
    first = lines[0]
    assert first.error == "ConnectionRefusedError: [Errno 111] connection refused by 127.0.0.1:5432"  # type: ignore[attr-defined]
    assert first.levelno == logging.ERROR and first.service == name  # type: ignore[attr-defined]
    assert "85040216932" not in caplog.text and "SELECT" not in caplog.text


def test_backoff_doubles_from_the_poll_interval_up_to_a_ceiling() -> None:
    failures = health.FailureLog("backoff-test")
    assert failures.backoff(0.5) == 0.5
    waits = []
    for _ in range(8):
        failures.failed(RuntimeError("x"))
        waits.append(failures.backoff(0.5))
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0] and waits[-1] == 30.0


async def test_domain_gauges_say_when_they_were_last_refreshed(tmp_path: Path) -> None:
    """While a service's database is down its domain gauges keep their last values; the
    freshness timestamp stops moving and the failures are counted, so an alert sees it."""
    name = "freshness-test"
    up = True

    async def refresh() -> None:
        if not up:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "refused"))

    metrics.register_domain_metrics(name, refresh)
    try:
        await metrics.refresh_domain_metrics(force=True)
        fresh = sample("hdhub_domain_metrics_refreshed_timestamp_seconds", service=name)
        assert fresh > 0
        up = False
        await asyncio.sleep(0.01)
        await metrics.refresh_domain_metrics(force=True)
        assert sample("hdhub_domain_metrics_refreshed_timestamp_seconds", service=name) == fresh
        assert sample("hdhub_domain_metrics_refresh_failures_total", service=name) == 1
    finally:
        metrics.unregister_domain_metrics(name)
    # Gone with it: no stale-metrics alert for gauges nobody refreshes any more.
    assert (
        REGISTRY.get_sample_value("hdhub_domain_metrics_refreshed_timestamp_seconds", {"service": name})
        is None
    )


async def test_build_info_and_the_database_pool_are_exported(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    metrics.register_db_pool("pool-test", database)
    try:
        async with database.engine.connect():
            assert sample("hdhub_db_pool_connections", service="pool-test", state="in_use") == 1
        assert sample("hdhub_db_pool_connections", service="pool-test", state="max") == 10
    finally:
        await database.dispose()
    build = [s for m in REGISTRY.collect() if m.name == "hdhub_build_info" for s in m.samples]
    assert len(build) == 1 and build[0].value == 1 and build[0].labels["version"]


@pytest.mark.parametrize("failing", [False, True], ids=["polling", "backing-off"])
async def test_a_worker_told_to_stop_ends_its_wait_at_once(failing: bool) -> None:
    """A 30 s poll (or a failure's back-off) does not hold a stopping process: before, one
    worker's wait kept `hdhub run all` from ending for 10 s after SIGTERM."""

    async def step() -> int:
        if failing:
            raise OperationalError("SELECT 1", {}, Exception("down"))
        return 0

    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(SERVICE, step, wake=Wakeup("test:stop"), poll_seconds=30.0, stop=stop)
    )
    await asyncio.sleep(0.1)  # the worker is in its wait
    started = asyncio.get_running_loop().time()
    stop.set()
    await asyncio.wait_for(worker, timeout=5)
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_claim_lasts_the_installations_lease(
    monkeypatch: pytest.MonkeyPatch, queue: JobQueue
) -> None:
    from hdhub.common.config import platform

    monkeypatch.setenv("HDHUB_JOB_LEASE_SECONDS", "15")
    platform.cache_clear()
    try:
        short = JobQueue(queue.db, Job, service=SERVICE)
        async with queue.db.system_session() as session:
            await short.enqueue_many(session, "send", [{"subject_id": "a"}])
        before = _now()
        (job,) = await short.claim(["send"])
        assert short.lease == timedelta(seconds=15)
        assert job.lease_until - before < timedelta(seconds=16)
        # Taken over once the claim lapsed, not before.
        assert await short.claim(["send"], now=before + timedelta(seconds=14)) == []
        assert len(await short.claim(["send"], now=before + timedelta(seconds=16))) == 1
    finally:
        monkeypatch.delenv("HDHUB_JOB_LEASE_SECONDS")
        platform.cache_clear()
