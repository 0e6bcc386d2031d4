"""The portal's REST edge for certificates, under /api/v1/certificates.

Authorization is one rule for every route: the caller must be a Certificate Editor
(``certificate_editor``) of the organisation in the path. Anyone else gets 403, whether
the organisation exists, is theirs or a foreign one (nothing tells them apart); without
a token, 401. A User Manager or DP Manager is no Certificate Editor by that role alone.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Path, UploadFile
from fastapi.responses import JSONResponse

from hdhub.common.auth import Action
from hdhub.common.errors import forbidden
from hdhub.common.filenames import BadFileName, checked_file_name, file_name_refused
from hdhub.common.limits import MAX_INT
from hdhub.common.paging import Limit, Offset
from hdhub.common.web import CurrentPrincipal, Language, OrganisationId, idempotent, request_fingerprint
from hdhub.portal.deps import CertificateEditor, ServiceDep, SessionDep
from hdhub.portal.schemas import (
    CertificateVersion,
    CertificateVersionPage,
    KeyInfo,
    OrganisationCertificates,
    OrganisationCertificatesPage,
    StatusLine,
    StatusLinePage,
    UploadedCertificate,
)
from hdhub.portal.store import Certificate, CertificateEvent, IdempotencyKey

VersionNumber = Annotated[int, Path(ge=1, le=MAX_INT)]

router = APIRouter(prefix="/api/v1/certificates", tags=["certificates"])


def status_line(e: CertificateEvent) -> StatusLine:
    return StatusLine(step=e.step, at=e.at, message=e.message)


def version_out(c: Certificate, status: CertificateEvent | None) -> CertificateVersion:
    return CertificateVersion(
        organisation_id=c.organisation_id,
        version=c.version,
        published=c.published,
        status=status_line(status) if status else None,
        filename=c.filename,
        uploaded_by=c.uploaded_by,
        uploaded_at=c.uploaded_at,
        published_at=c.published_at,
        unpublished_at=c.unpublished_at,
        not_before=c.not_before,
        not_after=c.not_after,
        authentication=KeyInfo(subject=c.authentication_subject, serial_number=c.authentication_serial),
        encryption=KeyInfo(subject=c.encryption_subject, serial_number=c.encryption_serial),
    )


@router.get(
    "", response_model=OrganisationCertificatesPage, summary="Organisations whose certificates I manage"
)
async def overview(
    principal: CurrentPrincipal, service: ServiceDep, limit: Limit = 100, offset: Offset = 0
) -> OrganisationCertificatesPage:
    organisations = principal.organisations_for(Action.CERTIFICATE_MANAGE)
    if not organisations:
        raise forbidden("Only Certificate Editors manage certificates.")
    out = []
    async with service.db.session(organisations) as session:
        for org in sorted(organisations)[offset : offset + limit]:
            versions = await service.certificates.versions(session, org)
            published = next((version_out(c, e) for c, e in versions if c.published), None)
            out.append(
                OrganisationCertificates(
                    organisation_id=org, name=principal.memberships[org].name, published=published
                )
            )
    return OrganisationCertificatesPage(items=out, total=len(organisations), limit=limit, offset=offset)


@router.post(
    "/{organisation_id}/versions",
    status_code=201,
    response_model=UploadedCertificate,
    summary="Upload a p12 with its password; it becomes the published version",
    responses={
        413: {"description": "p12-too-large"},
        422: {
            "description": "p12-not-a-p12, p12-wrong-password, p12-key-count, p12-key-purposes, "
            "p12-key-without-certificate, p12-certificate-expired, p12-certificate-not-yet-valid, "
            "bad-file-name"
        },
    },
)
async def upload(
    organisation_id: OrganisationId,
    principal: CertificateEditor,
    file: Annotated[UploadFile, File(description="The organisation's eHealth keystore (.p12)")],
    password: Annotated[str, Form(description="The p12's password")],
    lang: Language,
    service: ServiceDep,
    session: SessionDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    certificates = service.certificates
    try:  # the name is kept and shown: the rule of every route that takes one
        filename = checked_file_name(file.filename) if file.filename else ""
    except BadFileName as refusal:
        raise file_name_refused(refusal, lang) from None
    data = await file.read(certificates.max_p12_bytes + 1)
    fingerprint = request_fingerprint(
        "POST",
        f"/api/v1/certificates/{organisation_id}/versions",
        {"sha256": hashlib.sha256(data).hexdigest()},
    )

    async def effect() -> tuple[int, object, dict[str, str]]:
        created = await certificates.upload(
            session,
            organisation_id=organisation_id,
            data=data,
            password=password,
            filename=filename,
            actor=principal.username,
        )
        body = UploadedCertificate(
            **version_out(created, None).model_dump(exclude={"status"}),
            status=None,
            log=[status_line(e) for e in await certificates.status_log(session, created)],
        )
        body.status = body.log[-1]
        location = f"/api/v1/certificates/{organisation_id}/versions/{created.version}"
        return 201, body.model_dump(mode="json"), {"Location": location}

    return await idempotent(
        session,
        IdempotencyKey,
        key=idempotency_key,
        organisation_id=organisation_id,
        fingerprint=fingerprint,
        effect=effect,
    )


@router.get(
    "/{organisation_id}/versions",
    response_model=CertificateVersionPage,
    summary="Every version, newest first",
)
async def list_versions(
    organisation_id: OrganisationId,
    _editor: CertificateEditor,
    service: ServiceDep,
    session: SessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> CertificateVersionPage:
    versions = [version_out(c, e) for c, e in await service.certificates.versions(session, organisation_id)]
    return CertificateVersionPage.window(versions, limit=limit, offset=offset)


@router.get(
    "/{organisation_id}/published", response_model=CertificateVersion, summary="The published version"
)
async def published(
    organisation_id: OrganisationId, _editor: CertificateEditor, service: ServiceDep, session: SessionDep
) -> CertificateVersion:
    return version_out(*await service.certificates.published(session, organisation_id))


@router.get("/{organisation_id}/versions/{version}", response_model=CertificateVersion, summary="One version")
async def get_version(
    organisation_id: OrganisationId,
    version: VersionNumber,
    _editor: CertificateEditor,
    service: ServiceDep,
    session: SessionDep,
) -> CertificateVersion:
    return version_out(*await service.certificates.version(session, organisation_id, version))


@router.get(
    "/{organisation_id}/versions/{version}/log",
    response_model=StatusLinePage,
    summary="A version's status log",
)
async def status_log(
    organisation_id: OrganisationId,
    version: VersionNumber,
    _editor: CertificateEditor,
    service: ServiceDep,
    session: SessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> StatusLinePage:
    found, _ = await service.certificates.version(session, organisation_id, version)
    lines = [status_line(e) for e in await service.certificates.status_log(session, found)]
    return StatusLinePage.window(lines, limit=limit, offset=offset)
