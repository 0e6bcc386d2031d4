"""The portal's pages: a backend-for-frontend (docs/portal.md). Server-rendered Jinja2
pages with htmx fragments; the browser holds only an HttpOnly session cookie, the
portal keeps the person's tokens and calls the owning services over gRPC with them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

if TYPE_CHECKING:
    from hdhub.portal.runtime import PortalService


def build_page_routers(service: PortalService) -> list[APIRouter]:
    from hdhub.portal.pages.auth import build_auth_router
    from hdhub.portal.pages.certificates import build_certificates_router
    from hdhub.portal.pages.home import build_home_router
    from hdhub.portal.pages.members import build_members_router
    from hdhub.portal.pages.requests import build_requests_router
    from hdhub.portal.pages.systems import build_systems_router

    root = APIRouter(include_in_schema=False)

    @root.get("/portal")
    async def index() -> RedirectResponse:
        """``/portal`` (where the site's start page sends people) to the portal's home."""
        return RedirectResponse("/portal/", status_code=303)

    return [
        root,
        build_auth_router(service),
        build_home_router(service),
        build_members_router(service),
        build_systems_router(service),
        build_certificates_router(service),
        build_requests_router(service),
    ]
