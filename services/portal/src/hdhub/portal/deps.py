"""What the portal's routes and pages depend on: the service, the signed-in person's page,
the caller's right, the route's transaction. Routes declare them as parameters
(``service: ServiceDep``, ``page: OrganisationPage``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from hdhub.common.auth import Action, Principal
from hdhub.common.web import CurrentPrincipal, OrganisationId, service_of
from hdhub.portal.pages.web import Page, current_page
from hdhub.portal.runtime import PortalService


async def _service(request: HTTPConnection) -> PortalService:
    return service_of(request, PortalService)


ServiceDep = Annotated[PortalService, Depends(_service)]


async def _page(request: HTTPConnection, service: ServiceDep) -> Page:
    """The signed-in person's page; sign-in first when there is none."""
    return await current_page(request, service)


CurrentPage = Annotated[Page, Depends(_page)]


async def _organisation_page(request: HTTPConnection, organisation_id: str, service: ServiceDep) -> Page:
    """The signed-in person's page in ``organisation_id``, one of theirs (404 otherwise)."""
    return await current_page(request, service, organisation_id=organisation_id)


OrganisationPage = Annotated[Page, Depends(_organisation_page)]


async def _certificate_editor(organisation_id: OrganisationId, principal: CurrentPrincipal) -> Principal:
    """The caller, when a Certificate Editor of ``organisation_id`` (else 403)."""
    principal.require(Action.CERTIFICATE_MANAGE, organisation_id)
    return principal


CertificateEditor = Annotated[Principal, Depends(_certificate_editor)]


async def _session(organisation_id: OrganisationId, service: ServiceDep) -> AsyncIterator[AsyncSession]:
    """The route's one transaction, in the organisation of its path: committed once the
    route has answered (before the answer is sent), rolled back when it raised."""
    async with service.db.session([organisation_id]) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
