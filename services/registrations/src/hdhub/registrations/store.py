"""Registrations' tables: the DCD catalogue, registrations with their versions, the
registration-code counters, jobs and idempotency keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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
from hdhub.common.tallies import TallyColumns
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
    #: ``published`` (registrations follow it), ``draft`` (imported for review, not in
    #: effect) or ``retired`` (no work on it any more); catalogue/versions.py says which moves.
    state: Mapped[str] = mapped_column(String(16), default="published", server_default="published")
    state_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    state_changed_by: Mapped[str] = mapped_column(String(200), default="", server_default="")


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
        # The grid's keyset pages (migration 0004, records/grid.py).
        Index("ix_registrations_grid_updated", "organisation_id", "updated_at", "id"),
        Index("ix_registrations_grid_created", "organisation_id", "created_at", "id"),
        Index("ix_registrations_grid_status", "organisation_id", "status", "updated_at", "id"),
        Index("ix_registrations_grid_dcd", "organisation_id", "dcd_code", "updated_at", "id"),
        Index("ix_registrations_org_business_key", "organisation_id", "business_key"),
    )
    # No index of its own: the business key's and the grid's indexes lead with it.
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
    #: The history entry its creation shares with the rest of its batch (``BatchHistory``:
    #: version 1, create, and version 2, submit, when created submitted); None when every
    #: entry of its history is a ``RegistrationVersion`` (created before migration 0008).
    #: No index and no foreign key: read only with the registration, by the entry's id.
    batch_history_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), nullable=True
    )

    # Optimistic concurrency: every UPDATE checks the version read; the service bumps it
    # once per change (one history entry each), however many flushes that change takes.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class RegistrationVersion(TenantScoped, Base):
    """Every change to a registration: who, when, what (the history).

    A registration's values are stored once, in the registration. A version keeps what its
    change replaced (``replaced``: each changed field's value before it, null where it had
    none), so every earlier version's values follow from the current ones
    (:func:`hdhub.registrations.records.service.values_by_version`). ``values``, a whole copy, is
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


class BatchHistory(TenantScoped, Base):
    """The history entry the registrations created together share (migration 0008): who
    created them, when, under which DCD version, and whether they were submitted in the
    same statement. For each registration naming it (``Registration.batch_history_id``) it
    stands for version 1 (create) and, when ``submitted``, version 2 (submit): one row per
    batch, not two per registration. The create entry's fields are the registration's
    values at version 1 (rebuilt as for any version, records/history.py); later changes
    are ``RegistrationVersion`` rows of their own."""

    __tablename__ = "batch_history"
    # Read by its id only, with the registrations naming it.
    organisation_id: Mapped[str] = mapped_column(String(64), nullable=False)
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    #: The batch: the caller's batch id (an upload's ``{upload_id}:{n}``); None for a
    #: registration created on its own.
    batch_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    submitted: Mapped[bool] = mapped_column()
    dcd_version: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    via: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)


def worker_history(
    where: ColumnElement[bool],
    *,
    action: str,
    at: datetime,
    comment: str | None = None,
    actor: str = "hdhub",
    via: str = "worker",
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
        "actor": literal(actor, history.actor.type),
        "via": literal(via, history.via.type),
        "comment": literal(comment, history.comment.type) if comment is not None else null(),
        "at": literal(at, history.at.type),
    }
    return insert(RegistrationVersion).from_select(list(columns), select(*columns.values()).where(where))


class RegistrationCount(Base):
    """Signed deltas of the number of registrations per organisation, registry, DCD, DCD
    version, status and status confirmation ('' for none), written by triggers on
    ``registrations`` in the same transaction as each change (migrations 0004grid and
    0008_portalperf_grid_counts); their sum is the count. The grid reads a few rows per
    organisation instead of counting its registrations, and compacts them."""

    __tablename__ = "registration_counts"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    organisation_id: Mapped[str] = mapped_column(String(64), index=True)
    project_code: Mapped[str] = mapped_column(String(16))
    dcd_code: Mapped[str] = mapped_column(String(64))
    # Migration 0008_portalperf_grid_counts: the grid's version filter is counted too.
    dcd_version: Mapped[str] = mapped_column(String(32), server_default="")
    status: Mapped[str] = mapped_column(String(32))
    status_confirmation: Mapped[str] = mapped_column(String(16))
    n: Mapped[int] = mapped_column(BigInteger)


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


class Export(TenantScoped, Base):
    """A CSV Upload Manager's export of an organisation's registrations of one DCD version
    (exports/): what was asked, how far the job is, and where the file is."""

    __tablename__ = "registration_exports"
    __table_args__ = (Index("ix_registration_exports_org_created", "organisation_id", "created_at"),)
    organisation_id: Mapped[str] = mapped_column(String(64), nullable=False)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    dcd_code: Mapped[str] = mapped_column(String(64))
    dcd_version: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(16))  # csv | xlsx | parquet
    #: The filters asked (statuses, created/updated ranges), as given.
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    requested_by: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued running ready failed
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(Integer, default=0)
    object_key: Mapped[str] = mapped_column(String(512), default="")
    problem: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ExportEvent(TenantScoped, Base):
    """The audit trail of exports, append-only: who asked for which data, when it was
    written, and every download (``export.requested``, ``export.ready``,
    ``export.failed``, ``export.downloaded``)."""

    __tablename__ = "registration_export_events"
    organisation_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    export_id: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ReuseAccess(Base):
    """An organisation given a reuse schema and role (so new DCD versions get views)."""

    __tablename__ = "reuse_access"
    organisation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    schema: Mapped[str] = mapped_column(String(63))
    role: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(TenantScoped, Base):
    """Where a registration's delivery to the central platform stands (delivery/): the
    technical id both halves travel under, the version being delivered, and the status
    confirmation's clock (first send, last send, attempts, parking)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # The oldest delivery of a state in an organisation, first in the index (the console).
        Index("ix_deliveries_org_state_updated", "organisation_id", "state", "updated_at"),
        # Confirmations pending past 48 h, without reading the confirmed ones.
        Index(
            "ix_deliveries_pending_first_sent",
            "organisation_id",
            "first_sent_at",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )
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
    # A parked delivery the operator set aside (delivery/parked.py): out of the parked list
    # and count, kept; parking again or retrying clears these.
    archived_at: Mapped[datetime | None] = mapped_column(nullable=True)
    archived_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    archive_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CentralDecision(TenantScoped, Base):
    """A decision of the central platform as registrations took it (delivery/decisions.py):
    applied, or refused with the reason sent back; ``acknowledged_at`` once the central
    platform has that outcome. The highest ``sequence`` is the pull cursor. A decision id
    is taken once among the decisions whose signature held (a forged one, refused, keeps
    no id from the genuine one)."""

    __tablename__ = "central_decisions"
    __table_args__ = (
        Index(
            "uq_central_decisions_verified",
            "decision_id",
            unique=True,
            postgresql_where=text("reason IS DISTINCT FROM 'signature'"),
            sqlite_where=text("reason IS NOT 'signature'"),
        ),
        Index("ix_central_decisions_registration", "registration_id"),
        Index(
            "ix_central_decisions_unacknowledged",
            "sequence",
            postgresql_where=text("acknowledged_at IS NULL"),
            sqlite_where=text("acknowledged_at IS NULL"),
        ),
    )
    organisation_id: Mapped[str] = mapped_column(String(64), nullable=False)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(BigInteger, index=True)
    registration_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    technical_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")
    fields: Mapped[list[Any]] = mapped_column(default=list)
    decided_at: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(120), nullable=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(nullable=True)


class DecisionCursor(Base):
    """How far registrations has taken the central platform's decisions (one row): the
    highest sequence taken, moved in the transaction that takes the decision."""

    __tablename__ = "central_decision_cursor"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)


class FollowUp(TenantScoped, Base):
    """A follow-up registration due (the central platform's Follow-up needed, as the DCD
    defines it: ANGIO's one-year follow-up after PCI)."""

    __tablename__ = "follow_ups"
    __table_args__ = (
        UniqueConstraint("registration_id", "dcd_code"),
        Index("ix_follow_ups_org_due", "organisation_id", "due_at"),
    )
    organisation_id: Mapped[str] = mapped_column(String(64), nullable=False)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.id", ondelete="CASCADE"))
    registration_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decision_id: Mapped[str] = mapped_column(String(64))
    project_code: Mapped[str] = mapped_column(String(16))
    dcd_code: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text, default="")
    due_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryTally(TallyColumns, Base):
    """Deliveries per organisation and state, kept by triggers (hdhub.common.tallies)."""

    __tablename__ = "delivery_tallies"


class RegistrationTally(TallyColumns, Base):
    """Live (not deleted) registrations per organisation and DCD version (bucket
    ``ANGIO_HOSP@1.0.0``), kept by triggers."""

    __tablename__ = "registration_tallies"
