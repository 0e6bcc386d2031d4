"""The portal's pages: a backend-for-frontend (docs/portal.md). Server-rendered Jinja2
pages with htmx fragments; the browser holds only an HttpOnly session cookie, the
portal keeps the person's tokens and calls the owning services over gRPC with them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

router = APIRouter(include_in_schema=False)


@router.get("/portal")
async def index() -> RedirectResponse:
    """``/portal`` (where the site's start page sends people) to the portal's home."""
    return RedirectResponse("/portal/", status_code=303)


def routers() -> list[APIRouter]:
    """Every page's router, for ``PortalService.routers``."""
    from hdhub.portal.pages import (
        auth,
        certificates,
        console,
        console_catalogue,
        deliveries,
        entry,
        exports,
        files,
        follow_ups,
        home,
        members,
        nippin,
        registrations,
        requests,
        systems,
        uploads,
    )

    return [
        router,
        auth.router,
        home.router,
        members.router,
        systems.router,
        certificates.router,
        requests.router,
        # The grid's literal paths (/registrations/bulk) before the entry's /registrations/{id}.
        registrations.router,
        entry.router,
        uploads.router,
        files.router,
        deliveries.router,
        nippin.router,
        console.router,
        follow_ups.router,
        exports.router,
        console_catalogue.router,
    ]
