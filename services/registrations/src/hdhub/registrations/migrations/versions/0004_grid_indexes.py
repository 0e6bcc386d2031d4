"""the registrations grid: keyset indexes and counts per status kept by triggers

The grid (portal, ``ListRegistrations``) pages an organisation's registrations newest
first by keyset on ``(updated_at, id)`` or ``(created_at, id)``, optionally within one
status or one DCD; each has an index leading with the organisation, so a page is an index
range scan however deep it is. ``(organisation_id, status)`` is covered by the new
``(organisation_id, status, updated_at, id)`` and dropped. A business key is looked up
across DCDs by ``(organisation_id, business_key)``.

Counts per status are not counted from the registrations at each page view:
``registration_counts`` holds signed deltas per (organisation, registry, DCD, status,
status confirmation), written by triggers on ``registrations`` in the same transaction as
the change (on PostgreSQL one row per group per statement, from its transition tables; on
SQLite one per row). The reader sums them per organisation (a few rows) and compacts
them when they have grown (records/grid.py).

Revision ID: 0004grid
Revises: 0003
Create Date: 2026-12-03 17:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004grid"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "organisation_id, project_code, dcd_code, status, coalesce(status_confirmation, '')"

PG_FUNCTION = f"""
CREATE FUNCTION registration_counts_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO registration_counts (organisation_id, project_code, dcd_code, status, status_confirmation, n)
    SELECT {GROUP}, count(*) FROM new_rows GROUP BY 1, 2, 3, 4, 5;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO registration_counts (organisation_id, project_code, dcd_code, status, status_confirmation, n)
    SELECT {GROUP}, -count(*) FROM old_rows GROUP BY 1, 2, 3, 4, 5;
  ELSE
    INSERT INTO registration_counts (organisation_id, project_code, dcd_code, status, status_confirmation, n)
    SELECT g.organisation_id, g.project_code, g.dcd_code, g.status, g.status_confirmation, sum(g.n)
    FROM (
      SELECT o.organisation_id, o.project_code, o.dcd_code, o.status,
             coalesce(o.status_confirmation, '') AS status_confirmation, -1 AS n
      FROM old_rows o JOIN new_rows w ON w.id = o.id
      WHERE (o.organisation_id, o.project_code, o.dcd_code, o.status, coalesce(o.status_confirmation, ''))
        IS DISTINCT FROM
            (w.organisation_id, w.project_code, w.dcd_code, w.status, coalesce(w.status_confirmation, ''))
      UNION ALL
      SELECT w.organisation_id, w.project_code, w.dcd_code, w.status,
             coalesce(w.status_confirmation, ''), 1
      FROM old_rows o JOIN new_rows w ON w.id = o.id
      WHERE (o.organisation_id, o.project_code, o.dcd_code, o.status, coalesce(o.status_confirmation, ''))
        IS DISTINCT FROM
            (w.organisation_id, w.project_code, w.dcd_code, w.status, coalesce(w.status_confirmation, ''))
    ) g
    GROUP BY 1, 2, 3, 4, 5
    HAVING sum(g.n) <> 0;
  END IF;
  RETURN NULL;
END $$
"""
PG_TRIGGERS = (
    "CREATE TRIGGER registration_counts_insert AFTER INSERT ON registrations"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION registration_counts_delta()",
    "CREATE TRIGGER registration_counts_update AFTER UPDATE ON registrations"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION registration_counts_delta()",
    "CREATE TRIGGER registration_counts_delete AFTER DELETE ON registrations"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION registration_counts_delta()",
)


def _sqlite_row(prefix: str, sign: int) -> str:
    p = prefix
    return (
        "INSERT INTO registration_counts"
        " (organisation_id, project_code, dcd_code, status, status_confirmation, n) VALUES"
        f" ({p}.organisation_id, {p}.project_code, {p}.dcd_code, {p}.status,"
        f" coalesce({p}.status_confirmation, ''), {sign});"
    )


CHANGED = (
    "(OLD.organisation_id, OLD.project_code, OLD.dcd_code, OLD.status, coalesce(OLD.status_confirmation, ''))"
    " IS NOT (NEW.organisation_id, NEW.project_code, NEW.dcd_code, NEW.status,"
    " coalesce(NEW.status_confirmation, ''))"
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER registration_counts_insert AFTER INSERT ON registrations"
    f" BEGIN {_sqlite_row('NEW', 1)} END",
    "CREATE TRIGGER registration_counts_update AFTER UPDATE ON registrations"
    " WHEN OLD.organisation_id IS NOT NEW.organisation_id OR OLD.project_code IS NOT NEW.project_code"
    " OR OLD.dcd_code IS NOT NEW.dcd_code OR OLD.status IS NOT NEW.status"
    " OR coalesce(OLD.status_confirmation, '') IS NOT coalesce(NEW.status_confirmation, '')"
    f" BEGIN {_sqlite_row('OLD', -1)} {_sqlite_row('NEW', 1)} END",
    "CREATE TRIGGER registration_counts_delete AFTER DELETE ON registrations"
    f" BEGIN {_sqlite_row('OLD', -1)} END",
)
INDEXES = {
    "ix_registrations_grid_updated": ["organisation_id", "updated_at", "id"],
    "ix_registrations_grid_created": ["organisation_id", "created_at", "id"],
    "ix_registrations_grid_status": ["organisation_id", "status", "updated_at", "id"],
    "ix_registrations_grid_dcd": ["organisation_id", "dcd_code", "updated_at", "id"],
    "ix_registrations_org_business_key": ["organisation_id", "business_key"],
}


def upgrade() -> None:
    op.create_table(
        "registration_counts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("project_code", sa.String(length=16), nullable=False),
        sa.Column("dcd_code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_confirmation", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_registration_counts_organisation_id", "registration_counts", ["organisation_id"])
    with op.batch_alter_table("registrations") as batch:
        for name, columns in INDEXES.items():
            batch.create_index(name, columns)
        batch.drop_index("ix_registrations_org_status")
    op.execute(
        "INSERT INTO registration_counts"
        " (organisation_id, project_code, dcd_code, status, status_confirmation, n)"
        f" SELECT {GROUP}, count(*) FROM registrations GROUP BY 1, 2, 3, 4, 5"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    for name in ("registration_counts_insert", "registration_counts_update", "registration_counts_delete"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER {name} ON registrations")
        else:
            op.execute(f"DROP TRIGGER {name}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION registration_counts_delta()")
    with op.batch_alter_table("registrations") as batch:
        batch.create_index("ix_registrations_org_status", ["organisation_id", "status"])
        for name in INDEXES:
            batch.drop_index(name)
    op.drop_index("ix_registration_counts_organisation_id", table_name="registration_counts")
    op.drop_table("registration_counts")
