"""What the stand-in central receiver keeps: one record and one pseudonym half per
technical id (the newest version wins, a resend only counts a receipt)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hdhub.common.db import TYPE_MAP, UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class CentralRecord(Base):
    """The register variables of a registration, decrypted after the signature checked out."""

    __tablename__ = "central_records"
    technical_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    organisation_id: Mapped[str] = mapped_column(String(64), index=True)
    project_code: Mapped[str] = mapped_column(String(16))
    dcd_code: Mapped[str] = mapped_column(String(64))
    dcd_version: Mapped[str] = mapped_column(String(32))
    registration_code: Mapped[str] = mapped_column(String(32))
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    signer_subject: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    receipts: Mapped[int] = mapped_column(Integer, default=1)


class CentralPseudonym(Base):
    """The pseudonymised half, as pseudonymisation forwarded it."""

    __tablename__ = "central_pseudonyms"
    technical_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    organisation_id: Mapped[str] = mapped_column(String(64))
    project_code: Mapped[str] = mapped_column(String(16))
    key_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    receipts: Mapped[int] = mapped_column(Integer, default=1)


class CentralFile(Base):
    """A file sent with its registrations (VCF, HIV sequence): how much of it is held, and
    whether it was acknowledged. The bytes are in the sim's data folder, decrypted."""

    __tablename__ = "central_files"
    file_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(64), index=True)
    project_code: Mapped[str] = mapped_column(String(16))
    registry_folder: Mapped[str] = mapped_column("registry", String(32))
    filename: Mapped[str] = mapped_column(String(255))
    technical_ids: Mapped[list[Any]] = mapped_column(default=list)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    #: Plaintext bytes held (where a resumed attempt starts).
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    signer_subject: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CentralDecision(Base):
    """A decision the stand-in central platform made on a delivered registration (the
    operator's or a test's, through /sim/decisions), signed, kept until registrations
    acknowledges it with its outcome."""

    __tablename__ = "central_decisions"
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(String(36), unique=True)
    technical_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    organisation_id: Mapped[str] = mapped_column(String(64))
    registration_code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")
    fields: Mapped[list[Any]] = mapped_column(default=list)
    decided_at: Mapped[str] = mapped_column(String(40))
    signing_key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    #: None until acknowledged; then "applied" or "refused".
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(120), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
