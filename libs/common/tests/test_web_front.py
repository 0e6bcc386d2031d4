"""What a newcomer meets first at the REST edge: API docs that work without internet and
get a token with Authorize, a start page, readiness, and list filters that refuse what
they do not know."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated

import httpx
from fastapi import APIRouter, Query

from hdhub.common.config import platform
from hdhub.common.web import CurrentPrincipal, Language, create_app


def issuer() -> str:
    """The configured issuer (the settings are cached per process: another test's stack
    may have set it)."""
    return platform().oidc_issuer


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


def api() -> APIRouter:
    router = APIRouter(prefix="/api/v1/things")

    @router.get("")
    async def things(
        principal: CurrentPrincipal,
        lang: Language,
        colour: Colour | None = None,
        page_size: Annotated[int, Query(alias="page-size")] = 10,
    ) -> list[str]:
        return []

    @router.get("/public")
    async def public(colour: Colour | None = None) -> list[str]:
        return [colour or ""]

    return router


def client(
    *routers: APIRouter, readiness: Callable[[], Awaitable[dict[str, str]]] | None = None
) -> httpx.AsyncClient:
    app = create_app(title="hdhub", routers=list(routers), readiness=readiness)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_docs_load_their_assets_from_the_installation_not_a_cdn() -> None:
    async with client(api()) as c:
        for page in ("/docs", "/redoc"):
            html = (await c.get(page)).text
            urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
            assert urls and all(u.startswith("/") for u in urls), (page, urls)
            for url in urls:
                r = await c.get(url)
                assert r.status_code == 200 and r.content, url
        assert len((await c.get("/docs/assets/swagger-ui-bundle.js")).content) > 100_000
        assert (
            "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'"
            in (await c.get("/docs")).text
        )
        assert (await c.get("/docs/oauth2-redirect")).status_code == 200


async def test_the_authorize_button_has_the_issuers_flows_and_every_guarded_route_uses_them() -> None:
    async with client(api()) as c:
        document = (await c.get("/openapi.json")).json()
        page = (await c.get("/docs")).text
    scheme = document["components"]["securitySchemes"]["oidc"]
    assert scheme["type"] == "oauth2"
    flows = scheme["flows"]
    token_url = f"{issuer()}/protocol/openid-connect/token"
    assert flows["clientCredentials"]["tokenUrl"] == token_url
    assert flows["password"]["tokenUrl"] == token_url
    assert flows["authorizationCode"]["authorizationUrl"] == f"{issuer()}/protocol/openid-connect/auth"
    # Global security: a guarded route inherits it, a public one says it takes no token.
    assert document["security"] == [{"oidc": []}]
    guarded = document["paths"]["/api/v1/things"]["get"]
    assert "security" not in guarded
    # Swagger UI sends the token itself: no "authorization" header to fill in by hand.
    assert "authorization" not in {p.get("name", "").lower() for p in guarded["parameters"]}
    assert document["paths"]["/api/v1/things/public"]["get"]["security"] == []
    assert '"clientId": "hdhub-portal"' in page and '"usePkceWithAuthorizationCodeGrant": true' in page


async def test_a_guarded_route_without_a_token_is_still_our_401_problem() -> None:
    async with client(api()) as c:
        r = await c.get("/api/v1/things")
    assert r.status_code == 401 and r.json()["type"] == "/problems/unauthorized"


async def test_the_start_page_links_docs_openapi_issuer_and_health_until_a_portal_is_served() -> None:
    async with client(api()) as c:
        r = await c.get("/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        for link in (
            "/docs",
            "/openapi.json",
            f"{issuer()}/.well-known/openid-configuration",
            "/healthz",
            "/readyz",
        ):
            assert f'href="{link}"' in r.text
    portal = APIRouter()

    @portal.get("/portal", include_in_schema=False)
    async def home() -> str:
        return "portal"

    async with client(api(), portal) as c:
        r = await c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/portal"


async def test_readiness_answers_503_naming_what_is_not_ready() -> None:
    async def ready() -> dict[str, str]:
        return {"identity": "ok", "registrations": "database: OperationalError"}

    async with client(api(), readiness=ready) as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {
        "status": "unavailable",
        "checks": {"identity": "ok", "registrations": "database: OperationalError"},
    }

    async def all_ok() -> dict[str, str]:
        return {"identity": "ok"}

    async with client(api(), readiness=all_ok) as c:
        assert (await c.get("/readyz")).status_code == 200


async def test_unknown_query_parameters_and_bad_choices_are_refused_naming_them() -> None:
    async with client(api()) as c:
        r = await c.get("/api/v1/things/public", params={"color": "red", "zz": "1"})
        assert r.status_code == 422 and r.json()["type"] == "/problems/request-validation"
        assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [
            ("color", "unknown_parameter"),
            ("zz", "unknown_parameter"),
        ]
        assert "colour" in r.json()["errors"][0]["message"]
        r = await c.get("/api/v1/things/public", params={"colour": "green"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "colour"
        assert (await c.get("/api/v1/things/public", params={"colour": "red"})).json() == ["red"]
        # Declared anywhere in the route's dependencies (lang), under an alias (page-size).
        r = await c.get("/api/v1/things", params={"lang": "nl", "page-size": "5"})
        assert r.status_code == 401
