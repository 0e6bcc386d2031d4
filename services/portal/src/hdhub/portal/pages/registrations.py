"""The registrations grid (members who may read the organisation's registrations): filters
as removable chips, two sort orders, keyset pages both ways ("next" and "previous" carry
the cursor in the URL), the counts per status under the filters, and several registrations submitted or deleted at once (those who
may write them), each with its outcome. Everything comes from registrations'
``ListRegistrations`` and ``ActOnRegistrations`` with the person's token; a row links to
the registration's own page, ``/portal/o/{org}/registrations/{id}``."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Annotated, Any
from urllib.parse import urlencode

import grpc
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from google.protobuf.json_format import MessageToDict, ParseDict

from hdhub.common.auth import Action
from hdhub.common.errors import forbidden
from hdhub.portal.deps import OrganisationPage, ServiceDep
from hdhub.portal.pages.entry import STATUSES, status_words
from hdhub.portal.pages.forms import FormErrors, form_errors
from hdhub.portal.pages.i18n import BRUSSELS, N_, typed_day
from hdhub.portal.pages.owners import registrations
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, verify_csrf
from hdhub.proto.registrations.v1 import registrations_pb2 as pb

PAGE_SIZE = 50
CONFIRMATIONS = {
    "none": ("info", N_("None yet")),
    "pending": ("info", N_("Pending")),
    "ok": ("ok", N_("OK")),
    "nok": ("bad", N_("NOK")),
}
SORTS = {
    "updated": N_("Last changed"),
    "created": N_("Created"),
}
ACTIONS = {"submit": N_("Submit"), "delete": N_("Delete")}
#: The owner's refusals of one row, in words (their English title is the key).
REFUSALS = {
    "transition-not-allowed": N_("Its status does not allow this."),
    "stale-version": N_("It changed since this page was shown: look at it again."),
    "invalid-registration": N_("It has problems to correct before it can be submitted."),
    "not-found": N_("Registration not found"),
    "dcd-version-superseded": N_(
        "Its form's version is no longer current: open it to move it to the newest."
    ),
}
#: A typed day's shape (day/month/year, or ISO): one in this shape that is no date is
#: told so in those words (31/02/2026), not asked for its shape again.
DAY_SHAPED = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{4}|\d{4}-\d{2}-\d{2}")
FILTERS = (
    "registry",
    "dcd",
    "version",
    "status",
    "confirmation",
    "created_from",
    "created_to",
    "updated_from",
    "updated_to",
    "q",
)

router = APIRouter(
    prefix=f"{PREFIX}/o/{{organisation_id}}/registrations", route_class=PageRoute, include_in_schema=False
)


async def reader_page(page: OrganisationPage) -> Page:
    """The page of a member who may read the organisation's registrations (403 otherwise)."""
    if not page.can(Action.REGISTRATION_READ):
        raise forbidden("Only members who may read this organisation's registrations see them.")
    return page


ReaderPage = Annotated[Page, Depends(reader_page)]


def _instant(day: str, *, end: bool) -> str | None:
    """A typed day as the instant its Brussels day starts (the end: the next day's start),
    in UTC as stored; "" when that instant is beyond what is stored (before 1 January of
    year 1 or after 31 December 9999 in UTC: no bound then); None when it is no day."""
    iso = typed_day(day)
    if iso is None:
        return None
    start = dt.datetime.combine(dt.date.fromisoformat(iso), dt.time(), BRUSSELS)
    try:
        return (start + dt.timedelta(days=1) if end else start).astimezone(dt.UTC).isoformat()
    except OverflowError:
        return ""


def _catalogue_choices(page: Page, answer: pb.ListRegistriesResponse) -> dict[str, Any]:
    """The filters' registries, forms and versions: of the registries granted to the person."""
    registries = [r for r in answer.registries if page.granted(r.code)]
    versions = sorted({v for r in registries for d in r.dcds for v in d.versions}, reverse=True)
    return {"registries": registries, "versions": versions}


@router.get("")
async def grid(
    request: Request,
    organisation_id: str,
    page: ReaderPage,
    sort: str = "updated",
    order: str = "desc",
    cursor: str = "",
    done: str = "",
) -> Response:
    params = request.query_params
    filters = {name: params.get(name, "").strip() for name in FILTERS}
    sort = sort if sort in SORTS else "updated"
    order = order if order in ("asc", "desc") else "desc"
    errors = FormErrors()
    typed: dict[str, str] = {}
    for name in ("created_from", "created_to", "updated_from", "updated_to"):
        if filters[name]:
            instant = _instant(filters[name], end=name.endswith("_to"))
            if instant is None:
                errors.fields[name] = (
                    page._(
                        "There is no %(day)s in the calendar: type a date as day/month/year, "
                        "for example 31/01/2025.",
                        day=filters[name],
                    )
                    if DAY_SHAPED.fullmatch(filters[name])
                    else page._("Type a date as day/month/year, for example 31/01/2025.")
                )
            elif instant:
                typed[name] = instant
    # A status or confirmation the list does not have (an address typed or kept from an
    # older version) is said, not quietly dropped while its chip claims a filter.
    if filters["status"] and filters["status"] not in STATUSES:
        errors.fields["status"] = page._("Choose a status from the list.")
    if filters["confirmation"] and filters["confirmation"] not in CONFIRMATIONS:
        errors.fields["confirmation"] = page._("Choose a status confirmation from the list.")
    # The catalogue (for the filters) is asked for while the page is.
    asked = asyncio.ensure_future(
        registrations().ListRegistries(pb.ListRegistriesRequest(), metadata=page.metadata())
    )
    try:
        answer = pb.ListRegistrationsResponse()
        if errors.fields:
            errors.title = page._("There is a problem")
        else:
            try:
                answer = await registrations().ListRegistrations(
                    pb.ListRegistrationsRequest(
                        organisation_id=organisation_id,
                        project_code=filters["registry"],
                        dcd_code=filters["dcd"],
                        dcd_version=filters["version"],
                        status=filters["status"],
                        status_confirmation=filters["confirmation"],
                        search=filters["q"],
                        sort=sort,
                        ascending=order == "asc",
                        cursor=cursor,
                        limit=PAGE_SIZE,
                        created_from=typed.get("created_from", ""),
                        created_to=typed.get("created_to", ""),
                        updated_from=typed.get("updated_from", ""),
                        updated_to=typed.get("updated_to", ""),
                    ),
                    metadata=page.metadata(),
                )
            except grpc.aio.AioRpcError as exc:
                errors = form_errors(page, exc)
    except BaseException:
        asked.cancel()
        raise
    catalogue = _catalogue_choices(page, await asked)
    base = f"{PREFIX}/o/{organisation_id}/registrations"
    kept = {k: v for k, v in filters.items() if v}
    ordering = {"sort": sort, "order": order} if (sort, order) != ("updated", "desc") else {}

    def link(**changed: str) -> str:
        query = urlencode({k: v for k, v in {**kept, **ordering, **changed}.items() if v})
        return base + ("?" + query if query else "")

    def sort_link(key: str) -> str:
        flip = "asc" if sort == key and order == "desc" else "desc"
        query = urlencode({k: v for k, v in {**kept, "sort": key, "order": flip}.items() if v})
        return base + "?" + query

    counts: dict[str, int] = {}
    confirmations: dict[str, int] = {}
    for c in answer.counts:
        counts[c.status] = counts.get(c.status, 0) + c.count
        if c.status_confirmation:
            confirmations[c.status_confirmation] = confirmations.get(c.status_confirmation, 0) + c.count
    chips = [(name, value, link(**{name: ""})) for name, value in kept.items()]
    here = link(cursor=cursor)
    return page.render(
        "registrations.html",
        **catalogue,
        rows=answer.registrations,
        total=answer.total if answer.total_known else None,
        more_than=answer.more_than,
        counts=counts,
        confirmations=confirmations,
        filters=filters,
        chips=chips,
        sort=sort,
        order=order,
        sort_link=sort_link,
        status_link=lambda s: link(status=s, cursor=""),
        first=link() if cursor else "",
        next=link(cursor=answer.next_cursor) if answer.next_cursor else "",
        previous=link(cursor=answer.previous_cursor) if answer.previous_cursor else "",
        here=here,
        errors=errors,
        statuses=status_words(page.lang),
        confirmation_words={name: (kind, page._(words)) for name, (kind, words) in CONFIRMATIONS.items()},
        sorts=SORTS,
        done=done,
        can_write=page.can(Action.REGISTRATION_WRITE),
    )


def _back(organisation_id: str, value: str) -> str:
    """The grid the person came from (its filters and page), never another address."""
    base = f"{PREFIX}/o/{organisation_id}/registrations"
    return value if value == base or value.startswith(base + "?") else base


def _ref(value: str) -> tuple[str, int] | None:
    """A selected row as the grid sends it, ``<id>:<version seen>``; None when damaged. The
    version must be there: without it the owner would act on whatever the row is now."""
    id_, _, version = value.partition(":")
    if not id_ or not (version.isascii() and version.isdigit()) or not 0 < int(version) < 2**32:
        return None
    return id_, int(version)


@router.post("/bulk")
async def bulk(request: Request, organisation_id: str, page: ReaderPage, service: ServiceDep) -> Response:
    """Submit or delete the selected registrations: deleting asks first; each row's outcome
    is shown, done or refused with its reason."""
    form = await request.form()
    verify_csrf(request, page, str(form.get("csrf_token", "")))
    if not page.can(Action.REGISTRATION_WRITE):
        raise forbidden("Only members who may register for this organisation submit or delete registrations.")
    action = str(form.get("action", ""))
    back = _back(organisation_id, str(form.get("back", "")))
    selected = [_ref(str(value)) for value in form.getlist("ref")]
    refs = [ref for ref in selected if ref is not None]
    if len(refs) != len(selected):
        errors = FormErrors(
            page._("There is a problem"),
            fields={
                "rows": page._(
                    "The selection is damaged: reload the page and select the registrations again."
                )
            },
        )
        return page.render("registrations_bulk.html", status=422, errors=errors, back=back, outcomes=[])
    if action not in ACTIONS or not refs:
        errors = FormErrors(
            page._("There is a problem"),
            fields={"rows": page._("Select at least one registration, then choose what to do with them.")},
        )
        return page.render("registrations_bulk.html", status=422, errors=errors, back=back, outcomes=[])
    if action == "delete" and form.get("confirmed") != "yes":
        return page.render(
            "registrations_bulk.html",
            errors=FormErrors(),
            back=back,
            confirm=refs,
            action=action,
            outcomes=[],
        )
    try:
        answer = await registrations().ActOnRegistrations(
            pb.ActOnRegistrationsRequest(
                organisation_id=organisation_id,
                action=action,
                registrations=[pb.RegistrationRef(id=i, version=v) for i, v in refs],
                language=page.lang,
            ),
            metadata=page.metadata(),
        )
    except grpc.aio.AioRpcError as exc:
        return page.render(
            "registrations_bulk.html", status=422, errors=form_errors(page, exc), back=back, outcomes=[]
        )
    # POST-redirect-GET: the outcome waits in the session, so a reload shows it, not acts.
    outcome = {
        "organisation_id": organisation_id,
        "action": action,
        "back": back,
        "outcomes": [MessageToDict(o, preserving_proto_field_name=True) for o in answer.outcomes],
    }
    assert page.session is not None
    await service.portal_sessions.save(page.session, bulk_outcome=json.dumps(outcome))
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/registrations/bulk", status_code=303)


@router.get("/bulk")
async def bulk_outcome(organisation_id: str, page: ReaderPage) -> Response:
    """The last bulk action's outcome, each registration by its code and form, done or
    refused with its reason; the grid when there is none for this organisation."""
    saved = json.loads(page.session.bulk_outcome or "{}") if page.session else {}
    if saved.get("organisation_id") != organisation_id:
        return RedirectResponse(f"{PREFIX}/o/{organisation_id}/registrations", status_code=303)
    outcomes = [ParseDict(o, pb.RegistrationOutcome()) for o in saved["outcomes"]]
    return page.render(
        "registrations_bulk.html",
        errors=FormErrors(),
        back=_back(organisation_id, saved["back"]),
        action=saved["action"],
        outcomes=outcomes,
        done_count=sum(1 for o in outcomes if o.done),
        refusals=REFUSALS,
        statuses=status_words(page.lang),
    )
