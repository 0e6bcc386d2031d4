"""deliveries: where each registration's delivery to the central platform stands

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:15:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hdhub.common.db

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("technical_id", sa.String(length=36), nullable=False),
        sa.Column("content_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=120), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_sent_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_sent_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("parked_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["registration_id"], ["registrations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("registration_id"),
        sa.UniqueConstraint("technical_id"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_org_state", ["organisation_id", "state"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_organisation_id"), ["organisation_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_organisation_id"))
        batch_op.drop_index(batch_op.f("ix_deliveries_state"))
        batch_op.drop_index("ix_deliveries_org_state")
    op.drop_table("deliveries")
