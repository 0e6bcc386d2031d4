"""the operator's DCD catalogue: a version's state (draft, published, retired) and who changed it last

Revision ID: 0008_console_catalogue
Revises: 0007_reuse
Create Date: 2026-12-10 09:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hdhub.common.db

revision: str = "0008_console_catalogue"
down_revision: str | Sequence[str] | None = "0007_reuse"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every version imported before states existed was in effect: published.
    op.add_column(
        "dcd_versions", sa.Column("state", sa.String(length=16), server_default="published", nullable=False)
    )
    op.add_column(
        "dcd_versions",
        sa.Column("state_changed_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "dcd_versions",
        sa.Column("state_changed_by", sa.String(length=200), server_default="", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("dcd_versions") as batch:
        batch.drop_column("state_changed_by")
        batch.drop_column("state_changed_at")
        batch.drop_column("state")
