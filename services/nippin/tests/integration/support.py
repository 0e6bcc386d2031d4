"""Helpers for nippin's integration tests: a pacemaker registration submitted as the nurse,
the NIPPIN Manager's view, and the worker driven until something holds."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from hdhub.nippin.mycarenet import Rest
from hdhub.nippin.worker import process_jobs
from tests.support.samples import VALID, ssin
from tests.support.stack import Stack

ORG = "az-demo"
MANAGER = "billing@az-demo.test"
NURSE = "nurse@az-demo.test"
_days = itertools.count(1)


def implant(**overrides: str) -> dict[str, str]:
    """A valid pacemaker record for a patient and day no other test uses."""
    values = dict(VALID["PACEMAKER"])
    values["IDC_PAT"] = ssin("620101")
    day = next(_days)
    values["DT_IMPLANT"] = f"{(day % 28) + 1:02d}/{(day // 28) % 12 + 1:02d}/2025"
    values.update(overrides)
    return values


async def submit(stack: Stack, values: dict[str, str]) -> dict[str, Any]:
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": ORG, "dcd": "PACEMAKER", "values": values, "submit": True},
        headers=await stack.headers(NURSE),
    )
    assert r.status_code in (200, 201, 202), r.text
    return dict(r.json())


async def messages_of(stack: Stack, registration_id: str) -> list[dict[str, Any]]:
    r = await stack.client.get(
        f"/api/v1/nippin/{ORG}/messages",
        params={"registration_id": registration_id},
        headers=await stack.headers(MANAGER),
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def until(
    check: Callable[[], Awaitable[Any]], *, stack: Stack, timeout: float = 30.0, now: Any = None
) -> Any:
    """Drive both workers until ``check`` gives something truthy."""
    nippin = stack.service("nippin")
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await stack.service("registrations").work_step()
        await process_jobs(nippin, now() if callable(now) else now)
        if nippin.settings.interface == "FILE_SYSTEM":
            await asyncio.to_thread(stack.service("sim").mycarenet.collect)
            await nippin.messages.collect_answers(now() if callable(now) else now)
        await asyncio.sleep(0.05)


async def message_in(stack: Stack, registration_id: str, *statuses: str, **kwargs: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = await messages_of(stack, registration_id)
        return found[0] if found and found[0]["status"] in statuses else None

    return dict(await until(check, stack=stack, **kwargs))


async def as_operator(stack: Stack, method: str, path: str, **kwargs: Any) -> Any:
    r = await stack.client.request(method, path, headers=await stack.headers("operator@hdhub.test"), **kwargs)
    assert r.status_code == 200, r.text
    return r.json()


@asynccontextmanager
async def mycarenet(stack: Stack, mode: str = "accept", **settings: Any) -> AsyncIterator[Any]:
    """nippin posting to the sim's stand-in over the test client, the stand-in in ``mode``,
    and nippin's settings changed for the block."""
    service = stack.service("nippin")
    saved = {k: getattr(service.settings, k) for k in settings}
    rest = service.messages.rest
    service.messages.rest = Rest(
        "http://testserver/sim/mycarenet/messages",
        timeout=2.0,
        transport=stack.client._transport,  # type: ignore[attr-defined]
    )
    for k, v in settings.items():
        setattr(service.settings, k, v)
    await as_operator(stack, "PUT", "/sim/mycarenet", json={"mode": mode, "hold_seconds": 5})
    try:
        yield service
    finally:
        await as_operator(stack, "PUT", "/sim/mycarenet", json={"mode": "accept"})
        for k, v in saved.items():
            setattr(service.settings, k, v)
        service.messages.rest = rest
