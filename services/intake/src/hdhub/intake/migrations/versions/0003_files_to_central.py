"""files go to the central platform: sent, acknowledged, the offset held there

Revision ID: intake_0004_files_to_central
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hdhub.common.db

revision: str = "intake_0004_files_to_central"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("intake_files") as batch:
        batch.add_column(sa.Column("sent_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("acknowledged_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("central_offset", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("send_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("send_problem", sa.String(length=200), nullable=False, server_default=""))
        batch.create_index("ix_intake_files_acknowledged_at", ["acknowledged_at"])
    # Linked files of earlier releases were accepted with no unmatched flag: they are linked.
    op.execute("UPDATE intake_files SET state = 'linked' WHERE state = 'accepted' AND unmatched = false")


def downgrade() -> None:
    op.execute("UPDATE intake_files SET state = 'accepted' WHERE state IN ('linked', 'sent', 'acknowledged')")
    with op.batch_alter_table("intake_files") as batch:
        batch.drop_index("ix_intake_files_acknowledged_at")
        batch.drop_column("send_problem")
        batch.drop_column("send_attempts")
        batch.drop_column("central_offset")
        batch.drop_column("acknowledged_at")
        batch.drop_column("sent_at")
