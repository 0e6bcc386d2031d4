"""Delivery's REST routes under /api/v1: where a registration's delivery to the central
platform stands, an organisation's deliveries, and (for the operator) everyone's; the
central platform's decisions on a registration and an organisation's follow-ups due."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hdhub.common.auth import Action
from hdhub.common.errors import forbidden, not_found
from hdhub.common.paging import Offset
from hdhub.common.web import CurrentPrincipal, Moment
from hdhub.registrations.delivery.rows import DeliveryState
from hdhub.registrations.delivery.schemas import (
    DecisionOut,
    DecisionPage,
    DeliveryOut,
    DeliveryPage,
    FollowUpOut,
    FollowUpPage,
)
from hdhub.registrations.deps import CatalogueDep, DeliveriesDep, Readable, RegistrationsDep

router = APIRouter(prefix="/api/v1", tags=["delivery"])

Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("/registrations/{registration_id}/delivery", response_model=DeliveryOut)
async def registration_delivery(
    registration_id: str, readable: Readable, registrations: RegistrationsDep, deliveries: DeliveriesDep
) -> DeliveryOut:
    """Where this registration's delivery stands; 404 before its first submission."""
    reg = await registrations.get(readable, registration_id)
    found = (await deliveries.of([reg.organisation_id], [reg.id])).get(reg.id)
    if found is None:
        raise not_found("Delivery")
    return DeliveryOut.of(found, reg)


@router.get("/deliveries", response_model=DeliveryPage, summary="An organisation's deliveries")
async def list_deliveries(
    principal: CurrentPrincipal,
    deliveries: DeliveriesDep,
    organisation_id: Annotated[str, Query(max_length=64)],
    state: DeliveryState | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> DeliveryPage:
    """The organisation's deliveries, newest change first; ``state=parked`` lists the ones
    whose resends stopped."""
    principal.require(Action.REGISTRATION_READ, organisation_id)
    scope = principal.scope_for(Action.REGISTRATION_READ).narrowed(organisation_id)
    rows, total = await deliveries.listing(scope, state=state, limit=limit, offset=offset)
    return DeliveryPage(
        items=[DeliveryOut.of(d, r) for d, r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/operator/deliveries", response_model=DeliveryPage, summary="Deliveries across organisations")
async def operator_deliveries(
    principal: CurrentPrincipal,
    deliveries: DeliveriesDep,
    state: DeliveryState | None = DeliveryState.PARKED,
    limit: Limit = 100,
    offset: Offset = 0,
) -> DeliveryPage:
    """For the operator: deliveries of every organisation (parked ones by default)."""
    if not principal.is_operator:
        raise forbidden("Only the operator sees deliveries across organisations.")
    rows, total = await deliveries.listing(None, state=state, limit=limit, offset=offset)
    return DeliveryPage(
        items=[DeliveryOut.of(d, r) for d, r in rows], total=total, limit=limit, offset=offset
    )


@router.get(
    "/registrations/{registration_id}/decisions",
    response_model=DecisionPage,
    summary="The central platform's decisions on a registration",
)
async def registration_decisions(
    registration_id: str,
    readable: Readable,
    registrations: RegistrationsDep,
    deliveries: DeliveriesDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DecisionPage:
    """Newest first: what the central platform decided (Corrections needed with its comment
    and the fields concerned, Approved, Follow-up needed, Error), and whether hdhub applied
    it or refused it (the registration had changed since)."""
    reg = await registrations.get(readable, registration_id)
    rows, total = await deliveries.decisions([reg.organisation_id], reg.id, limit=limit, offset=offset)
    return DecisionPage(items=[DecisionOut.of(d) for d in rows], total=total, limit=limit, offset=offset)


@router.get("/follow-ups", response_model=FollowUpPage, summary="An organisation's follow-ups due")
async def list_follow_ups(
    principal: CurrentPrincipal,
    deliveries: DeliveriesDep,
    catalogue: CatalogueDep,
    organisation_id: Annotated[str, Query(max_length=64)],
    due_before: Annotated[Moment | None, Query(description="Only those due before this moment")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> FollowUpPage:
    """The follow-up registrations the central platform asked for (Follow-up needed), with
    the DCD to register them with and when each is due, soonest first."""
    principal.require(Action.REGISTRATION_READ, organisation_id)
    granted = await catalogue.granted_dcds(principal, organisation_id)
    dcds = None if granted is None else sorted(granted)
    rows, total = await deliveries.follow_ups(
        organisation_id, due_before=due_before, dcd_codes=dcds, limit=limit, offset=offset
    )
    return FollowUpPage(items=[FollowUpOut.of(f) for f in rows], total=total, limit=limit, offset=offset)
