"""operator counts: billing messages per organisation and status, kept by triggers

The operator's console reads each organisation's health from this tally instead of
scanning (hdhub.common.tallies).

Revision ID: 0002nip_operator_counts
Revises: 0001
Create Date: 2026-12-03 17:40:00

"""

from collections.abc import Sequence

from alembic import op

from hdhub.common.tallies import Tally, create_tally, drop_tally

revision: str = "0002nip_operator_counts"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TALLY = Tally("nippin_message_tallies", "nippin_messages", bucket="{r}status")


def upgrade() -> None:
    create_tally(op, TALLY)


def downgrade() -> None:
    drop_tally(op, TALLY)
