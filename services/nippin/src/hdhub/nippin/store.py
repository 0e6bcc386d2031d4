"""NIPPIN's tables: messages (the XML sealed, it holds the SSIN) with their transitions,
the nightly reports and their rows, the exports, durable jobs and scheduled runs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import TYPE_MAP, TenantScoped, new_id, utcnow
from hdhub.common.jobs import JobColumns
from hdhub.common.tallies import TallyColumns
from hdhub.nippin.domain.statuses import TO_SEND


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class NippinMessage(TenantScoped, Base):
    """One billing message: made from one submission (registration id and version) of a
    reimbursed registration. Its id travels with it so the receiving side drops duplicates."""

    __tablename__ = "nippin_messages"
    __table_args__ = (
        UniqueConstraint("registration_id", "registration_version", name="uq_nippin_submission"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    registration_id: Mapped[str] = mapped_column(String(36), index=True)
    registration_version: Mapped[int] = mapped_column(Integer)
    registration_code: Mapped[str] = mapped_column(String(64), default="")
    project_code: Mapped[str] = mapped_column(String(32), default="")
    dcd_code: Mapped[str] = mapped_column(String(64), index=True)
    dcd_version: Mapped[str] = mapped_column(String(32))
    schema_version: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True, default=TO_SEND)
    #: The act's date (the bound ``ImplantDate``): reports and exports are ranged on it.
    implant_date: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    #: The XML, sealed with a data key of its own (envelope); None once purged.
    xml_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    #: Why the XSD refused it (INVALID), one line per element and rule broken.
    invalid_reasons: Mapped[list[Any]] = mapped_column(default=list)
    interface: Mapped[str] = mapped_column(String(16), default="")
    tack_major: Mapped[str] = mapped_column(String(128), default="")
    tack_outcome: Mapped[str] = mapped_column(String(16), default="")
    tack_messages: Mapped[list[Any]] = mapped_column(default=list)
    tack_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    refusals: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(nullable=True)


class MessageTransition(TenantScoped, Base):
    """One move of a message's status, with its time and cause (and who, for a person)."""

    __tablename__ = "nippin_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("nippin_messages.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    cause: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Report(TenantScoped, Base):
    """One organisation's report of one night (UTC day), kept."""

    __tablename__ = "nippin_reports"
    __table_args__ = (UniqueConstraint("organisation_id", "night", name="uq_nippin_report_night"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    night: Mapped[date] = mapped_column(Date, index=True)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    built_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportRow(TenantScoped, Base):
    """One reimbursed registration's result in a report."""

    __tablename__ = "nippin_report_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("nippin_reports.id", ondelete="CASCADE"), index=True)
    registration_id: Mapped[str] = mapped_column(String(36))
    registration_code: Mapped[str] = mapped_column(String(64), default="")
    dcd_code: Mapped[str] = mapped_column(String(64), index=True)
    implant_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    result: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    message_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")


class Export(TenantScoped, Base):
    """A NIPPIN Manager's export of report results for a range of implant dates."""

    __tablename__ = "nippin_exports"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    dcd_code: Mapped[str] = mapped_column(String(64))
    date_from: Mapped[date] = mapped_column(Date)
    date_to: Mapped[date] = mapped_column(Date)
    nominative: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued, ready, failed
    rows: Mapped[int] = mapped_column(Integer, default=0)
    object_key: Mapped[str] = mapped_column(String(512), default="")
    problem: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Job(JobColumns, Base):
    __tablename__ = "jobs"


class ScheduledRun(Base):
    """One row per scheduled run (``report`` per night, ``answers``/``purge`` per interval):
    the primary key makes two workers enqueue it once between them."""

    __tablename__ = "scheduled_runs"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    slot: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NippinMessageTally(TallyColumns, Base):
    """Billing messages per organisation and status, kept by triggers."""

    __tablename__ = "nippin_message_tallies"
