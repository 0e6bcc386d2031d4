"""Exports under /api/v1 (the CSV Upload Manager's, docs/exports.md): ask for one, follow
it, list them, read its audit trail, and download it through a link that expires."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from hdhub.common.auth import Principal
from hdhub.common.config import platform
from hdhub.common.errors import forbidden
from hdhub.common.paging import Limit, Offset
from hdhub.common.web import CurrentPrincipal, attachment
from hdhub.registrations.deps import ServiceDep
from hdhub.registrations.exports import formats
from hdhub.registrations.exports.schemas import (
    ExportEventOut,
    ExportEventPage,
    ExportIn,
    ExportOut,
    ExportPage,
)
from hdhub.registrations.exports.service import Exports, Filters, filename
from hdhub.registrations.store import Export

router = APIRouter(prefix="/api/v1", tags=["exports"])
ExportId = Annotated[str, Path(max_length=36)]


def _exports(service: ServiceDep) -> Exports:
    return service.exports


ExportsDep = Annotated[Exports, Depends(_exports)]


def _exporter(principal: CurrentPrincipal) -> Principal:
    if principal.is_service() or not Exports.organisations(principal):
        raise forbidden()
    return principal


#: A CSV Upload Manager of at least one organisation (never a service identity).
Exporter = Annotated[Principal, Depends(_exporter)]


def export_out(e: Export, url: str | None = None, expires: object = None) -> ExportOut:
    return ExportOut(
        id=e.id,
        organisation_id=e.organisation_id,
        dcd_code=e.dcd_code,
        version=e.dcd_version,
        format=e.format,  # type: ignore[arg-type]
        filters=e.filters,
        requested_by=e.requested_by,
        state=e.state,  # type: ignore[arg-type]
        rows_total=e.rows_total,
        rows_done=e.rows_done,
        size=e.size,
        created_at=e.created_at,
        ready_at=e.ready_at,
        download_url=url,
        download_expires_at=expires,  # type: ignore[arg-type]
    )


@router.post(
    "/exports",
    status_code=202,
    response_model=ExportOut,
    summary="Export an organisation's registrations of a DCD version (CSV, XLSX or Parquet)",
    responses={403: {"description": "not a CSV Upload Manager of the organisation"}},
)
async def create_export(body: ExportIn, principal: Exporter, exports: ExportsDep) -> ExportOut:
    organisations = Exports.organisations(principal)
    organisation_id = body.organisation_id
    if organisation_id is None:
        if len(organisations) != 1:
            raise forbidden("Say which organisation: organisation_id.")
        organisation_id = organisations[0]
    export = await exports.request(
        principal,
        organisation_id=organisation_id,
        dcd_code=body.dcd_code,
        version=body.version,
        fmt=body.format,
        filters=Filters(
            tuple(body.status), body.created_from, body.created_to, body.updated_from, body.updated_to
        ),
    )
    return export_out(export)


@router.get(
    "/exports", response_model=ExportPage, summary="Exports of the caller's organisations, newest first"
)
async def list_exports(
    principal: Exporter,
    exports: ExportsDep,
    organisation_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ExportPage:
    organisations = Exports.organisations(principal)
    if organisation_id is not None:
        if organisation_id not in organisations:
            raise forbidden()
        organisations = [organisation_id]
    rows, total = await exports.listing(principal, organisations, limit=limit, offset=offset)
    return ExportPage(items=[export_out(e) for e in rows], total=total, limit=limit, offset=offset)


@router.get(
    "/exports/{export_id}",
    response_model=ExportOut,
    summary="An export's progress; once ready, a fresh download link that expires",
)
async def get_export(
    export_id: ExportId, principal: Exporter, exports: ExportsDep, request: Request
) -> ExportOut:
    export = await exports.get(principal, export_id)
    if export.state != "ready":
        return export_out(export)
    token, expires = await exports.link(export, principal)
    # The installation's public address, never the request's Host header: a link built
    # from a Host an attacker sent would point at another site.
    url = platform().public_url.rstrip("/") + request.app.url_path_for("download_export", token=token)
    return export_out(export, url, expires)


@router.get(
    "/exports/{export_id}/events",
    response_model=ExportEventPage,
    summary="The export's audit trail, oldest first: asked, written, links issued, downloads",
)
async def export_events(
    export_id: ExportId, principal: Exporter, exports: ExportsDep, limit: Limit = 100, offset: Offset = 0
) -> ExportEventPage:
    export = await exports.get(principal, export_id)
    events = [
        ExportEventOut(action=e.action, actor=e.actor, at=e.at, detail=e.detail)
        for e in await exports.events(export.organisation_id, export.id)
    ]
    return ExportEventPage.window(events, limit=limit, offset=offset)


@router.get(
    "/export-files/{token}",
    name="download_export",
    summary="Download an export through the link `GET /exports/{id}` gave (no token needed; it expires)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {mt.split(";")[0]: {} for mt in formats.MEDIA_TYPES.values()}},
        404: {"description": "not a link of ours"},
        410: {"description": "export-link-expired"},
    },
)
async def download_export(
    token: Annotated[str, Path(max_length=200)], exports: ExportsDep
) -> StreamingResponse:
    export, body = await exports.open_link(token)
    return StreamingResponse(
        body,
        media_type=formats.MEDIA_TYPES[export.format],
        headers={"Content-Disposition": attachment(filename(export)), "Cache-Control": "no-store"},
    )
