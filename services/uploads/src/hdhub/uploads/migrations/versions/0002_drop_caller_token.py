"""upload jobs run as the uploads service: no user token is kept

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("caller_token")


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("caller_token", sa.Text(), nullable=True))
