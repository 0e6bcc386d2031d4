"""central receiver: records and pseudonym halves

Revision ID: 0001
Revises:
Create Date: 2026-11-22 03:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hdhub.common.db

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "central_records",
        sa.Column("technical_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("project_code", sa.String(length=16), nullable=False),
        sa.Column("dcd_code", sa.String(length=64), nullable=False),
        sa.Column("dcd_version", sa.String(length=32), nullable=False),
        sa.Column("registration_code", sa.String(length=32), nullable=False),
        sa.Column("variables", hdhub.common.db.JSONType, nullable=False),
        sa.Column("signer_subject", sa.String(length=500), nullable=False),
        sa.Column("received_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("receipts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("technical_id"),
    )
    op.create_index("ix_central_records_organisation_id", "central_records", ["organisation_id"])
    op.create_table(
        "central_pseudonyms",
        sa.Column("technical_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("project_code", sa.String(length=16), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("received_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("receipts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("technical_id"),
    )
    op.create_index("ix_central_pseudonyms_pseudonym", "central_pseudonyms", ["pseudonym"])


def downgrade() -> None:
    op.drop_index("ix_central_pseudonyms_pseudonym", table_name="central_pseudonyms")
    op.drop_table("central_pseudonyms")
    op.drop_index("ix_central_records_organisation_id", table_name="central_records")
    op.drop_table("central_records")
