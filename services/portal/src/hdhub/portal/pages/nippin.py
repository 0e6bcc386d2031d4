"""The NIPPIN Manager's pages (docs/nippin.md): the organisation's reimbursed registries with
the report built last; per registry, the records with their result and message status (and
why, for invalid and not sent); archiving a message with a reason; exports of the results
for a range of implant dates, downloadable once ready. nippin owns all of it: the pages call
it over gRPC with the person's token, and it applies its rule (the ``nippin`` action in the
organisation) again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from hdhub.common.auth import Action
from hdhub.common.errors import FieldProblem, Problem, forbidden
from hdhub.common.grpc import channel
from hdhub.common.web import attachment
from hdhub.portal.deps import OrganisationPage, ServiceDep
from hdhub.portal.pages.forms import FormErrors, form_errors, values
from hdhub.portal.pages.i18n import N_, typed_day
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf
from hdhub.proto.nippin.v1 import nippin_pb2 as pb
from hdhub.proto.nippin.v1 import nippin_pb2_grpc as pb_grpc

#: Report results as the pages name them, with their badge and the API's name (filters).
RESULTS = {
    pb.REPORT_RESULT_VALID: ("valid", "ok", N_("Valid")),
    pb.REPORT_RESULT_INVALID: ("invalid", "bad", N_("Invalid")),
    pb.REPORT_RESULT_NOT_FOUND: ("not_found", "bad", N_("Not found")),
    pb.REPORT_RESULT_NOT_SENT: ("not_sent", "warn", N_("Not sent")),
}
RESULT_BY_NAME = {name: value for value, (name, _kind, _label) in RESULTS.items()}
STATUSES = {
    pb.MESSAGE_STATUS_TO_SEND: ("info", N_("To send")),
    pb.MESSAGE_STATUS_SENT: ("ok", N_("Sent")),
    pb.MESSAGE_STATUS_ERROR: ("warn", N_("Error")),
    pb.MESSAGE_STATUS_INVALID: ("bad", N_("Invalid")),
    pb.MESSAGE_STATUS_ARCHIVED: ("info", N_("Archived")),
}
#: What a person may archive (nippin's rule; the button is only shown there).
ARCHIVABLE = frozenset({pb.MESSAGE_STATUS_TO_SEND, pb.MESSAGE_STATUS_ERROR, pb.MESSAGE_STATUS_INVALID})
EXPORT_STATES = {
    pb.EXPORT_STATE_QUEUED: ("info", N_("Being made")),
    pb.EXPORT_STATE_READY: ("ok", N_("Ready")),
    pb.EXPORT_STATE_FAILED: ("bad", N_("Failed")),
}
#: nippin's own words the pages show, translated where they are shown.
REASONS = (N_("no NIPPIN message was made for this registration"),)


def nippin() -> pb_grpc.NippinServiceAsyncStub:
    """nippin's gRPC stub; calls pass the person's token (``Page.metadata``)."""
    return pb_grpc.NippinServiceStub(channel("nippin"))


def label(page: Page, registry: pb.Registry) -> str:
    labels = registry.labels
    return labels.get(page.lang) or labels.get("en") or registry.dcd_code


router = APIRouter(
    prefix=f"{PREFIX}/o/{{organisation_id}}/nippin", route_class=PageRoute, include_in_schema=False
)


async def _manager_page(organisation_id: str, page: OrganisationPage) -> Page:
    """The page of a NIPPIN Manager of ``organisation_id`` (a refusal page otherwise)."""
    if not page.person.can(Action.NIPPIN, organisation_id):
        raise forbidden("Only a NIPPIN Manager of this organisation sees its billing messages.")
    return page


ManagerPage = Annotated[Page, Depends(_manager_page)]


async def registries(page: Page, organisation_id: str) -> list[pb.Registry]:
    answer = await nippin().ListRegistries(
        pb.ListRegistriesRequest(organisation_id=organisation_id), metadata=page.metadata()
    )
    return list(answer.registries)


@router.get("")
async def overview(organisation_id: str, page: ManagerPage) -> Response:
    """The reimbursed registries, each with its records in the report built last."""
    found, report = [], None
    for registry in await registries(page, organisation_id):
        records = await nippin().ListRecords(
            pb.ListRecordsRequest(organisation_id=organisation_id, dcd_code=registry.dcd_code, limit=1),
            metadata=page.metadata(),
        )
        report = records.report if records.HasField("report") else None
        found.append((registry, label(page, registry), records.total))
    return page.render("nippin.html", registries=found, report=report, results=RESULTS)


@router.post("/report")
async def build_report(request: Request, organisation_id: str, page: ManagerPage) -> Response:
    await check_csrf(request, page)
    await nippin().BuildReport(
        pb.BuildReportRequest(organisation_id=organisation_id), metadata=page.metadata(), timeout=600
    )
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/nippin?built=1", status_code=303)


@router.get("/registries/{dcd_code}")
async def records(
    organisation_id: str,
    dcd_code: str,
    page: ManagerPage,
    service: ServiceDep,
    result: str = "",
    offset: int = 0,
) -> Response:
    """A registry's records: result, message status and reason, a page at a time."""
    registry = next((r for r in await registries(page, organisation_id) if r.dcd_code == dcd_code), None)
    if registry is None:
        raise Problem(404, "not-found", N_("Not found"))
    size = service.settings.page_size
    answer = await nippin().ListRecords(
        pb.ListRecordsRequest(
            organisation_id=organisation_id,
            dcd_code=dcd_code,
            result=RESULT_BY_NAME.get(result, pb.REPORT_RESULT_UNSPECIFIED),
            limit=size,
            offset=max(offset, 0),
        ),
        metadata=page.metadata(),
    )
    here = f"{PREFIX}/o/{organisation_id}/nippin/registries/{dcd_code}"
    more = max(offset, 0) + size < answer.total
    return page.render(
        "nippin_records.html",
        registry=registry,
        registry_label=label(page, registry),
        report=answer.report if answer.HasField("report") else None,
        records=answer.records,
        total=answer.total,
        result=result if result in RESULT_BY_NAME else "",
        results=RESULTS,
        statuses=STATUSES,
        archivable=ARCHIVABLE,
        previous=f"{here}?{urlencode({'result': result, 'offset': max(offset - size, 0)})}"
        if offset > 0
        else "",
        next=f"{here}?{urlencode({'result': result, 'offset': offset + size})}" if more else "",
    )


async def archive_page(
    page: Page, organisation_id: str, message_id: str, status: int = 200, **context: object
) -> Response:
    answer = await nippin().GetMessage(
        pb.GetMessageRequest(organisation_id=organisation_id, message_id=message_id),
        metadata=page.metadata(),
    )
    context.setdefault("errors", FormErrors())
    context.setdefault("form", {})
    return page.render(
        "nippin_archive.html",
        status=status,
        message=answer.message,
        statuses=STATUSES,
        archivable=ARCHIVABLE,
        archived=pb.MESSAGE_STATUS_ARCHIVED,
        **context,
    )


@router.get("/messages/{message_id}/archive")
async def confirm_archive(organisation_id: str, message_id: str, page: ManagerPage) -> Response:
    """The message, its history and why it failed; the form to archive it with a reason."""
    return await archive_page(page, organisation_id, message_id)


@router.post("/messages/{message_id}/archive")
async def archive(request: Request, organisation_id: str, message_id: str, page: ManagerPage) -> Response:
    form = values(await check_csrf(request, page), "reason")
    try:
        answer = await nippin().ArchiveMessage(
            pb.ArchiveMessageRequest(organisation_id=organisation_id, message_id=message_id, **form),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        errors = form_errors(page, exc)
        return await archive_page(page, organisation_id, message_id, status=422, errors=errors, form=form)
    query = urlencode({"archived": answer.message.registration_code or answer.message.id})
    return RedirectResponse(
        f"{PREFIX}/o/{organisation_id}/nippin/registries/{answer.message.dcd_code}?{query}",
        status_code=303,
    )


async def exports_page(page: Page, organisation_id: str, status: int = 200, **context: object) -> Response:
    found = await registries(page, organisation_id)
    listed = await nippin().ListExports(
        pb.ListExportsRequest(organisation_id=organisation_id), metadata=page.metadata()
    )
    context.setdefault("errors", FormErrors())
    context.setdefault("form", {})
    return page.render(
        "nippin_exports.html",
        status=status,
        registries=[(r.dcd_code, label(page, r)) for r in found],
        exports=listed.exports,
        states=EXPORT_STATES,
        ready=pb.EXPORT_STATE_READY,
        waiting=any(e.state == pb.EXPORT_STATE_QUEUED for e in listed.exports),
        may_name_patients=page.person.can(Action.REGISTRATION_READ, organisation_id),
        **context,
    )


@router.get("/exports")
async def exports(organisation_id: str, page: ManagerPage) -> Response:
    """The exports, newest first, and the form for a new one."""
    return await exports_page(page, organisation_id)


@router.get("/exports/table")
async def exports_table(organisation_id: str, page: ManagerPage) -> Response:
    """The exports' table alone: htmx asks again while one is being made."""
    listed = await nippin().ListExports(
        pb.ListExportsRequest(organisation_id=organisation_id), metadata=page.metadata()
    )
    return page.render(
        "partials/nippin_exports_table.html",
        exports=listed.exports,
        states=EXPORT_STATES,
        ready=pb.EXPORT_STATE_READY,
        waiting=any(e.state == pb.EXPORT_STATE_QUEUED for e in listed.exports),
    )


@router.post("/exports")
async def create_export(request: Request, organisation_id: str, page: ManagerPage) -> Response:
    form = values(await check_csrf(request, page), "dcd_code", "date_from", "date_to", "nominative")
    days = {k: typed_day(form[k]) if form[k] else "" for k in ("date_from", "date_to")}
    try:
        wrong = [
            FieldProblem(k, "date", page._("Write the date as day/month/year, for example 31/01/2026."))
            for k, v in days.items()
            if v is None
        ]
        if wrong:
            raise Problem(422, "validation", N_("The input is not valid"), errors=wrong)
        await nippin().CreateExport(
            pb.CreateExportRequest(
                organisation_id=organisation_id,
                dcd_code=form["dcd_code"],
                date_from=days["date_from"] or "",
                date_to=days["date_to"] or "",
                nominative=form["nominative"] == "yes",
            ),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        return await exports_page(page, organisation_id, status=422, errors=form_errors(page, exc), form=form)
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/nippin/exports?requested=1", status_code=303)


@router.get("/exports/{export_id}/download")
async def download(organisation_id: str, export_id: str, page: ManagerPage) -> Response:
    """The export's CSV, streamed from nippin as it comes."""
    call = nippin().DownloadExport(
        pb.DownloadExportRequest(organisation_id=organisation_id, export_id=export_id),
        metadata=page.metadata(),
        timeout=600,
    )
    parts = call.__aiter__()
    # A refusal (not ready, not found) arrives before any byte; a ready export has at
    # least its header line.
    first = await anext(parts, pb.DownloadExportResponse(filename="nippin-export.csv"))

    async def body() -> AsyncIterator[bytes]:
        yield first.chunk
        async for part in parts:
            yield part.chunk

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(first.filename)},
    )
