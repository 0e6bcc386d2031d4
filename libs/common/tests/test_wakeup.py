"""Worker wake-ups: in-process, and across processes through a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as redis

from hdhub.common.wakeup import Wakeup

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_up() -> str:
    client = redis.from_url(REDIS_URL)
    try:
        await client.ping()
    finally:
        await client.aclose()
    return REDIS_URL


async def test_local_notify_wakes_a_waiter_at_once() -> None:
    wake = Wakeup("hdhub:test:local")
    waiter = asyncio.create_task(wake.wait(5))
    await asyncio.sleep(0.01)
    wake.notify()
    started = time.monotonic()
    assert await waiter is True
    assert time.monotonic() - started < 0.5


async def test_wait_times_out_without_a_notify() -> None:
    assert await Wakeup("hdhub:test:quiet").wait(0.05) is False


async def test_a_notify_in_one_process_wakes_a_worker_in_another_through_redis(redis_up: str) -> None:
    channel = f"hdhub:test:{uuid.uuid4().hex}"
    worker, api = Wakeup(channel, redis_up), Wakeup(channel, redis_up)
    try:
        assert await worker.wait(0.2) is False  # subscribes
        waiter = asyncio.create_task(worker.wait(5))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        api.notify()
        assert await waiter is True
        assert time.monotonic() - started < 1
    finally:
        await worker.close()
        await api.close()


async def test_redis_down_costs_only_latency() -> None:
    wake = Wakeup("hdhub:test:down", "redis://127.0.0.1:1/0")
    try:
        wake.notify()  # must not raise
        assert await wake.wait(0.1) is True  # the local waiter still wakes
        assert await wake.wait(0.1) is False
    finally:
        await wake.close()


async def _published(pubsub: redis.client.PubSub, seconds: float) -> int:
    received, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05):
            received += 1
    return received


async def test_a_burst_of_notifies_costs_one_publish_and_a_later_notify_another(redis_up: str) -> None:
    channel = f"hdhub:test:{uuid.uuid4().hex}"
    listener = redis.from_url(redis_up)
    pubsub = listener.pubsub()
    await pubsub.subscribe(channel)
    api = Wakeup(channel, redis_up)
    try:
        for _ in range(50):  # 50 commits before the first publish left
            api.notify()
        assert await _published(pubsub, 0.5) == 1
        api.notify()
        await asyncio.sleep(0)  # its publish is on its way...
        api.notify()  # ...so this one gets a publish of its own, after it
        assert await _published(pubsub, 0.5) == 2
    finally:
        await api.close()
        await pubsub.aclose()
        await listener.aclose()
