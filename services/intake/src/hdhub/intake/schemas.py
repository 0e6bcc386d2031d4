"""What /api/v1/files answers: a file with its state, its verdict and its links."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


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
        description="receiving, received (waiting to be moved to Finished), aborted, accepted, rejected, loaded"
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
        None, description="A refused file's bytes were deleted then (its retention ran out); the reason stays"
    )
