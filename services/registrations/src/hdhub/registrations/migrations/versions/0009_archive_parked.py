"""archive parked deliveries: who set a parked delivery aside, when and why; the delivery
tally counts those apart (bucket ``archived``) so that the console's parked count leaves them out

Revision ID: 0009_archive_parked
Revises: 0008_batch_history
Create Date: 2026-12-04 17:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hdhub.common.db
from hdhub.common.tallies import Tally, create_tally, drop_tally

revision: str = "0009_archive_parked"
down_revision: str | Sequence[str] | None = "0008_portalperf_grid_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = Tally("delivery_tallies", "deliveries", bucket="{r}state")
#: A parked delivery the operator archived counts as ``archived``, every other by its state.
AFTER = Tally(
    "delivery_tallies",
    "deliveries",
    bucket="CASE WHEN {r}state = 'parked' AND {r}archived_at IS NOT NULL THEN 'archived' ELSE {r}state END",
)


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("archived_at", hdhub.common.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("archived_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("archive_reason", sa.String(length=500), nullable=True))
    # The triggers name the new column: recreated, and the counts taken again.
    drop_tally(op, BEFORE)
    create_tally(op, AFTER)


def downgrade() -> None:
    drop_tally(op, AFTER)
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("archive_reason")
        batch.drop_column("archived_by")
        batch.drop_column("archived_at")
    create_tally(op, BEFORE)
