"""data reuse: the organisations given a read-only schema and role (reuse.py)

Revision ID: 0007_reuse
Revises: 0006_exports
Create Date: 2026-12-03 18:05:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hdhub.common.db

revision: str = "0007_reuse"
down_revision: str | Sequence[str] | None = "0006_exports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reuse_access",
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("schema", sa.String(length=63), nullable=False),
        sa.Column("role", sa.String(length=63), nullable=False),
        sa.Column("created_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organisation_id"),
    )


def downgrade() -> None:
    op.drop_table("reuse_access")
