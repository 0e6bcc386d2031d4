"""The live registrations of a batch's business keys, looked up in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text

from hdhub.registrations.records.lifecycle import RegistrationStatus
from hdhub.registrations.store import Registration

_LIVE_BY_KEYS = text(
    # Named columns, not r.*: text().columns() maps them by position, and a table's column
    # order (its migrations) need not be the model's.
    "SELECT "
    + ", ".join(f'r."{c.name}"' for c in Registration.__table__.columns)
    + " FROM unnest(CAST(:keys AS varchar[])) AS k(key) CROSS JOIN LATERAL ("
    " SELECT * FROM registrations WHERE organisation_id = :organisation_id AND dcd_code = :dcd_code"
    f" AND business_key = k.key AND status <> '{RegistrationStatus.DELETED.value}' LIMIT 1) AS r"
).columns(*Registration.__table__.columns)


def live_by_keys(postgres: bool, organisation_id: str, dcd_code: str, keys: Sequence[str]) -> Any:
    """The live registrations with these business keys, as ORM objects.

    On PostgreSQL one index look-up per key, whatever the statistics say: with ``IN``
    (``= ANY``) and statistics that lag behind a table being filled by this very upload
    (autovacuum off, or not yet run), the planner scans every entry of the organisation
    and DCD in the unique index and filters the keys, once per batch, so each batch costs
    more than the one before (bench/README.md). ``LIMIT 1`` (one live registration per
    key: the unique index) keeps the planner from flattening the per-key look-up into that
    scan, and the status is a literal, not a parameter: only then may a prepared (generic)
    plan use the partial unique index, whose predicate is ``status <> 'deleted'``."""
    if postgres:
        return (
            select(Registration)
            .from_statement(_LIVE_BY_KEYS)
            .params(keys=list(keys), organisation_id=organisation_id, dcd_code=dcd_code)
        )
    return select(Registration).where(
        Registration.organisation_id == organisation_id,
        Registration.dcd_code == dcd_code,
        Registration.business_key.in_(keys),
        Registration.status != RegistrationStatus.DELETED,
    )
