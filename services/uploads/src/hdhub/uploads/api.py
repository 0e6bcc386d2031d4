"""The Upload Center's REST edge: uploads (multipart or raw CSV, streamed straight into the
object store), their progress (JSON and server-sent events), reports, and the settings
per organisation and registry under ``/api/v1/upload-settings``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, StrictBool

from hdhub.common.errors import Problem
from hdhub.common.filenames import BadFileName, checked_file_name, file_name_refused
from hdhub.common.multipart import MultipartStream, multipart_boundary
from hdhub.common.paging import Offset, Page
from hdhub.common.web import CurrentPrincipal, Language, attachment
from hdhub.uploads.deps import ReadableUpload, UploadsDep
from hdhub.uploads.reports import finding_rows
from hdhub.uploads.service import DEFAULT_SETTINGS, FINISHED, IncomingFile, NewUpload
from hdhub.uploads.store import Upload

SEND_AS_FILE = "Send the CSV as the multipart form field `file`."
ValidationName = Literal["none", "save_on_validations", "validate_all"]
ConflictMasterName = Literal["new", "stored"]


class SettingsIn(BaseModel):
    conflict_mode: Literal["business_key"] = "business_key"
    conflict_master: ConflictMasterName = "new"
    # Strict: JSON's true, not "true" or 1 (a JSON body says what it means).
    ignore_duplicates: StrictBool = True
    autosubmit: StrictBool = False
    validation: ValidationName = "none"


class SettingsOut(SettingsIn):
    organisation_id: str
    project_code: str


class FindingOut(BaseModel):
    line: int | None = None
    record: int | None = None
    column: str = ""
    rule: str
    severity: str
    message: str


#: An upload's status (the closed set the OpenAPI document lists).
UploadStatus = Literal["queued", "held", "processing", "done", "failed", "linked"]


class UploadOut(BaseModel):
    id: str
    organisation_id: str
    filename: str
    size: int
    sha256: str
    project_code: str
    dcd_code: str
    dcd_version: str
    settings: dict[str, Any]
    dry_run: bool
    status: UploadStatus = Field(
        description="queued, processing, done or failed; held: waiting for its linked upload; linked: read with it"
    )
    steps: dict[str, str] = Field(
        description="select_file, validity_check, upload, finalize: pending, running, success, warnings, errors"
    )
    counts: dict[str, int]
    file: dict[str, Any]
    findings: list[FindingOut]
    nothing_stored: bool | None = None
    #: ``api`` (REST, the portal) or ``dropfolder`` (a file dropped in the organisation's folder).
    source: str = "api"
    uploaded_by: str
    created_at: datetime
    finished_at: datetime | None
    source_file: Literal["kept", "purged"] = Field(
        "kept",
        description="The uploaded file itself: kept (encrypted) until its retention runs out "
        "(a dry run's goes once it is read), then purged; findings and reports stay",
    )
    source_purged_at: datetime | None = None
    reports: dict[str, str]


class UploadPage(Page[UploadOut]):
    """A page of uploads, newest first."""


def upload_out(u: Upload, lang: str) -> UploadOut:
    base = f"/api/v1/uploads/{u.id}/reports"
    opts = dict(u.options)
    findings = [
        FindingOut(
            line=r[0] or None, record=r[1] or None, column=r[2], rule=r[4], severity=r[5], message=r[6]
        )
        for r in finding_rows(u.findings, lang)
    ]
    return UploadOut(
        id=u.id,
        organisation_id=u.organisation_id,
        filename=u.filename,
        size=u.size,
        sha256=u.sha256,
        project_code=u.project_code,
        dcd_code=u.dcd_code,
        dcd_version=u.dcd_version,
        settings={k: opts.get(k) for k in DEFAULT_SETTINGS},
        dry_run=bool(opts.get("dry_run")),
        status=cast(UploadStatus, u.status),  # the column holds only these; pydantic checks it
        steps=u.steps,
        counts=u.counts,
        file=u.file_info,
        findings=findings,
        nothing_stored=opts.get("nothing_stored") if u.status == "done" else None,
        source=str(opts.get("source", "api")),
        uploaded_by=u.uploaded_by,
        created_at=u.created_at,
        finished_at=u.finished_at,
        source_file="purged" if u.source_purged_at else "kept",
        source_purged_at=u.source_purged_at,
        reports={"errors": f"{base}/errors.csv", "success": f"{base}/success.csv"},
    )


def _file_name(name: str, lang: str) -> str:
    """``name`` as kept (NFC), or the 422 saying which rule of hdhub.common.filenames it breaks."""
    try:
        return checked_file_name(name)
    except BadFileName as refusal:
        raise file_name_refused(refusal, lang) from None


async def _multipart_file(
    request: Request, boundary: bytes, holder: dict[str, str], lang: str
) -> AsyncIterator[bytes]:
    """The bytes of the form's ``file`` part as they arrive; nothing else is kept. A refused
    file name stops the body at the part's headers, before any byte is stored."""
    found = False
    async for part in MultipartStream(request.stream(), boundary, hint=SEND_AS_FILE):
        if part.name == "file" and not found:
            found = True
            holder["filename"] = _file_name(part.filename or "upload.csv", lang)
            async for chunk in part.chunks():
                yield chunk
    if not found:
        raise Problem(400, "file-required", "No file", SEND_AS_FILE)


async def _raw_body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _incoming(request: Request, filename: str | None, lang: str) -> IncomingFile:
    """The uploaded file: the multipart field ``file``, or the whole body of a CSV (415
    for anything else)."""
    boundary = multipart_boundary(request.headers.get("content-type", ""))
    holder = {"filename": _file_name(filename or "upload.csv", lang)}
    if boundary is not None:
        return IncomingFile(_multipart_file(request, boundary, holder, lang), lambda: holder["filename"])
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("text/csv", "application/octet-stream", "text/plain"):
        return IncomingFile(_raw_body(request), lambda: holder["filename"])
    raise Problem(415, "unsupported-media-type", "Send multipart/form-data or text/csv")


router = APIRouter(tags=["uploads"])


@router.post(
    "/api/v1/uploads",
    status_code=202,
    response_model=UploadOut,
    summary="Upload a CSV of registrations (multipart field `file`, or a text/csv body)",
    responses={410: {"description": "upload-source-purged: the linked sequence file's retention ran out"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
            },
            "required": True,
        }
    },
)
async def create_upload(
    request: Request,
    principal: CurrentPrincipal,
    lang: Language,
    uploads: UploadsDep,
    dcd_code: Annotated[str, Query(max_length=64, description="The DCD the rows belong to (ANGIO_HOSP)")],
    organisation_id: str | None = None,
    version: Annotated[
        str | None, Query(max_length=32, description="DCD version; the newest when left out")
    ] = None,
    validation: ValidationName | None = None,
    conflict_master: ConflictMasterName | None = None,
    ignore_duplicates: bool | None = None,
    autosubmit: bool | None = None,
    dry_run: bool = False,
    filename: Annotated[
        str | None, Query(description="For a text/csv body; the rules of docs/upload-center.md")
    ] = None,
    kind: Annotated[
        Literal["registrations", "sequences"],
        Query(
            description="`sequences`: a HIV_Sequence `filename;recordname;genetic_sequence` file held until an upload links it"
        ),
    ] = "registrations",
    linked_upload_id: Annotated[
        str | None,
        Query(max_length=36, description="The held sequences upload validated together with this one"),
    ] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Store the file as it arrives (refused past the size limit) and queue its processing.
    Settings left out come from the organisation's settings for the registry."""
    new = NewUpload(
        dcd_code=dcd_code,
        organisation_id=organisation_id,
        version=version,
        overrides={
            "validation": validation,
            "conflict_master": conflict_master,
            "ignore_duplicates": ignore_duplicates,
            "autosubmit": autosubmit,
        },
        dry_run=dry_run,
        kind=kind,
        linked_upload_id=linked_upload_id,
        language=lang,
        idempotency_key=idempotency_key,
    )
    upload, replayed = await uploads.receive(principal, new, lambda: _incoming(request, filename, lang))
    headers = {"Location": f"/api/v1/uploads/{upload.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(upload_out(upload, lang).model_dump(mode="json"), status_code=202, headers=headers)


@router.get(
    "/api/v1/uploads",
    response_model=UploadPage,
    summary="Uploads of the caller's organisations, newest first",
)
async def list_uploads(
    principal: CurrentPrincipal,
    lang: Language,
    uploads: UploadsDep,
    organisation_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> UploadPage:
    items, total = await uploads.listing(principal, organisation_id, limit=limit, offset=offset)
    return UploadPage(items=[upload_out(u, lang) for u in items], total=total, limit=limit, offset=offset)


@router.get(
    "/api/v1/uploads/{upload_id}",
    response_model=UploadOut,
    summary="An upload: steps, live counts, findings",
)
async def get_upload(upload: ReadableUpload, lang: Language) -> UploadOut:
    return upload_out(upload, lang)


@router.get(
    "/api/v1/uploads/{upload_id}/events",
    summary="Progress as server-sent events (`progress` on every change, `done` at the end)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def upload_events(
    upload_id: str, principal: CurrentPrincipal, uploads: UploadsDep, lang: Language
) -> StreamingResponse:
    changes = await uploads.watch(principal, upload_id)  # 404 before the stream starts

    async def events() -> AsyncIterator[bytes]:
        async for upload in changes:
            body = upload_out(upload, lang).model_dump(mode="json")
            yield f"event: progress\ndata: {json.dumps(body)}\n\n".encode()
            if upload.status in FINISHED:
                yield f"event: done\ndata: {json.dumps({'status': upload.status})}\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get(
    "/api/v1/uploads/{upload_id}/reports/{kind}.csv",
    summary="The error report (row, column, value, rule, message) or the success report, as CSV",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def upload_report(
    upload: ReadableUpload, kind: Literal["errors", "success"], uploads: UploadsDep
) -> StreamingResponse:
    filename, body = uploads.report(upload, kind)
    return StreamingResponse(
        body, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": attachment(filename)}
    )


@router.get(
    "/api/v1/upload-settings/{organisation_id}/{project_code}",
    response_model=SettingsOut,
    summary="The organisation's Upload Center settings for a registry",
)
async def get_settings(
    organisation_id: str, project_code: str, principal: CurrentPrincipal, uploads: UploadsDep
) -> SettingsOut:
    found = await uploads.settings_for(principal, organisation_id, project_code)
    return SettingsOut(organisation_id=organisation_id, project_code=project_code, **found.values)


@router.put(
    "/api/v1/upload-settings/{organisation_id}/{project_code}",
    response_model=SettingsOut,
    summary="Set the organisation's Upload Center settings for a registry",
)
async def put_settings(
    organisation_id: str,
    project_code: str,
    body: SettingsIn,
    principal: CurrentPrincipal,
    uploads: UploadsDep,
) -> SettingsOut:
    changed = await uploads.change_settings(principal, organisation_id, project_code, body.model_dump())
    return SettingsOut(organisation_id=organisation_id, project_code=project_code, **changed.values)
