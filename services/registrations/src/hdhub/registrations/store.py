"""Registrations' tables: the DCD catalogue, registrations with their versions, the
registration-code counters, jobs and idempotency keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Insert,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    insert,
    literal,
    null,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import TYPE_MAP, TenantScoped, new_id, utcnow
from hdhub.common.jobs import JobColumns
from hdhub.common.web import IdempotencyColumns


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Project(Base):
    """A registry (`HDBP0012` ANGIO)."""

    __tablename__ = "projects"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    abbreviation: Mapped[str] = mapped_column(String(64))
    titles: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Dcd(Base):
    """A data collection definition of a project, across its versions."""

    __tablename__ = "dcds"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_code: Mapped[str] = mapped_column(ForeignKey("projects.code"), index=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    titles: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DcdVersion(Base):
    """One imported workbook: the source of truth for a DCD version's rules."""

    __tablename__ = "dcd_versions"
    __table_args__ = (UniqueConstraint("dcd_code", "version"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    dcd_code: Mapped[str] = mapped_column(ForeignKey("dcds.code"), index=True)
    version: Mapped[str] = mapped_column(String(32))
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    patch: Mapped[int] = mapped_column(Integer)
    workbook: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported_by: Mapped[str] = mapped_column(String(200), default="")


class Registration(TenantScoped, Base):
    __tablename__ = "registrations"
    __table_args__ = (
        # One live registration per business key and DCD within an organisation.
        Index(
            "uq_registrations_live_business_key",
            "organisation_id",
            "dcd_code",
            "business_key",
            unique=True,
            postgresql_where=text("status <> 'deleted'"),
            sqlite_where=text("status <> 'deleted'"),
        ),
        Index("ix_registrations_org_status", "organisation_id", "status"),
    )
    # No index of its own: the business key's and the status' indexes lead with it.
    organisation_id: Mapped[str] = mapped_column(String(64), nullable=False)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_code: Mapped[str] = mapped_column(String(16))
    dcd_code: Mapped[str] = mapped_column(String(64))
    dcd_version: Mapped[str] = mapped_column(String(32))
    business_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    status_confirmation: Mapped[str | None] = mapped_column(String(16), nullable=True)
    registration_code: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    first_submitted_at: Mapped[datetime | None] = mapped_column(nullable=True)

    # Optimistic concurrency: every UPDATE checks the version read; the service bumps it
    # once per change (one history entry each), however many flushes that change takes.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class RegistrationVersion(TenantScoped, Base):
    """Every change to a registration: who, when, what (the history).

    A registration's values are stored once, in the registration. A version keeps what its
    change replaced (``replaced``: each changed field's value before it, null where it had
    none), so every earlier version's values follow from the current ones
    (:func:`hdhub.registrations.service.values_by_version`). ``values``, a whole copy, is
    what versions written before migration 0003 hold; it is read as that version's values.
    """

    __tablename__ = "registration_versions"
    __table_args__ = (UniqueConstraint("registration_id", "version"),)
    # Looked up by registration (the unique index above), never by organisation alone.
    organisation_id: Mapped[str] = mapped_column(String(64), nullable=False)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    dcd_version: Mapped[str] = mapped_column(String(32))
    values: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    replaced: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    changed_fields: Mapped[list[Any]] = mapped_column(default=list)
    actor: Mapped[str] = mapped_column(String(200))
    via: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)


def worker_history(
    where: ColumnElement[bool], *, action: str, at: datetime, comment: str | None = None
) -> Insert:
    """One history entry per registration matching ``where``, for a change the worker just
    made to it (delivery, confirmation, parking): at its current version and status, in one
    INSERT ... SELECT. A status change replaced no values (they stay stored once)."""
    history = RegistrationVersion.__table__.c
    columns = {
        "organisation_id": Registration.organisation_id,
        "registration_id": Registration.id,
        "version": Registration.version,
        "action": literal(action, history.action.type),
        "status": Registration.status,
        "dcd_version": Registration.dcd_version,
        "values": null(),
        "replaced": null(),
        "changed_fields": literal([], history.changed_fields.type),
        "actor": literal("hdhub", history.actor.type),
        "via": literal("worker", history.via.type),
        "comment": literal(comment, history.comment.type) if comment is not None else null(),
        "at": literal(at, history.at.type),
    }
    return insert(RegistrationVersion).from_select(list(columns), select(*columns.values()).where(where))


class RegistrationCodeCounter(Base):
    """Sequence of registration codes per DCD and year."""

    __tablename__ = "registration_code_counters"
    dcd_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)


class Job(JobColumns, Base):
    __tablename__ = "jobs"


class IdempotencyKey(IdempotencyColumns, Base):
    __tablename__ = "idempotency_keys"


class Delivery(TenantScoped, Base):
    """Where a registration's delivery to the central platform stands (delivery.py): the
    technical id both halves travel under, the version being delivered, and the status
    confirmation's clock (first send, last send, attempts, parking)."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_org_state", "organisation_id", "state"),)
    registration_id: Mapped[str] = mapped_column(
        ForeignKey("registrations.id", ondelete="CASCADE"), primary_key=True
    )
    technical_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    content_version: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(120), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    parked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
