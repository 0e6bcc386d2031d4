"""A problem's ``type`` URI resolves to a page describing it (RFC 9457 section 3.1.1)."""

from __future__ import annotations

import httpx
from fastapi import APIRouter

from hdhub.common.errors import Problem
from hdhub.common.web import create_app


def _client() -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/things")
    async def things() -> None:
        raise Problem(409, "thing-exists-here", "That thing exists")

    app = create_app(title="t", routers=[router])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_an_answered_type_resolves_to_its_page_in_html_and_json() -> None:
    async with _client() as c:
        problem = (await c.get("/api/v1/registrations/x")).json()  # no such route: a 404 problem
        page = await c.get(problem["type"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Not found" in page.text or "not the caller" in page.text
        as_json = (await c.get("/problems/stale-version", headers={"Accept": "application/json"})).json()
        assert as_json["status"] == 412 and "ETag" in as_json["meaning"]


async def test_a_slug_missing_from_the_catalogue_resolves_once_answered() -> None:
    async with _client() as c:
        assert (await c.get("/problems/thing-exists-here")).status_code == 404
        problem = (await c.get("/things")).json()
        page = (await c.get(problem["type"], headers={"Accept": "application/json"})).json()
        assert page == {
            "type": "/problems/thing-exists-here",
            "status": 409,
            "title": "That thing exists",
            "meaning": "See the answer's `title` and `detail`.",
        }


async def test_an_unknown_type_is_a_404_problem() -> None:
    async with _client() as c:
        r = await c.get("/problems/no-such-problem-at-all")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
