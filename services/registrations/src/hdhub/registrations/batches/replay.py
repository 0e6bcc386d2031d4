"""Batches kept by their ``batch_id``: the result of a stored batch, answered again to a
caller that sends it again (a worker taking over an upload job), and the wait of a
pipelined batch for the one it follows."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import Database, json_text
from hdhub.common.errors import FieldError, Problem, field_error_json
from hdhub.registrations.engine.validation import FieldError as StoredError
from hdhub.registrations.store import IdempotencyKey

#: How long a pipelined batch waits for the batch it follows to be stored.
PIPELINE_WAIT_SECONDS = 120.0


@dataclass
class RowPlan:
    row_index: int
    outcome: str  # created | updated | ignored_duplicate | kept_stored | rejected
    registration_id: str = ""
    business_key: str = ""
    status: str = ""


@dataclass
class BatchResult:
    rows: list[RowPlan]
    errors: list[tuple[int, FieldError]]
    warnings: list[tuple[int, FieldError]]
    nothing_stored: bool
    dcd_version: str


def _key(batch_id: str) -> str:
    return f"batch:{batch_id}"


def kept(organisation_id: str, batch_id: str, fingerprint: str, result: BatchResult) -> IdempotencyKey:
    """The row that keeps a stored batch's result, added in the batch's transaction."""
    body = {
        # Each field named by hand: dataclasses.asdict copies recursively, and was 5 % of an
        # upload's CPU at 2,000 rows per batch.
        "rows": [
            {
                "row_index": p.row_index,
                "outcome": p.outcome,
                "registration_id": p.registration_id,
                "business_key": p.business_key,
                "status": p.status,
            }
            for p in result.rows
        ],
        "errors": [[i, field_error_json(e)] for i, e in result.errors],
        "warnings": [[i, field_error_json(w)] for i, w in result.warnings],
        "nothing_stored": result.nothing_stored,
        "dcd_version": result.dcd_version,
    }
    return IdempotencyKey(
        organisation_id=organisation_id,
        key=_key(batch_id),
        fingerprint=fingerprint,
        status_code=200,
        body=json_text(body),
    )


async def replayed(
    session: AsyncSession, organisation_id: str, batch_id: str, fingerprint: str
) -> BatchResult | None:
    """The result of the batch ``batch_id`` when it is stored; 409 when that id was used
    for other rows."""
    stored = (
        await session.execute(
            select(IdempotencyKey).where(
                IdempotencyKey.organisation_id == organisation_id, IdempotencyKey.key == _key(batch_id)
            )
        )
    ).scalar_one_or_none()
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        raise Problem(
            409,
            "batch-id-reused",
            "This batch id was used for other rows",
            "Use a new batch id for new rows.",
        )
    data = json.loads(stored.body)
    return BatchResult(
        rows=[RowPlan(**p) for p in data["rows"]],
        errors=[(i, StoredError(**e)) for i, e in data["errors"]],
        warnings=[(i, StoredError(**w)) for i, w in data["warnings"]],
        nothing_stored=data["nothing_stored"],
        dcd_version=data["dcd_version"],
    )


async def wait_until_stored(db: Database, organisation_id: str, batch_id: str) -> None:
    """Return once the batch ``batch_id`` is stored (its result kept).

    Polls in short transactions of their own (never one held open: on SQLite that would
    keep the batch being waited for from committing). The caller's previous batch is
    normally committing as this one finishes validating, so the wait is short; a batch
    that never comes (its call failed) ends the wait with 409 after ``PIPELINE_WAIT_SECONDS``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PIPELINE_WAIT_SECONDS
    delay = 0.002
    while True:
        async with db.session([organisation_id]) as session:
            found = (
                await session.execute(
                    select(IdempotencyKey.key).where(
                        IdempotencyKey.organisation_id == organisation_id,
                        IdempotencyKey.key == _key(batch_id),
                    )
                )
            ).first()
        if found is not None:
            return
        if loop.time() >= deadline:
            raise Problem(
                409,
                "previous-batch-not-stored",
                "The batch this one follows was not stored",
                "Send the previous batch again, then this one.",
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)
