"""Exports (the organisation's CSV Upload Manager only): choose a registry's form and
version, filters (statuses, created and changed dates) and a format (CSV in the Upload
Center's format, XLSX, Parquet); the export runs as registrations' durable job, its page
shows the progress (htmx asks again while it runs), and a download link that expires is
issued at each click (audited by registrations). Past exports are listed newest first.
Every rule is registrations' (``RequestExport``, ``ListExports``, ``GetExport``;
docs/exports.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from hdhub.common.auth import Action
from hdhub.common.errors import forbidden
from hdhub.portal.deps import OrganisationPage
from hdhub.portal.pages.entry import status_words, text_of
from hdhub.portal.pages.forms import FormErrors, form_errors
from hdhub.portal.pages.i18n import N_, typed_day
from hdhub.portal.pages.owners import registrations
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf
from hdhub.proto.registrations.v1 import registrations_pb2 as pb

PAGE_SIZE = 25
FORMATS = {
    "csv": N_("CSV in the Upload Center's format (uploaded again, it changes nothing)"),
    "xlsx": N_("XLSX (a spreadsheet)"),
    "parquet": N_("Parquet (for analysts)"),
}
STATES = {
    "queued": ("info", N_("Queued")),
    "running": ("info", N_("Running")),
    "ready": ("ok", N_("Ready")),
    "failed": ("bad", N_("Failed")),
    "expired": ("info", N_("Expired: the file was deleted")),
}
#: The statuses one may export (deleted registrations never are).
EXPORTABLE = ("open", "sending", "submitted", "corrections_needed", "approved", "follow_up_needed", "error")
#: The date filters: the field, and whether it ends the range.
DATES = (
    ("created_from", False),
    ("created_to", True),
    ("updated_from", False),
    ("updated_to", True),
)

router = APIRouter(
    prefix=f"{PREFIX}/o/{{organisation_id}}/exports", route_class=PageRoute, include_in_schema=False
)


async def _exporter_page(page: OrganisationPage) -> Page:
    if not page.can(Action.EXPORT):
        raise forbidden("Only the organisation's CSV Upload Manager exports its registrations.")
    return page


ExporterPage = Annotated[Page, Depends(_exporter_page)]


def _instant(day: str, *, end: bool) -> str | None:
    """A typed day as the instant its Brussels day starts (an end: the next day's start,
    as the range's end is exclusive)."""
    from zoneinfo import ZoneInfo

    iso = typed_day(day)
    if iso is None:
        return None
    start = dt.datetime.combine(dt.date.fromisoformat(iso), dt.time(), ZoneInfo("Europe/Brussels"))
    return (start + dt.timedelta(days=1) if end else start).isoformat()


async def _form_page(
    page: Page, organisation_id: str, *, form: dict[str, Any], errors: FormErrors, status: int = 200
) -> Response:
    catalogue = await registrations().ListRegistries(pb.ListRegistriesRequest(), metadata=page.metadata())
    granted = page.principal.registries_in(organisation_id) if page.principal else frozenset()
    registries = [r for r in catalogue.registries if granted is None or r.code in granted]
    listing = await registrations().ListExports(
        pb.ListExportsRequest(organisation_id=organisation_id, limit=PAGE_SIZE), metadata=page.metadata()
    )
    return page.render(
        "exports.html",
        status=status,
        registries=registries,
        text_of=text_of,
        form=form,
        errors=errors,
        formats=FORMATS,
        exportable=EXPORTABLE,
        statuses=status_words(page.lang),
        states=STATES,
        exports=listing.exports,
        total=listing.total,
    )


@router.get("")
async def exports(organisation_id: str, page: ExporterPage) -> Response:
    return await _form_page(
        page, organisation_id, form={"format": "csv", "statuses": []}, errors=FormErrors()
    )


@router.post("")
async def request_export(request: Request, organisation_id: str, page: ExporterPage) -> Response:
    form = await check_csrf(request, page)
    raw = await request.form()
    statuses = [str(s) for s in raw.getlist("status") if str(s) in EXPORTABLE]
    form_state: dict[str, Any] = {**form, "statuses": statuses}
    fields: dict[str, str] = {}
    dcd, _, version = form.get("dcd", "").partition("@")
    if not dcd:
        fields["dcd"] = page._("Choose the form and version to export.")
    moments: dict[str, str] = {}
    for name, end in DATES:
        typed = form.get(name, "").strip()
        if not typed:
            continue
        instant = _instant(typed, end=end)
        if instant is None:
            fields[name] = page._("Type a date as day/month/year, for example 27/03/2024.")
        else:
            moments[name] = instant
    for first, until in (("created_from", "created_to"), ("updated_from", "updated_to")):
        if first in moments and until in moments and moments[until] <= moments[first]:
            fields[until] = page._("The end is before the start.")
    if fields:
        errors = FormErrors(page._("There is a problem"), fields=fields)
        return await _form_page(page, organisation_id, form=form_state, errors=errors, status=422)
    try:
        answer = await registrations().RequestExport(
            pb.RequestExportRequest(
                organisation_id=organisation_id,
                dcd_code=dcd,
                version=version,
                format=form.get("format", ""),
                statuses=statuses,
                **moments,
            ),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        errors = form_errors(page, exc)
        return await _form_page(page, organisation_id, form=form_state, errors=errors, status=422)
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/exports/{answer.export.id}", status_code=303)


async def _export_of(page: Page, organisation_id: str, export_id: str, *, link: bool) -> pb.GetExportResponse:
    from hdhub.common.errors import not_found

    answer: pb.GetExportResponse = await registrations().GetExport(
        pb.GetExportRequest(id=export_id, issue_link=link), metadata=page.metadata()
    )
    if answer.export.organisation_id != organisation_id:
        raise not_found("Export")
    return answer


def _export_context(e: pb.ExportInfo) -> dict[str, Any]:
    percent = int(100 * e.rows_done / e.rows_total) if e.rows_total else (100 if e.state == "ready" else 0)
    return {
        "e": e,
        "percent": max(0, min(percent, 100)),
        "states": STATES,
        "formats": FORMATS,
        "running": e.state in ("queued", "running"),
    }


@router.get("/{export_id}")
async def export_page(organisation_id: str, export_id: str, page: ExporterPage) -> Response:
    answer = await _export_of(page, organisation_id, export_id, link=False)
    return page.render("export.html", **_export_context(answer.export))


@router.get("/{export_id}/progress")
async def export_progress(organisation_id: str, export_id: str, page: ExporterPage) -> Response:
    """The progress panel alone (htmx asks for it again while the export runs)."""
    answer = await _export_of(page, organisation_id, export_id, link=False)
    return page.render("partials/export_progress.html", **_export_context(answer.export))


@router.get("/{export_id}/download")
async def download(organisation_id: str, export_id: str, page: ExporterPage) -> Response:
    """A fresh link (valid for the minutes registrations says, its issue audited), followed
    at once: the browser downloads the file from registrations' ``/api/v1/export-files``."""
    answer = await _export_of(page, organisation_id, export_id, link=True)
    if not answer.download_token:
        return RedirectResponse(f"{PREFIX}/o/{organisation_id}/exports/{export_id}", status_code=303)
    return RedirectResponse(f"/api/v1/export-files/{answer.download_token}", status_code=303)
