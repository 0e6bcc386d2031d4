"""sftp credentials

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 02:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hdhub.common.db

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "sftp_credentials",
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("rotated_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("username"),
    )
    with op.batch_alter_table("sftp_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sftp_credentials_organisation_id"), ["organisation_id"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("sftp_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sftp_credentials_organisation_id"))
    op.drop_table("sftp_credentials")
