"""exports of registrations (CSV, XLSX, Parquet) and their audit trail

``registration_exports`` holds each export asked for (filters, progress, the file's key),
``registration_export_events`` who asked, when it was written and every download.

Revision ID: 0006_exports
Revises: 0004grid
Create Date: 2026-12-03 17:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa

import hdhub.common.db
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_exports"
down_revision: str | Sequence[str] | None = "0005reg_operator_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = hdhub.common.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registration_exports",
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dcd_code", sa.String(length=64), nullable=False),
        sa.Column("dcd_version", sa.String(length=32), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("filters", JSON, nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("problem", sa.Text(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("ready_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_registration_exports_org_created", "registration_exports", ["organisation_id", "created_at"]
    )
    op.create_table(
        "registration_export_events",
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("export_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_registration_export_events_organisation_id", "registration_export_events", ["organisation_id"]
    )
    op.create_index("ix_registration_export_events_export_id", "registration_export_events", ["export_id"])


def downgrade() -> None:
    op.drop_table("registration_export_events")
    op.drop_table("registration_exports")
