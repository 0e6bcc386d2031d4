"""The NIPPIN Manager's REST shapes (no SSIN in any of them)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from hdhub.common.paging import Page
from hdhub.nippin.service import ARCHIVE_REASON_MAX, ARCHIVE_REASON_MIN


class ReimbursedRegistryOut(BaseModel):
    project_code: str
    dcd_code: str
    labels: dict[str, str]


class ReimbursedRegistryPage(Page[ReimbursedRegistryOut]):
    """A page of the reimbursed registries."""


class TransitionOut(BaseModel):
    from_status: str | None
    to_status: str
    cause: str
    actor: str
    at: datetime


class MessageOut(BaseModel):
    id: str
    registration_id: str
    registration_version: int
    registration_code: str
    dcd_code: str
    dcd_version: str
    schema_version: str
    status: str
    implant_date: date | None
    invalid_reasons: list[str]
    interface: str
    tack_major: str
    tack_outcome: str
    tack_messages: list[dict[str, Any]]
    tack_at: datetime | None
    sends: int
    refusals: int
    last_error: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    purged_at: datetime | None
    transitions: list[TransitionOut] | None = None


class MessagePage(Page[MessageOut]):
    """A page of messages, newest first."""


class ArchiveIn(BaseModel):
    reason: str = Field(
        min_length=ARCHIVE_REASON_MIN,
        max_length=ARCHIVE_REASON_MAX,
        description="Why the message is never to be processed again",
    )


class RecordOut(BaseModel):
    registration_id: str
    registration_code: str
    dcd_code: str
    implant_date: date | None
    result: str = Field(description="valid, invalid, not_found or not_sent")
    message_id: str | None
    message_status: str | None
    reason: str


class ReportOut(BaseModel):
    night: date
    counts: dict[str, int]
    built_at: datetime


class ReportPage(Page[ReportOut]):
    """A page of the nightly reports kept, newest first."""


class RecordPage(Page[RecordOut]):
    """A page of a report's records."""


class ReportRecords(BaseModel):
    """A report and a page of its records."""

    report: ReportOut | None = Field(description="None before the first report is built")
    records: RecordPage


class ExportIn(BaseModel):
    dcd_code: str = Field(min_length=1, max_length=64)
    date_from: date = Field(description="First implant date included")
    date_to: date = Field(description="Last implant date included")
    nominative: bool = Field(
        False,
        description="Add the patient's SSIN (only for a member who may also read the organisation's registrations)",
    )


class ExportOut(BaseModel):
    id: str
    dcd_code: str
    date_from: date
    date_to: date
    nominative: bool
    state: str
    rows: int
    requested_by: str
    created_at: datetime
    ready_at: datetime | None
    download: str | None


class ExportPage(Page[ExportOut]):
    """A page of exports, newest first."""
