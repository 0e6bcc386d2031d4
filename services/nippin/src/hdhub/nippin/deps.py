"""What NIPPIN's routes depend on: the service, the NIPPIN Manager of the organisation in
the path, the route's transaction. Routes declare them as parameters
(``service: ServiceDep``, ``session: SessionDep``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.auth import Action, Principal
from hdhub.common.web import CurrentPrincipal, OrganisationId, service_of
from hdhub.nippin.runtime import NippinService


async def _service(request: Request) -> NippinService:
    return service_of(request, NippinService)


ServiceDep = Annotated[NippinService, Depends(_service)]


def _manager(organisation_id: OrganisationId, principal: CurrentPrincipal) -> Principal:
    principal.require(Action.NIPPIN, organisation_id)
    return principal


#: The caller, when a NIPPIN Manager of the organisation in the path (else 403).
Manager = Annotated[Principal, Depends(_manager)]


async def _session(
    organisation_id: OrganisationId, _: Manager, service: ServiceDep
) -> AsyncIterator[AsyncSession]:
    async with service.db.session([organisation_id]) as session:
        yield session


#: The route's one transaction, in the organisation of its path, opened once the caller
#: is known to be its NIPPIN Manager: committed when the route has answered (before the
#: answer is sent), rolled back when it raised.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
