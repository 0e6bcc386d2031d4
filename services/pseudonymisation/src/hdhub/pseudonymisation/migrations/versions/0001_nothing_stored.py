"""nothing stored: the revision exists so `hdhub migrate` treats every service alike

Revision ID: 0001
Revises:
Create Date: 2026-11-22 03:00:00

"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Pseudonymisation keeps no payload and no key table (keys are derived)."""


def downgrade() -> None:
    """Nothing to undo."""
