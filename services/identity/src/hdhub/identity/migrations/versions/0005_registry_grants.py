"""registry grants: the registries a member or a hospital-system client works on

Existing memberships and clients are granted every registry (``*``), which is what they
could reach before grants existed; a User Manager narrows them. New ones start with what
the manager grants.

Revision ID: 0005_registry_grants
Revises: 0004
Create Date: 2026-12-03 17:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0005_registry_grants"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    """Upgrade schema."""
    for table in ("memberships", "system_clients"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("registries", JSON, nullable=False, server_default='["*"]'))


def downgrade() -> None:
    """Downgrade schema."""
    for table in ("memberships", "system_clients"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("registries")
