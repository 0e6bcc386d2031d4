"""NIPPIN's REST edge, /api/v1/nippin/{organisation_id}/...: the NIPPIN Manager's view.

Everything needs the ``nippin`` action in the organisation (the NIPPIN Manager role); a
caller outside it gets 403 and learns nothing. The reimbursed registries, per registry the
records of the report built last with their result and message status, the messages with their
statuses and transitions, archiving, the nightly reports, and exports (a job; the CSV is
downloadable when ready).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from hdhub.common.auth import ActingFor, Action, Principal
from hdhub.common.db import after_commit, utcnow
from hdhub.common.errors import FieldProblem, Problem, invalid, not_found
from hdhub.common.grpc import channel
from hdhub.common.service_auth import acting_as_service
from hdhub.common.web import CurrentPrincipal
from hdhub.nippin import exports, reports
from hdhub.nippin.domain.report import RESULTS
from hdhub.nippin.domain.statuses import STATUSES
from hdhub.nippin.schemas import (
    ArchiveIn,
    ExportIn,
    ExportOut,
    MessageOut,
    MessagePage,
    RecordOut,
    RecordPage,
    RegistryOut,
    ReportOut,
    TransitionOut,
)
from hdhub.nippin.store import Export, MessageTransition, NippinMessage, Report, ReportRow
from hdhub.proto.registrations.v1 import registrations_pb2 as reg_pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as reg_grpc

if TYPE_CHECKING:
    from hdhub.nippin.runtime import NippinService

OrganisationId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
#: The widest range of implant dates one export covers.
MAX_EXPORT_DAYS = 366 * 5


def manager_of(organisation_id: OrganisationId, principal: CurrentPrincipal) -> Principal:
    principal.require(Action.NIPPIN, organisation_id)
    return principal


Manager = Annotated[Principal, Depends(manager_of)]


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


def _check_range(body: ExportIn) -> None:
    if body.date_to < body.date_from:
        raise invalid([FieldProblem("date_to", "range", "the end date is before the start date")])
    if (body.date_to - body.date_from).days > MAX_EXPORT_DAYS:
        raise invalid([FieldProblem("date_to", "range", f"an export covers at most {MAX_EXPORT_DAYS} days")])


def build_router(service: NippinService) -> APIRouter:
    router = APIRouter(prefix="/api/v1/nippin", tags=["nippin"])
    db = service.db

    @router.get(
        "/{organisation_id}/registries", response_model=list[RegistryOut], summary="The reimbursed registries"
    )
    async def registries(organisation_id: OrganisationId, principal: Manager) -> list[RegistryOut]:
        """The registries (DCDs) with fields bound for NIPPIN, as the catalogue has them."""
        async with acting_as_service("nippin", ActingFor(organisation_id, principal.username)):
            stub = reg_grpc.RegistrationsServiceStub(channel("registrations"))
            found = await stub.ListReimbursedDcds(reg_pb.ListReimbursedDcdsRequest())
        return [
            RegistryOut(project_code=d.project_code, dcd_code=d.dcd_code, labels=dict(d.labels))
            for d in found.dcds
        ]

    @router.get(
        "/{organisation_id}/registries/{dcd_code}/records",
        response_model=RecordPage,
        summary="A registry's records in the report built last, with their result and message status",
    )
    async def records(
        organisation_id: OrganisationId,
        dcd_code: Annotated[str, Path(max_length=64)],
        _principal: Manager,
        result: Annotated[str | None, Query(description=f"one of {', '.join(RESULTS)}")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> RecordPage:
        if result is not None and result not in RESULTS:
            raise invalid([FieldProblem("result", "enum", f"result is one of {', '.join(RESULTS)}")])
        report = await exports.newest_report(db, organisation_id)
        if report is None:
            return RecordPage(report=None, items=[], total=0)
        where = [ReportRow.report_id == report.id, ReportRow.dcd_code == dcd_code]
        if result is not None:
            where.append(ReportRow.result == result)
        async with db.session([organisation_id]) as session:
            total = (
                await session.execute(select(func.count()).select_from(ReportRow).where(*where))
            ).scalar_one()
            rows = (
                (
                    await session.execute(
                        select(ReportRow)
                        .where(*where)
                        .order_by(ReportRow.implant_date, ReportRow.id)
                        .limit(limit)
                        .offset(offset)
                    )
                )
                .scalars()
                .all()
            )
        return RecordPage(report=report_out(report), items=[record_out(r) for r in rows], total=int(total))

    @router.get("/{organisation_id}/messages", response_model=MessagePage, summary="Messages, newest first")
    async def messages(
        organisation_id: OrganisationId,
        _principal: Manager,
        status: Annotated[str | None, Query(description=f"one of {', '.join(STATUSES)}")] = None,
        dcd_code: Annotated[str | None, Query(max_length=64)] = None,
        registration_id: Annotated[str | None, Query(max_length=36)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
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
        async with db.session([organisation_id]) as session:
            total = (
                await session.execute(select(func.count()).select_from(NippinMessage).where(*where))
            ).scalar_one()
            rows = (
                (
                    await session.execute(
                        select(NippinMessage)
                        .where(*where)
                        .order_by(NippinMessage.created_at.desc())
                        .limit(limit)
                        .offset(offset)
                    )
                )
                .scalars()
                .all()
            )
        return MessagePage(items=[message_out(m) for m in rows], total=int(total))

    @router.get(
        "/{organisation_id}/messages/{message_id}",
        response_model=MessageOut,
        summary="A message and its transitions",
    )
    async def message(
        organisation_id: OrganisationId, message_id: Annotated[str, Path(max_length=36)], _principal: Manager
    ) -> MessageOut:
        async with db.session([organisation_id]) as session:
            m = await session.get(NippinMessage, message_id)
            if m is None:
                raise not_found("Message")
            moves = (
                (
                    await session.execute(
                        select(MessageTransition)
                        .where(MessageTransition.message_id == m.id)
                        .order_by(MessageTransition.id)
                    )
                )
                .scalars()
                .all()
            )
            return message_out(m, list(moves))

    @router.post(
        "/{organisation_id}/messages/{message_id}/archive",
        response_model=MessageOut,
        summary="Archive a message: it is never processed again",
        responses={409: {"description": "message-not-archivable"}},
    )
    async def archive(
        organisation_id: OrganisationId,
        message_id: Annotated[str, Path(max_length=36)],
        body: ArchiveIn,
        principal: Manager,
    ) -> MessageOut:
        m = await service.messages.archive(
            organisation_id=organisation_id,
            message_id=message_id,
            reason=body.reason,
            actor=principal.username,
        )
        return message_out(m)

    @router.get(
        "/{organisation_id}/reports",
        response_model=list[ReportOut],
        summary="The nightly reports kept, newest first",
    )
    async def list_reports(
        organisation_id: OrganisationId, _principal: Manager, limit: Annotated[int, Query(ge=1, le=366)] = 31
    ) -> list[ReportOut]:
        async with db.session([organisation_id]) as session:
            rows = (
                (
                    await session.execute(
                        select(Report)
                        .where(Report.organisation_id == organisation_id)
                        .order_by(Report.night.desc())
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        return [report_out(r) for r in rows]

    @router.post(
        "/{organisation_id}/reports",
        response_model=ReportOut,
        status_code=201,
        summary="Build tonight's report now (again), by reconciliation with registrations",
    )
    async def build_report(organisation_id: OrganisationId, principal: Manager) -> ReportOut:
        report = await reports.build(db, organisation_id, utcnow().date(), actor=principal.username)
        return report_out(report)

    @router.get("/{organisation_id}/reports/{night}", response_model=RecordPage, summary="One night's report")
    async def get_report(
        organisation_id: OrganisationId,
        night: date,
        _principal: Manager,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> RecordPage:
        async with db.session([organisation_id]) as session:
            report = (
                await session.execute(
                    select(Report).where(Report.organisation_id == organisation_id, Report.night == night)
                )
            ).scalar_one_or_none()
            if report is None:
                raise not_found("Report")
            total = (
                await session.execute(
                    select(func.count()).select_from(ReportRow).where(ReportRow.report_id == report.id)
                )
            ).scalar_one()
            rows = (
                (
                    await session.execute(
                        select(ReportRow)
                        .where(ReportRow.report_id == report.id)
                        .order_by(ReportRow.id)
                        .limit(limit)
                        .offset(offset)
                    )
                )
                .scalars()
                .all()
            )
            return RecordPage(
                report=report_out(report), items=[record_out(r) for r in rows], total=int(total)
            )

    @router.post(
        "/{organisation_id}/exports",
        response_model=ExportOut,
        status_code=202,
        summary="Export results for a range of implant dates",
    )
    async def create_export(organisation_id: OrganisationId, body: ExportIn, principal: Manager) -> ExportOut:
        _check_range(body)
        if body.nominative and not principal.can(Action.REGISTRATION_READ, organisation_id):
            raise Problem(
                403,
                "nominative-export-forbidden",
                "Forbidden",
                "the SSIN column is for members who may read the registrations",
            )
        async with db.session([organisation_id]) as session:
            export = Export(
                organisation_id=organisation_id,
                dcd_code=body.dcd_code,
                date_from=body.date_from,
                date_to=body.date_to,
                nominative=body.nominative,
                requested_by=principal.username,
            )
            session.add(export)
            await session.flush()
            service.messages.jobs.enqueue(
                session,
                exports.EXPORT_JOB,
                organisation_id=organisation_id,
                subject_id=export.id,
                actor=principal.username,
            )
            after_commit(session, service.messages.wake.notify)
            return export_out(export)

    @router.get("/{organisation_id}/exports", response_model=list[ExportOut], summary="Exports, newest first")
    async def list_exports(organisation_id: OrganisationId, _principal: Manager) -> list[ExportOut]:
        async with db.session([organisation_id]) as session:
            rows = (
                (
                    await session.execute(
                        select(Export)
                        .where(Export.organisation_id == organisation_id)
                        .order_by(Export.created_at.desc())
                        .limit(100)
                    )
                )
                .scalars()
                .all()
            )
        return [export_out(e) for e in rows]

    async def _export(organisation_id: str, export_id: str) -> Export:
        async with db.session([organisation_id]) as session:
            export = await session.get(Export, export_id)
        if export is None:
            raise not_found("Export")
        return export

    @router.get(
        "/{organisation_id}/exports/{export_id}", response_model=ExportOut, summary="An export's state"
    )
    async def get_export(
        organisation_id: OrganisationId, export_id: Annotated[str, Path(max_length=36)], _principal: Manager
    ) -> ExportOut:
        return export_out(await _export(organisation_id, export_id))

    @router.get(
        "/{organisation_id}/exports/{export_id}/download",
        summary="The export's CSV, once ready",
        responses={409: {"description": "export-not-ready"}},
    )
    async def download(
        organisation_id: OrganisationId, export_id: Annotated[str, Path(max_length=36)], _principal: Manager
    ) -> StreamingResponse:
        export = await _export(organisation_id, export_id)
        if export.state != "ready":
            raise Problem(409, "export-not-ready", "The export is not ready", f"the export is {export.state}")

        async def body() -> AsyncIterator[bytes]:
            async for chunk in service.objects.stream(export.object_key):
                yield chunk

        name = f"nippin-{export.dcd_code}-{export.date_from}-{export.date_to}.csv"
        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router
