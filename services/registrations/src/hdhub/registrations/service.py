"""Registration operations: save, submit, resubmit by business key, reopen, delete,
review, history and batches. Each runs in one transaction scoped to one organisation;
the lifecycle rules live in ``domain.lifecycle`` and the field rules in the DCD engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from hdhub.common.config import platform
from hdhub.common.db import (
    SCOPE_KEY,
    Database,
    TenancyViolation,
    after_commit,
    bulk_insert,
    json_text,
    new_id,
    new_ids,
    utcnow,
)
from hdhub.common.errors import FieldProblem, Problem, conflict, not_found
from hdhub.common.jobs import JobQueue
from hdhub.common.telemetry import jobs_span
from hdhub.common.wakeup import Wakeup
from hdhub.common.web import idempotent, request_fingerprint
from hdhub.registrations.catalogue import Catalogue, CatalogueEntry
from hdhub.registrations.domain import lifecycle
from hdhub.registrations.domain.business_key import SSIN_FORMAT, business_key
from hdhub.registrations.domain.lifecycle import Action, Confirmation, Status, TransitionRefused
from hdhub.registrations.domain.period import Period
from hdhub.registrations.handoff import NIPPIN_JOB, Handoff
from hdhub.registrations.store import (
    IdempotencyKey,
    Job,
    Registration,
    RegistrationCodeCounter,
    RegistrationVersion,
    worker_history,
)

log = logging.getLogger("hdhub.registrations")

DELIVER = "deliver"
# Optimistic writes that lose a race are re-applied on fresh state, with a little jitter.
WRITE_ATTEMPTS = 8
# How long a pipelined batch waits for the batch it follows to be stored.
PIPELINE_WAIT_SECONDS = 120.0
# Rules a draft may break (it is incomplete); anything else means malformed input.
DRAFT_TOLERATED_RULES = frozenset({"required", "constraint", "choice_filter", "calculation"})


def field_problems(errors: Sequence[Any]) -> list[FieldProblem]:
    return [FieldProblem(field=e.field, rule=e.rule, message=e.message, path=e.path) for e in errors]


def invalid_record(errors: Sequence[Any], *, submitting: bool) -> Problem:
    title = "The registration cannot be submitted" if submitting else "The registration is not valid"
    return Problem(
        422,
        "invalid-registration",
        title,
        f"{len(errors)} problem(s); see errors.",
        errors=field_problems(errors),
    )


@dataclass
class Actor:
    """Who acts, for the history: a person's username or a hospital system's client id."""

    name: str
    via: str = "api"


@dataclass
class Outcome:
    registration: Registration
    created: bool
    warnings: list[Any] = field(default_factory=list)


def replaced_values(before: Mapping[str, Any] | None, changed: Sequence[str]) -> dict[str, Any] | None:
    """What a change replaced: each changed field's value before it (None where it had none)."""
    if before is None or not changed:
        return None
    return {name: before.get(name) for name in changed}


def values_by_version(
    current: Mapping[str, Any], versions: Sequence[RegistrationVersion]
) -> dict[int, dict[str, Any]]:
    """The values a registration had at each of its versions, from its current values and
    what each later change replaced (walking back from the newest). A version holding a
    whole copy (written before values were stored once) is taken as it is."""
    state = dict(current)
    out: dict[int, dict[str, Any]] = {}
    for v in sorted(versions, key=lambda v: v.version, reverse=True):
        if v.values is not None:
            state = dict(v.values)
        out[v.version] = state
        if v.replaced:
            state = dict(state)
            for name, old in v.replaced.items():
                if old is None:
                    state.pop(name, None)
                else:
                    state[name] = old
    return out


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


class Registrations:
    def __init__(self, db: Database, catalogue: Catalogue, *, secret: bytes) -> None:
        self.db = db
        self.catalogue = catalogue
        self.secret = secret
        self.jobs = JobQueue(db, Job, service="registrations")
        self.wake = Wakeup("hdhub:registrations:deliver", platform().redis_url)
        # Submissions of reimbursed registrations, handed over to NIPPIN (handoff.py).
        self.handoff = Handoff(db, catalogue)
        # Delivery to the central platform (delivery.py), set by the runtime; without it the
        # worker only moves Sending -> Submitted.
        self.delivery: Any = None

    # --- validation ---------------------------------------------------------------

    def check(self, entry: CatalogueEntry, values: Mapping[str, Any], *, lang: str, submitting: bool) -> Any:
        """Validate; raise 422 when the record may not be stored as asked."""
        result = entry.compiled.validate(values, lang=lang)
        blocking = (
            result.errors if submitting else [e for e in result.errors if e.rule not in DRAFT_TOLERATED_RULES]
        )
        if blocking:
            raise invalid_record(blocking, submitting=submitting)
        return result

    def key_for(self, entry: CatalogueEntry, values: Mapping[str, Any]) -> str | None:
        d = entry.definition
        ssin_fields = [name for name in d.business_key if d.field(name).format == SSIN_FORMAT]
        return business_key(self.secret, d.dcd_code, d.business_key, values, ssin_fields=ssin_fields)

    # --- writes -------------------------------------------------------------------

    async def put_record(
        self,
        *,
        organisation_id: str,
        dcd_code: str,
        version: str | None,
        values: Mapping[str, Any],
        submit: bool,
        lang: str,
        actor: Actor,
        replace_submitted: bool,
        session: AsyncSession | None = None,
    ) -> Outcome:
        """Store a whole record: a new registration, or the live one with the same business
        key. ``replace_submitted`` is the v2 rule: a submission replaces whatever is stored
        under the key ("the latest submission wins")."""
        entry = await self.catalogue.get(dcd_code, version)
        await self.catalogue.require_current(entry)
        result = self.check(entry, values, lang=lang, submitting=submit)
        args = {
            "organisation_id": organisation_id,
            "entry": entry,
            "result": result,
            "submit": submit,
            "actor": actor,
        }
        if session is not None:
            return await self._put(session, replace_submitted=replace_submitted, **args)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                async with self.db.session([organisation_id]) as own:
                    return await self._put(own, replace_submitted=replace_submitted, **args)
            except (IntegrityError, StaleDataError):
                # A concurrent writer created the same business key first, or the worker
                # moved the record on: apply ours again on the fresh state.
                if attempt == WRITE_ATTEMPTS - 1:
                    raise Problem(
                        409, "concurrent-write", "The registration is being changed by others; retry"
                    ) from None
                await asyncio.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise AssertionError("unreachable")

    async def put_idempotently(
        self,
        organisation_id: str,
        *,
        key: str,
        fingerprint: str,
        effect: Callable[[AsyncSession], Awaitable[tuple[int, Any, dict[str, str]]]],
    ) -> JSONResponse:
        """``effect`` once per ``Idempotency-Key`` (hdhub.common.web.idempotent), in a
        transaction with the key. Retries with the same key sent at once race: the losers'
        writes collide with the winner's (the business key, or the key itself) and are
        applied again on fresh state, where they find the winner's answer and replay it."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                async with self.db.session([organisation_id]) as session:
                    return await idempotent(
                        session,
                        IdempotencyKey,
                        key=key,
                        organisation_id=organisation_id,
                        fingerprint=fingerprint,
                        effect=lambda: effect(session),  # noqa: B023 (called before the loop goes on)
                    )
            except (IntegrityError, StaleDataError):
                if attempt == WRITE_ATTEMPTS - 1:
                    raise Problem(
                        409, "concurrent-write", "The registration is being changed by others; retry"
                    ) from None
                await asyncio.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise AssertionError("unreachable")

    async def _put(
        self,
        session: AsyncSession,
        *,
        organisation_id: str,
        entry: CatalogueEntry,
        result: Any,
        submit: bool,
        actor: Actor,
        replace_submitted: bool,
    ) -> Outcome:
        key = self.key_for(entry, result.values)
        existing = None
        if key is not None:
            existing = await self._live_by_key(session, organisation_id, entry.definition.dcd_code, key)
        if existing is None:
            # Created (and submitted) in one INSERT per table, as batches are.
            create = _PendingCreate(0, new_id(), key, result, submit)
            [row] = await _insert_created(self, session, organisation_id, entry, [create], actor)
            return Outcome(Registration(**row), True, list(result.warnings))
        if submit:
            action = Action.RESUBMIT if replace_submitted else Action.SUBMIT
        else:
            action = Action.SAVE
        try:
            lifecycle.next_status(action, Status(existing.status))
        except TransitionRefused as exc:
            raise conflict(
                "registration-not-editable", "A registration with this business key exists", str(exc)
            ) from exc
        await self._replace(session, existing, entry, result, action, actor)
        return Outcome(existing, False, list(result.warnings))

    async def _replace(
        self,
        session: AsyncSession,
        reg: Registration,
        entry: CatalogueEntry,
        result: Any,
        action: Action,
        actor: Actor,
    ) -> None:
        """Put a whole new record into a stored registration: saved (one version) or, with
        SUBMIT/RESUBMIT, saved and sent in the same version."""
        before = dict(reg.values)
        if action == Action.SAVE:
            reg.version += 1
        reg.values, reg.dcd_version = result.values, entry.version
        reg.errors = [_error_dict(e) for e in result.errors]
        reg.updated_at = utcnow()
        await session.flush()
        if action == Action.SAVE:
            await self._record(session, reg, action="save", actor=actor, before=before)
        else:
            await self._transition(session, reg, action, actor=actor, entry=entry, before=before)

    async def update(
        self,
        *,
        organisations: Sequence[str],
        registration_id: str,
        expected_version: int,
        values: Mapping[str, Any],
        lang: str,
        actor: Actor,
        dcd_version: str | None = None,
    ) -> Outcome:
        """Save new values of an editable registration (If-Match: ``expected_version``),
        optionally moving it to another version of its DCD."""
        async with self._editing(organisations, registration_id, expected_version) as (session, reg):
            lifecycle_check(Action.SAVE, reg)
            entry = await self.catalogue.get(reg.dcd_code, dcd_version or reg.dcd_version)
            await self.catalogue.require_current(entry)
            reg.dcd_version = entry.version
            result = self.check(entry, values, lang=lang, submitting=False)
            key = self.key_for(entry, result.values) or f"id:{reg.id}"
            if key != reg.business_key and await self._live_by_key(
                session, reg.organisation_id, reg.dcd_code, key
            ):
                raise conflict("business-key-taken", "Another registration has this business key")
            before = dict(reg.values)
            reg.version += 1
            reg.values, reg.business_key = result.values, key
            reg.errors = [_error_dict(e) for e in result.errors]
            reg.updated_at = utcnow()
            await session.flush()
            await self._record(session, reg, action="save", actor=actor, before=before)
            return Outcome(reg, False, list(result.warnings))

    async def act(
        self,
        *,
        organisations: Sequence[str],
        registration_id: str,
        expected_version: int | None,
        action: Action,
        actor: Actor,
        lang: str = "en",
        comment: str | None = None,
    ) -> Registration:
        """Submit, reopen, delete, or a review decision, on one registration."""
        async with self._editing(organisations, registration_id, expected_version) as (session, reg):
            lifecycle_check(action, reg)
            entry = await self.catalogue.get(reg.dcd_code, reg.dcd_version)
            if action in (Action.SUBMIT, Action.RESUBMIT):
                await self.catalogue.require_current(entry)
                self.check(entry, reg.values, lang=lang, submitting=True)
            await self._transition(session, reg, action, actor=actor, entry=entry, comment=comment)
            return reg

    # --- reads --------------------------------------------------------------------

    async def get(self, organisations: Sequence[str], registration_id: str) -> Registration:
        async with self.db.session(organisations) as session:
            reg = await session.get(Registration, registration_id)
            if reg is None:
                raise not_found("Registration")
            return reg

    async def history(
        self, organisations: Sequence[str], registration_id: str
    ) -> list[tuple[RegistrationVersion, dict[str, Any]]]:
        """Every version, oldest first, with the values the registration had at it."""
        async with self.db.session(organisations) as session:
            reg = await session.get(Registration, registration_id)
            if reg is None:
                raise not_found("Registration")
            rows = list(
                (
                    await session.execute(
                        select(RegistrationVersion)
                        .where(RegistrationVersion.registration_id == registration_id)
                        .order_by(RegistrationVersion.version)
                    )
                ).scalars()
            )
            values = values_by_version(reg.values, rows)
            return [(v, values[v.version]) for v in rows]

    async def search(
        self,
        organisations: Sequence[str],
        *,
        dcd_code: str | None = None,
        dcd_version: str | None = None,
        status: str | None = None,
        business_key: str | None = None,
        field_name: str | None = None,
        field_value: str | None = None,
        project_code: str | None = None,
        include_deleted: bool = False,
        created: Period | None = None,
        updated: Period | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Registration], int]:
        async with self.db.session(organisations) as session:
            query = select(Registration)
            if dcd_code:
                query = query.where(Registration.dcd_code == dcd_code)
            if dcd_version:
                query = query.where(Registration.dcd_version == dcd_version)
            if project_code:
                query = query.where(Registration.project_code == project_code)
            if status:
                query = query.where(Registration.status == status)
            elif not include_deleted:
                query = query.where(Registration.status != Status.DELETED)
            if business_key:
                query = query.where(Registration.business_key == business_key)
            if field_name is not None and field_value is not None:
                query = query.where(Registration.values[field_name].as_string() == field_value)
            for column, period in ((Registration.created_at, created), (Registration.updated_at, updated)):
                if period is not None and period.start is not None:
                    query = query.where(column >= period.start)
                if period is not None and period.end is not None:
                    query = query.where(column < period.end)
            total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = await session.execute(
                query.order_by(Registration.updated_at.desc(), Registration.id).limit(limit).offset(offset)
            )
            return list(rows.scalars()), int(total)

    # --- worker -------------------------------------------------------------------

    async def process_jobs(self, *, limit: int | None = None) -> int:
        """Finish sending: Sending -> Submitted with confirmation Pending, for a batch of
        jobs in one transaction (one per job only when the batch fails). Delivery to the
        central platform (pseudonymisation split, signatures) plugs in here, with its own
        batch size (``delivery_batch``) unless ``limit`` is given."""
        if self.delivery is not None:
            return int(await self.delivery.process_jobs(limit=limit))
        jobs = await self.jobs.claim([DELIVER], limit=limit or 100)
        if not jobs:
            return 0
        try:
            with jobs_span(jobs, DELIVER):
                async with self.db.system_session() as session:
                    await self._deliver(session, jobs)
        except Exception:
            for job in jobs:  # find the one that fails; the others go through
                try:
                    async with self.db.system_session() as session:
                        await self._deliver(session, [job])
                except Exception as exc:  # retried with back-off, then parked
                    log.warning(
                        "delivery job failed", extra={"job_id": job.id, "error_type": type(exc).__name__}
                    )
                    await self.jobs.fail(job.id, type(exc).__name__)
        return len(jobs)

    async def _deliver(self, session: AsyncSession, jobs: Sequence[Any]) -> None:
        """Sending -> Submitted (confirmation Pending) for the jobs' registrations in one
        UPDATE, with their history entries in one INSERT ... SELECT (nothing read back; the
        values stay stored once, in the registration: a status change replaced none). A
        registration no longer Sending (reopened, replaced meanwhile) is left as it is."""
        now = utcnow()
        moved = list(
            (
                await session.execute(
                    update(Registration)
                    .where(
                        self.db.among(Registration.id, [j.subject_id for j in jobs]),
                        Registration.status == Status.SENDING,
                    )
                    .values(
                        status=Status.SUBMITTED,
                        status_confirmation=Confirmation.PENDING,
                        version=Registration.version + 1,
                        updated_at=now,
                    )
                    .returning(Registration.id)
                    .execution_options(synchronize_session=False)
                )
            ).scalars()
        )
        if moved:
            await session.execute(
                worker_history(self.db.among(Registration.id, moved), action=Action.PROCESSED.value, at=now)
            )
        await self.jobs.finish_many(session, [job.id for job in jobs])

    # --- internals ----------------------------------------------------------------

    async def _live_by_key(
        self, session: AsyncSession, organisation_id: str, dcd_code: str, key: str
    ) -> Registration | None:
        return (
            await session.execute(
                select(Registration).where(
                    Registration.organisation_id == organisation_id,
                    Registration.dcd_code == dcd_code,
                    Registration.business_key == key,
                    Registration.status != Status.DELETED,
                )
            )
        ).scalar_one_or_none()

    @asynccontextmanager
    async def _editing(
        self, organisations: Sequence[str], registration_id: str, expected_version: int | None
    ) -> AsyncIterator[tuple[AsyncSession, Registration]]:
        """A transaction on one registration, checked against the version the caller read."""
        try:
            async with self.db.session(organisations) as session:
                reg = await session.get(Registration, registration_id)
                if reg is None:
                    raise not_found("Registration")
                if expected_version is not None and reg.version != expected_version:
                    raise stale(reg.version)
                yield session, reg
        except StaleDataError as err:  # a concurrent writer got there between our read and write
            raise stale(None) from err

    async def _transition(
        self,
        session: AsyncSession,
        reg: Registration,
        action: Action,
        *,
        actor: Actor,
        entry: CatalogueEntry | None,
        before: Mapping[str, Any] | None = None,
        comment: str | None = None,
    ) -> None:
        target = lifecycle.next_status(action, Status(reg.status))
        now = utcnow()
        reg.version += 1
        reg.status = target
        reg.updated_at = now
        if target == Status.SENDING:
            reg.submitted_at = now
            reg.first_submitted_at = reg.first_submitted_at or now
            reg.status_confirmation = None
            if reg.registration_code is None:
                assert entry is not None
                with session.no_autoflush:  # one UPDATE of the row, not two
                    reg.registration_code = await self._next_code(session, entry.definition.dcd_number, now)
            self.jobs.enqueue(
                session,
                DELIVER,
                organisation_id=reg.organisation_id,
                subject_id=reg.id,
                payload={"version": reg.version},
                actor=actor.name,
            )
            if entry is not None:
                self.handoff.enqueue(session, reg, entry.definition, actor.name)
            after_commit(session, self.wake.notify)
        elif target == Status.SUBMITTED:
            reg.status_confirmation = Confirmation.PENDING
        elif target == Status.OPEN and action == Action.REOPEN:
            reg.status_confirmation = None
        await session.flush()
        await self._record(session, reg, action=action.value, actor=actor, before=before, comment=comment)

    async def _record(
        self,
        session: AsyncSession,
        reg: Registration,
        *,
        action: str,
        actor: Actor,
        before: Mapping[str, Any] | None,
        comment: str | None = None,
    ) -> None:
        changed = changed_fields(before, reg.values) if before is not None else []
        session.add(
            RegistrationVersion(
                organisation_id=reg.organisation_id,
                registration_id=reg.id,
                version=reg.version,
                action=action,
                status=reg.status,
                dcd_version=reg.dcd_version,
                replaced=replaced_values(before, changed),
                changed_fields=changed,
                actor=actor.name,
                via=actor.via,
                comment=comment,
                at=utcnow(),
            )
        )

    async def _next_code(self, session: AsyncSession, dcd_number: int, now: datetime) -> str:
        sequence = await self._take_codes(session, dcd_number, now, 1)
        return lifecycle.registration_code(dcd_number, now.year, sequence)

    async def _take_codes(self, session: AsyncSession, dcd_number: int, now: datetime, count: int) -> int:
        """Reserve ``count`` registration-code sequence numbers; returns the last one."""
        upsert = pg_insert if self.db.is_postgres else sqlite_insert
        statement = (
            upsert(RegistrationCodeCounter)
            .values(dcd_number=dcd_number, year=now.year, last=count)
            .on_conflict_do_update(
                index_elements=["dcd_number", "year"], set_={"last": RegistrationCodeCounter.last + count}
            )
            .returning(RegistrationCodeCounter.last)
        )
        return int((await session.execute(statement)).scalar_one())


def _error_dict(e: Any) -> dict[str, str]:
    return {"field": e.field, "path": e.path, "rule": e.rule, "message": e.message}


def lifecycle_check(action: Action, reg: Registration) -> None:
    try:
        lifecycle.next_status(action, Status(reg.status))
    except TransitionRefused as exc:
        raise conflict(
            "transition-not-allowed", "This action is not allowed in the current status", str(exc)
        ) from exc


def stale(current: int | None) -> Problem:
    detail = "The registration changed since you read it; fetch it again and reapply your change."
    extra = {"current_version": current} if current is not None else {}
    return Problem(412, "stale-version", "Precondition failed", detail, extra=extra)


@dataclass
class BatchOptions:
    validation_mode: str = "none"  # none | save_on_validations | validate_all
    conflict_master: str = "new"  # new | stored
    ignore_duplicates: bool = True
    submit: bool = False
    dry_run: bool = False


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
    errors: list[tuple[int, Any]]
    warnings: list[tuple[int, Any]]
    nothing_stored: bool
    dcd_version: str


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
) -> BatchResult:
    """Store a batch of rows in one transaction under the Upload Center's settings.

    Rows are matched to stored registrations by business key ("the latest submission
    wins"; within the batch, the later row wins). With ``validate_all`` any error stores
    nothing; ``dry_run`` plans without storing. A ``batch_id`` makes the call idempotent:
    the same batch applied again (a worker taking over a job) returns the first result
    and stores nothing twice; it is recorded in the same transaction as the rows.

    ``after_batch_id`` lets a caller send the next batch of a file while the previous one
    is still being stored: this one is validated at once (the CPU work overlaps the
    database's) and stored only once that batch is, so the later row still wins.
    """
    entry = await registrations.catalogue.get(dcd_code, version)
    await registrations.catalogue.require_current(entry)
    results = entry.compiled.validate_many(rows, lang=lang)
    errors: list[tuple[int, Any]] = [(i, e) for i, r in enumerate(results) for e in r.errors]
    warnings = [(i, w) for i, r in enumerate(results) for w in r.warnings]
    if options.validation_mode == "validate_all" and errors:
        plans = [RowPlan(i, "rejected") for i in range(len(rows))]
        return BatchResult(plans, errors, warnings, True, entry.version)
    keys = [registrations.key_for(entry, r.values) for r in results]
    if after_batch_id and batch_id and not options.dry_run:
        await _stored_batch(registrations, organisation_id, after_batch_id)

    async def apply() -> BatchResult:
        plans: list[RowPlan] = []
        batch_errors = list(errors)
        creates: list[_PendingCreate] = []
        pending: dict[str, _PendingCreate] = {}
        async with registrations.db.session([organisation_id]) as session:
            fingerprint = request_fingerprint(
                "UpsertBatch", entry.definition.dcd_code, [rows, options.__dict__]
            )
            if batch_id and not options.dry_run:
                replay = await _replayed_batch(session, organisation_id, batch_id, fingerprint)
                if replay is not None:
                    return replay
            ids = iter(new_ids(len(rows)))
            wanted = [k for k in keys if k]
            stored: dict[str, Registration] = {}
            for start in range(0, len(wanted), 1000):
                chunk = wanted[start : start + 1000]
                found = await session.execute(
                    _live_by_keys(
                        registrations.db.is_postgres, organisation_id, entry.definition.dcd_code, chunk
                    )
                )
                stored.update({r.business_key: r for r in found.scalars()})
            for i, (result, key) in enumerate(zip(results, keys, strict=True)):
                has_errors = bool(result.errors)
                if has_errors and options.validation_mode != "save_on_validations":
                    plans.append(RowPlan(i, "rejected", business_key=key or ""))
                    continue
                # The row's own STATUS (draft / submit) wins over the upload's autosubmit.
                submit = (options.submit if result.submit is None else result.submit) and not has_errors
                existing = stored.get(key) if key else None
                if existing is not None:
                    if (
                        options.ignore_duplicates
                        and existing.values == result.values
                        and (
                            not submit
                            or existing.status in (Status.SENDING, Status.SUBMITTED, Status.APPROVED)
                        )
                    ):
                        plans.append(RowPlan(i, "ignored_duplicate", existing.id, key or "", existing.status))
                        continue
                    if options.conflict_master == "stored":
                        plans.append(RowPlan(i, "kept_stored", existing.id, key or "", existing.status))
                        continue
                    action = Action.RESUBMIT if submit else Action.SAVE
                    try:
                        lifecycle.next_status(action, Status(existing.status))
                    except TransitionRefused:
                        plans.append(RowPlan(i, "kept_stored", existing.id, key or "", existing.status))
                        batch_errors.append((i, _BatchError(existing.status)))
                        continue
                    if not options.dry_run:
                        await registrations._replace(session, existing, entry, result, action, actor)
                    plans.append(RowPlan(i, "updated", existing.id, key or "", existing.status))
                    continue
                if options.dry_run:
                    plans.append(
                        RowPlan(i, "created", "", key or "", Status.SENDING if submit else Status.OPEN)
                    )
                    continue
                if key and key in pending:
                    # The same key twice in one batch: the later row wins, one registration.
                    first = pending[key]
                    first.result, first.submit = result, submit
                    plans[first.plan_index] = RowPlan(
                        first.plan_index, "created", first.id, key, first.status
                    )
                    plans.append(RowPlan(i, "updated", first.id, key, first.status))
                    continue
                create = _PendingCreate(len(plans), next(ids), key, result, submit)
                if key:
                    pending[key] = create
                creates.append(create)
                plans.append(RowPlan(i, "created", create.id, create.key or f"id:{create.id}", create.status))
            if creates:
                await _insert_created(registrations, session, organisation_id, entry, creates, actor)
            outcome = BatchResult(plans, batch_errors, warnings, options.dry_run, entry.version)
            if batch_id and not options.dry_run:
                session.add(
                    IdempotencyKey(
                        organisation_id=organisation_id,
                        key=f"batch:{batch_id}",
                        fingerprint=fingerprint,
                        status_code=200,
                        body=json_text(_batch_json(outcome)),
                    )
                )
        return outcome

    for attempt in range(WRITE_ATTEMPTS):
        try:
            return await apply()
        except (StaleDataError, IntegrityError):
            # A worker or another writer changed the same registrations meanwhile; the
            # whole batch rolled back, so it is simply applied again on fresh state.
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(random.uniform(0, 0.02 * (attempt + 1)))
    raise AssertionError("unreachable")


_LIVE_BY_KEYS = text(
    # Named columns, not r.*: text().columns() maps them by position, and a table's column
    # order (its migrations) need not be the model's.
    "SELECT "
    + ", ".join(f'r."{c.name}"' for c in Registration.__table__.columns)
    + " FROM unnest(CAST(:keys AS varchar[])) AS k(key) CROSS JOIN LATERAL ("
    " SELECT * FROM registrations WHERE organisation_id = :organisation_id AND dcd_code = :dcd_code"
    f" AND business_key = k.key AND status <> '{Status.DELETED.value}' LIMIT 1) AS r"
).columns(*Registration.__table__.columns)


def _live_by_keys(postgres: bool, organisation_id: str, dcd_code: str, keys: Sequence[str]) -> Any:
    """The live registrations with these business keys, as ORM objects.

    On PostgreSQL one index look-up per key, whatever the statistics say: with ``IN``
    (``= ANY``) and statistics that lag behind a table being filled by this very upload
    (autovacuum off, or not yet run), the planner scanned every entry of the
    organisation and DCD in the unique index and filtered the keys, once per batch, so
    each batch cost more than the one before (measured: 1 to 16 s per look-up at 600k
    registrations). ``LIMIT 1`` (one live registration per key: the unique index) keeps
    the planner from flattening the per-key look-up into that scan again, and the status
    is a literal, not a parameter: only then may a prepared (generic) plan use the partial
    unique index, whose predicate is ``status <> 'deleted'``."""
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
        Registration.status != Status.DELETED,
    )


async def _stored_batch(
    registrations: Registrations, organisation_id: str, batch_id: str, *, timeout: float | None = None
) -> None:
    """Return once the batch ``batch_id`` is stored (its idempotency key committed).

    Polls in short transactions of their own (never one held open: on SQLite that would
    keep the batch being waited for from committing). The caller's previous batch is
    normally committing as this one finishes validating, so the wait is short; a batch
    that never comes (its call failed) ends the wait with 409 after ``timeout``."""
    key = f"batch:{batch_id}"
    deadline = asyncio.get_running_loop().time() + (PIPELINE_WAIT_SECONDS if timeout is None else timeout)
    delay = 0.002
    while True:
        async with registrations.db.session([organisation_id]) as session:
            found = (
                await session.execute(
                    select(IdempotencyKey.key).where(
                        IdempotencyKey.organisation_id == organisation_id, IdempotencyKey.key == key
                    )
                )
            ).first()
        if found is not None:
            return
        if asyncio.get_running_loop().time() >= deadline:
            raise Problem(
                409,
                "previous-batch-not-stored",
                "The batch this one follows was not stored",
                "Send the previous batch again, then this one.",
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)


@dataclass
class _PendingCreate:
    plan_index: int
    id: str
    key: str | None
    result: Any
    submit: bool

    @property
    def status(self) -> Status:
        return Status.SENDING if self.submit else Status.OPEN


async def _insert_created(
    registrations: Registrations,
    session: AsyncSession,
    organisation_id: str,
    entry: CatalogueEntry,
    creates: Sequence[_PendingCreate],
    actor: Actor,
) -> list[dict[str, Any]]:
    """New registrations of a batch in a few multi-row statements, not one ORM flush per row:
    the registrations, their history (create, and submit when submitted), registration codes
    taken from the counter in one step, and the delivery jobs."""
    if organisation_id not in session.info.get(SCOPE_KEY, ()):
        raise TenancyViolation("bulk insert outside the session's organisations")
    now = utcnow()
    d = entry.definition
    submitted = [c for c in creates if c.submit]
    codes: dict[str, str] = {}
    if submitted:
        last = await registrations._take_codes(session, d.dcd_number, now, len(submitted))
        first = last - len(submitted) + 1
        codes = {
            c.id: lifecycle.registration_code(d.dcd_number, now.year, first + n)
            for n, c in enumerate(submitted)
        }
    reg_rows, version_rows = [], []
    for c in creates:
        values, errors = c.result.values, [_error_dict(e) for e in c.result.errors]
        reg_rows.append(
            {
                "id": c.id,
                "business_key": c.key or f"id:{c.id}",
                "status": c.status.value,
                "registration_code": codes.get(c.id),
                "values": values,
                "errors": errors,
                "version": 2 if c.submit else 1,
                "submitted_at": now if c.submit else None,
                "first_submitted_at": now if c.submit else None,
            }
        )
        # The values are stored once, in the registration: a creation replaced nothing.
        version_rows.append(
            {
                "registration_id": c.id,
                "version": 1,
                "action": "create",
                "status": Status.OPEN.value,
                "changed_fields": sorted(values),
            }
        )
        if c.submit:
            version_rows.append(
                {
                    "registration_id": c.id,
                    "version": 2,
                    "action": "submit",
                    "status": Status.SENDING.value,
                    "changed_fields": [],
                }
            )
    # Cells every row shares are formatted once, and so is a JSON object put into several rows.
    memo: dict[int, str] = {}
    shared = {
        "organisation_id": organisation_id,
        "project_code": d.project_code,
        "dcd_code": d.dcd_code,
        "dcd_version": entry.version,
        "status_confirmation": None,
        "created_by": actor.name,
        "created_at": now,
        "updated_at": now,
    }
    await bulk_insert(session, Registration, reg_rows, json_memo=memo, constants=shared)
    await bulk_insert(
        session,
        RegistrationVersion,
        version_rows,
        json_memo=memo,
        constants={
            "organisation_id": organisation_id,
            "dcd_version": entry.version,
            "actor": actor.name,
            "via": actor.via,
            "comment": None,
            "at": now,
            "values": None,
            "replaced": None,
        },
    )
    if submitted:
        await registrations.jobs.enqueue_many(
            session,
            DELIVER,
            [
                {
                    "organisation_id": organisation_id,
                    "actor": actor.name,
                    "subject_id": c.id,
                    "payload": {"version": 2},
                }
                for c in submitted
            ],
        )
        handoffs = registrations.handoff.items(
            d, [r for r in reg_rows if r["version"] == 2], organisation_id, actor.name
        )
        if handoffs:
            await registrations.jobs.enqueue_many(session, NIPPIN_JOB, handoffs)
        after_commit(session, registrations.wake.notify)
    return [{**shared, **row} for row in reg_rows]


def _batch_json(result: BatchResult) -> dict[str, Any]:
    def err(pair: tuple[int, Any]) -> list[Any]:
        i, e = pair
        return [i, {"field": e.field, "path": e.path, "rule": e.rule, "message": e.message}]

    return {
        "rows": [p.__dict__ for p in result.rows],
        "errors": [err(e) for e in result.errors],
        "warnings": [err(w) for w in result.warnings],
        "nothing_stored": result.nothing_stored,
        "dcd_version": result.dcd_version,
    }


async def _replayed_batch(
    session: AsyncSession, organisation_id: str, batch_id: str, fingerprint: str
) -> BatchResult | None:
    stored = (
        await session.execute(
            select(IdempotencyKey).where(
                IdempotencyKey.organisation_id == organisation_id, IdempotencyKey.key == f"batch:{batch_id}"
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


@dataclass(frozen=True)
class StoredError:
    field: str
    path: str
    rule: str
    message: str


@dataclass
class _BatchError:
    """A row that matched a stored registration which may not be replaced in its status."""

    status: str
    field: str = "business_key"
    path: str = "business_key"
    rule: str = "not_editable"

    @property
    def message(self) -> str:
        return f"A registration with this business key is {Status(self.status).label} and cannot be replaced."
