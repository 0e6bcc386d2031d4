"""The REST routes' dependencies: the service a request reached and its parts, the caller's
organisations and name, the DCD version a path names, and the request's preconditions."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from hdhub.common.auth import Action, Principal, Scope
from hdhub.common.errors import Problem, forbidden
from hdhub.common.web import CurrentPrincipal, service_of
from hdhub.registrations.catalogue.service import Catalogue, CatalogueEntry
from hdhub.registrations.delivery.service import Deliveries
from hdhub.registrations.records.service import Actor, Registrations
from hdhub.registrations.runtime import RegistrationsService


# Every dependency is ``async def``, even those that only read: FastAPI runs a plain
# ``def`` dependency in a worker thread, a hop that cost more than the submit's
# validation (bench/README.md, bench_submissions).
async def _service(request: Request) -> RegistrationsService:
    return service_of(request, RegistrationsService)


ServiceDep = Annotated[RegistrationsService, Depends(_service)]


async def _catalogue(service: ServiceDep) -> Catalogue:
    return service.catalogue


async def _registrations(service: ServiceDep) -> Registrations:
    return service.registrations


async def _deliveries(service: ServiceDep) -> Deliveries:
    return service.deliveries


CatalogueDep = Annotated[Catalogue, Depends(_catalogue)]
RegistrationsDep = Annotated[Registrations, Depends(_registrations)]
DeliveriesDep = Annotated[Deliveries, Depends(_deliveries)]


async def _catalogue_reader(principal: CurrentPrincipal) -> Principal:
    if not principal.can(Action.CATALOGUE_READ):
        raise forbidden()
    return principal


#: A caller who may read the catalogue (of no organisation: every member may).
CatalogueReader = Annotated[Principal, Depends(_catalogue_reader)]


async def _dcd_version(dcd: str, version: str, catalogue: CatalogueDep, _: CatalogueReader) -> CatalogueEntry:
    return await catalogue.get(dcd, version)


#: The DCD version a path names (``/dcds/{dcd}/versions/{version}``, ``latest`` the newest).
DcdVersion = Annotated[CatalogueEntry, Depends(_dcd_version)]


async def _readable(principal: CurrentPrincipal) -> Scope:
    return principal.scope_for(Action.REGISTRATION_READ)


async def _writable(principal: CurrentPrincipal) -> Scope:
    return principal.scope_for(Action.REGISTRATION_WRITE)


#: The organisations whose registrations the caller may read, and those it may change
#: (:class:`hdhub.common.auth.Scope`: with the registries granted in each; the service keeps
#: a registration of another registry as unknown, 404).
Readable = Annotated[Scope, Depends(_readable)]
Writable = Annotated[Scope, Depends(_writable)]


def actor_of(principal: Principal, via: str = "api") -> Actor:
    """Who acts, for the history: a hospital system by its client id, a person by name."""
    return Actor(
        principal.client_id if principal.is_system and principal.client_id else principal.username, via
    )


async def _author(principal: CurrentPrincipal) -> Actor:
    return actor_of(principal)


#: The caller, as the history names who changed a registration through /api/v1.
Author = Annotated[Actor, Depends(_author)]


def parse_if_match(value: str | None) -> int | None:
    """The version an ``If-Match`` names; None for ``*`` or none."""
    if value is None or value.strip() == "*":
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not (tag.isascii() and tag.isdigit() and len(tag) <= 18):  # our ETags are versions: small ints
        raise Problem(400, "bad-if-match", "If-Match must be an ETag this API gave you")
    return int(tag)


async def _if_match(if_match: Annotated[str | None, Header()] = None) -> int | None:
    if if_match is None:
        raise Problem(
            428,
            "if-match-required",
            "If-Match is required",
            "Send the ETag you read as If-Match to change a registration.",
        )
    return parse_if_match(if_match)


async def _if_match_optional(if_match: Annotated[str | None, Header()] = None) -> int | None:
    return parse_if_match(if_match)


#: The version the caller read (``If-Match``), required to change a registration (428
#: without; ``*`` is any version); IfMatchOptional where the check is the caller's choice.
IfMatch = Annotated[int | None, Depends(_if_match)]
IfMatchOptional = Annotated[int | None, Depends(_if_match_optional)]
#: A client's key for a request it may send again (answered once, then replayed).
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def etag(version: int) -> str:
    return f'"{version}"'
