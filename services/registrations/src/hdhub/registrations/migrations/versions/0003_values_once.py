"""a registration's values stored once: history keeps what each change replaced

Versions no longer copy the registration's values (two copies per submitted row, and a
third when it was processed): ``replaced`` holds each changed field's previous value and
``values`` becomes nullable (versions written before keep their whole copy, read as is).
Indexes that others already cover are dropped: ``registrations.organisation_id`` (the
business key's and the status' indexes lead with it), ``registration_versions``'
``registration_id`` (the unique (registration_id, version) index) and ``organisation_id``
(history is read per registration).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 20:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("registration_versions") as batch:
        batch.add_column(sa.Column("replaced", JSON, nullable=True))
        batch.alter_column("values", existing_type=JSON, nullable=True)
        batch.drop_index("ix_registration_versions_registration_id")
        batch.drop_index("ix_registration_versions_organisation_id")
    with op.batch_alter_table("registrations") as batch:
        batch.drop_index("ix_registrations_organisation_id")


def downgrade() -> None:
    with op.batch_alter_table("registrations") as batch:
        batch.create_index("ix_registrations_organisation_id", ["organisation_id"])
    with op.batch_alter_table("registration_versions") as batch:
        batch.create_index("ix_registration_versions_organisation_id", ["organisation_id"])
        batch.create_index("ix_registration_versions_registration_id", ["registration_id"])
        batch.drop_column("replaced")
    # Versions written since hold no copy: they get the registration's current values (what
    # the earlier code can read; their own past values are lost on the way down).
    op.execute(
        'UPDATE registration_versions SET "values" = (SELECT r."values" FROM registrations r'
        ' WHERE r.id = registration_versions.registration_id) WHERE "values" IS NULL'
    )
    with op.batch_alter_table("registration_versions") as batch:
        batch.alter_column("values", existing_type=JSON, nullable=False)
