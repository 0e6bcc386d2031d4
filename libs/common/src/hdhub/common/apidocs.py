"""The API's own documentation pages: Swagger UI and ReDoc from assets installed with the
project (``fastapi-offline`` ships them), so ``/docs`` works on a network without internet,
and the OAuth2 security scheme of the issuer, so Swagger UI's Authorize button gets a token.

The scheme's URLs are the issuer's (Keycloak's paths; the embedded issuer has the same),
read from the settings when the document is built: one image serves any installation.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import OAuth2
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match

from hdhub.common.config import platform

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
SCHEME = "oidc"
#: The client people use in the browser (public, as the portal's) for the password and
#: authorization-code flows; hospital systems type their own id and secret instead.
DOCS_CLIENT_ID = "hdhub-portal"

#: The bearer token of every authenticated route, named in the OpenAPI document as the
#: scheme below. ``auto_error=False``: a missing token is answered by ``authenticate`` with
#: hdhub's own 401 problem, not FastAPI's.
bearer = OAuth2(scheme_name=SCHEME, auto_error=False)


def security_scheme(issuer: str) -> dict[str, Any]:
    """OAuth2 flows against ``issuer`` (Keycloak's endpoint paths)."""
    token_url = f"{issuer}/protocol/openid-connect/token"
    return {
        "type": "oauth2",
        "description": (
            "Tokens from the OIDC issuer. Hospital systems: client credentials (their client id "
            f"and secret). People: password or authorization code with client `{DOCS_CLIENT_ID}`. "
            f"Discovery: {issuer}/.well-known/openid-configuration"
        ),
        "flows": {
            "clientCredentials": {"tokenUrl": token_url, "scopes": {}},
            "password": {"tokenUrl": token_url, "scopes": {}},
            "authorizationCode": {
                "authorizationUrl": f"{issuer}/protocol/openid-connect/auth",
                "tokenUrl": token_url,
                "scopes": {"openid": "OpenID Connect"},
            },
        },
    }


def install(app: FastAPI) -> None:
    """Serve /docs, /docs/oauth2-redirect and /redoc from local assets, and the security
    scheme in /openapi.json. ``app`` is created with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()  # cached by FastAPI in app.openapi_schema
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[SCHEME] = security_scheme(platform().oidc_issuer)
        return document

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            init_oauth={"clientId": DOCS_CLIENT_ID, "usePkceWithAuthorizationCodeGrant": True},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


PORTAL_URL = "/portal"


def _index_html(title: str, issuer: str) -> str:
    links = [
        ("/docs", "API documentation (Swagger UI)"),
        ("/redoc", "API reference (ReDoc)"),
        ("/openapi.json", "OpenAPI document"),
        (f"{issuer}/.well-known/openid-configuration", "OIDC issuer"),
        ("/healthz", "Health"),
        ("/readyz", "Readiness"),
    ]
    items = "\n".join(f'<li><a href="{escape(url)}">{escape(text)}</a></li>' for url, text in links)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
        f"<body><h1>{escape(title)}</h1><ul>\n{items}\n</ul></body></html>"
    )


def install_index(app: FastAPI) -> None:
    """``/``: the portal when this process serves it, else a page linking the API's docs,
    the issuer and the health endpoints."""

    def serves_portal() -> bool:
        scope = {
            "type": "http",
            "path": PORTAL_URL,
            "root_path": "",
            "method": "GET",
            "headers": [],
            "query_string": b"",
        }
        return any(route.matches(scope)[0] is not Match.NONE for route in app.router.routes)

    @app.get("/", include_in_schema=False, response_model=None)
    async def index() -> Response:
        if serves_portal():
            return RedirectResponse(PORTAL_URL, status_code=303)
        return HTMLResponse(_index_html(app.title, platform().oidc_issuer))
