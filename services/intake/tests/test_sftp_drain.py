"""SFTP on shutdown, with real clients (paramiko) against a second SFTP listener on the test
stack's intake: new sessions are refused, a running transfer finishes and is stored, idle
sessions are closed with a message, and at the end of the grace period the sessions left
are closed too, their open files not stored."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import paramiko
import pytest

from hdhub.intake.sftp import SHUTDOWN_MESSAGE, SftpEdge, host_key, start_sftp
from services.intake.tests.support import LAB_LOGIN, LAB_PASSWORD, eventually, file_named, unique, vcf
from tests.support.stack import Stack


@pytest.fixture
async def edge(stack: Stack, tmp_path: Path) -> AsyncIterator[SftpEdge]:
    """An SFTP listener of its own, on the stack's intake: draining it leaves the stack's be."""
    intake = stack.service("intake")
    started = await start_sftp(intake.files, host="127.0.0.1", port=0, key=host_key(tmp_path / "host_key"))
    yield started
    if not started.draining:
        await started.drain(0)


class Disconnects(logging.Handler):
    """What paramiko's transports were told when the server closed them."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Disconnect"):
            self.messages.append(record.getMessage())


@pytest.fixture
def disconnects() -> Iterator[Disconnects]:
    handler = Disconnects()
    logger = logging.getLogger("paramiko.transport")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def connect(port: int) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.connect(username=LAB_LOGIN, password=LAB_PASSWORD)
    client = paramiko.SFTPClient.from_transport(transport)
    assert client is not None
    return transport, client


def refused_to_connect(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_a_drain_refuses_new_sessions_and_lets_a_running_transfer_finish(
    stack: Stack, edge: SftpEdge, disconnects: Disconnects
) -> None:
    port, name = edge.get_port(), unique() + ".vcf"
    content = vcf(rows=500)
    busy, client = await asyncio.to_thread(connect, port)
    idle, _ = await asyncio.to_thread(connect, port)
    handle = await asyncio.to_thread(client.open, f"/NGS/{name}", "w")
    await asyncio.to_thread(handle.write, content[:4096])
    await asyncio.to_thread(handle.flush)
    try:
        drained = asyncio.create_task(edge.drain(30))
        await eventually(lambda: _true(edge.draining))
        assert await asyncio.to_thread(refused_to_connect, port)
        # The idle session is closed at once, told why.
        await eventually(lambda: _true(not idle.is_active()))
        # The running transfer goes on and completes; nothing new may start on its session.
        await asyncio.to_thread(handle.write, content[4096:])
        await asyncio.to_thread(handle.close)
        with pytest.raises(OSError, match="restarting"):
            await asyncio.to_thread(client.open, f"/NGS/{unique()}.vcf", "w")
        # The move into Finished that follows a transfer still has time.
        await asyncio.to_thread(client.rename, f"/NGS/{name}", f"/NGS/Finished/{name}")
        await asyncio.wait_for(drained, 10)  # well before the 30 s: no session was left busy
    finally:
        busy.close()
        idle.close()
    row = await file_named(stack, name)
    assert row["state"] == "accepted" and row["size"] == len(content)
    assert not busy.is_active()
    assert any(SHUTDOWN_MESSAGE in m for m in disconnects.messages), disconnects.messages


async def test_at_the_end_of_the_grace_period_open_files_are_cut_and_not_stored(
    stack: Stack, edge: SftpEdge, disconnects: Disconnects
) -> None:
    intake = stack.service("intake")
    port, name = edge.get_port(), unique() + ".vcf"
    transport, client = await asyncio.to_thread(connect, port)
    handle = await asyncio.to_thread(client.open, f"/NGS/{name}", "w")
    await asyncio.to_thread(handle.write, vcf(rows=200))
    await asyncio.to_thread(handle.flush)
    try:
        started = asyncio.get_running_loop().time()
        await edge.drain(0.5)  # the client never closes its file
        assert asyncio.get_running_loop().time() - started < 5
        await eventually(lambda: _true(not transport.is_active()))
    finally:
        transport.close()

    async def aborted() -> dict | None:
        row = await file_named(stack, name)
        return row if row and row["state"] == "aborted" else None

    row = await eventually(aborted)
    assert row["rule"] == "connection-lost" and "nothing was stored" in row["reason"]
    assert [o async for o in intake.objects.list(f"intake/drop/lab-demo/NGS/{row['id']}")] == []
    assert any(SHUTDOWN_MESSAGE in m for m in disconnects.messages), disconnects.messages


async def test_a_drain_without_sessions_returns_at_once(edge: SftpEdge) -> None:
    port = edge.get_port()
    await asyncio.wait_for(edge.drain(30), 5)
    assert await asyncio.to_thread(refused_to_connect, port)


async def _true(value: bool) -> bool:
    return value
