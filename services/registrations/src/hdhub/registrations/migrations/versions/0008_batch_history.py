"""history per batch: registrations created together share one history entry

A registration created in a batch (an upload's ``UpsertBatch``, or on its own) no longer
writes two ``registration_versions`` rows (create, submit): it names the ``batch_history``
row of its batch (who, when, DCD version, submitted or not), which stands for its versions
1 and 2 (records/history.py). Later changes still write a version row of their own.

Existing data stays as it is: registrations created before name no batch entry
(``batch_history_id`` null) and keep their version rows, read as before. Downgrading
writes the shared entries back as version rows of each registration (the create entry's
changed fields are then the fields the registration has now: what it had at version 1 is
not kept by the earlier schema's readers either), then drops the column and the table.

Revision ID: 0008_batch_history
Revises: 0008_console_catalogue
Create Date: 2026-12-04 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hdhub.common.db

revision: str = "0008_batch_history"
down_revision: str | Sequence[str] | None = "0008_console_catalogue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "batch_history",
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=200), nullable=True),
        sa.Column("submitted", sa.Boolean(), nullable=False),
        sa.Column("dcd_version", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("via", sa.String(length=32), nullable=False),
        sa.Column("at", hdhub.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("registrations") as batch:
        batch.add_column(sa.Column("batch_history_id", ID, nullable=True))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    fields = (
        "(SELECT coalesce(jsonb_agg(k ORDER BY k), '[]'::jsonb) FROM jsonb_object_keys(r.\"values\") AS k)"
        if postgres
        else "(SELECT coalesce(json_group_array(k), '[]') FROM (SELECT key AS k FROM json_each(r.\"values\") ORDER BY key))"
    )
    columns = "organisation_id, registration_id, version, action, status, dcd_version, changed_fields, actor, via, at"
    source = " FROM registrations r JOIN batch_history b ON b.id = r.batch_history_id"
    op.execute(
        f"INSERT INTO registration_versions ({columns})"
        f" SELECT r.organisation_id, r.id, 1, 'create', 'open', b.dcd_version, {fields}, b.actor, b.via, b.at"
        + source
    )
    op.execute(
        f"INSERT INTO registration_versions ({columns})"
        f" SELECT r.organisation_id, r.id, 2, 'submit', 'sending', b.dcd_version,"
        f" {'CAST(' if postgres else ''}'[]'{' AS jsonb)' if postgres else ''}, b.actor, b.via, b.at"
        + source
        + " WHERE b.submitted"
    )
    with op.batch_alter_table("registrations") as batch:
        batch.drop_column("batch_history_id")
    op.drop_table("batch_history")
