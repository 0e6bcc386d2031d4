"""The worker reads the next batch in a thread while the current one is stored: a run
that stops early (lease lost, a crash in a test) must not leave that thread waiting for
chunks that will never come."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from hdhub.uploads.worker import SourceClosed, _Source


async def test_closing_the_source_releases_a_waiting_reader() -> None:
    source = _Source()
    release = asyncio.Event()

    async def stream() -> AsyncIterator[bytes]:
        yield b"first"
        await release.wait()  # the object store stalls: no more chunks for now
        yield b"never read"

    pump = asyncio.create_task(source.pump(stream()))
    got: list[bytes] = []
    ended: list[BaseException] = []

    def read() -> None:
        try:
            for chunk in source.chunks():
                got.append(chunk)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            ended.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(200):
        if got:
            break
        await asyncio.sleep(0.005)
    assert got == [b"first"] and reader.is_alive()  # waiting for the next chunk
    source.close()
    await asyncio.to_thread(reader.join, 5)
    assert not reader.is_alive()
    assert len(ended) == 1 and isinstance(ended[0], SourceClosed)
    pump.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pump


async def test_a_full_queue_is_bounded_and_closing_it_still_releases() -> None:
    source = _Source()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1024

    pump = asyncio.create_task(source.pump(endless()))
    await asyncio.sleep(0.05)
    assert source.queue.qsize() <= 4  # the pump waits; memory stays bounded
    source.close()
    chunks = source.chunks()
    with pytest.raises(SourceClosed):
        next(chunks)
    pump.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pump
