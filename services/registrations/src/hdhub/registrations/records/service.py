"""Registrations one at a time: store a whole record (new, or the live one with its
business key), save, submit, reopen, delete, review; read one, its history, or a search.

A method that changes one registration runs in one transaction: its own, checked against
the version the caller read (If-Match), or the caller's (:meth:`Registrations.put`, whose
caller re-applies it on fresh state when it loses a race). The lifecycle rules live in
``lifecycle``, the field rules in the DCD engine; a submission leaves its delivery to
the delivery queue in the same transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from hdhub.common.auth import scope_allows
from hdhub.common.db import (
    SCOPE_KEY,
    Database,
    TenancyViolation,
    bulk_insert,
    new_id,
    registry_condition,
    utcnow,
)
from hdhub.common.errors import FieldError, FieldProblem, Problem, conflict, field_error_json, not_found
from hdhub.registrations.catalogue.service import Catalogue, CatalogueEntry
from hdhub.registrations.delivery.queue import DeliveryQueue
from hdhub.registrations.engine.validation import Validation
from hdhub.registrations.records import lifecycle
from hdhub.registrations.records.business_key import SSIN_FORMAT, business_key
from hdhub.registrations.records.codes import take_codes
from hdhub.registrations.records.history import (
    record_change,
    shared_entries,
    values_by_version,
    with_created_fields,
)
from hdhub.registrations.records.lifecycle import Action, RegistrationStatus, TransitionRefused
from hdhub.registrations.records.period import Period
from hdhub.registrations.store import BatchHistory, Registration, RegistrationVersion

# Rules a draft may break (it is incomplete); anything else means malformed input.
DRAFT_TOLERATED_RULES = frozenset({"required", "constraint", "choice_filter", "calculation"})


@dataclass
class Actor:
    """Who acts, for the history: a person's username or a hospital system's client id."""

    name: str
    via: str = "api"


@dataclass(frozen=True)
class Checked:
    """A record validated against a DCD version, ready to store."""

    entry: CatalogueEntry
    result: Validation


@dataclass
class Outcome:
    registration: Registration
    created: bool
    warnings: list[Any] = field(default_factory=list)


@dataclass
class NewRecord:
    """A registration about to be created (and submitted when ``submit``)."""

    id: str
    key: str | None
    result: Validation
    submit: bool

    @property
    def status(self) -> RegistrationStatus:
        return RegistrationStatus.SENDING if self.submit else RegistrationStatus.OPEN


#: Where a registration is sent or decided on: the same record submitted again changes nothing.
_SENT_AS_IS = frozenset(
    {
        RegistrationStatus.SENDING,
        RegistrationStatus.SUBMITTED,
        RegistrationStatus.APPROVED,
        RegistrationStatus.FOLLOW_UP_NEEDED,
    }
)


def _resent_unchanged(existing: Registration, entry: CatalogueEntry, result: Validation) -> bool:
    """The record submitted again as it was sent: same values, same DCD version. Corrections
    needed is not among these: the same record again is the data provider's answer."""
    return (
        existing.status in _SENT_AS_IS
        and existing.dcd_version == entry.version
        and existing.values == result.values
        and not result.errors
    )


def stored_errors(errors: Sequence[FieldError]) -> list[dict[str, str]]:
    """Field errors as a registration stores them (its open issues)."""
    return [field_error_json(e) for e in errors]


def invalid_record(errors: Sequence[FieldError], *, submitting: bool) -> Problem:
    title = "The registration cannot be submitted" if submitting else "The registration is not valid"
    return Problem(
        422,
        "invalid-registration",
        title,
        f"{len(errors)} problem(s); see errors.",
        errors=[FieldProblem.of(e) for e in errors],
    )


class Registrations:
    def __init__(self, db: Database, catalogue: Catalogue, queue: DeliveryQueue, *, secret: bytes) -> None:
        self.db = db
        self.catalogue = catalogue
        self.queue = queue
        self.secret = secret

    # --- validation ---------------------------------------------------------------

    def check(
        self, entry: CatalogueEntry, values: Mapping[str, Any], *, lang: str, submitting: bool
    ) -> Validation:
        """Validate; raise 422 when the record may not be stored as asked."""
        result = entry.compiled.validate(values, lang=lang)
        blocking = (
            result.errors if submitting else [e for e in result.errors if e.rule not in DRAFT_TOLERATED_RULES]
        )
        if blocking:
            raise invalid_record(blocking, submitting=submitting)
        return result

    async def checked(
        self, *, dcd_code: str, version: str | None, values: Mapping[str, Any], lang: str, submitting: bool
    ) -> Checked:
        """A record checked against a current version of its DCD (409 on a superseded one)."""
        entry = await self.catalogue.get(dcd_code, version)
        await self.catalogue.require_current(entry)
        return Checked(entry, self.check(entry, values, lang=lang, submitting=submitting))

    def key_for(self, entry: CatalogueEntry, values: Mapping[str, Any]) -> str | None:
        d = entry.definition
        ssin_fields = [name for name in d.business_key if d.field(name).format == SSIN_FORMAT]
        return business_key(self.secret, d.dcd_code, d.business_key, values, ssin_fields=ssin_fields)

    # --- writes -------------------------------------------------------------------

    async def put(
        self,
        session: AsyncSession,
        *,
        organisation_id: str,
        record: Checked,
        submit: bool,
        actor: Actor,
        replace_submitted: bool,
    ) -> Outcome:
        """Store a whole record: a new registration, or the live one with the same business
        key. ``replace_submitted`` is the v2 rule: a submission replaces whatever is stored
        under the key ("the latest submission wins")."""
        entry, result = record.entry, record.result
        key = self.key_for(entry, result.values)
        existing = None
        if key is not None:
            existing = await self._live_by_key(session, organisation_id, entry.definition.dcd_code, key)
        if existing is None:
            [row] = await self.insert_new(
                session, organisation_id, entry, [NewRecord(new_id(), key, result, submit)], actor
            )
            return Outcome(Registration(**row), True, list(result.warnings))
        if submit and _resent_unchanged(existing, entry, result):
            # A hospital system sending the same record again (a nightly resend): it is
            # there already, and sending it again would undo the central platform's
            # Approved or Follow-up needed and deliver a copy. Nothing changes.
            return Outcome(existing, False, list(result.warnings))
        if submit:
            action = Action.RESUBMIT if replace_submitted else Action.SUBMIT
        else:
            action = Action.SAVE
        try:
            lifecycle.next_status(action, RegistrationStatus(existing.status))
        except TransitionRefused as exc:
            raise conflict(
                "registration-not-editable", "A registration with this business key exists", str(exc)
            ) from exc
        await self.replace(session, existing, entry, result, action, actor)
        return Outcome(existing, False, list(result.warnings))

    async def replace(
        self,
        session: AsyncSession,
        reg: Registration,
        entry: CatalogueEntry,
        result: Validation,
        action: Action,
        actor: Actor,
    ) -> None:
        """Put a whole new record into a stored registration: saved (one version) or, with
        SUBMIT/RESUBMIT, saved and sent in the same version."""
        before = dict(reg.values)
        if action == Action.SAVE:
            reg.version += 1
        reg.values, reg.dcd_version = result.values, entry.version
        reg.errors = stored_errors(result.errors)
        reg.updated_at = utcnow()
        await session.flush()
        if action == Action.SAVE:
            record_change(session, reg, action="save", actor=actor, before=before)
        else:
            await self._transition(session, reg, action, actor=actor, entry=entry, before=before)

    async def insert_new(
        self,
        session: AsyncSession,
        organisation_id: str,
        entry: CatalogueEntry,
        news: Sequence[NewRecord],
        actor: Actor,
        *,
        batch: bool = False,
        batch_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """New registrations in a few multi-row statements, not one ORM flush per row: the
        registrations, created and (when submitted) submitted in the same statement, with
        registration codes taken from the counter in one step; their history, one shared
        entry for those created open and one for those created submitted
        (``BatchHistory``, records/history.py), not rows per registration; and the
        submissions' deliveries: one job per registration on its own, one per chunk of
        registrations for a ``batch`` (``batch_id``, the caller's, names it in the
        history). Returns the rows inserted."""
        if organisation_id not in session.info.get(SCOPE_KEY, ()):
            raise TenancyViolation("bulk insert outside the session's organisations")
        now = utcnow()
        d = entry.definition
        submitted = [n for n in news if n.submit]
        # What needs no registration code goes first (the history entries, the deliveries):
        # taking codes locks the DCD's counter row until the commit, and every submission of
        # the DCD waits for it, so as few round trips as can be follow it.
        shared_history = {
            submit: (
                await session.execute(
                    insert(BatchHistory)
                    .values(
                        organisation_id=organisation_id,
                        batch_id=batch_id,
                        submitted=submit,
                        dcd_version=entry.version,
                        actor=actor.name,
                        via=actor.via,
                        at=now,
                    )
                    .returning(BatchHistory.id)
                )
            ).scalar_one()
            for submit in sorted({n.submit for n in news})
        }
        if submitted:
            sent = [{"id": n.id, "version": 2, "values": n.result.values} for n in submitted]
            await self.queue.submitted_many(session, d, sent, organisation_id, actor.name, batch=batch)
        codes: dict[str, str] = {}
        if submitted:
            taken = await take_codes(session, d.dcd_number, now, len(submitted))
            codes = {n.id: code for n, code in zip(submitted, taken, strict=True)}
        reg_rows = [
            {
                "id": n.id,
                "business_key": n.key or f"id:{n.id}",
                "status": n.status.value,
                "registration_code": codes.get(n.id),
                "values": n.result.values,
                "errors": stored_errors(n.result.errors),
                "version": 2 if n.submit else 1,
                "submitted_at": now if n.submit else None,
                "first_submitted_at": now if n.submit else None,
                "batch_history_id": shared_history[n.submit],
            }
            for n in news
        ]
        # Cells every row shares are formatted once.
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
        await bulk_insert(session, Registration, reg_rows, constants=shared)
        return [{**shared, **row} for row in reg_rows]

    async def update(
        self,
        *,
        organisations: Sequence[str],
        registration_id: str,
        expected_version: int | None,
        values: Mapping[str, Any],
        lang: str,
        actor: Actor,
        dcd_version: str | None = None,
    ) -> Outcome:
        """Save new values of an editable registration (If-Match: ``expected_version``, None
        for any), optionally moving it to another version of its DCD."""
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
            reg.errors = stored_errors(result.errors)
            reg.updated_at = utcnow()
            await session.flush()
            record_change(session, reg, action="save", actor=actor, before=before)
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
            if reg is None or not scope_allows(organisations, reg.organisation_id, reg.project_code):
                raise not_found("Registration")
            return reg

    async def organisation_of(self, registration_id: str) -> str:
        """The organisation owning a registration (for operator actions across organisations)."""
        async with self.db.system_session() as session:
            org = (
                await session.execute(
                    select(Registration.organisation_id).where(Registration.id == registration_id)
                )
            ).scalar_one_or_none()
        if org is None:
            raise not_found("Registration")
        return org

    async def history(
        self, organisations: Sequence[str], registration_id: str
    ) -> list[tuple[RegistrationVersion, dict[str, Any]]]:
        """Every version, oldest first, with the values the registration had at it."""
        async with self.db.session(organisations) as session:
            reg = await session.get(Registration, registration_id)
            if reg is None or not scope_allows(organisations, reg.organisation_id, reg.project_code):
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
            shared: list[RegistrationVersion] = []
            if reg.batch_history_id is not None:
                batch = await session.get(BatchHistory, reg.batch_history_id)
                if batch is not None:
                    shared = shared_entries(reg, batch)
            rows = shared + rows
            values = values_by_version(reg.values, rows)
            with_created_fields(shared, values)
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
        field_filled: bool = False,
        project_code: str | None = None,
        include_deleted: bool = False,
        exclude_statuses: Sequence[str] = (),
        by_creation: bool = False,
        created: Period | None = None,
        updated: Period | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Registration], int]:
        async with self.db.session(organisations) as session:
            query = select(Registration)
            granted = registry_condition(
                organisations, Registration.organisation_id, Registration.project_code
            )
            if granted is not None:
                query = query.where(granted)
            if dcd_code:
                query = query.where(Registration.dcd_code == dcd_code)
            if dcd_version:
                query = query.where(Registration.dcd_version == dcd_version)
            if project_code:
                query = query.where(Registration.project_code == project_code)
            if status:
                query = query.where(Registration.status == status)
            elif not include_deleted:
                query = query.where(Registration.status != RegistrationStatus.DELETED)
            if exclude_statuses:
                query = query.where(Registration.status.not_in(list(exclude_statuses)))
            if business_key:
                query = query.where(Registration.business_key == business_key)
            if field_name is not None and field_value is not None:
                query = query.where(Registration.values[field_name].as_string() == field_value)
            elif field_name is not None and field_filled:
                query = query.where(Registration.values[field_name].as_string() != "")
            for column, period in ((Registration.created_at, created), (Registration.updated_at, updated)):
                if period is not None and period.start is not None:
                    query = query.where(column >= period.start)
                if period is not None and period.end is not None:
                    query = query.where(column < period.end)
            total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = await session.execute(
                query.order_by(
                    # Pages that hold still while the worker moves registrations on (FHIR's
                    # next links): by creation, which never changes.
                    *(
                        (Registration.created_at.desc(), Registration.id)
                        if by_creation
                        else (Registration.updated_at.desc(), Registration.id)
                    )
                )
                .limit(limit)
                .offset(offset)
            )
            return list(rows.scalars()), int(total)

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
                    Registration.status != RegistrationStatus.DELETED,
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
                if reg is None or not scope_allows(organisations, reg.organisation_id, reg.project_code):
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
        entry: CatalogueEntry,
        before: Mapping[str, Any] | None = None,
        comment: str | None = None,
    ) -> None:
        target = lifecycle.next_status(action, RegistrationStatus(reg.status))
        now = utcnow()
        reg.version += 1
        reg.status = target
        reg.updated_at = now
        if target == RegistrationStatus.SENDING:
            reg.submitted_at = now
            reg.first_submitted_at = reg.first_submitted_at or now
            reg.status_confirmation = None
            if reg.registration_code is None:
                with session.no_autoflush:  # one UPDATE of the row, not two
                    [reg.registration_code] = await take_codes(session, entry.definition.dcd_number, now, 1)
            self.queue.submitted(session, reg, entry.definition, actor.name)
        elif (
            target == RegistrationStatus.OPEN and action == Action.REOPEN
        ) or target in lifecycle.NO_CONFIRMATION:
            reg.status_confirmation = None
        await session.flush()
        record_change(session, reg, action=action.value, actor=actor, before=before, comment=comment)


def lifecycle_check(action: Action, reg: Registration) -> None:
    try:
        lifecycle.next_status(action, RegistrationStatus(reg.status))
    except TransitionRefused as exc:
        raise conflict(
            "transition-not-allowed", "This action is not allowed in the current status", str(exc)
        ) from exc


def stale(current: int | None) -> Problem:
    detail = "The registration changed since you read it; fetch it again and reapply your change."
    extra = {"current_version": current} if current is not None else {}
    return Problem(412, "stale-version", "Precondition failed", detail, extra=extra)
