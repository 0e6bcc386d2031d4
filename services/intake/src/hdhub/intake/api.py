"""Intake's REST edge, /api/v1/files: the web upload page's API (HDUpload's equivalent)
and the results of every file, with the reason for each rejection.

Reading needs ``registration:read`` in the organisation, uploading ``registration:write``
(a registrant or the organisation's hospital system), like the Upload Center. A caller
outside the organisation gets 403 and learns nothing about its files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from hdhub.common.auth import Action, Principal
from hdhub.common.errors import FieldProblem, Problem, invalid, not_found
from hdhub.common.web import CurrentPrincipal
from hdhub.intake.domain.names import REGISTRIES
from hdhub.intake.files import Listing, TransferRefused
from hdhub.intake.schemas import FileOut, LinkOut
from hdhub.intake.store import STATES, IntakeFile

if TYPE_CHECKING:
    from hdhub.intake.runtime import IntakeService

OrganisationId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


def reader_of(organisation_id: OrganisationId, principal: CurrentPrincipal) -> Principal:
    principal.require(Action.REGISTRATION_READ, organisation_id)
    return principal


def sender_of(organisation_id: OrganisationId, principal: CurrentPrincipal) -> Principal:
    principal.require(Action.REGISTRATION_WRITE, organisation_id)
    return principal


Reader = Annotated[Principal, Depends(reader_of)]
Sender = Annotated[Principal, Depends(sender_of)]


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
    )


REFUSALS = {
    "unknown-registry": (404, "registry"),
    "file-name": (422, "filename"),
    "too-large": (413, "body"),
    "empty-file": (422, "body"),
}


def refusal(exc: TransferRefused) -> Problem:
    status, field = REFUSALS.get(exc.rule, (422, "body"))
    if status == 422:
        return invalid(
            [FieldProblem(field, exc.rule, exc.message)], title="The file is refused", slug=f"file-{exc.rule}"
        )
    return Problem(status, f"file-{exc.rule}", "The file is refused", exc.message)


def build_router(service: IntakeService) -> APIRouter:
    router = APIRouter(prefix="/api/v1/files", tags=["files"])
    files = service.files

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
        filename: Annotated[str, Path(max_length=255)],
        request: Request,
        principal: Sender,
    ) -> JSONResponse:
        declared = request.headers.get("content-length")
        if (
            declared
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > service.settings.max_file_bytes
        ):
            raise refusal(
                TransferRefused(
                    "too-large",
                    f"the file is larger than the limit of {service.settings.max_file_bytes} bytes",
                )
            )
        try:
            transfer = await files.begin(
                organisation_id=organisation_id,
                registry=registry,
                filename=filename,
                source="http",
                sender=principal.username,
            )
        except TransferRefused as exc:
            raise refusal(exc) from None
        try:
            async for chunk in request.stream():
                if chunk:
                    await transfer.write(transfer.size, chunk)
            f = await transfer.commit(deliver_as=filename)
        except TransferRefused as exc:
            raise refusal(exc) from None
        except ClientDisconnect:
            await transfer.abort(
                "connection-lost", "the request ended before the whole file arrived; nothing was stored"
            )
            raise Problem(
                400, "file-connection-lost", "The upload was cut", "Nothing was stored; send the file again."
            ) from None
        except BaseException:
            await transfer.abort("storage", "the file could not be stored; nothing was kept")
            raise
        listing = await files.listing(organisation_id, file_id=f.id, limit=1)
        body = file_out(listing.files[0], listing)
        return JSONResponse(
            body.model_dump(mode="json"),
            status_code=201,
            headers={"Location": f"/api/v1/files/{organisation_id}/{f.id}"},
        )

    @router.get(
        "/{organisation_id}", response_model=list[FileOut], summary="Files of an organisation, newest first"
    )
    async def list_files(
        organisation_id: OrganisationId,
        _reader: Reader,
        state: Annotated[str | None, Query(description=", ".join(STATES))] = None,
        registry: Annotated[str | None, Query(description=", ".join(REGISTRIES))] = None,
        unmatched: Annotated[
            bool | None, Query(description="Accepted files waiting for their registration")
        ] = None,
        registration_id: Annotated[str | None, Query(max_length=36)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[FileOut]:
        if state is not None and state not in STATES:
            raise invalid([FieldProblem("state", "choice", f"One of {', '.join(STATES)}.")])
        if registry is not None and registry not in REGISTRIES:
            raise invalid([FieldProblem("registry", "choice", f"One of {', '.join(REGISTRIES)}.")])
        listing = await files.listing(
            organisation_id,
            state=state,
            registry=registry,
            unmatched=unmatched,
            registration_id=registration_id,
            limit=limit,
        )
        return [file_out(f, listing) for f in listing.files]

    @router.get(
        "/{organisation_id}/{file_id}", response_model=FileOut, summary="One file: state, checks, links"
    )
    async def get_file(
        organisation_id: OrganisationId, file_id: Annotated[str, Path(max_length=36)], _reader: Reader
    ) -> FileOut:
        listing = await files.listing(organisation_id, file_id=file_id, limit=1)
        if not listing.files:
            raise not_found("File")
        return file_out(listing.files[0], listing)

    return router
