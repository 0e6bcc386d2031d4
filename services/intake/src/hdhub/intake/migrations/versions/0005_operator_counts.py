"""operator counts: files per organisation and state (unmatched apart), kept by triggers

The operator's console reads each organisation's health from this tally instead of
scanning (hdhub.common.tallies).

Revision ID: 0003int_operator_counts
Revises: 0002
Create Date: 2026-12-03 17:40:00

"""

from collections.abc import Sequence

from alembic import op

from hdhub.common.tallies import Tally, create_tally, drop_tally

revision: str = "0003int_operator_counts"
down_revision: str | Sequence[str] | None = "intake_0004_files_to_central"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TALLY = Tally(
    "intake_file_tallies",
    "intake_files",
    bucket="{r}state || CASE WHEN {r}unmatched THEN '/unmatched' ELSE '' END",
)


def upgrade() -> None:
    create_tally(op, TALLY)


def downgrade() -> None:
    drop_tally(op, TALLY)
