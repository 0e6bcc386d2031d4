"""Account requests (v1 flow): the public request form (no sign-in; CSRF-protected by an
anonymous session), and the organisation's approval queue for its managers."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from hdhub.common.errors import FieldProblem, Problem
from hdhub.portal.deps import OrganisationPage, ServiceDep
from hdhub.portal.pages.auth import set_session_cookie
from hdhub.portal.pages.forms import FormErrors, form_errors, identity, values
from hdhub.portal.pages.i18n import N_, typed_day
from hdhub.portal.pages.sessions import COOKIE
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf, language_of
from hdhub.portal.runtime import PortalService
from hdhub.proto.identity.v1 import identity_pb2 as pb

FIELDS = ("organisation_id", "username", "first_name", "last_name", "email", "requester_email")


router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)


async def anonymous(request: Request, service: PortalService) -> tuple[Page, str | None]:
    """The page with a session for its CSRF token (a new, token-less one if needed)."""
    page = Page(request, language_of(request))
    request.state.page = page
    page.session = await service.portal_sessions.get(request.cookies.get(COOKIE))
    new_id = None
    if page.session is None:
        new_id, page.session = await service.portal_sessions.create()
    return page, new_id


@router.get("/request-account")
async def request_form(request: Request, service: ServiceDep) -> Response:
    page, new_id = await anonymous(request, service)
    response = page.render("request_form.html", form={}, errors=FormErrors())
    if new_id:
        set_session_cookie(response, new_id)
    return response


@router.post("/request-account")
async def submit(request: Request, service: ServiceDep) -> Response:
    page, _ = await anonymous(request, service)
    raw = await request.form()
    form = values(await check_csrf(request, page), *FIELDS)
    collections = [c.strip() for c in str(raw.get("data_collections", "")).split(",") if c.strip()]
    try:
        await identity().SubmitAccountRequest(
            pb.SubmitAccountRequestRequest(
                data_collections=collections,
                client_address=request.client.host if request.client else "",
                **form,
            )
        )
    except Exception as exc:  # noqa: BLE001
        form["data_collections"] = ", ".join(collections)
        return page.render("request_form.html", status=422, form=form, errors=form_errors(page, exc))
    return page.render("request_sent.html")


@router.get("/o/{organisation_id}/account-requests")
async def queue(organisation_id: str, page: OrganisationPage, status: str = "pending") -> Response:
    status = status if status in ("pending", "approved", "rejected", "all") else "pending"
    answer = await identity().ListAccountRequests(
        pb.ListAccountRequestsRequest(
            organisation_id=organisation_id, status="" if status == "all" else status
        ),
        metadata=page.metadata(),
    )
    return page.render("account_requests.html", requests=answer.requests, state=status)


@router.post("/o/{organisation_id}/account-requests/{request_id}/{decision}")
async def decide(
    request: Request, organisation_id: str, request_id: str, decision: str, page: OrganisationPage
) -> Response:
    form = await check_csrf(request, page)
    if decision not in ("approve", "reject"):
        return RedirectResponse(f"{PREFIX}/o/{organisation_id}/account-requests", status_code=303)
    await identity().DecideAccountRequest(
        pb.DecideAccountRequestRequest(
            organisation_id=organisation_id,
            request_id=request_id,
            approve=decision == "approve",
            reason=form.get("reason", ""),
        ),
        metadata=page.metadata(),
    )
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/account-requests?{decision}d=1", status_code=303)


@router.get("/o/{organisation_id}/audit")
async def audit(
    organisation_id: str,
    page: OrganisationPage,
    service: ServiceDep,
    actor: str = "",
    action: str = "",
    from_date: str = "",
    to_date: str = "",
    before: int = 0,
) -> Response:
    filters = {"actor": actor, "action": action, "from_date": from_date, "to_date": to_date}
    # Each filter in use as a chip whose link is the same page without it.
    chips = [
        (
            name,
            value,
            f"{PREFIX}/o/{organisation_id}/audit?"
            + urlencode({k: v for k, v in filters.items() if v and k != name}),
        )
        for name, value in filters.items()
        if value
    ]
    days = {k: typed_day(filters[k]) if filters[k] else "" for k in ("from_date", "to_date")}
    wrong = {
        k: page._("Write the date as day/month/year, for example 31/01/2026.")
        for k, v in days.items()
        if v is None
    }
    try:
        if wrong:
            raise Problem(
                422,
                "validation",
                N_("The input is not valid"),
                errors=[FieldProblem(k, "date", m) for k, m in wrong.items()],
            )
        answer = await identity().ListAuditEntries(
            pb.ListAuditEntriesRequest(
                organisation_id=organisation_id,
                before_id=before,
                page_size=service.settings.page_size,
                actor=actor,
                action=action,
                from_date=days["from_date"] or "",
                to_date=days["to_date"] or "",
            ),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001
        errors = form_errors(page, exc)
        return page.render(
            "audit.html",
            status=422,
            entries=[],
            chips=chips,
            total=0,
            capped=False,
            next_before=0,
            filters=filters,
            errors=errors,
        )
    return page.render(
        "audit.html",
        entries=answer.entries,
        chips=chips,
        total=answer.total,
        capped=answer.total_is_lower_bound,
        next_before=answer.next_before_id,
        filters=filters,
        errors=FormErrors(),
    )
