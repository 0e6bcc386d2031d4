"""What the stand-in central receiver keeps: one record and one pseudonym half per
technical id (the newest version wins, a resend only counts a receipt)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String
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
