"""What /api/v1/files answers: a file with its state, its verdict and its links."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from hdhub.common.paging import Page


class LinkOut(BaseModel):
    registration_id: str
    field: str = Field(
        description="TX_VCF_FILE_NAME or TX_ATT (1-to-many), TX_ATT_RECRD (1-to-1, with recordname)"
    )
    recordname: str = ""


class FileOut(BaseModel):
    id: str
    organisation_id: str
    registry: str
    filename: str
    source: str = Field(description="sftp or http")
    sender: str
    state: str = Field(
        description="receiving, received (waiting to be moved to Finished), aborted, accepted (checked, "
        "waiting for its registration), rejected, linked, sent (to the central platform), acknowledged "
        "(by the central platform; out of the drop area), loaded (earlier releases)"
    )
    bytes_received: int = Field(description="Progress while receiving; the size afterwards")
    size: int | None
    sha256: str | None
    rule: str = Field(description="The rule that refused or rejected the file (stable slug); empty otherwise")
    reason: str = Field(description="Why, in words, naming the line; never the offending value")
    unmatched: bool = Field(description="Accepted but no registration names it yet: linked when one does")
    link_problem: str
    recordnames: int = Field(description="HIV_Sequence: recordnames in the file")
    recordnames_linked: int
    links: list[LinkOut]
    started_at: datetime
    received_at: datetime | None
    delivered_at: datetime | None
    linked_at: datetime | None
    loaded_at: datetime | None
    content_purged_at: datetime | None = Field(
        None,
        description="The file's bytes were deleted then (a refused or an acknowledged file's retention ran "
        "out); the row stays",
    )
    sent_at: datetime | None = Field(None, description="The last byte went to the central platform")
    acknowledged_at: datetime | None = Field(
        None, description="The central platform acknowledged the file (its SHA-256 checked)"
    )
    central_offset: int = Field(
        0, description="Bytes the central platform holds (a cut transfer resumes there)"
    )
    send_problem: str = Field(
        "",
        description="Why the file waits to be sent or acknowledged (registration-not-delivered, "
        "central-unavailable, central-rejected:<rule>, no-published-certificate...); empty otherwise",
    )


class FilePage(Page[FileOut]):
    """A page of an organisation's files, newest first."""


class LateVcfOut(BaseModel):
    registration_id: str
    registration_code: str
    status: str
    filename: str = Field(description="The VCF file name the registration names (TX_VCF_FILE_NAME)")
    created_at: datetime
    late_since: datetime = Field(description="created_at plus HDHUB_INTAKE_VCF_LATE_HOURS")


class LateVcfPage(Page[LateVcfOut]):
    """NGS registrations of an organisation whose VCF has not arrived in time, oldest first."""
