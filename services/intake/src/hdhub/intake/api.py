"""Intake's REST edge, /api/v1/files: the web upload page's API (HDUpload's equivalent)
and the results of every file, with the reason for each rejection.

Reading needs ``registration:read`` in the organisation, uploading ``registration:write``
(a registrant or the organisation's hospital system), like the Upload Center. A caller
outside the organisation gets 403 and learns nothing about its files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from hdhub.common.auth import Action
from hdhub.common.errors import FieldProblem, invalid, not_found
from hdhub.common.paging import Limit, Offset
from hdhub.common.web import OrganisationId
from hdhub.intake.deps import Reader, Sender, ServiceDep, granted_folders, require_folder
from hdhub.intake.domain.names import NGS, REGISTRIES
from hdhub.intake.files import ConnectionCut, Listing, TransferRefused
from hdhub.intake.late import late_vcfs
from hdhub.intake.schemas import FileOut, FilePage, LateVcfOut, LateVcfPage, LinkOut
from hdhub.intake.store import STATES, IntakeFile

router = APIRouter(prefix="/api/v1/files", tags=["files"])


def file_out(f: IntakeFile, listing: Listing) -> FileOut:
    total, linked = listing.records.get(f.id, (0, 0))
    return FileOut(
        id=f.id,
        organisation_id=f.organisation_id,
        registry=f.registry_folder,
        filename=f.filename,
        source=f.source,
        sender=f.sender,
        state=f.state,
        bytes_received=f.bytes_received,
        size=f.size,
        sha256=f.sha256,
        rule=f.rule,
        reason=f.reason,
        unmatched=f.unmatched,
        link_problem=f.link_problem,
        recordnames=total,
        recordnames_linked=linked,
        links=[
            LinkOut(registration_id=k.registration_id, field=k.field, recordname=k.recordname)
            for k in listing.links.get(f.id, [])
        ],
        started_at=f.started_at,
        received_at=f.received_at,
        delivered_at=f.delivered_at,
        linked_at=f.linked_at,
        loaded_at=f.loaded_at,
        content_purged_at=f.content_purged_at,
        sent_at=f.sent_at,
        acknowledged_at=f.acknowledged_at,
        central_offset=f.central_offset or 0,
        send_problem=f.send_problem or "",
    )


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise ConnectionCut() from None


@router.put(
    "/{organisation_id}/{registry}/{filename}",
    status_code=201,
    response_model=FileOut,
    summary="Send a file (the raw body, streamed): a VCF into NGS, a sequence CSV into HIV_SEQUENCE",
    description=(
        "The body streams into the object store as it arrives; the file is delivered (counts, is "
        "checked and linked) when the request completes. Progress of a running upload: "
        "`GET /api/v1/files/{organisation_id}?state=receiving` (`bytes_received`). A cut request "
        "stores nothing."
    ),
    responses={
        404: {"description": "file-unknown-registry"},
        413: {"description": "file-too-large"},
        422: {"description": "file-file-name, file-empty-file"},
    },
)
async def upload(
    organisation_id: OrganisationId,
    registry: Annotated[str, Path(max_length=32)],
    # No length of its own: the request head's limit bounds it (32 KiB), and a name over the
    # file-name rule's 100 characters is refused by that rule, listed as aborted as any other.
    filename: Annotated[str, Path()],
    request: Request,
    principal: Sender,
    service: ServiceDep,
) -> JSONResponse:
    settings, files = service.settings, service.files
    require_folder(principal, organisation_id, registry)
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > settings.max_file_bytes:
        raise TransferRefused(
            "too-large", f"the file is larger than the limit of {settings.max_file_bytes} bytes"
        ).problem()
    try:
        f = await files.receive(
            organisation_id=organisation_id,
            registry=registry,
            filename=filename,
            source="http",
            sender=principal.username,
            body=_body(request),
        )
    except TransferRefused as exc:
        raise exc.problem() from None
    listing = await files.listing(organisation_id, file_id=f.id, limit=1)
    body = file_out(listing.files[0], listing)
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/api/v1/files/{organisation_id}/{f.id}"},
    )


@router.get("/{organisation_id}", response_model=FilePage, summary="Files of an organisation, newest first")
async def list_files(
    organisation_id: OrganisationId,
    _reader: Reader,
    service: ServiceDep,
    state: Annotated[str | None, Query(description=", ".join(STATES))] = None,
    registry: Annotated[str | None, Query(description=", ".join(REGISTRIES))] = None,
    unmatched: Annotated[
        bool | None, Query(description="Accepted files waiting for their registration")
    ] = None,
    registration_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> FilePage:
    if state is not None and state not in STATES:
        raise invalid([FieldProblem("state", "choice", f"One of {', '.join(STATES)}.")])
    if registry is not None and registry not in REGISTRIES:
        raise invalid([FieldProblem("registry", "choice", f"One of {', '.join(REGISTRIES)}.")])
    listing = await service.files.listing(
        organisation_id,
        state=state,
        registry=registry,
        unmatched=unmatched,
        registration_id=registration_id,
        limit=limit,
        offset=offset,
        folders=granted_folders(_reader, organisation_id),
    )
    items = [file_out(f, listing) for f in listing.files]
    return FilePage(items=items, total=listing.total, limit=limit, offset=offset)


@router.get(
    "/{organisation_id}/late-vcfs",
    response_model=LateVcfPage,
    summary="NGS registrations whose VCF has not arrived in time",
    responses={503: {"description": "registrations-unavailable"}},
)
async def list_late_vcfs(
    organisation_id: OrganisationId,
    reader: Reader,
    service: ServiceDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> LateVcfPage:
    """Registrations naming a VCF (``TX_VCF_FILE_NAME``), submitted, created more than
    ``HDHUB_INTAKE_VCF_LATE_HOURS`` ago, with no file linked yet; oldest first."""
    if not reader.can_registry(Action.REGISTRATION_READ, organisation_id, NGS.project_code):
        # VCFs are NGS's: a member without that registry has none late.
        return LateVcfPage(items=[], total=0, limit=limit, offset=offset)
    found = await late_vcfs(service.files, organisation_id, reader.username)
    items = [LateVcfOut(**vars(v)) for v in found[offset : offset + limit]]
    return LateVcfPage(items=items, total=len(found), limit=limit, offset=offset)


@router.get("/{organisation_id}/{file_id}", response_model=FileOut, summary="One file: state, checks, links")
async def get_file(
    organisation_id: OrganisationId,
    file_id: Annotated[str, Path(max_length=36)],
    _reader: Reader,
    service: ServiceDep,
) -> FileOut:
    folders = granted_folders(_reader, organisation_id)
    listing = await service.files.listing(organisation_id, file_id=file_id, limit=1, folders=folders)
    if not listing.files:
        raise not_found("File")
    return file_out(listing.files[0], listing)
