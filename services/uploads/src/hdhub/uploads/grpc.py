"""The Upload Center's internal edge (hdhub.uploads.v1), for the portal's pages: the REST
routes' operations as gRPC methods, over the same :class:`~hdhub.uploads.service.Uploads`
methods, so the same callers are let through and refused. Files arrive in chunks of a
client stream and leave in chunks of a server stream: none is held whole."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hdhub.common.db import utcnow
from hdhub.common.errors import FieldProblem, Problem, invalid
from hdhub.common.filenames import BadFileName, checked_file_name, file_name_refused
from hdhub.common.grpc import ServicerContext, require_operator, require_principal
from hdhub.common.parked_jobs import archive_parked_jobs, list_parked_jobs, retry_parked_jobs
from hdhub.common.tallies import hour_bucket, read_tallies
from hdhub.common.web import LANGUAGES
from hdhub.proto.uploads.v1 import uploads_pb2 as pb
from hdhub.proto.uploads.v1 import uploads_pb2_grpc as pb_grpc
from hdhub.uploads.reports import finding_rows
from hdhub.uploads.service import DEFAULT_SETTINGS, IncomingFile, NewUpload, RegistrySettings
from hdhub.uploads.store import Job, Upload, UploadFailureTally

if TYPE_CHECKING:
    from hdhub.uploads.runtime import UploadsService

VALIDATIONS = {
    "none": pb.VALIDATION_NONE,
    "save_on_validations": pb.VALIDATION_SAVE_ON_VALIDATIONS,
    "validate_all": pb.VALIDATION_VALIDATE_ALL,
}
CONFLICT_MASTERS = {"new": pb.CONFLICT_MASTER_NEW, "stored": pb.CONFLICT_MASTER_STORED}
KINDS = {"registrations": pb.UPLOAD_KIND_REGISTRATIONS, "sequences": pb.UPLOAD_KIND_SEQUENCES}
STATUSES = {
    "queued": pb.UPLOAD_STATUS_QUEUED,
    "processing": pb.UPLOAD_STATUS_PROCESSING,
    "done": pb.UPLOAD_STATUS_DONE,
    "failed": pb.UPLOAD_STATUS_FAILED,
    "held": pb.UPLOAD_STATUS_HELD,
    "linked": pb.UPLOAD_STATUS_LINKED,
}
STEP_STATES = {
    "pending": pb.STEP_STATE_PENDING,
    "running": pb.STEP_STATE_RUNNING,
    "success": pb.STEP_STATE_SUCCESS,
    "warnings": pb.STEP_STATE_WARNINGS,
    "errors": pb.STEP_STATE_ERRORS,
}
REPORT_KINDS = {pb.REPORT_KIND_ERRORS: "errors", pb.REPORT_KIND_SUCCESS: "success"}
#: What a failed upload's page says; the technical error itself stays in the logs.
FAILED = "The upload failed on our side after several attempts; nothing more will happen to it. Send the file again."


def language(code: str) -> str:
    code = code[:2].lower()
    return code if code in LANGUAGES else "en"


def moment(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _name_of(values: Mapping[str, int], wanted: int, field: str) -> str:
    """The setting a message's enum value stands for; a 422 naming the field for unspecified."""
    for name, number in values.items():
        if number == wanted:
            return name
    raise invalid([FieldProblem(field, "required", "Choose one of the values.")])


def settings_message(values: dict[str, Any]) -> pb.UploadSettings:
    return pb.UploadSettings(
        conflict_mode=str(values.get("conflict_mode") or "business_key"),
        conflict_master=CONFLICT_MASTERS.get(
            str(values.get("conflict_master")), pb.CONFLICT_MASTER_UNSPECIFIED
        ),
        ignore_duplicates=bool(values.get("ignore_duplicates")),
        autosubmit=bool(values.get("autosubmit")),
        validation=VALIDATIONS.get(str(values.get("validation")), pb.VALIDATION_UNSPECIFIED),
    )


def steps_message(steps: Mapping[str, Any]) -> pb.Steps:
    def state(step: str) -> pb.StepState.ValueType:
        return STEP_STATES.get(str(steps.get(step)), pb.STEP_STATE_UNSPECIFIED)

    return pb.Steps(
        select_file=state("select_file"),
        validity_check=state("validity_check"),
        upload=state("upload"),
        finalize=state("finalize"),
    )


def upload_message(u: Upload, lang: str) -> pb.Upload:
    """An upload as the REST view shows it (``api.upload_out``), findings in ``lang``."""
    options, info, counts = dict(u.options), u.file_info or {}, u.counts or {}
    return pb.Upload(
        id=u.id,
        organisation_id=u.organisation_id,
        filename=u.filename,
        size=u.size,
        sha256=u.sha256,
        project_code=u.project_code,
        dcd_code=u.dcd_code,
        dcd_version=u.dcd_version,
        settings=settings_message({k: options.get(k) for k in DEFAULT_SETTINGS}),
        dry_run=bool(options.get("dry_run")),
        kind=KINDS.get(str(options.get("kind", "registrations")), pb.UPLOAD_KIND_REGISTRATIONS),
        status=STATUSES.get(u.status, pb.UPLOAD_STATUS_UNSPECIFIED),
        steps=steps_message(u.steps or {}),
        counts=pb.Counts(
            **{k: int(v) for k, v in counts.items() if k in pb.Counts.DESCRIPTOR.fields_by_name}
        ),
        file_info=pb.FileInfo(
            encoding=str(info.get("encoding", "")),
            delimiter=str(info.get("delimiter", "")),
            columns=int(info.get("columns", 0)),
            records=int(info.get("records", 0)),
        ),
        findings=[
            pb.Finding(
                line=int(r[0] or 0),
                record=int(r[1] or 0),
                column=r[2],
                rule=r[4],
                severity=r[5],
                message=r[6],
            )
            for r in finding_rows(u.findings, lang)
        ],
        nothing_stored=u.status == "done" and bool(options.get("nothing_stored")),
        source=str(options.get("source", "api")),
        uploaded_by=u.uploaded_by,
        created_at=moment(u.created_at),
        finished_at=moment(u.finished_at),
        source_purged=u.source_purged_at is not None,
        linked_upload_id=str(options.get("linked_upload_id") or ""),
        linked_by=str(options.get("linked_by") or ""),
        phase=u.phase,
        error=FAILED if u.status == "failed" else "",
    )


def _settings_answer(found: RegistrySettings) -> dict[str, Any]:
    return {
        "settings": settings_message(found.values),
        "updated_by": found.updated_by,
        "updated_at": moment(found.updated_at),
    }


class UploadsServicer(pb_grpc.UploadsServiceServicer):
    def __init__(self, service: UploadsService) -> None:
        self.uploads = service.uploads

    async def CreateUpload(
        self, request_iterator: AsyncIterator[pb.CreateUploadRequest], context: ServicerContext
    ) -> pb.CreateUploadResponse:
        """Take a file: the header first, then its chunks, streamed into the object store as
        they arrive (refused past the size limit, nothing kept). Whoever may upload for the
        organisation may (PERMISSION_DENIED otherwise); settings the header leaves unset come
        from the organisation's settings for the registry."""
        principal = require_principal()
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            raise Problem(400, "header-required", "The first message is the upload's header")
        h = first.header
        lang = language(h.language)
        try:
            filename = checked_file_name(h.filename or "upload.csv")
        except BadFileName as refusal:
            raise file_name_refused(refusal, lang) from None
        new = NewUpload(
            dcd_code=h.dcd_code,
            organisation_id=h.organisation_id or None,
            version=h.version or None,
            overrides={
                "validation": _name_of(VALIDATIONS, h.validation, "validation")
                if h.validation != pb.VALIDATION_UNSPECIFIED
                else None,
                "conflict_master": _name_of(CONFLICT_MASTERS, h.conflict_master, "conflict_master")
                if h.conflict_master != pb.CONFLICT_MASTER_UNSPECIFIED
                else None,
                "ignore_duplicates": h.ignore_duplicates if h.HasField("ignore_duplicates") else None,
                "autosubmit": h.autosubmit if h.HasField("autosubmit") else None,
            },
            dry_run=h.dry_run,
            kind="sequences" if h.kind == pb.UPLOAD_KIND_SEQUENCES else "registrations",
            linked_upload_id=h.linked_upload_id or None,
            language=lang,
            idempotency_key=h.idempotency_key or None,
        )

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.WhichOneof("part") != "chunk":
                    raise Problem(400, "header-once", "Only the first message is a header")
                yield message.chunk

        upload, replayed = await self.uploads.receive(
            principal, new, lambda: IncomingFile(chunks(), lambda: filename)
        )
        return pb.CreateUploadResponse(upload=upload_message(upload, lang), replayed=replayed)

    async def GetUpload(self, request: pb.GetUploadRequest, context: ServicerContext) -> pb.GetUploadResponse:
        """An upload of an organisation whose registrations the caller may read (NOT_FOUND
        otherwise, whether or not it exists elsewhere)."""
        upload = await self.uploads.readable(require_principal(), request.id)
        return pb.GetUploadResponse(upload=upload_message(upload, language(request.language)))

    async def ListUploads(
        self, request: pb.ListUploadsRequest, context: ServicerContext
    ) -> pb.ListUploadsResponse:
        """The uploads of the organisation (of all the caller may read when none is named),
        newest first; PERMISSION_DENIED for an organisation whose registrations the caller
        may not read."""
        items, total = await self.uploads.listing(
            require_principal(),
            request.organisation_id or None,
            limit=min(request.limit or 50, 200),
            offset=request.offset,
        )
        lang = language(request.language)
        return pb.ListUploadsResponse(uploads=[upload_message(u, lang) for u in items], total=total)

    async def WatchUpload(
        self, request: pb.WatchUploadRequest, context: ServicerContext
    ) -> AsyncIterator[pb.WatchUploadResponse]:
        """The upload now, then at each change of its status, steps or counts; the stream
        ends when it is done, failed or linked. NOT_FOUND as for GetUpload."""
        lang = language(request.language)
        async for upload in await self.uploads.watch(require_principal(), request.id):
            yield pb.WatchUploadResponse(upload=upload_message(upload, lang))

    async def GetUploadReport(
        self, request: pb.GetUploadReportRequest, context: ServicerContext
    ) -> AsyncIterator[pb.GetUploadReportResponse]:
        """The error or success report in chunks, the first naming the file; NOT_FOUND as
        for GetUpload."""
        kind = REPORT_KINDS.get(request.kind)
        if kind is None:
            raise invalid([FieldProblem("kind", "required", "Choose the errors or the success report.")])
        upload = await self.uploads.readable(require_principal(), request.id)
        filename, body = self.uploads.report(upload, kind)
        first = True
        async for chunk in body:
            yield pb.GetUploadReportResponse(filename=filename if first else "", chunk=chunk)
            first = False

    async def GetUploadSettings(
        self, request: pb.GetUploadSettingsRequest, context: ServicerContext
    ) -> pb.GetUploadSettingsResponse:
        """The organisation's settings for a registry, for whoever may read its
        registrations (NOT_FOUND for anyone else)."""
        found = await self.uploads.settings_for(
            require_principal(), request.organisation_id, request.project_code
        )
        return pb.GetUploadSettingsResponse(**_settings_answer(found))

    async def UpdateUploadSettings(
        self, request: pb.UpdateUploadSettingsRequest, context: ServicerContext
    ) -> pb.UpdateUploadSettingsResponse:
        """Set every setting of a registry for the organisation: those who may upload for
        it may (PERMISSION_DENIED for its readers, NOT_FOUND for anyone else)."""
        principal = require_principal()
        s = request.settings
        if s.conflict_mode not in ("", "business_key"):
            raise invalid([FieldProblem("conflict_mode", "choice", "Records meet by business_key.")])
        values = {
            "conflict_mode": "business_key",
            "conflict_master": _name_of(CONFLICT_MASTERS, s.conflict_master, "conflict_master"),
            "ignore_duplicates": s.ignore_duplicates,
            "autosubmit": s.autosubmit,
            "validation": _name_of(VALIDATIONS, s.validation, "validation"),
        }
        changed = await self.uploads.change_settings(
            principal, request.organisation_id, request.project_code, values
        )
        return pb.UpdateUploadSettingsResponse(**_settings_answer(changed))

    async def OrganisationHealth(
        self, request: pb.OrganisationHealthRequest, context: ServicerContext
    ) -> pb.OrganisationHealthResponse:
        """Uploads failed in the last 24 hours (to the hour) per organisation, from the
        tally the database keeps. Operator only: it spans every tenant."""
        require_operator()
        since = hour_bucket(utcnow() - timedelta(hours=24))
        async with self.uploads.db.system_session() as session:
            found = await read_tallies(session, UploadFailureTally, since=since)
        return pb.OrganisationHealthResponse(
            organisations=[
                pb.OrganisationCounts(organisation_id=org, counts={"failed_last_day": sum(hours.values())})
                for org, hours in sorted(found.items())
            ]
        )

    async def ListParkedJobs(
        self, request: pb.ListParkedJobsRequest, context: ServicerContext
    ) -> pb.ListParkedJobsResponse:
        """This service's parked (or archived) background jobs, grouped; counts only. Operator only."""
        answer: pb.ListParkedJobsResponse = await list_parked_jobs(pb, request, self.uploads.db, Job)
        return answer

    async def RetryParkedJobs(
        self, request: pb.RetryParkedJobsRequest, context: ServicerContext
    ) -> pb.RetryParkedJobsResponse:
        """Queue an organisation's parked jobs again (one group, or all). Operator only."""
        answer: pb.RetryParkedJobsResponse = await retry_parked_jobs(
            pb, request, self.uploads.db, Job, service="uploads", wake=self.uploads.wake.notify
        )
        return answer

    async def ArchiveParkedJobs(
        self, request: pb.ArchiveParkedJobsRequest, context: ServicerContext
    ) -> pb.ArchiveParkedJobsResponse:
        """Set an organisation's parked jobs aside (one group, or all). Operator only."""
        answer: pb.ArchiveParkedJobsResponse = await archive_parked_jobs(
            pb, request, self.uploads.db, Job, service="uploads"
        )
        return answer
