"""Intake's tables: received files with their verdicts, their links to registrations,
the recordnames of sequence files, durable jobs, and the slots of scheduled runs.

The bytes are never here: the object store holds each file under ``object_key``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import TYPE_MAP, TenantScoped, new_id, utcnow
from hdhub.common.jobs import JobColumns
from hdhub.common.tallies import TallyColumns

# File states, in the order a file goes through them: received, accepted (checked),
# linked, sent, acknowledged. A file "counts" only from ACCEPTED on.
RECEIVING = "receiving"  # bytes are arriving; visible only as progress
RECEIVED = "received"  # complete, waiting in the SFTP folder to be moved to Finished
ABORTED = "aborted"  # the transfer did not complete (cut, too large, empty): nothing kept
ACCEPTED = "accepted"  # delivered and every check passed (checked); waiting for its registration
REJECTED = "rejected"  # delivered, a check failed: ``rule`` and ``reason`` say which
LOADED = "loaded"  # earlier releases' daily load (out of the drop area); no longer given
LINKED = "linked"  # accepted and linked to every registration it needs: to be sent
SENT = "sent"  # streamed whole to the central platform, its acknowledgement not yet in
ACKNOWLEDGED = "acknowledged"  # the central platform holds it (digest checked): out of the drop area
STATES = (RECEIVING, RECEIVED, ABORTED, ACCEPTED, REJECTED, LOADED, LINKED, SENT, ACKNOWLEDGED)


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class IntakeFile(TenantScoped, Base):
    """One file sent by an organisation into a registry folder."""

    __tablename__ = "intake_files"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Not ``registry``: DeclarativeBase keeps its mapper registry under that name.
    registry_folder: Mapped[str] = mapped_column("registry", String(32))
    filename: Mapped[str] = mapped_column(String(255), index=True)
    source: Mapped[str] = mapped_column(String(8))  # sftp or http
    sender: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True, default=RECEIVING)
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    object_key: Mapped[str] = mapped_column(String(512))
    # The content checks ran while the bytes streamed in; the name checks run on delivery.
    content_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    rule: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    filename_value: Mapped[str] = mapped_column(String(64), default="")
    record_count: Mapped[int] = mapped_column(Integer, default=0)
    unmatched: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    link_problem: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    received_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    linked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    loaded_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: When a refused file's bytes were deleted (its retention ran out); the row, with its
    #: rule and reason, stays to show the refusal.
    content_purged_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: The way to the central platform: the last byte out, the acknowledgement in, the
    #: bytes the central side holds (a cut transfer resumes there), and why the file waits
    #: (empty when it does not: ``registration-not-delivered``, ``central-unavailable``,
    #: ``central-rejected:<rule>``, ``no-published-certificate``...).
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    central_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    send_attempts: Mapped[int] = mapped_column(Integer, default=0)
    send_problem: Mapped[str] = mapped_column(String(200), default="")


class FileLink(TenantScoped, Base):
    """A file linked to a registration: by VCF file name or TX_ATT (1-to-many), or one
    recordname by TX_ATT_RECRD (1-to-1)."""

    __tablename__ = "file_links"
    __table_args__ = (UniqueConstraint("file_id", "registration_id", "recordname", name="uq_file_links"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("intake_files.id", ondelete="CASCADE"), index=True)
    registration_id: Mapped[str] = mapped_column(String(36), index=True)
    field: Mapped[str] = mapped_column(String(32))
    recordname: Mapped[str] = mapped_column(String(64), default="")
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)


class FileRecord(TenantScoped, Base):
    """A recordname of a sequence file, and the registration it is linked to (1-to-1) once one names it."""

    __tablename__ = "file_records"
    __table_args__ = (UniqueConstraint("file_id", "recordname", name="uq_file_records"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("intake_files.id", ondelete="CASCADE"), index=True)
    recordname: Mapped[str] = mapped_column(String(64))
    registration_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class Job(JobColumns, Base):
    __tablename__ = "jobs"


class ScheduledRun(Base):
    """One row per scheduled run (``daily-load`` per day, ``relink`` per interval): the
    primary key makes two workers enqueue it once between them."""

    __tablename__ = "scheduled_runs"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    slot: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IntakeFileTally(TallyColumns, Base):
    """Files per organisation and state (``accepted/unmatched`` for an unmatched one), kept by triggers."""

    __tablename__ = "intake_file_tallies"
