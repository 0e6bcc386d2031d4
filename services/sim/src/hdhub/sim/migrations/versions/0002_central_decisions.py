"""central decisions: the return channel's decisions, signed, kept until acknowledged

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 17:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hdhub.common.db

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "central_decisions",
        sa.Column("sequence", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("decision_id", sa.String(length=36), nullable=False),
        sa.Column("technical_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("registration_code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("decided_at", sa.String(length=40), nullable=False),
        sa.Column("signing_key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=120), nullable=True),
        sa.Column("acknowledged_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sequence"),
        sa.UniqueConstraint("decision_id"),
    )
    op.create_index("ix_central_decisions_technical_id", "central_decisions", ["technical_id"])


def downgrade() -> None:
    op.drop_index("ix_central_decisions_technical_id", table_name="central_decisions")
    op.drop_table("central_decisions")
