"""The REST edge: every error is problem+json, and never a stack trace."""

from __future__ import annotations

import httpx
from fastapi import APIRouter

from hdhub.common.errors import Problem
from hdhub.common.web import create_app


def app_with(router: APIRouter) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(title="t", routers=[router])), base_url="http://t")


async def test_an_unexpected_error_is_a_bare_500_problem() -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail 85040216932")

    async with app_with(router) as client:
        r = await client.get("/boom")
        assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/internal"
        assert "secret" not in r.text and "Traceback" not in r.text
        assert (await client.get("/healthz")).status_code == 200  # the app goes on


async def test_problems_unknown_routes_and_oversized_bodies() -> None:
    router = APIRouter()

    @router.post("/things")
    async def things(body: dict[str, int]) -> None:
        raise Problem(409, "thing-exists", "That thing exists")

    async with app_with(router) as client:
        r = await client.post("/things", json={"a": 1})
        assert r.status_code == 409 and r.json() == {"type": "/problems/thing-exists", "title": "That thing exists", "status": 409, "instance": "/things"}
        r = await client.get("/nope")
        assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"
        r = await client.post("/things", json={"a": "x"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "a"
        r = await client.post("/things", content=b"{", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["type"] == "/problems/malformed-json"
        r = await client.post("/things", content=b"x" * (6 * 1024 * 1024), headers={"content-type": "application/json"})
        assert r.status_code == 413
