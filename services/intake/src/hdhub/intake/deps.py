"""What intake's routes depend on: the service and the caller's right in the organisation
of the path. Routes declare them as parameters (``service: ServiceDep``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hdhub.common.auth import Action, Principal
from hdhub.common.web import CurrentPrincipal, OrganisationId, service_of
from hdhub.intake.domain.names import REGISTRIES
from hdhub.intake.runtime import IntakeService


async def _service(request: Request) -> IntakeService:
    return service_of(request, IntakeService)


ServiceDep = Annotated[IntakeService, Depends(_service)]


def _reader(organisation_id: OrganisationId, principal: CurrentPrincipal) -> Principal:
    """The caller, when they may read the registrations of ``organisation_id`` (else 403)."""
    principal.require(Action.REGISTRATION_READ, organisation_id)
    return principal


def _sender(organisation_id: OrganisationId, principal: CurrentPrincipal) -> Principal:
    """The caller, when they may write registrations of ``organisation_id`` (else 403)."""
    principal.require(Action.REGISTRATION_WRITE, organisation_id)
    return principal


Reader = Annotated[Principal, Depends(_reader)]
Sender = Annotated[Principal, Depends(_sender)]


def granted_folders(principal: Principal, organisation_id: str) -> list[str] | None:
    """The registry folders whose files the caller sees (its registry grants), None for all."""
    granted = principal.registries_in(organisation_id)
    if granted is None:
        return None
    return [r.folder for r in REGISTRIES.values() if r.project_code in granted]


def require_folder(principal: Principal, organisation_id: str, folder: str) -> None:
    """403 naming the registry when the caller has no grant of a known registry folder
    (an unknown folder is refused later, by name)."""
    registry = REGISTRIES.get(folder)
    if registry is not None:
        principal.require_registry(Action.REGISTRATION_WRITE, organisation_id, registry.project_code)
