"""central receiver: files sent with their registrations

Revision ID: sim_0004_files_to_central
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hdhub.common.db

revision: str = "sim_0004_files_to_central"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "central_files",
        sa.Column("file_id", sa.String(length=64), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("project_code", sa.String(length=16), nullable=False),
        sa.Column("registry", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("technical_ids", hdhub.common.db.JSONType, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("signer_subject", sa.String(length=500), nullable=False),
        sa.Column("updated_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("file_id"),
    )
    op.create_index("ix_central_files_organisation_id", "central_files", ["organisation_id"])


def downgrade() -> None:
    op.drop_index("ix_central_files_organisation_id", table_name="central_files")
    op.drop_table("central_files")
