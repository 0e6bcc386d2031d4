"""The portal's tables: certificate versions per organisation and their status logs.

The p12 itself is never here: the object store holds it encrypted, and a row keeps only
the data key wrapped by the master key and the sealed password (see ``envelope``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import TYPE_MAP, TenantScoped, new_id, utcnow
from hdhub.common.web import IdempotencyColumns


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Certificate(TenantScoped, Base):
    """One uploaded p12 of an organisation; at most one version is published."""

    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("organisation_id", "version", name="uq_certificates_org_version"),
        # The database itself keeps "one published version per organisation".
        Index(
            "uq_certificates_one_published",
            "organisation_id",
            unique=True,
            postgresql_where=text("published"),
            sqlite_where=text("published"),
        ),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    version: Mapped[int] = mapped_column(Integer)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    filename: Mapped[str] = mapped_column(String(255), default="")
    uploaded_by: Mapped[str] = mapped_column(String(200))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    unpublished_at: Mapped[datetime | None] = mapped_column(default=None)
    # What the keys are, for lists and for callers choosing a cached copy.
    authentication_subject: Mapped[str] = mapped_column(Text)
    authentication_serial: Mapped[str] = mapped_column(String(80))
    encryption_subject: Mapped[str] = mapped_column(Text)
    encryption_serial: Mapped[str] = mapped_column(String(80))
    not_before: Mapped[datetime] = mapped_column()
    not_after: Mapped[datetime] = mapped_column()
    # Envelope encryption: the object holds ciphertext; the data key is wrapped here.
    object_key: Mapped[str] = mapped_column(String(255))
    object_sha256: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    sealed_password: Mapped[bytes] = mapped_column(LargeBinary)


class CertificateEvent(TenantScoped, Base):
    """One line of a certificate's status log."""

    __tablename__ = "certificate_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id"), index=True)
    step: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    message: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="")


class IdempotencyKey(IdempotencyColumns, Base):
    __tablename__ = "idempotency_keys"


class PortalSession(Base):
    """A browser's session with the portal (the backend-for-frontend): the cookie holds a
    random id whose hash is the key here; the person's tokens stay on this side, sealed
    with the portal's secret key. Before sign-in the row keeps the authorization request's
    state, PKCE verifier and nonce; sign-in replaces the row under a new id."""

    __tablename__ = "portal_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    oauth_state: Mapped[str] = mapped_column(String(64), default="")
    code_verifier: Mapped[str] = mapped_column(String(128), default="")
    nonce: Mapped[str] = mapped_column(String(64), default="")
    return_to: Mapped[str] = mapped_column(String(500), default="")
    subject: Mapped[str] = mapped_column(String(64), default="")
    username: Mapped[str] = mapped_column(String(200), default="")
    display_name: Mapped[str] = mapped_column(String(200), default="")
    tokens: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    access_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The last bulk action's outcome (JSON: organisation, action, back, outcomes), shown by
    #: the page the POST redirects to, so a reload shows it again without acting again.
    bulk_outcome: Mapped[str] = mapped_column(Text, default="", server_default="")
