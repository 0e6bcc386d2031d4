"""Deliveries (members who may read the organisation's registrations): the registrations
whose delivery to the central platform is parked (resends stopped) or NOK (no confirmation
within 48 hours, being resent), each with the reason in words, from registrations'
``ListDeliveries``. And for the operator, in development, the switches of the central
platform's stand-in (the sim's ``SimControlService``: accept, refuse, drop, delay), which
an installation without the sim says it has not."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

import grpc
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from hdhub.common.auth import Action
from hdhub.common.errors import forbidden
from hdhub.common.grpc import channel
from hdhub.portal.deps import CurrentPage, OrganisationPage
from hdhub.portal.pages.forms import FormErrors, form_errors
from hdhub.portal.pages.i18n import N_
from hdhub.portal.pages.owners import registrations
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.sim.v1 import central_pb2 as sim_pb
from hdhub.proto.sim.v1 import central_pb2_grpc as sim_grpc

PAGE_SIZE = 50
STATES = {
    "parked": ("bad", N_("Parked: resends stopped")),
    "nok": ("warn", N_("NOK: being resent")),
}
#: Why a delivery waits or what its last attempt met (docs/delivery.md), by the reason's
#: slug before any ``:<rule>``; the rule is shown as it is.
REASONS = {
    "central-unavailable": N_("The central platform could not be reached; it is tried again."),
    "central-rejected": N_("The central platform refused the record."),
    "identifier-refused": N_(
        "Pseudonymisation refused a patient identifier: correct the registration and submit it again."
    ),
    "no-published-certificate": N_("The organisation has no published certificate to sign with."),
    "certificate-expired": N_("The organisation's certificate has expired."),
    "certificate-unavailable": N_("The organisation's certificate could not be read."),
    "pseudonymisation-unavailable": N_("Pseudonymisation could not be reached."),
    "pseudonymisation-refused": N_("Pseudonymisation refused the delivery."),
    "service-identity-unavailable": N_("hdhub could not obtain its own service token."),
    "central-key-unset": N_("The central platform's key is not configured."),
}
WITHOUT_REASON = {
    "parked": N_("No confirmation 10 days after the first send: resends stopped."),
    "nok": N_("No confirmation within 48 hours of the first send: it is being resent."),
}
MODES = {
    "accept": N_("Accept: keep and confirm what arrives"),
    "refuse": N_("Refuse: answer as if down (deliveries stay Pending, then NOK)"),
    "drop": N_("Drop: accept and keep nothing (never confirmed)"),
}

router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)


async def _reader_page(page: OrganisationPage) -> Page:
    if not page.can(Action.REGISTRATION_READ):  # registrations' rule for reading deliveries
        raise forbidden("Only members who may read this organisation's registrations see its deliveries.")
    return page


ReaderPage = Annotated[Page, Depends(_reader_page)]


def reason_words(page: Page, state: str, reason: str) -> tuple[str, str]:
    """The reason in the person's language, and its rule (as it is) when it names one."""
    slug, _, rule = reason.partition(":")
    if slug in REASONS:
        return page._(REASONS[slug]), rule
    if not reason:
        return (page._(WITHOUT_REASON[state]) if state in WITHOUT_REASON else ""), ""
    return reason, ""


@router.get("/o/{organisation_id}/deliveries")
async def deliveries(organisation_id: str, page: ReaderPage, state: str = "", number: int = 1) -> Response:
    state = state if state in STATES else ""
    number = max(1, min(number, 10_000))
    answer = await registrations().ListDeliveries(
        pb.ListDeliveriesRequest(
            organisation_id=organisation_id,
            states=[state] if state else list(STATES),
            limit=PAGE_SIZE,
            offset=(number - 1) * PAGE_SIZE,
        ),
        metadata=page.metadata(),
    )
    base = f"{PREFIX}/o/{organisation_id}/deliveries"

    def link(**changed: str) -> str:
        query = urlencode({k: v for k, v in {"state": state, **changed}.items() if v and v != "1"})
        return base + ("?" + query if query else "")

    last = max(1, -(-answer.total // PAGE_SIZE))
    return page.render(
        "deliveries.html",
        rows=[(d, *reason_words(page, d.state, d.reason)) for d in answer.deliveries],
        total=answer.total,
        state=state,
        states=STATES,
        chips=[("state", state, link(state=""))] if state else [],
        number=number,
        last=last,
        newer=link(number=str(number - 1)) if number > 1 else "",
        older=link(number=str(number + 1)) if number < last else "",
    )


def _sim() -> sim_grpc.SimControlServiceAsyncStub:
    """The sim itself (development only), not the central platform: production has no sim
    to reach, and the page says so."""
    return sim_grpc.SimControlServiceStub(channel("sim"))


async def _operator_page(page: CurrentPage) -> Page:
    if not page.principal or not page.principal.is_operator:
        raise forbidden("Only the operator drives the central platform's stand-in.")
    return page


OperatorPage = Annotated[Page, Depends(_operator_page)]


async def _sim_page(
    page: Page, status: int = 200, errors: FormErrors | None = None, *, saved: bool = False
) -> Response:
    try:
        state: sim_pb.ReceiverState | None = await _sim().GetReceiver(
            sim_pb.GetReceiverRequest(), metadata=page.metadata()
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE):
            raise
        state = None  # no stand-in in this installation: the real central platform
    return page.render(
        "sim.html", status=status, receiver=state, modes=MODES, errors=errors or FormErrors(), saved=saved
    )


@router.get("/operator/sim")
async def sim(page: OperatorPage, saved: str = "") -> Response:
    return await _sim_page(page, saved=saved == "1")


@router.post("/operator/sim")
async def set_sim(request: Request, page: OperatorPage) -> Response:
    form = await check_csrf(request, page)
    delay = form.get("ack_delay_seconds", "0").strip().replace(",", ".") or "0"
    try:
        seconds = float(delay)
    except ValueError:
        errors = FormErrors(
            page._("There is a problem"), fields={"ack_delay_seconds": page._("Type a number of seconds.")}
        )
        return await _sim_page(page, 422, errors)
    try:
        await _sim().SetReceiver(
            sim_pb.SetReceiverRequest(mode=form.get("mode", ""), ack_delay_seconds=seconds),
            metadata=page.metadata(),
        )
    except grpc.aio.AioRpcError as exc:
        return await _sim_page(page, 422, form_errors(page, exc))
    return RedirectResponse(f"{PREFIX}/operator/sim?saved=1", status_code=303)
