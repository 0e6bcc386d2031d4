"""The Upload Center's REST edge: uploads (multipart or raw CSV, streamed straight into the
object store), their progress (JSON and server-sent events), reports, and the settings
per organisation and registry under ``/api/v1/upload-settings``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, StrictBool
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from hdhub.common.auth import Action as Permission
from hdhub.common.auth import Principal
from hdhub.common.errors import Problem, forbidden, not_found
from hdhub.common.filenames import BadFileName, checked_file_name, file_name_refused
from hdhub.common.web import CurrentPrincipal, Language, Offset, attachment
from hdhub.uploads import registrations as regs
from hdhub.uploads.reports import finding_rows, stream_report
from hdhub.uploads.service import DEFAULT_SETTINGS
from hdhub.uploads.store import Upload

if TYPE_CHECKING:
    from hdhub.uploads.runtime import UploadsService

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


class UploadPage(BaseModel):
    """The platform's one page shape (as RegistrationPage): the items, how many there are
    in all, and the window asked for."""

    items: list[UploadOut]
    total: int
    limit: int
    offset: int


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


def _organisation(principal: Principal, organisation_id: str | None, action: Permission) -> str:
    """The organisation named, or the caller's only one; 403 when the caller may not act for it."""
    if organisation_id is None:
        mine = principal.organisations_for(action)
        if not mine:
            raise forbidden()
        if len(mine) != 1:
            raise Problem(
                400,
                "organisation-required",
                "Name the organisation",
                "Pass organisation_id: you act for several or none.",
            )
        return mine[0]
    if not principal.can(action, organisation_id):
        raise forbidden()
    return organisation_id


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
    out: list[bytes] = []
    state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "in_file": False, "found": False}

    def on_part_begin() -> None:
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        if params.get(b"name") == b"file" and not state["found"]:
            state["in_file"] = state["found"] = True
            holder["filename"] = _file_name(
                (params.get(b"filename") or b"upload.csv").decode("utf-8", "replace"), lang
            )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["in_file"]:
            out.append(bytes(data[start:end]))

    def on_part_end() -> None:
        state["in_file"] = False

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if out:
                yield b"".join(out)
                out.clear()
        parser.finalize()
    except MultipartParseError:
        raise Problem(
            400,
            "bad-multipart",
            "The body is not multipart/form-data",
            "Send the CSV as the multipart form field `file`.",
        ) from None
    if out:
        yield b"".join(out)
    if not state["found"]:
        raise Problem(400, "file-required", "No file", "Send the CSV as the multipart form field `file`.")


async def _raw_body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def build_router(service: UploadsService) -> APIRouter:
    router = APIRouter(tags=["uploads"])
    uploads = service.uploads

    @router.post(
        "/api/v1/uploads",
        status_code=202,
        response_model=UploadOut,
        summary="Upload a CSV of registrations (multipart field `file`, or a text/csv body)",
        responses={
            410: {"description": "upload-source-purged: the linked sequence file's retention ran out"}
        },
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
        org = _organisation(principal, organisation_id, Permission.REGISTRATION_WRITE)
        if idempotency_key is not None:
            existing = await uploads.find_by_idempotency_key(org, idempotency_key)
            if existing is not None:
                return JSONResponse(
                    upload_out(existing, lang).model_dump(mode="json"),
                    status_code=202,
                    headers={"Location": f"/api/v1/uploads/{existing.id}", "Idempotent-Replayed": "true"},
                )
        dcd = await regs.dcd_summary(dcd_code, version)
        options = await uploads.get_settings(org, dcd.project_code)
        overrides = {
            "validation": validation,
            "conflict_master": conflict_master,
            "ignore_duplicates": ignore_duplicates,
            "autosubmit": autosubmit,
        }
        options.update({k: v for k, v in overrides.items() if v is not None})
        options["dry_run"] = dry_run
        options["kind"] = kind
        if linked_upload_id is not None:
            linked = await uploads.get([org], linked_upload_id)
            if linked.source_purged_at is not None:
                raise Problem(
                    410,
                    "upload-source-purged",
                    "That upload's file is gone",
                    "Its retention ran out and the file was deleted; upload the sequence file again.",
                )
            if linked.options.get("kind") != "sequences" or linked.status != "held":
                raise Problem(
                    409, "not-linkable", "That upload cannot be linked", "Link a held sequences upload, once."
                )
            options["linked_upload_id"] = linked.id
        content_type, params = parse_options_header(request.headers.get("content-type", ""))
        holder = {"filename": _file_name(filename or "upload.csv", lang)}
        if content_type == b"multipart/form-data":
            if b"boundary" not in params:
                raise Problem(400, "bad-multipart", "The multipart body has no boundary")
            body = _multipart_file(request, params[b"boundary"], holder, lang)
        elif content_type in (b"text/csv", b"application/octet-stream", b"text/plain"):
            body = _raw_body(request)
        else:
            raise Problem(415, "unsupported-media-type", "Send multipart/form-data or text/csv")
        upload = await uploads.create(
            organisation_id=org,
            filename=holder["filename"],
            body=body,
            project_code=dcd.project_code,
            dcd_code=dcd.dcd_code,
            dcd_version=dcd.version,
            options=options,
            language=lang,
            uploaded_by=principal.username,
            idempotency_key=idempotency_key,
            filename_of=lambda: holder["filename"],
        )
        return JSONResponse(
            upload_out(upload, lang).model_dump(mode="json"),
            status_code=202,
            headers={"Location": f"/api/v1/uploads/{upload.id}"},
        )

    @router.get(
        "/api/v1/uploads",
        response_model=UploadPage,
        summary="Uploads of the caller's organisations, newest first",
    )
    async def list_uploads(
        principal: CurrentPrincipal,
        lang: Language,
        organisation_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Offset = 0,
    ) -> UploadPage:
        orgs = principal.organisations_for(Permission.REGISTRATION_READ)
        if organisation_id is not None:
            if organisation_id not in orgs:
                raise forbidden()
            orgs = [organisation_id]
        items, total = await uploads.list(orgs, limit=limit, offset=offset)
        return UploadPage(items=[upload_out(u, lang) for u in items], total=total, limit=limit, offset=offset)

    async def _readable(principal: Principal, upload_id: str) -> Upload:
        return await uploads.get(principal.organisations_for(Permission.REGISTRATION_READ), upload_id)

    @router.get(
        "/api/v1/uploads/{upload_id}",
        response_model=UploadOut,
        summary="An upload: steps, live counts, findings",
    )
    async def get_upload(upload_id: str, principal: CurrentPrincipal, lang: Language) -> UploadOut:
        return upload_out(await _readable(principal, upload_id), lang)

    @router.get(
        "/api/v1/uploads/{upload_id}/events",
        summary="Progress as server-sent events (`progress` on every change, `done` at the end)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def upload_events(upload_id: str, principal: CurrentPrincipal, lang: Language) -> StreamingResponse:
        orgs = principal.organisations_for(Permission.REGISTRATION_READ)
        await uploads.get(orgs, upload_id)  # 404 before the stream starts

        async def events() -> AsyncIterator[bytes]:
            last = None
            while True:
                upload = await uploads.get(orgs, upload_id)
                body = upload_out(upload, lang).model_dump(mode="json")
                snapshot = json.dumps({k: body[k] for k in ("status", "steps", "counts")}, sort_keys=True)
                if snapshot != last:
                    last = snapshot
                    yield f"event: progress\ndata: {json.dumps(body)}\n\n".encode()
                if upload.status in ("done", "failed"):
                    yield f"event: done\ndata: {json.dumps({'status': upload.status})}\n\n".encode()
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    @router.get(
        "/api/v1/uploads/{upload_id}/reports/{kind}.csv",
        summary="The error report (row, column, value, rule, message) or the success report, as CSV",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def upload_report(
        upload_id: str, kind: Literal["errors", "success"], principal: CurrentPrincipal
    ) -> StreamingResponse:
        upload = await _readable(principal, upload_id)
        notes = [f for f in upload.findings if f["severity"] != "info"]  # info stays in the JSON view
        head = finding_rows(notes, upload.language) if kind == "errors" else []
        stem = upload.filename.rsplit(".", 1)[0][:80] or "upload"
        return StreamingResponse(
            stream_report(uploads.store, upload.organisation_id, upload.id, kind, head),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": attachment(f"{stem}-{kind}.csv")},
        )

    @router.get(
        "/api/v1/upload-settings/{organisation_id}/{project_code}",
        response_model=SettingsOut,
        summary="The organisation's Upload Center settings for a registry",
    )
    async def get_settings(
        organisation_id: str, project_code: str, principal: CurrentPrincipal
    ) -> SettingsOut:
        if not principal.can(Permission.REGISTRATION_READ, organisation_id):
            raise not_found("Organisation")
        values = await uploads.get_settings(organisation_id, project_code)
        return SettingsOut(organisation_id=organisation_id, project_code=project_code, **values)

    @router.put(
        "/api/v1/upload-settings/{organisation_id}/{project_code}",
        response_model=SettingsOut,
        summary="Set the organisation's Upload Center settings for a registry",
    )
    async def put_settings(
        organisation_id: str, project_code: str, body: SettingsIn, principal: CurrentPrincipal
    ) -> SettingsOut:
        if not principal.can(Permission.REGISTRATION_READ, organisation_id):
            raise not_found("Organisation")
        if not principal.can(Permission.REGISTRATION_WRITE, organisation_id):
            raise forbidden()
        values = await uploads.put_settings(
            organisation_id, project_code, body.model_dump(), principal.username
        )
        return SettingsOut(organisation_id=organisation_id, project_code=project_code, **values)

    return router
