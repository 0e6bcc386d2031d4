"""NIPPIN's internal edge (hdhub.nippin.v1): registrations hands over submissions; the
portal shows the NIPPIN Manager's pages, calling with the person's token. The Manager's
methods are the REST routes' rules and queries (reports, exports, the messages aggregate),
checked the same way: the ``nippin`` action in the organisation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import TYPE_CHECKING

from hdhub.common.auth import Action, Principal
from hdhub.common.db import utcnow
from hdhub.common.errors import FieldProblem, Problem, forbidden, invalid
from hdhub.common.grpc import ServicerContext, require_operator, require_principal
from hdhub.common.parked_jobs import archive_parked_jobs, list_parked_jobs, retry_parked_jobs
from hdhub.common.tallies import read_tallies
from hdhub.nippin import exports, reports
from hdhub.nippin.domain import report as rule
from hdhub.nippin.domain.statuses import ARCHIVED, ERROR, INVALID, SENT, TO_SEND
from hdhub.nippin.service import Submission, message_and_moves
from hdhub.nippin.store import (
    Export,
    Job,
    MessageTransition,
    NippinMessage,
    NippinMessageTally,
    Report,
    ReportRow,
)
from hdhub.proto.nippin.v1 import nippin_pb2 as pb
from hdhub.proto.nippin.v1 import nippin_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from hdhub.nippin.runtime import NippinService

STATUSES = {
    TO_SEND: pb.MESSAGE_STATUS_TO_SEND,
    SENT: pb.MESSAGE_STATUS_SENT,
    ERROR: pb.MESSAGE_STATUS_ERROR,
    INVALID: pb.MESSAGE_STATUS_INVALID,
    ARCHIVED: pb.MESSAGE_STATUS_ARCHIVED,
}
RESULTS = {
    rule.VALID: pb.REPORT_RESULT_VALID,
    rule.INVALID_RESULT: pb.REPORT_RESULT_INVALID,
    rule.NOT_FOUND: pb.REPORT_RESULT_NOT_FOUND,
    rule.NOT_SENT: pb.REPORT_RESULT_NOT_SENT,
}
RESULT_NAMES = {v: k for k, v in RESULTS.items()}
#: The exports ListExports answers, newest first.
EXPORTS_LISTED = 100
EXPORT_STATES = {
    "queued": pb.EXPORT_STATE_QUEUED,
    "ready": pb.EXPORT_STATE_READY,
    "failed": pb.EXPORT_STATE_FAILED,
}


def _status(status: str | None) -> pb.MessageStatus.ValueType:
    return STATUSES.get(status or "", pb.MESSAGE_STATUS_UNSPECIFIED)


def _iso(value: date | datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid([FieldProblem(field, "date", "A date is written YYYY-MM-DD.")]) from None


def manager_of(organisation_id: str) -> Principal:
    """The caller, when it has the ``nippin`` action in the organisation (a NIPPIN Manager)."""
    principal = require_principal()
    principal.require(Action.NIPPIN, organisation_id)
    return principal


def report_pb(r: Report) -> pb.Report:
    return pb.Report(
        night=_iso(r.night), counts={k: int(v) for k, v in r.counts.items()}, built_at=_iso(r.built_at)
    )


def record_pb(r: ReportRow) -> pb.Record:
    return pb.Record(
        registration_id=r.registration_id,
        registration_code=r.registration_code,
        dcd_code=r.dcd_code,
        implant_date=_iso(r.implant_date),
        result=RESULTS[r.result],
        message_id=r.message_id or "",
        message_status=_status(r.message_status),
        reason=r.reason,
    )


def message_pb(m: NippinMessage, moves: list[MessageTransition] | None = None) -> pb.Message:
    return pb.Message(
        id=m.id,
        registration_id=m.registration_id,
        registration_code=m.registration_code,
        dcd_code=m.dcd_code,
        status=_status(m.status),
        implant_date=_iso(m.implant_date),
        invalid_reasons=[str(r) for r in m.invalid_reasons],
        last_error=m.last_error,
        tack_outcome=m.tack_outcome,
        created_at=_iso(m.created_at),
        transitions=[
            pb.Transition(
                from_status=_status(t.from_status),
                to_status=_status(t.to_status),
                cause=t.cause,
                actor=t.actor,
                at=_iso(t.at),
            )
            for t in moves or []
        ],
    )


def export_pb(e: Export) -> pb.Export:
    return pb.Export(
        id=e.id,
        dcd_code=e.dcd_code,
        date_from=_iso(e.date_from),
        date_to=_iso(e.date_to),
        nominative=e.nominative,
        state=EXPORT_STATES.get(e.state, pb.EXPORT_STATE_UNSPECIFIED),
        rows=e.rows,
        requested_by=e.requested_by,
        created_at=_iso(e.created_at),
        ready_at=_iso(e.ready_at),
    )


class NippinServicer(pb_grpc.NippinServiceServicer):
    def __init__(self, service: NippinService) -> None:
        self.service = service

    async def SubmitRegistration(
        self, request: pb.SubmitRegistrationRequest, context: ServicerContext
    ) -> pb.SubmitRegistrationResponse:
        """Make the NIPPIN message of one submission (once: a repeat answers the first)."""
        principal = require_principal()
        # Only registrations hands over, acting for the organisation (checked by the
        # acting-for interceptor against ``organisation_id``).
        if not principal.is_service("registrations"):
            raise forbidden("Only registrations hands submissions over to NIPPIN.")
        if not request.organisation_id or not request.registration_id or not request.registration_version:
            raise Problem(
                400,
                "submission-incomplete",
                "organisation_id, registration_id and registration_version are required",
            )
        message, duplicate = await self.service.messages.submit(
            Submission(
                organisation_id=request.organisation_id,
                registration_id=request.registration_id,
                registration_version=request.registration_version,
                registration_code=request.registration_code,
                project_code=request.project_code,
                dcd_code=request.dcd_code,
                dcd_version=request.dcd_version,
                fields=tuple((f.xml_name or f.technical_name, f.value) for f in request.fields),
            )
        )
        return pb.SubmitRegistrationResponse(
            message_id=message.id, status=_status(message.status), duplicate=duplicate
        )

    async def ListRegistries(
        self, request: pb.ListRegistriesRequest, context: ServicerContext
    ) -> pb.ListRegistriesResponse:
        """The reimbursed registries (DCDs that make messages), as the catalogue has them."""
        principal = manager_of(request.organisation_id)
        found = await reports.registries(request.organisation_id, principal.username)
        return pb.ListRegistriesResponse(
            registries=[
                pb.Registry(project_code=d.project_code, dcd_code=d.dcd_code, labels=d.labels) for d in found
            ]
        )

    async def ListRecords(
        self, request: pb.ListRecordsRequest, context: ServicerContext
    ) -> pb.ListRecordsResponse:
        """A registry's records in the report built last, by implant date, one page of them."""
        manager_of(request.organisation_id)
        async with self.service.db.session([request.organisation_id]) as session:
            report, rows, total = await reports.records(
                session,
                request.organisation_id,
                request.dcd_code,
                result=RESULT_NAMES.get(request.result),
                limit=min(request.limit or 100, 1000),
                offset=request.offset,
            )
        return pb.ListRecordsResponse(
            report=report_pb(report) if report is not None else None,
            records=[record_pb(r) for r in rows],
            total=total,
        )

    async def BuildReport(
        self, request: pb.BuildReportRequest, context: ServicerContext
    ) -> pb.BuildReportResponse:
        """Build tonight's report now (again), by reconciliation with registrations."""
        principal = manager_of(request.organisation_id)
        report = await reports.build(
            self.service.db, request.organisation_id, utcnow().date(), actor=principal.username
        )
        return pb.BuildReportResponse(report=report_pb(report))

    async def GetMessage(
        self, request: pb.GetMessageRequest, context: ServicerContext
    ) -> pb.GetMessageResponse:
        """One message of the organisation, with its moves oldest first."""
        manager_of(request.organisation_id)
        async with self.service.db.session([request.organisation_id]) as session:
            message, moves = await message_and_moves(session, request.message_id)
            return pb.GetMessageResponse(message=message_pb(message, moves))

    async def ArchiveMessage(
        self, request: pb.ArchiveMessageRequest, context: ServicerContext
    ) -> pb.ArchiveMessageResponse:
        """Archive a message with the person's reason: it is never processed again."""
        principal = manager_of(request.organisation_id)
        await self.service.messages.archive(
            organisation_id=request.organisation_id,
            message_id=request.message_id,
            reason=request.reason,
            actor=principal.username,
        )
        async with self.service.db.session([request.organisation_id]) as session:
            message, moves = await message_and_moves(session, request.message_id)
            return pb.ArchiveMessageResponse(message=message_pb(message, moves))

    async def CreateExport(
        self, request: pb.CreateExportRequest, context: ServicerContext
    ) -> pb.CreateExportResponse:
        """Ask for an export of a registry's results over a range of implant dates (a job)."""
        principal = manager_of(request.organisation_id)
        missing = [
            FieldProblem(name, "required", "This field is required.")
            for name in ("dcd_code", "date_from", "date_to")
            if not getattr(request, name)
        ]
        if missing:
            raise invalid(missing)
        date_from, date_to = _date(request.date_from, "date_from"), _date(request.date_to, "date_to")
        async with self.service.db.session([request.organisation_id]) as session:
            export = await exports.request(
                session,
                self.service.messages,
                organisation_id=request.organisation_id,
                principal=principal,
                dcd_code=request.dcd_code,
                date_from=date_from,
                date_to=date_to,
                nominative=request.nominative,
            )
            return pb.CreateExportResponse(export=export_pb(export))

    async def ListExports(
        self, request: pb.ListExportsRequest, context: ServicerContext
    ) -> pb.ListExportsResponse:
        """The organisation's exports, newest first."""
        manager_of(request.organisation_id)
        async with self.service.db.session([request.organisation_id]) as session:
            found, _total = await exports.listing(session, request.organisation_id, limit=EXPORTS_LISTED)
            return pb.ListExportsResponse(exports=[export_pb(e) for e in found])

    async def DownloadExport(
        self, request: pb.DownloadExportRequest, context: ServicerContext
    ) -> AsyncIterator[pb.DownloadExportResponse]:
        """A ready export's CSV in chunks, its file name in the first."""
        manager_of(request.organisation_id)
        async with self.service.db.session([request.organisation_id]) as session:
            export = await exports.get(session, request.export_id)
        name = exports.filename(export)
        async for chunk in exports.download(self.service.objects, export):
            yield pb.DownloadExportResponse(filename=name, chunk=chunk)
            name = ""

    async def OrganisationHealth(
        self, request: pb.OrganisationHealthRequest, context: ServicerContext
    ) -> pb.OrganisationHealthResponse:
        """Billing messages in error, invalid and still to send per organisation, from
        the tally the database keeps. Operator only: it spans every tenant."""
        require_operator()
        async with self.service.db.system_session() as session:
            found = await read_tallies(session, NippinMessageTally)
        return pb.OrganisationHealthResponse(
            organisations=[
                pb.OrganisationCounts(
                    organisation_id=org,
                    counts={
                        "error": statuses.get(ERROR, 0),
                        "invalid": statuses.get(INVALID, 0),
                        "to_send": statuses.get(TO_SEND, 0),
                    },
                )
                for org, statuses in sorted(found.items())
            ]
        )

    async def ListParkedJobs(
        self, request: pb.ListParkedJobsRequest, context: ServicerContext
    ) -> pb.ListParkedJobsResponse:
        """This service's parked (or archived) background jobs, grouped; counts only. Operator only."""
        answer: pb.ListParkedJobsResponse = await list_parked_jobs(pb, request, self.service.db, Job)
        return answer

    async def RetryParkedJobs(
        self, request: pb.RetryParkedJobsRequest, context: ServicerContext
    ) -> pb.RetryParkedJobsResponse:
        """Queue an organisation's parked jobs again (one group, or all). Operator only."""
        answer: pb.RetryParkedJobsResponse = await retry_parked_jobs(
            pb, request, self.service.db, Job, service="nippin", wake=None
        )
        return answer

    async def ArchiveParkedJobs(
        self, request: pb.ArchiveParkedJobsRequest, context: ServicerContext
    ) -> pb.ArchiveParkedJobsResponse:
        """Set an organisation's parked jobs aside (one group, or all). Operator only."""
        answer: pb.ArchiveParkedJobsResponse = await archive_parked_jobs(
            pb, request, self.service.db, Job, service="nippin"
        )
        return answer
