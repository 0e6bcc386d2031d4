"""operator counts: failed uploads per organisation and hour, kept by triggers

The operator's console reads each organisation's health from this tally instead of
scanning (hdhub.common.tallies).

Revision ID: 0004upl_operator_counts
Revises: 0003
Create Date: 2026-12-03 17:40:00

"""

from collections.abc import Sequence

from alembic import op

from hdhub.common.tallies import Tally, create_tally, drop_tally

revision: str = "0004upl_operator_counts"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TALLY = Tally("upload_failure_tallies", "uploads", bucket="{hour:finished_at}", where="{r}status = 'failed'")


def upgrade() -> None:
    create_tally(op, TALLY)


def downgrade() -> None:
    drop_tally(op, TALLY)
