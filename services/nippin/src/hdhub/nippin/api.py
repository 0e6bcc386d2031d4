"""NIPPIN's REST edge, /api/v1/nippin/{organisation_id}/...: the NIPPIN Manager's view.

Everything needs the ``nippin`` action in the organisation (the NIPPIN Manager role); a
caller outside it gets 403 and learns nothing. The reimbursed registries, per registry the
records of the report built last with their result and message status, the messages with their
statuses and transitions, archiving, the nightly reports, and exports (a job; the CSV is
downloadable when ready).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import utcnow
from hdhub.common.errors import FieldProblem, invalid, not_found
from hdhub.common.paging import Limit, Offset, count
from hdhub.common.web import OrganisationId, attachment
from hdhub.nippin import exports, reports
from hdhub.nippin.deps import Manager, ServiceDep, SessionDep
from hdhub.nippin.domain.report import RESULTS
from hdhub.nippin.domain.statuses import STATUSES
from hdhub.nippin.schemas import (
    ArchiveIn,
    ExportIn,
    ExportOut,
    ExportPage,
    MessageOut,
    MessagePage,
    RecordOut,
    RecordPage,
    ReimbursedRegistryOut,
    ReimbursedRegistryPage,
    ReportOut,
    ReportPage,
    ReportRecords,
    TransitionOut,
)
from hdhub.nippin.service import message_and_moves
from hdhub.nippin.store import Export, MessageTransition, NippinMessage, Report, ReportRow

MessageId = Annotated[str, Path(max_length=36)]
ExportId = Annotated[str, Path(max_length=36)]

router = APIRouter(prefix="/api/v1/nippin", tags=["nippin"])


def message_out(m: NippinMessage, transitions: list[MessageTransition] | None = None) -> MessageOut:
    return MessageOut(
        id=m.id,
        registration_id=m.registration_id,
        registration_version=m.registration_version,
        registration_code=m.registration_code,
        dcd_code=m.dcd_code,
        dcd_version=m.dcd_version,
        schema_version=m.schema_version,
        status=m.status,
        implant_date=m.implant_date,
        invalid_reasons=list(m.invalid_reasons),
        interface=m.interface,
        tack_major=m.tack_major,
        tack_outcome=m.tack_outcome,
        tack_messages=list(m.tack_messages),
        tack_at=m.tack_at,
        sends=m.sends,
        refusals=m.refusals,
        last_error=m.last_error,
        created_at=m.created_at,
        updated_at=m.updated_at,
        sent_at=m.sent_at,
        purged_at=m.purged_at,
        transitions=(
            [
                TransitionOut(
                    from_status=t.from_status, to_status=t.to_status, cause=t.cause, actor=t.actor, at=t.at
                )
                for t in transitions
            ]
            if transitions is not None
            else None
        ),
    )


def report_out(r: Report) -> ReportOut:
    return ReportOut(night=r.night, counts={k: int(v) for k, v in r.counts.items()}, built_at=r.built_at)


def record_out(r: ReportRow) -> RecordOut:
    return RecordOut(
        registration_id=r.registration_id,
        registration_code=r.registration_code,
        dcd_code=r.dcd_code,
        implant_date=r.implant_date,
        result=r.result,
        message_id=r.message_id,
        message_status=r.message_status,
        reason=r.reason,
    )


def export_out(e: Export) -> ExportOut:
    return ExportOut(
        id=e.id,
        dcd_code=e.dcd_code,
        date_from=e.date_from,
        date_to=e.date_to,
        nominative=e.nominative,
        state=e.state,
        rows=e.rows,
        requested_by=e.requested_by,
        created_at=e.created_at,
        ready_at=e.ready_at,
        download=f"/api/v1/nippin/{e.organisation_id}/exports/{e.id}/download"
        if e.state == "ready"
        else None,
    )


async def _record_page(
    session: AsyncSession, query: Select[tuple[ReportRow]], limit: int, offset: int
) -> RecordPage:
    """A page of report rows ``query`` selects (in its order)."""
    total = await count(session, query)
    rows = (await session.execute(query.limit(limit).offset(offset))).scalars().all()
    return RecordPage(items=[record_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get(
    "/{organisation_id}/registries",
    response_model=ReimbursedRegistryPage,
    summary="The reimbursed registries",
)
async def registries(
    organisation_id: OrganisationId, principal: Manager, limit: Limit = 100, offset: Offset = 0
) -> ReimbursedRegistryPage:
    """The registries (DCDs) with fields bound for NIPPIN, as the catalogue has them."""
    registries = [
        ReimbursedRegistryOut(project_code=d.project_code, dcd_code=d.dcd_code, labels=dict(d.labels))
        for d in await reports.registries(organisation_id, principal.username)
    ]
    return ReimbursedRegistryPage.window(registries, limit=limit, offset=offset)


@router.get(
    "/{organisation_id}/registries/{dcd_code}/records",
    response_model=ReportRecords,
    summary="A registry's records in the report built last, with their result and message status",
)
async def records(
    organisation_id: OrganisationId,
    dcd_code: Annotated[str, Path(max_length=64)],
    _manager: Manager,
    session: SessionDep,
    result: Annotated[str | None, Query(description=f"one of {', '.join(RESULTS)}")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ReportRecords:
    report, rows, total = await reports.records(
        session, organisation_id, dcd_code, result=result, limit=limit, offset=offset
    )
    page = RecordPage(items=[record_out(r) for r in rows], total=total, limit=limit, offset=offset)
    return ReportRecords(report=report_out(report) if report is not None else None, records=page)


@router.get("/{organisation_id}/messages", response_model=MessagePage, summary="Messages, newest first")
async def messages(
    organisation_id: OrganisationId,
    _manager: Manager,
    session: SessionDep,
    status: Annotated[str | None, Query(description=f"one of {', '.join(STATUSES)}")] = None,
    dcd_code: Annotated[str | None, Query(max_length=64)] = None,
    registration_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> MessagePage:
    if status is not None and status not in STATUSES:
        raise invalid([FieldProblem("status", "enum", f"status is one of {', '.join(STATUSES)}")])
    where = [NippinMessage.organisation_id == organisation_id]
    if status is not None:
        where.append(NippinMessage.status == status)
    if dcd_code is not None:
        where.append(NippinMessage.dcd_code == dcd_code)
    if registration_id is not None:
        where.append(NippinMessage.registration_id == registration_id)
    query = select(NippinMessage).where(*where)
    total = await count(session, query)
    window = query.order_by(NippinMessage.created_at.desc(), NippinMessage.id).limit(limit).offset(offset)
    rows = (await session.execute(window)).scalars().all()
    return MessagePage(items=[message_out(m) for m in rows], total=total, limit=limit, offset=offset)


@router.get(
    "/{organisation_id}/messages/{message_id}",
    response_model=MessageOut,
    summary="A message and its transitions",
)
async def message(message_id: MessageId, _manager: Manager, session: SessionDep) -> MessageOut:
    m, moves = await message_and_moves(session, message_id)
    return message_out(m, moves)


@router.post(
    "/{organisation_id}/messages/{message_id}/archive",
    response_model=MessageOut,
    summary="Archive a message: it is never processed again",
    responses={409: {"description": "message-not-archivable"}},
)
async def archive(
    organisation_id: OrganisationId,
    message_id: MessageId,
    body: ArchiveIn,
    principal: Manager,
    service: ServiceDep,
) -> MessageOut:
    """Archiving owns its transaction (:meth:`~hdhub.nippin.service.Messages.archive`)."""
    m = await service.messages.archive(
        organisation_id=organisation_id,
        message_id=message_id,
        reason=body.reason,
        actor=principal.username,
    )
    return message_out(m)


@router.get(
    "/{organisation_id}/reports",
    response_model=ReportPage,
    summary="The nightly reports kept, newest first",
)
async def list_reports(
    organisation_id: OrganisationId,
    _manager: Manager,
    session: SessionDep,
    limit: Limit = 31,
    offset: Offset = 0,
) -> ReportPage:
    query = select(Report).where(Report.organisation_id == organisation_id)
    total = await count(session, query)
    window = query.order_by(Report.night.desc()).limit(limit).offset(offset)
    rows = (await session.execute(window)).scalars().all()
    return ReportPage(items=[report_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.post(
    "/{organisation_id}/reports",
    response_model=ReportOut,
    status_code=201,
    summary="Build tonight's report now (again), by reconciliation with registrations",
)
async def build_report(organisation_id: OrganisationId, principal: Manager, service: ServiceDep) -> ReportOut:
    """Building owns its transactions: it asks registrations page by page in between."""
    report = await reports.build(service.db, organisation_id, utcnow().date(), actor=principal.username)
    return report_out(report)


@router.get("/{organisation_id}/reports/{night}", response_model=ReportRecords, summary="One night's report")
async def get_report(
    organisation_id: OrganisationId,
    night: date,
    _manager: Manager,
    session: SessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ReportRecords:
    report = (
        await session.execute(
            select(Report).where(Report.organisation_id == organisation_id, Report.night == night)
        )
    ).scalar_one_or_none()
    if report is None:
        raise not_found("Report")
    query = select(ReportRow).where(ReportRow.report_id == report.id).order_by(ReportRow.id)
    records = await _record_page(session, query, limit, offset)
    return ReportRecords(report=report_out(report), records=records)


@router.post(
    "/{organisation_id}/exports",
    response_model=ExportOut,
    status_code=202,
    summary="Export results for a range of implant dates",
)
async def create_export(
    organisation_id: OrganisationId,
    body: ExportIn,
    principal: Manager,
    service: ServiceDep,
    session: SessionDep,
) -> ExportOut:
    export = await exports.request(
        session,
        service.messages,
        organisation_id=organisation_id,
        principal=principal,
        dcd_code=body.dcd_code,
        date_from=body.date_from,
        date_to=body.date_to,
        nominative=body.nominative,
    )
    return export_out(export)


@router.get("/{organisation_id}/exports", response_model=ExportPage, summary="Exports, newest first")
async def list_exports(
    organisation_id: OrganisationId,
    _manager: Manager,
    session: SessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ExportPage:
    rows, total = await exports.listing(session, organisation_id, limit=limit, offset=offset)
    return ExportPage(items=[export_out(e) for e in rows], total=total, limit=limit, offset=offset)


@router.get("/{organisation_id}/exports/{export_id}", response_model=ExportOut, summary="An export's state")
async def get_export(export_id: ExportId, _manager: Manager, session: SessionDep) -> ExportOut:
    return export_out(await exports.get(session, export_id))


@router.get(
    "/{organisation_id}/exports/{export_id}/download",
    summary="The export's CSV, once ready",
    responses={409: {"description": "export-not-ready"}},
)
async def download(
    export_id: ExportId, service: ServiceDep, _manager: Manager, session: SessionDep
) -> StreamingResponse:
    export = await exports.get(session, export_id)
    return StreamingResponse(
        exports.download(service.objects, export),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(exports.filename(export))},
    )
