"""the grid's counts per status by DCD version too

``registration_counts`` (migration 0004grid: signed deltas written by triggers on
``registrations``, summed by the grid) gains the DCD version in its group, so that the
grid's counts honour a version filter without counting the registrations. The trigger
function (PostgreSQL) and triggers (SQLite) are made again with the version in the group,
and the deltas are replaced by the registrations' own counts in the same transaction.

Revision ID: 0008_portalperf_grid_counts
Revises: 0008_batch_history
Create Date: 2026-12-04 17:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_portalperf_grid_counts"
down_revision: str | Sequence[str] | None = "0008_batch_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = ("registration_counts_insert", "registration_counts_update", "registration_counts_delete")


def _columns(version: bool) -> list[str]:
    return [
        "organisation_id",
        "project_code",
        "dcd_code",
        *(["dcd_version"] if version else []),
        "status",
        "status_confirmation",
    ]


def _group(prefix: str, version: bool) -> list[str]:
    """The group of a row (``prefix`` ``o.``, ``w.``, ``NEW.``... or nothing), the status
    confirmation '' for none."""
    return [
        f"coalesce({prefix}{c}, '')" if c == "status_confirmation" else f"{prefix}{c}"
        for c in _columns(version)
    ]


def _grouped(prefix: str, version: bool) -> str:
    return ", ".join(_group(prefix, version))


def _pg_function(version: bool) -> str:
    columns = ", ".join(_columns(version))
    n = len(_columns(version))
    group_by = ", ".join(str(i) for i in range(1, n + 1))
    old, new = _grouped("o.", version), _grouped("w.", version)
    return f"""
CREATE OR REPLACE FUNCTION registration_counts_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO registration_counts ({columns}, n)
    SELECT {_grouped("", version)}, count(*) FROM new_rows GROUP BY {group_by};
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO registration_counts ({columns}, n)
    SELECT {_grouped("", version)}, -count(*) FROM old_rows GROUP BY {group_by};
  ELSE
    INSERT INTO registration_counts ({columns}, n)
    SELECT {", ".join(f"g.{c}" for c in _columns(version))}, sum(g.n)
    FROM (
      SELECT {", ".join(f"{e} AS {c}" for e, c in zip(_group("o.", version), _columns(version), strict=True))}, -1 AS n
      FROM old_rows o JOIN new_rows w ON w.id = o.id
      WHERE ({old}) IS DISTINCT FROM ({new})
      UNION ALL
      SELECT {new}, 1
      FROM old_rows o JOIN new_rows w ON w.id = o.id
      WHERE ({old}) IS DISTINCT FROM ({new})
    ) g
    GROUP BY {group_by}
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


def _sqlite_triggers(version: bool) -> list[str]:
    columns = ", ".join(_columns(version))

    def row(prefix: str, sign: int) -> str:
        return f"INSERT INTO registration_counts ({columns}, n) VALUES ({_grouped(prefix, version)}, {sign});"

    changed = " OR ".join(
        f"coalesce(OLD.{c}, '') IS NOT coalesce(NEW.{c}, '')"
        if c == "status_confirmation"
        else f"OLD.{c} IS NOT NEW.{c}"
        for c in _columns(version)
    )
    return [
        f"CREATE TRIGGER registration_counts_insert AFTER INSERT ON registrations BEGIN {row('NEW.', 1)} END",
        f"CREATE TRIGGER registration_counts_update AFTER UPDATE ON registrations WHEN {changed}"
        f" BEGIN {row('OLD.', -1)} {row('NEW.', 1)} END",
        f"CREATE TRIGGER registration_counts_delete AFTER DELETE ON registrations BEGIN {row('OLD.', -1)} END",
    ]


def _rebuild(version: bool) -> None:
    """Triggers for ``version``, and the deltas replaced by the registrations' counts."""
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON registrations" if postgres else ""))
    columns = ", ".join(_columns(version))
    n = len(_columns(version))
    op.execute("DELETE FROM registration_counts")
    op.execute(
        f"INSERT INTO registration_counts ({columns}, n) SELECT {_grouped('', version)}, count(*)"
        f" FROM registrations GROUP BY {', '.join(str(i) for i in range(1, n + 1))}"
    )
    if postgres:
        op.execute(_pg_function(version))
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _sqlite_triggers(version):
            op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table("registration_counts") as batch:
        batch.add_column(sa.Column("dcd_version", sa.String(length=32), nullable=False, server_default=""))
    _rebuild(version=True)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON registrations" if postgres else ""))
    with op.batch_alter_table("registration_counts") as batch:
        batch.drop_column("dcd_version")
    _rebuild(version=False)
