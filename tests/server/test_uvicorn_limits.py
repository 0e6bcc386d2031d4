"""`hdhub run` serves with uvicorn on h11 with the request head capped (issue 12 item 3):
a 1 MB header is refused by the server itself with 431 problem+json, before the app."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, WebSocket

from hdhub.cli.http import server_config
from hdhub.common.web import create_app
from tests.support.stack import free_port


async def raw_request(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
    except ConnectionError:
        pass  # the server may answer and close before reading all of it
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    headers_part, _, body = rest.partition(b"\r\n\r\n")
    headers = dict(line.decode().lower().split(": ", 1) for line in headers_part.split(b"\r\n") if line)
    return int(status_line.split()[1]), headers, body


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    """``app`` served as `hdhub run` serves (``server_config``) on a free port, until the end."""
    port = free_port()
    server = uvicorn.Server(
        server_config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task


async def test_a_1_mb_header_is_refused_by_the_server_with_431() -> None:
    router = APIRouter()

    @router.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    async with serving(create_app(title="t", routers=[router])) as port:
        ok = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Fine: " + b"x" * 8000 + b"\r\n\r\n"
        status, _, body = await raw_request(port, ok)
        assert status == 200 and json.loads(body) == {"hello": "world"}
        big = b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + b"x" * (1 << 20) + b"\r\n\r\n"
        # The first 64 KiB of it: the answer comes once 32 KiB are in; had the client gone
        # on sending, the server's close would reset the connection before it read the 431.
        status, headers, body = await raw_request(port, big[: 64 * 1024])
        assert status == 431 and headers["content-type"] == "application/problem+json"
        assert json.loads(body)["type"] == "/problems/headers-too-large"
        status, _, _ = await raw_request(port, b"NONSENSE\r\n\r\n")
        assert status == 400  # any other malformed request: uvicorn's own answer


async def test_a_request_still_arriving_is_cut_after_the_drain(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On SIGTERM a request in flight (a file still arriving) gets HDHUB_HTTP_DRAIN_SECONDS,
    then its connection is closed and the server stops: it waited for ever before (the
    trial's slow upload held Ctrl-C for 35 s), and Kubernetes would kill it mid-way."""
    from fastapi import Request

    from hdhub.common.config import platform

    monkeypatch.setenv("HDHUB_HTTP_DRAIN_SECONDS", "1")
    platform.cache_clear()
    router = APIRouter()

    @router.put("/slow")
    async def slow(request: Request) -> dict[str, int]:
        return {"read": sum([len(chunk) async for chunk in request.stream()])}

    port = free_port()
    try:
        config = server_config(
            create_app(title="t", routers=[router]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    finally:
        platform.cache_clear()
    assert config.timeout_graceful_shutdown == 1
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PUT /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    await writer.drain()  # the rest never comes
    await asyncio.sleep(0.2)
    started = asyncio.get_running_loop().time()
    server.should_exit = True
    await asyncio.wait_for(serving, timeout=10)
    assert asyncio.get_running_loop().time() - started < 5
    assert await asyncio.wait_for(reader.read(), timeout=5) is not None  # closed, not left hanging
    writer.close()


async def test_a_websocket_is_not_compressed_even_when_the_browser_offers_it() -> None:
    """Browsers offer permessage-deflate; the live form's messages carry the CSRF token
    beside what the person typed, and compressing a secret with attacker-influenced text
    leaks it by the size (CRIME, BREACH): the server declines the extension."""
    from websockets.asyncio.client import connect

    app = FastAPI()  # the server's part alone (create_app's middleware has its own rules)

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    async with serving(app) as port, connect(f"ws://127.0.0.1:{port}/echo", compression="deflate") as socket:
        assert "permessage-deflate" in socket.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in socket.response.headers
        await socket.send("csrf_token=secret&text=secre")
        assert await socket.recv() == "csrf_token=secret&text=secre"
