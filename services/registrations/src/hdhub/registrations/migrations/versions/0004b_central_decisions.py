"""central decisions: the return channel's decisions as taken, and the follow-ups due

Revision ID: 7c2e4d1a9b30
Revises: 0003
Create Date: 2026-12-03 17:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hdhub.common.db

revision: str = "7c2e4d1a9b30"
down_revision: str | Sequence[str] | None = "0004grid"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Moment = hdhub.common.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "central_decisions",
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("decision_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=True),
        sa.Column("technical_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("decided_at", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=120), nullable=True),
        sa.Column("received_at", Moment, nullable=False),
        sa.Column("acknowledged_at", Moment, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("central_decisions") as batch:
        batch.create_index(
            "uq_central_decisions_verified",
            ["decision_id"],
            unique=True,
            postgresql_where=sa.text("reason IS DISTINCT FROM 'signature'"),
            sqlite_where=sa.text("reason IS NOT 'signature'"),
        )
        batch.create_index("ix_central_decisions_registration", ["registration_id"])
        batch.create_index(
            "ix_central_decisions_unacknowledged",
            ["sequence"],
            postgresql_where=sa.text("acknowledged_at IS NULL"),
            sqlite_where=sa.text("acknowledged_at IS NULL"),
        )
        batch.create_index("ix_central_decisions_sequence", ["sequence"])
    op.create_table(
        "central_decision_cursor",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "follow_ups",
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("registration_id", sa.String(length=36), nullable=False),
        sa.Column("registration_code", sa.String(length=32), nullable=True),
        sa.Column("decision_id", sa.String(length=64), nullable=False),
        sa.Column("project_code", sa.String(length=16), nullable=False),
        sa.Column("dcd_code", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("due_at", Moment, nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.ForeignKeyConstraint(["registration_id"], ["registrations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("registration_id", "dcd_code"),
    )
    with op.batch_alter_table("follow_ups") as batch:
        batch.create_index("ix_follow_ups_org_due", ["organisation_id", "due_at"])


def downgrade() -> None:
    op.drop_table("follow_ups")
    op.drop_table("central_decision_cursor")
    op.drop_table("central_decisions")
