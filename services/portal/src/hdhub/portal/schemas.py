"""The REST shapes of certificates (never key material: only what identifies the keys)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from hdhub.common.paging import Page


class StatusLine(BaseModel):
    step: str = Field(
        description="received, password_checked, keys_checked, validity_checked, stored, published, unpublished"
    )
    at: datetime
    message: str


class StatusLinePage(Page[StatusLine]):
    """A page of a certificate version's status log, oldest first."""


class KeyInfo(BaseModel):
    subject: str
    serial_number: str


class CertificateVersion(BaseModel):
    organisation_id: str
    version: int
    published: bool
    status: StatusLine | None = Field(description="The latest line of the status log")
    filename: str
    uploaded_by: str
    uploaded_at: datetime
    published_at: datetime | None
    unpublished_at: datetime | None
    not_before: datetime
    not_after: datetime
    authentication: KeyInfo
    encryption: KeyInfo


class CertificateVersionPage(Page[CertificateVersion]):
    """A page of an organisation's certificate versions, newest first."""


class UploadedCertificate(CertificateVersion):
    log: list[StatusLine]


class OrganisationCertificates(BaseModel):
    organisation_id: str
    name: str
    published: CertificateVersion | None


class OrganisationCertificatesPage(Page[OrganisationCertificates]):
    """A page of the organisations whose certificates the caller manages, by id."""
