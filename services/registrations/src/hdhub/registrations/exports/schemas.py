"""The exports API's bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hdhub.common.paging import Page
from hdhub.common.web import Moment

Format = Literal["csv", "xlsx", "parquet"]
ExportStatus = Literal[
    "open", "sending", "submitted", "corrections_needed", "approved", "follow_up_needed", "error"
]


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_id: str | None = Field(
        default=None,
        max_length=64,
        description="Whose registrations; optional when the caller exports for one",
    )
    dcd_code: str = Field(min_length=1, max_length=64, description="The DCD (`ANGIO_HOSP`)")
    version: str = Field(
        default="latest", min_length=1, max_length=32, description="The DCD version, or `latest`"
    )
    format: Format = "csv"
    status: list[ExportStatus] = Field(
        default_factory=list,
        max_length=8,
        description="Only registrations in these statuses (all but deleted when empty)",
    )
    # ISO 8601 only (a bare number is no moment), in the calendar once in UTC: refused here,
    # not by the export's job later (0001-01-01T00:00:00+01:00 failed it on every retry).
    created_from: Moment | None = Field(
        default=None, description="Created at or after (ISO 8601; without an offset, UTC)"
    )
    created_to: Moment | None = Field(default=None, description="Created before")
    updated_from: Moment | None = Field(default=None, description="Last changed at or after")
    updated_to: Moment | None = Field(default=None, description="Last changed before")


class ExportOut(BaseModel):
    id: str
    organisation_id: str
    dcd_code: str
    version: str
    format: Format
    filters: dict[str, object]
    requested_by: str
    state: Literal["queued", "running", "ready", "failed", "expired"] = Field(
        description="`expired`: the file was deleted after `HDHUB_REGISTRATIONS_EXPORT_RETENTION_DAYS`"
    )
    rows_total: int = Field(description="Registrations the export holds (counted when it starts)")
    rows_done: int = Field(description="Registrations written so far")
    size: int = Field(description="Bytes, once ready")
    created_at: datetime
    ready_at: datetime | None
    download_url: str | None = Field(
        default=None, description="Once ready: a link that needs no token and expires (`download_expires_at`)"
    )
    download_expires_at: datetime | None = None


class ExportEventOut(BaseModel):
    action: str
    actor: str
    at: datetime
    detail: dict[str, object]


class ExportPage(Page[ExportOut]):
    pass


class ExportEventPage(Page[ExportEventOut]):
    pass
