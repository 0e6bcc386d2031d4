"""The Upload Center's tables: upload settings per organisation and registry, uploads
with their steps and counters, and jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import TYPE_MAP, TenantScoped, new_id, utcnow
from hdhub.common.jobs import JobColumns
from hdhub.common.tallies import TallyColumns


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class UploadSettings(TenantScoped, Base):
    """An organisation's Upload Center settings for one registry (project code)."""

    __tablename__ = "upload_settings"
    __table_args__ = (
        UniqueConstraint("organisation_id", "project_code", name="uq_upload_settings_org_project"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_code: Mapped[str] = mapped_column(String(16))
    conflict_mode: Mapped[str] = mapped_column(String(32), default="business_key")
    conflict_master: Mapped[str] = mapped_column(String(16), default="new")
    ignore_duplicates: Mapped[bool] = mapped_column(Boolean, default=True)
    autosubmit: Mapped[bool] = mapped_column(Boolean, default=False)
    validation: Mapped[str] = mapped_column(String(32), default="none")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255), default="")


class Upload(TenantScoped, Base):
    """One uploaded file and its processing: four steps, live counters, reports."""

    __tablename__ = "uploads"
    __table_args__ = (
        UniqueConstraint("organisation_id", "idempotency_key", name="uq_uploads_org_idempotency"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    filename: Mapped[str] = mapped_column(String(255))
    object_key: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    project_code: Mapped[str] = mapped_column(String(16))
    dcd_code: Mapped[str] = mapped_column(String(64))
    dcd_version: Mapped[str] = mapped_column(String(32))
    #: The settings in force for this upload (stored settings plus overrides), and dry_run.
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    language: Mapped[str] = mapped_column(String(2), default="en")
    uploaded_by: Mapped[str] = mapped_column(String(255))
    #: queued, processing, done, failed (a technical failure, after retries).
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    #: select_file, validity_check, upload, finalize: pending, running, success, warnings, errors.
    steps: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: rows_read, created, updated, ignored_duplicate, kept_stored, rejected, errors, warnings.
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: File-level findings (encoding, separator, header, size...), each {line, column, rule, message, severity}.
    findings: Mapped[list[Any]] = mapped_column(default=list)
    #: How the file was read: encoding, delimiter, columns.
    file_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: validating (Validate all's first pass) or storing; batches finished in that phase.
    phase: Mapped[str] = mapped_column(String(16), default="storing")
    batches_done: Mapped[int] = mapped_column(Integer, default=0)
    #: Why a technical failure stopped the upload.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: When the source file was deleted from the object store (its retention ran out, or
    #: at once for a dry run); the upload, its findings and its reports stay.
    source_purged_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Job(JobColumns, Base):
    __tablename__ = "jobs"


class UploadFailureTally(TallyColumns, Base):
    """Failed uploads per organisation and hour of failure (``YYYY-MM-DDTHH``, UTC), kept by triggers."""

    __tablename__ = "upload_failure_tallies"
