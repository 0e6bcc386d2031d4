"""operator counts: deliveries per state and live registrations per DCD version, kept by triggers

The operator's console reads each organisation's health from these tallies instead of
scanning deliveries and registrations (hdhub.common.tallies). Deliveries gain the indexes
the console's two time-based figures read: the oldest delivery of a state, and the
confirmations pending past 48 hours.

Revision ID: 0005reg_operator_counts
Revises: 0004grid
Create Date: 2026-12-03 17:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hdhub.common.tallies import Tally, create_tally, drop_tally

revision: str = "0005reg_operator_counts"
down_revision: str | Sequence[str] | None = "7c2e4d1a9b30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TALLIES = (
    Tally("delivery_tallies", "deliveries", bucket="{r}state"),
    Tally(
        "registration_tallies",
        "registrations",
        bucket="{r}dcd_code || '@' || {r}dcd_version",
        where="{r}status <> 'deleted'",
    ),
)
PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_org_state")
        batch.create_index("ix_deliveries_org_state_updated", ["organisation_id", "state", "updated_at"])
        batch.create_index(
            "ix_deliveries_pending_first_sent",
            ["organisation_id", "first_sent_at"],
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )
    for tally in TALLIES:
        create_tally(op, tally)


def downgrade() -> None:
    for tally in TALLIES:
        drop_tally(op, tally)
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_pending_first_sent")
        batch.drop_index("ix_deliveries_org_state_updated")
        batch.create_index("ix_deliveries_org_state", ["organisation_id", "state"])
