"""Batches of rows from the Upload Center and intake, stored in one transaction under
the upload's settings (the gRPC ``UpsertBatch``).

Rows are matched to stored registrations by business key ("the latest submission wins";
within the batch, the later row wins). With ``validate_all`` any error stores nothing;
``dry_run`` plans without storing. A ``batch_id`` makes the call idempotent: the same
batch applied again (a worker taking over a job) returns the first result and stores
nothing twice; the result is kept in the same transaction as the rows (replay.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import new_ids
from hdhub.common.errors import FieldError
from hdhub.common.web import request_fingerprint
from hdhub.registrations.batches.lookup import live_by_keys
from hdhub.registrations.batches.replay import BatchResult, RowPlan, kept, replayed, wait_until_stored
from hdhub.registrations.catalogue.service import CatalogueEntry
from hdhub.registrations.engine.validation import FieldError as RowError
from hdhub.registrations.engine.validation import Validation
from hdhub.registrations.records.lifecycle import Action, RegistrationStatus, TransitionRefused, next_status
from hdhub.registrations.records.service import Actor, NewRecord, Registrations
from hdhub.registrations.store import Registration

#: Stored statuses a submitted row with the same values leaves as they are (a duplicate).
_SENT = (RegistrationStatus.SENDING, RegistrationStatus.SUBMITTED, RegistrationStatus.APPROVED)
#: Business keys looked up per statement.
_LOOKUP_CHUNK = 1000


@dataclass
class BatchOptions:
    validation_mode: str = "none"  # none | save_on_validations | validate_all
    conflict_master: str = "new"  # new | stored
    ignore_duplicates: bool = True
    submit: bool = False
    dry_run: bool = False


async def upsert_batch(
    registrations: Registrations,
    *,
    organisation_id: str,
    dcd_code: str,
    version: str | None,
    rows: Sequence[Mapping[str, Any]],
    options: BatchOptions,
    lang: str,
    actor: Actor,
    batch_id: str | None = None,
    after_batch_id: str | None = None,
    validated: Sequence[Validation] | None = None,
) -> BatchResult:
    """Store a batch of rows in one transaction (see the module docstring).

    ``after_batch_id`` lets a caller send the next batch of a file while the previous one
    is still being stored: this one is validated at once (the CPU work overlaps the
    database's) and stored only once that batch is, so the later row still wins.
    ``validated`` gives the rows' validations when the caller has them (gRPC validates
    the Arrow batch column by column); otherwise they are validated here.
    """
    entry = await registrations.catalogue.get(dcd_code, version)
    await registrations.catalogue.require_current(entry)
    results = list(validated) if validated is not None else entry.compiled.validate_many(rows, lang=lang)
    errors: list[tuple[int, FieldError]] = [(i, e) for i, r in enumerate(results) for e in r.errors]
    warnings: list[tuple[int, FieldError]] = [(i, w) for i, r in enumerate(results) for w in r.warnings]
    if options.validation_mode == "validate_all" and errors:
        plans = [RowPlan(i, "rejected") for i in range(len(rows))]
        return BatchResult(plans, errors, warnings, True, entry.version)
    keys = [registrations.key_for(entry, r.values) for r in results]
    kept_as = batch_id if batch_id and not options.dry_run else None
    if kept_as and after_batch_id:
        await wait_until_stored(registrations.db, organisation_id, after_batch_id)
    fingerprint = request_fingerprint("UpsertBatch", entry.definition.dcd_code, [rows, options.__dict__])

    async def apply(session: AsyncSession) -> BatchResult:
        if kept_as:
            replay = await replayed(session, organisation_id, kept_as, fingerprint)
            if replay is not None:
                return replay
        batch = _Batch(
            registrations, session, organisation_id, entry, options, actor, list(errors), len(rows)
        )
        stored = await _stored(registrations, session, organisation_id, entry, keys)
        for i, (result, key) in enumerate(zip(results, keys, strict=True)):
            await batch.row(i, result, key, stored.get(key) if key else None)
        if batch.news:
            await registrations.insert_new(
                session, organisation_id, entry, batch.news, actor, batch=True, batch_id=batch_id
            )
        outcome = BatchResult(batch.plans, batch.errors, warnings, options.dry_run, entry.version)
        if kept_as:
            session.add(kept(organisation_id, kept_as, fingerprint, outcome))
        return outcome

    # A worker or another writer changing the same registrations meanwhile rolls the
    # whole batch back; it is then applied again on fresh state.
    return await registrations.db.retrying_session([organisation_id], apply)


async def _stored(
    registrations: Registrations,
    session: AsyncSession,
    organisation_id: str,
    entry: CatalogueEntry,
    keys: Sequence[str | None],
) -> dict[str, Registration]:
    wanted = [k for k in keys if k]
    stored: dict[str, Registration] = {}
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        found = await session.execute(
            live_by_keys(
                registrations.db.is_postgres,
                organisation_id,
                entry.definition.dcd_code,
                wanted[start : start + _LOOKUP_CHUNK],
            )
        )
        stored.update({r.business_key: r for r in found.scalars()})
    return stored


def not_replaceable(status: str) -> RowError:
    """A row matching a stored registration which may not be replaced in its status."""
    return RowError(
        field="business_key",
        path="business_key",
        rule="not_editable",
        message=f"A registration with this business key is {RegistrationStatus(status).label} and cannot be replaced.",
    )


@dataclass
class _Batch:
    """The plan of one batch, one row at a time, applied as it goes unless a dry run;
    the new registrations are inserted together at the end."""

    registrations: Registrations
    session: AsyncSession
    organisation_id: str
    entry: CatalogueEntry
    options: BatchOptions
    actor: Actor
    errors: list[tuple[int, FieldError]]
    size: int
    plans: list[RowPlan] = field(default_factory=list)
    news: list[NewRecord] = field(default_factory=list)
    #: The first row of each new business key, and its registration: a later row wins.
    first_of_key: dict[str, tuple[int, NewRecord]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = iter(new_ids(self.size))

    async def row(self, i: int, result: Validation, key: str | None, existing: Registration | None) -> None:
        o = self.options
        if result.errors and o.validation_mode != "save_on_validations":
            self.plans.append(RowPlan(i, "rejected", business_key=key or ""))
            return
        # The row's own STATUS (draft / submit) wins over the upload's autosubmit.
        submit = (o.submit if result.submit is None else result.submit) and not result.errors
        if existing is not None:
            await self._into_stored(i, result, existing, submit)
        elif o.dry_run:
            status = RegistrationStatus.SENDING if submit else RegistrationStatus.OPEN
            self.plans.append(RowPlan(i, "created", "", key or "", status))
        else:
            self._new(i, result, key, submit)

    async def _into_stored(self, i: int, result: Validation, existing: Registration, submit: bool) -> None:
        o = self.options
        action = Action.RESUBMIT if submit else Action.SAVE
        if (
            o.ignore_duplicates
            and existing.values == result.values
            and (not submit or existing.status in _SENT)
        ):
            outcome = "ignored_duplicate"
        elif o.conflict_master == "stored":
            outcome = "kept_stored"
        elif not _allowed(action, existing.status):
            outcome = "kept_stored"
            self.errors.append((i, not_replaceable(existing.status)))
        else:
            if not o.dry_run:
                await self.registrations.replace(
                    self.session, existing, self.entry, result, action, self.actor
                )
            outcome = "updated"
        status = existing.status
        if outcome == "updated" and o.dry_run:  # the status the row would leave it in
            status = next_status(action, RegistrationStatus(existing.status))
        self.plans.append(RowPlan(i, outcome, existing.id, existing.business_key, status))

    def _new(self, i: int, result: Validation, key: str | None, submit: bool) -> None:
        if key and key in self.first_of_key:
            # The same key twice in one batch: the later row wins, one registration.
            first, new = self.first_of_key[key]
            new.result, new.submit = result, submit
            self.plans[first] = RowPlan(first, "created", new.id, key, new.status)
            self.plans.append(RowPlan(i, "updated", new.id, key, new.status))
            return
        new = NewRecord(next(self.ids), key, result, submit)
        if key:
            self.first_of_key[key] = (i, new)
        self.news.append(new)
        self.plans.append(RowPlan(i, "created", new.id, key or f"id:{new.id}", new.status))


def _allowed(action: Action, status: str) -> bool:
    try:
        next_status(action, RegistrationStatus(status))
    except TransitionRefused:
        return False
    return True
