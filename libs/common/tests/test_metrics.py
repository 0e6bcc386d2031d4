"""HTTP metrics by route template, and the /metrics app."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from hdhub.common.metrics import http_metrics_middleware, metrics_app

SERVICE = "metrics-test"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": SERVICE, **labels}) or 0.0


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()

    @app.get("/api/v1/registrations/{registration_id}")
    async def get_registration(registration_id: str) -> dict[str, str]:
        return {"id": registration_id}

    @app.get("/api/v1/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    sub = FastAPI()

    @sub.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    app.mount("/sub", sub)
    app.mount("/metrics", metrics_app())
    http_metrics_middleware(app, SERVICE)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://hdhub.test")


async def test_requests_are_counted_by_route_template_never_by_raw_path(client: httpx.AsyncClient) -> None:
    route = "/api/v1/registrations/{registration_id}"
    before = _sample("http_server_requests_total", method="GET", route=route, status="200")
    async with client:
        await client.get("/api/v1/registrations/85040216932")
        await client.get("/api/v1/registrations/reg-2")
    assert _sample("http_server_requests_total", method="GET", route=route, status="200") - before == 2
    assert _sample("http_server_request_duration_seconds_count", method="GET", route=route) >= 2
    exposition = "\n".join(str(m) for m in REGISTRY.collect())
    assert "85040216932" not in exposition


async def test_unknown_paths_share_one_label(client: httpx.AsyncClient) -> None:
    before = _sample("http_server_requests_total", method="GET", route="<unmatched>", status="404")
    async with client:
        await client.get("/nothing/here/1")
        await client.get("/nothing/here/2")
    assert (
        _sample("http_server_requests_total", method="GET", route="<unmatched>", status="404") - before == 2
    )


async def test_routes_of_mounted_apps_keep_their_prefix(client: httpx.AsyncClient) -> None:
    before = _sample("http_server_requests_total", method="GET", route="/sub/items/{item_id}", status="200")
    async with client:
        assert (await client.get("/sub/items/7")).status_code == 200
    assert (
        _sample("http_server_requests_total", method="GET", route="/sub/items/{item_id}", status="200")
        - before
        == 1
    )


async def test_unhandled_errors_are_counted_as_errors(client: httpx.AsyncClient) -> None:
    before = _sample("http_server_request_errors_total", method="GET", route="/api/v1/broken")
    async with client:
        response = await client.get("/api/v1/broken")
    assert response.status_code == 500
    assert _sample("http_server_request_errors_total", method="GET", route="/api/v1/broken") - before == 1


async def test_metrics_app_answers_a_prometheus_scrape(client: httpx.AsyncClient) -> None:
    async with client:
        await client.get("/api/v1/registrations/1")
        response = await client.get("/metrics/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "http_server_requests_total" in response.text


async def test_probes_and_scrapes_are_left_out_of_the_request_metrics() -> None:
    """An API failing every real request must not hide behind its probes' 200s."""
    from hdhub.common.web import create_app

    service = "probes-test"
    app = create_app(title="t", routers=[], service=service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200
        await client.get("/nothing")
    routes = {
        s.labels["route"]
        for m in REGISTRY.collect()
        if m.name == "http_server_requests"
        for s in m.samples
        if s.labels.get("service") == service
    }
    assert routes == {"<unmatched>"}


async def test_service_is_the_hdhub_service_that_owns_the_route() -> None:
    """In one process (`hdhub run all`) as in a process per service, ``service`` names the
    hdhub service whose route answered, not the app's title."""
    import types

    from hdhub.common.web import create_app

    app = create_app(title="hdhub", routers=[], service="hdhub")
    fake = types.ModuleType("hdhub.registrations.fake_api")
    exec(  # a route defined in a module of the registrations package
        "from fastapi import APIRouter\nrouter = APIRouter()\n"
        "@router.get('/api/v1/owned-test')\nasync def owned() -> dict[str, str]:\n    return {}\n",
        fake.__dict__,
    )
    app.include_router(fake.router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/api/v1/owned-test")).status_code == 200
    assert (
        REGISTRY.get_sample_value(
            "http_server_requests_total",
            {"service": "registrations", "method": "GET", "route": "/api/v1/owned-test", "status": "200"},
        )
        == 1
    )
