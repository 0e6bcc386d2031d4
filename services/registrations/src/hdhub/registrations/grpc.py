"""Registrations' internal edge (hdhub.registrations.v1) for the Upload Center, intake and
the portal: batch validation and upsert over Arrow batches, look-ups for file linking."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from opentelemetry import trace
from sqlalchemy import select

from hdhub.common.auth import Action, Principal, Scope, verifier
from hdhub.common.db import utcnow
from hdhub.common.errors import (
    FieldError,
    FieldProblem,
    Problem,
    field_error_json,
    forbidden,
    invalid,
    not_found,
    organisation_required,
)
from hdhub.common.grpc import ServicerContext, check_acting_for, require_operator, require_principal
from hdhub.common.limits import load_json
from hdhub.common.moments import in_utc
from hdhub.common.parked_jobs import archive_parked_jobs, list_parked_jobs, retry_parked_jobs
from hdhub.common.telemetry import stream_message_span
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
from hdhub.registrations import health
from hdhub.registrations.batches.arrow import read_table, rows_of
from hdhub.registrations.batches.replay import BatchResult
from hdhub.registrations.batches.service import BatchOptions, upsert_batch
from hdhub.registrations.catalogue import versions
from hdhub.registrations.catalogue.service import CatalogueEntry
from hdhub.registrations.catalogue.versions import VersionState
from hdhub.registrations.delivery import parked, reconciliation
from hdhub.registrations.delivery.queue import CONFIRM, DELIVER, DELIVER_BATCH
from hdhub.registrations.delivery.rows import DeliveryState
from hdhub.registrations.engine.columnar import BatchValidation, columnar
from hdhub.registrations.engine.validation import Validation
from hdhub.registrations.records import grid
from hdhub.registrations.records.lifecycle import Action as LifecycleAction
from hdhub.registrations.records.period import Period
from hdhub.registrations.records.service import Actor
from hdhub.registrations.store import Delivery, Job, Registration

if TYPE_CHECKING:
    from hdhub.registrations.runtime import RegistrationsService

VALIDATION_MODES = {
    pb.VALIDATION_MODE_UNSPECIFIED: "none",
    pb.VALIDATION_MODE_NONE: "none",
    pb.VALIDATION_MODE_SAVE_ON_VALIDATIONS: "save_on_validations",
    pb.VALIDATION_MODE_VALIDATE_ALL: "validate_all",
}
OUTCOMES = {
    "created": pb.ROW_OUTCOME_CREATED,
    "updated": pb.ROW_OUTCOME_UPDATED,
    "ignored_duplicate": pb.ROW_OUTCOME_IGNORED_DUPLICATE,
    "kept_stored": pb.ROW_OUTCOME_KEPT_STORED,
    "rejected": pb.ROW_OUTCOME_REJECTED,
}


ACTIONS = {
    pb.REGISTRATION_ACTION_SUBMIT: LifecycleAction.SUBMIT,
    pb.REGISTRATION_ACTION_REOPEN: LifecycleAction.REOPEN,
    pb.REGISTRATION_ACTION_DELETE: LifecycleAction.DELETE,
}
#: The portal's entries in a registration's history.
PORTAL = "portal"
#: Where a message of the live form's stream belongs: its spans are named after it.
EVALUATE_STREAM = "hdhub.registrations.v1.RegistrationsService/EvaluateFormStream"
VERSION_STATES = {
    VersionState.DRAFT: pb.DCD_VERSION_STATE_DRAFT,
    VersionState.PUBLISHED: pb.DCD_VERSION_STATE_PUBLISHED,
    VersionState.RETIRED: pb.DCD_VERSION_STATE_RETIRED,
}
log = logging.getLogger("hdhub.registrations.catalogue")
#: The delivery's jobs: retried and archived with their delivery rows (RetryParkedDeliveries,
#: ArchiveParkedDeliveries), never by the generic parked jobs' actions, so a registration is
#: never sent behind its delivery's back.
#: The refusal names the page's action (the portal translates it).
DELIVERY_KINDS_REFUSED = (
    "Delivery jobs are retried or archived with their parked deliveries: use Retry the parked deliveries."
)
DELIVERY_KINDS = dict.fromkeys((DELIVER, DELIVER_BATCH, CONFIRM), DELIVERY_KINDS_REFUSED)


def _values(text: str) -> dict[str, Any]:
    """A form's values (a JSON object, read by the rules REST reads bodies by: at most
    ``MAX_JSON_DEPTH`` levels, no duplicate member, no NUL); 422 naming ``values_json``
    and the rule otherwise (a text nested 50,000 levels deep was an internal error)."""
    try:
        values = load_json((text or "{}").encode())
    except Problem as problem:
        [broken] = problem.errors or [FieldProblem("body", "json-syntax", "Not JSON.")]
        raise invalid([FieldProblem("values_json", broken.rule, broken.message, broken.path)]) from None
    if not isinstance(values, dict):
        raise invalid([FieldProblem("values_json", "type", "The values must be a JSON object")])
    return values


def _moment(at: datetime | None) -> str:
    return at.isoformat() if at is not None else ""


def delivery_message(d: Delivery) -> pb.RegistrationDelivery:
    return pb.RegistrationDelivery(
        state=d.state,
        reason=d.reason or "",
        content_version=d.content_version,
        attempts=d.attempts,
        first_sent_at=_moment(d.first_sent_at),
        last_sent_at=_moment(d.last_sent_at),
        last_attempt_at=_moment(d.last_attempt_at),
        confirmed_at=_moment(d.confirmed_at),
        parked_at=_moment(d.parked_at),
    )


def _field_error(index: int, e: FieldError) -> pb.FieldError:
    return pb.FieldError(row_index=index, **field_error_json(e))


def registration_message(r: Registration) -> pb.Registration:
    return pb.Registration(
        id=r.id,
        organisation_id=r.organisation_id,
        project_code=r.project_code,
        dcd_code=r.dcd_code,
        dcd_version=r.dcd_version,
        business_key=r.business_key,
        status=r.status,
        status_confirmation=r.status_confirmation or "",
        registration_code=r.registration_code or "",
        values_json=json.dumps(r.values, separators=(",", ":")),
        version=r.version,
        updated_at=r.updated_at.isoformat(),
        created_at=r.created_at.isoformat(),
    )


def _period(request: pb.ListRegistrationsRequest, name: str) -> Period | None:
    moments: list[datetime | None] = []
    problems = []
    for end in ("from", "to"):
        text = getattr(request, f"{name}_{end}")
        try:
            moment = datetime.fromisoformat(text) if text else None
        except ValueError:
            problems.append(FieldProblem(f"{name}_{end}", "type", "Not a date and time (ISO 8601)."))
            continue
        try:  # stored in UTC: a moment that is not a time there (year 1 east of Greenwich) is none
            moments.append(in_utc(moment) if moment else None)
        except ValueError as exc:
            problems.append(FieldProblem(f"{name}_{end}", "range", f"The moment {exc}."))
    if problems:
        raise invalid(problems)
    return Period.of(moments[0], moments[1])


def add_grid_rows(into: Any, rows: Iterable[Sequence[Any]]) -> None:
    """Grid rows (records.grid.ROW_COLUMNS, in that order) added to a repeated field of
    :class:`pb.RegistrationRow`. Each row is unpacked as a tuple (a SQLAlchemy row's
    attributes cost about a microsecond each) and built in place by ``add`` (a message
    built first is copied into the list: twice the work; 0.15 ms of a page's 50 rows)."""
    add = into.add
    for (
        id_,
        project,
        dcd,
        version,
        key,
        status,
        confirmation,
        code,
        row_version,
        created,
        updated,
        by,
        errors,
    ) in rows:
        add(
            id=id_,
            project_code=project,
            dcd_code=dcd,
            dcd_version=version,
            business_key=key,
            status=status,
            status_confirmation=confirmation or "",
            registration_code=code or "",
            version=row_version,
            created_at=created.isoformat(),
            updated_at=updated.isoformat(),
            created_by=by,
            errors=len(errors or ()),
        )


def _require(principal: Principal, action: Action, organisation_id: str) -> None:
    if not organisation_id:
        raise organisation_required()
    if not principal.can(action, organisation_id):
        raise forbidden()


def _scoped(principal: Principal, action: Action, organisation_id: str) -> Scope:
    """The one organisation asked for, with the registries the caller may do ``action`` on
    there: what every read and write of its registrations is bounded by (a member granted
    some registries sees and changes those only; docs/identity.md, access per registry)."""
    _require(principal, action, organisation_id)
    return principal.scope_for(action).narrowed(organisation_id)


class RegistrationsServicer(pb_grpc.RegistrationsServiceServicer):
    def __init__(self, service: RegistrationsService) -> None:
        self.service = service

    def _table(self, data: bytes) -> pa.Table:
        table = read_table(data)
        if table.num_rows > self.service.settings.max_batch_rows:
            raise Problem(
                413, "batch-too-large", f"At most {self.service.settings.max_batch_rows} rows per batch"
            )
        if len(set(table.column_names)) != table.num_columns:
            twice = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
            raise Problem(400, "duplicate-column", f"Each column once per batch; twice: {', '.join(twice)}")
        return table

    def _validated(self, entry: CatalogueEntry, table: pa.Table, lang: str) -> BatchValidation:
        """The batch validated column by column, or by the row engine when so set."""
        if self.service.settings.columnar_validation:
            return columnar(entry.compiled).validate_table(table, lang=lang)
        results = entry.compiled.validate_many(rows_of(table), lang=lang)
        return BatchValidation.of(results)

    async def ValidateBatch(
        self, request: pb.ValidateBatchRequest, context: ServicerContext
    ) -> pb.ValidateBatchResponse:
        """Validate rows against a DCD version; stores nothing. Errors name row, field, path, rule, message."""
        principal = require_principal()
        _require(principal, Action.REGISTRATION_WRITE, request.organisation_id)
        entry = await self.service.catalogue.get(request.dcd.dcd_code, request.dcd.version)
        principal.require_registry(
            Action.REGISTRATION_WRITE, request.organisation_id, entry.definition.project_code
        )
        validated = self._validated(entry, self._table(request.rows_arrow), request.language or "en")
        return pb.ValidateBatchResponse(
            rows=validated.rows,
            valid_rows=validated.valid_rows,
            errors=[_field_error(i, e) for i, e in validated.errors],
            warnings=[_field_error(i, w) for i, w in validated.warnings],
            dcd_version=entry.version,
        )

    async def UpsertBatch(
        self, request: pb.UpsertBatchRequest, context: ServicerContext
    ) -> pb.UpsertBatchResponse:
        """Save or submit rows in one transaction, matched by business key, under the upload's settings."""
        principal = require_principal()
        _require(principal, Action.REGISTRATION_WRITE, request.organisation_id)
        entry = await self.service.catalogue.get(request.dcd.dcd_code, request.dcd.version)
        principal.require_registry(
            Action.REGISTRATION_WRITE, request.organisation_id, entry.definition.project_code
        )
        table = self._table(request.rows_arrow)
        validated = self._validated(entry, table, request.language or "en").results()
        result = await self._upsert(request, rows_of(table), validated, principal)
        return pb.UpsertBatchResponse(
            results=[
                pb.RowResult(
                    row_index=p.row_index,
                    outcome=OUTCOMES[p.outcome],
                    registration_id=p.registration_id,
                    business_key=p.business_key,
                    status=str(p.status),
                )
                for p in result.rows
            ],
            errors=[_field_error(i, e) for i, e in result.errors],
            warnings=[_field_error(i, w) for i, w in result.warnings],
            nothing_stored=result.nothing_stored,
            dcd_version=result.dcd_version,
        )

    async def _upsert(
        self,
        request: pb.UpsertBatchRequest,
        rows: list[dict[str, str]],
        validated: list[Validation],
        principal: Principal,
    ) -> BatchResult:
        return await upsert_batch(
            self.service.registrations,
            organisation_id=request.organisation_id,
            dcd_code=request.dcd.dcd_code,
            version=request.dcd.version,
            rows=rows,
            validated=validated,
            options=BatchOptions(
                validation_mode=VALIDATION_MODES[request.validation_mode],
                conflict_master="stored" if request.conflict_master == pb.CONFLICT_MASTER_STORED else "new",
                ignore_duplicates=request.ignore_duplicates,
                submit=request.submit,
                dry_run=request.dry_run,
            ),
            lang=request.language or "en",
            # A service records whose work it does (its acting-for actor), a person themself.
            actor=Actor(
                principal.author if principal.is_service() else request.author or principal.username, "upload"
            ),
            batch_id=request.batch_id or None,
            after_batch_id=request.after_batch_id or None,
        )

    async def GetRegistration(
        self, request: pb.GetRegistrationRequest, context: ServicerContext
    ) -> pb.GetRegistrationResponse:
        """One registration within the caller's organisations; NOT_FOUND otherwise."""
        principal = require_principal()
        reg = await self.service.registrations.get(principal.scope_for(Action.REGISTRATION_READ), request.id)
        message = registration_message(reg)
        if principal.is_service("intake"):
            # Files sent to the central platform name their registrations by it.
            message.technical_id = await self._technical_id(reg.id)
        return pb.GetRegistrationResponse(registration=message)

    async def _technical_id(self, registration_id: str) -> str:
        async with self.service.db.system_session() as session:
            found = await session.execute(
                select(Delivery.technical_id).where(Delivery.registration_id == registration_id)
            )
            return found.scalar_one_or_none() or ""

    async def FindRegistrationsByField(
        self, request: pb.FindRegistrationsByFieldRequest, context: ServicerContext
    ) -> pb.FindRegistrationsByFieldResponse:
        """Live registrations of an organisation whose field equals the value (file linking)."""
        principal = require_principal()
        _require(principal, Action.REGISTRATION_READ, request.organisation_id)
        try:
            before = datetime.fromisoformat(request.created_before) if request.created_before else None
        except ValueError:
            raise Problem(400, "created-before", "created_before is not an RFC 3339 moment") from None
        items, _ = await self.service.registrations.search(
            principal.scope_for(Action.REGISTRATION_READ).narrowed(request.organisation_id),
            field_name=request.field,
            field_value=None if request.any_value else request.value,
            field_filled=request.any_value,
            project_code=request.project_code or None,
            created=Period.of(None, before),
            limit=min(request.limit or 100, 1000),
        )
        return pb.FindRegistrationsByFieldResponse(registrations=[registration_message(r) for r in items])

    async def GetDcdVersion(
        self, request: pb.GetDcdVersionRequest, context: ServicerContext
    ) -> pb.GetDcdVersionResponse:
        """A DCD version's fields (flattened technical names), for CSV header checks;
        ``required`` marks those every record must fill (``required_in_every_record``)."""
        principal = require_principal()
        if not principal.can(Action.CATALOGUE_READ):
            raise forbidden()
        entry = await self.service.catalogue.get(request.dcd.dcd_code, request.dcd.version)
        d = entry.definition
        fields = []
        for f in d.fields:
            if not f.is_input:
                continue
            for name in f.flat_names:
                fields.append(
                    pb.DcdField(
                        technical_name=name,
                        type=f.type.value,
                        list_name=f.list_name or "",
                        required=d.required_in_every_record(f),
                        personal_data=f.personal_data,
                    )
                )
        return pb.GetDcdVersionResponse(
            project_code=d.project_code,
            dcd_code=d.dcd_code,
            version=str(d.version),
            fields=fields,
            business_key=list(d.business_key),
        )

    async def ListRegistries(
        self, request: pb.ListRegistriesRequest, context: ServicerContext
    ) -> pb.ListRegistriesResponse:
        """The catalogue as ``GET /api/v1/registries`` answers it: registries, their DCDs and
        versions (newest first), for a caller who may read the catalogue."""
        if not require_principal().can(Action.CATALOGUE_READ):
            raise forbidden()
        return pb.ListRegistriesResponse(
            registries=[
                pb.Registry(
                    code=p.code,
                    abbreviation=p.abbreviation,
                    titles=dict(p.titles),
                    dcds=[
                        pb.CatalogueDcd(code=d.code, titles=dict(d.titles), versions=[v.version for v in vs])
                        for d, vs in dcds
                    ],
                )
                for p, dcds in await self.service.catalogue.tree()
            ]
        )

    async def ListReimbursedDcds(
        self, request: pb.ListReimbursedDcdsRequest, context: ServicerContext
    ) -> pb.ListReimbursedDcdsResponse:
        """The DCDs whose newest version binds fields for NIPPIN (the reimbursed registries)."""
        if not require_principal().can(Action.CATALOGUE_READ):
            raise forbidden()
        return pb.ListReimbursedDcdsResponse(
            dcds=[
                pb.ReimbursedDcd(project_code=d.project_code, dcd_code=d.dcd_code, labels=dict(d.dcd_titles))
                for d in await reconciliation.reimbursed_dcds(self.service.catalogue)
            ]
        )

    async def StreamReimbursedRegistrations(
        self, request: pb.StreamReimbursedRegistrationsRequest, context: ServicerContext
    ) -> AsyncIterator[pb.ReimbursedRegistrationsPage]:
        """An organisation's stored registrations of reimbursed DCDs (submitted at least
        once, not deleted) as Arrow pages, each row with whether it makes a NIPPIN message
        and its bound values that are no personal data (reconciliation for the nightly report).
        A person's token gets the registries granted to it only."""
        principal = require_principal()
        _require(principal, Action.REGISTRATION_READ, request.organisation_id)
        service = self.service
        granted = principal.registries_in(request.organisation_id)
        async for page in reconciliation.pages(
            service.db, service.catalogue, request.organisation_id, granted
        ):
            yield pb.ReimbursedRegistrationsPage(registrations_arrow=page)

    async def ListReimbursedOrganisations(
        self, request: pb.ListReimbursedOrganisationsRequest, context: ServicerContext
    ) -> pb.ListReimbursedOrganisationsResponse:
        """The organisations with stored registrations of reimbursed DCDs: those nippin's
        nightly report covers. For nippin alone: it names organisations across tenants."""
        if not require_principal().is_service("nippin"):
            raise forbidden(
                "Only NIPPIN's nightly report lists the organisations with reimbursed registrations."
            )
        found = await reconciliation.organisations(self.service.db, self.service.catalogue)
        return pb.ListReimbursedOrganisationsResponse(organisation_ids=found)

    async def OrganisationHealth(
        self, request: pb.OrganisationHealthRequest, context: ServicerContext
    ) -> pb.OrganisationHealthResponse:
        """Every organisation's registrations, registries and deliveries as counts, from the
        tallies the database keeps (health.py). Operator only: it spans every tenant."""
        require_operator()
        service = self.service
        async with service.db.system_session() as session:
            found = await health.organisations_health(
                session, now=utcnow(), timeout_hours=service.settings.confirmation_timeout_hours
            )
        return pb.OrganisationHealthResponse(
            organisations=[
                pb.OrganisationHealth(
                    organisation_id=h.organisation_id,
                    registrations=h.registrations,
                    registries=h.registries,
                    deliveries=h.deliveries,
                    backlog=h.backlog,
                    oldest_backlog_at=h.oldest_backlog_at.isoformat() if h.oldest_backlog_at else "",
                    confirmations_overdue=h.confirmations_overdue,
                )
                for h in found
            ]
        )

    async def ListParkedDeliveries(
        self, request: pb.ListParkedDeliveriesRequest, context: ServicerContext
    ) -> pb.ListParkedDeliveriesResponse:
        """Parked deliveries with why, oldest parked first. Operator only."""
        require_operator()
        found, total = await parked.listing(
            self.service.db,
            organisation_id=request.organisation_id or None,
            limit=min(request.limit or 100, 500),
            offset=request.offset,
            archived=request.archived,
        )
        return pb.ListParkedDeliveriesResponse(
            deliveries=[
                pb.ParkedDelivery(
                    organisation_id=d.organisation_id,
                    registration_id=d.registration_id,
                    registration_code=d.registration_code,
                    dcd_code=d.dcd_code,
                    parked_at=d.parked_at.isoformat() if d.parked_at else "",
                    attempts=d.attempts,
                    reason=d.reason,
                    archived_at=d.archived_at.isoformat() if d.archived_at else "",
                    archived_by=d.archived_by,
                    archive_reason=d.archive_reason,
                )
                for d in found
            ],
            total=total,
        )

    async def RetryParkedDeliveries(
        self, request: pb.RetryParkedDeliveriesRequest, context: ServicerContext
    ) -> pb.RetryParkedDeliveriesResponse:
        """Resend an organisation's parked deliveries, the operator's reason in each
        registration's history. Operator only."""
        principal = require_operator()
        if not request.organisation_id:
            raise organisation_required()
        retried = await parked.retry(
            self.service.db,
            self.service.queue,
            organisation_id=request.organisation_id,
            actor=principal.username,
            reason=request.reason,
            now=utcnow(),
            archived=request.archived,
            registration_ids=list(request.registration_ids),
        )
        return pb.RetryParkedDeliveriesResponse(retried=retried)

    async def ArchiveParkedDeliveries(
        self, request: pb.ArchiveParkedDeliveriesRequest, context: ServicerContext
    ) -> pb.ArchiveParkedDeliveriesResponse:
        """Set an organisation's parked deliveries aside, the operator's reason in each
        registration's history. Operator only."""
        principal = require_operator()
        if not request.organisation_id:
            raise organisation_required()
        archived = await parked.archive(
            self.service.db,
            organisation_id=request.organisation_id,
            actor=principal.username,
            reason=request.reason,
            now=utcnow(),
            registration_ids=list(request.registration_ids),
        )
        return pb.ArchiveParkedDeliveriesResponse(archived=archived)

    async def ListParkedJobs(
        self, request: pb.ListParkedJobsRequest, context: ServicerContext
    ) -> pb.ListParkedJobsResponse:
        """This service's parked (or archived) background jobs, grouped; counts only. Operator only."""
        answer: pb.ListParkedJobsResponse = await list_parked_jobs(pb, request, self.service.db, Job)
        return answer

    async def RetryParkedJobs(
        self, request: pb.RetryParkedJobsRequest, context: ServicerContext
    ) -> pb.RetryParkedJobsResponse:
        """Queue an organisation's parked jobs again (one group, or all but the deliveries'
        jobs, which RetryParkedDeliveries retries with their deliveries). Operator only."""
        answer: pb.RetryParkedJobsResponse = await retry_parked_jobs(
            pb,
            request,
            self.service.db,
            Job,
            service="registrations",
            refused_kinds=DELIVERY_KINDS,
            wake=self.service.queue.wake.notify,
        )
        return answer

    async def ArchiveParkedJobs(
        self, request: pb.ArchiveParkedJobsRequest, context: ServicerContext
    ) -> pb.ArchiveParkedJobsResponse:
        """Set an organisation's parked jobs aside (one group, or all but the deliveries'
        jobs, which ArchiveParkedDeliveries sets aside with their deliveries). Operator only."""
        answer: pb.ArchiveParkedJobsResponse = await archive_parked_jobs(
            pb, request, self.service.db, Job, service="registrations", refused_kinds=DELIVERY_KINDS
        )
        return answer

    async def CatalogueUsage(
        self, request: pb.CatalogueUsageRequest, context: ServicerContext
    ) -> pb.CatalogueUsageResponse:
        """Which organisations use which DCD version (live registrations, counted). Operator only."""
        require_operator()
        async with self.service.db.system_session() as session:
            found = await health.catalogue_usage(session)
        return pb.CatalogueUsageResponse(
            usage=[
                pb.VersionUsage(
                    dcd_code=u.dcd_code,
                    version=u.version,
                    organisation_id=u.organisation_id,
                    registrations=u.registrations,
                )
                for u in found
            ]
        )

    # --- the operator's DCD catalogue ----------------------------------------------

    async def ImportDcdWorkbook(
        self, request: pb.ImportDcdWorkbookRequest, context: ServicerContext
    ) -> pb.ImportDcdWorkbookResponse:
        """Import a workbook as a draft; every problem named by sheet, row and column. Operator only."""
        principal = require_operator()
        catalogue = self.service.catalogue
        entry, created = await catalogue.import_workbook(
            request.workbook, actor=principal.username, state=VersionState.DRAFT
        )
        if created:
            await self.service.reuse.refresh()  # data reuse: a view of the new version, as the REST import
        d = entry.definition
        return pb.ImportDcdWorkbookResponse(
            project_code=d.project_code,
            dcd_code=d.dcd_code,
            version=entry.version,
            created=created,
            state=VERSION_STATES[await catalogue.state_of(entry)],
        )

    async def ListDcdVersions(
        self, request: pb.ListDcdVersionsRequest, context: ServicerContext
    ) -> pb.ListDcdVersionsResponse:
        """Every DCD version with its state and who moved it last. Operator only."""
        require_operator()
        catalogue = self.service.catalogue
        versions = sorted(
            await catalogue.every_version(), key=lambda v: (v.dcd_code, -v.major, -v.minor, -v.patch)
        )
        return pb.ListDcdVersionsResponse(
            registries=[
                pb.Registry(
                    code=p.code,
                    abbreviation=p.abbreviation,
                    titles=dict(p.titles),
                    dcds=[
                        pb.CatalogueDcd(code=d.code, titles=dict(d.titles), versions=[v.version for v in vs])
                        for d, vs in dcds
                    ],
                )
                for p, dcds in await catalogue.tree(every_state=True)
            ],
            versions=[
                pb.CatalogueVersion(
                    dcd_code=v.dcd_code,
                    version=v.version,
                    state=VERSION_STATES[VersionState(v.state)],
                    imported_at=_moment(v.imported_at),
                    imported_by=v.imported_by,
                    state_changed_at=_moment(v.state_changed_at),
                    state_changed_by=v.state_changed_by,
                )
                for v in versions
            ],
        )

    async def CompareDcdVersions(
        self, request: pb.CompareDcdVersionsRequest, context: ServicerContext
    ) -> pb.CompareDcdVersionsResponse:
        """Fields added, removed and changed between two versions, and what a higher major
        invalidates (counts per organisation and status). Operator only."""
        require_operator()
        catalogue = self.service.catalogue
        if not request.to_version:
            raise invalid([FieldProblem("to_version", "required", "Name the version to compare.")])
        new = await catalogue.get(request.dcd_code, request.to_version)
        old = await catalogue.get(request.dcd_code, request.from_version or None)
        difference = versions.compare(old.definition, new.definition)
        major = new.definition.version.major
        return pb.CompareDcdVersionsResponse(
            from_version=old.version,
            to_version=new.version,
            kind=difference.kind,
            added=difference.added,
            removed=difference.removed,
            changed=[
                pb.DcdFieldChange(field=c.technical_name, aspects=c.aspects, breaking=c.breaking)
                for c in difference.changed
            ],
            added_required=difference.added_required,
            breaking=difference.breaking,
            invalidated=[
                pb.InvalidatedRegistrations(
                    organisation_id=i.organisation_id, status=i.status, registrations=i.registrations
                )
                for i in await catalogue.invalidated_by(request.dcd_code, major)
            ],
        )

    async def SetDcdVersionState(
        self, request: pb.SetDcdVersionStateRequest, context: ServicerContext
    ) -> pb.SetDcdVersionStateResponse:
        """Publish or retire a DCD version. Operator only."""
        principal = require_operator()
        wanted = {v: k for k, v in VERSION_STATES.items()}.get(request.state)
        if wanted not in (VersionState.PUBLISHED, VersionState.RETIRED):
            raise invalid([FieldProblem("state", "choice", "Choose one of the values.")])
        before = await self.service.catalogue.set_state(
            request.dcd.dcd_code, request.dcd.version, wanted, actor=principal.username
        )
        log.info(
            "dcd version state changed",
            extra={
                "dcd": request.dcd.dcd_code,
                "version": request.dcd.version,
                "state": wanted.value,
                "previous_state": before.value,
                "actor": principal.username,
            },
        )
        return pb.SetDcdVersionStateResponse(state=request.state, previous_state=VERSION_STATES[before])

    async def ListRegistrations(
        self, request: pb.ListRegistrationsRequest, context: ServicerContext
    ) -> pb.ListRegistrationsResponse:
        """The grid's page: filters, sort, keyset cursor, counts per status (records/grid.py),
        within the registries granted to the caller."""
        principal = require_principal()
        _require(principal, Action.REGISTRATION_READ, request.organisation_id)
        query = grid.GridQuery(
            organisation_id=request.organisation_id,
            registries=principal.registries_in(request.organisation_id),
            project_code=request.project_code,
            dcd_code=request.dcd_code,
            dcd_version=request.dcd_version,
            status=request.status,
            status_confirmation=request.status_confirmation,
            created=_period(request, "created"),
            updated=_period(request, "updated"),
            search=request.search,
            sort=request.sort or "updated",
            descending=not request.ascending,
            cursor=request.cursor,
            limit=request.limit or 50,
        )
        page = await grid.grid_page(self.service.db, query, with_counts=not request.without_counts)
        response = pb.ListRegistrationsResponse(
            next_cursor=page.next_cursor,
            counts=[pb.StatusCount(status=s, status_confirmation=c, count=n) for s, c, n in page.counts],
            total_known=page.total is not None,
            total=page.total or 0,
            more_than=page.more_than,
            previous_cursor=page.previous_cursor,
        )
        add_grid_rows(response.registrations, page.registrations)
        return response

    async def ActOnRegistrations(
        self, request: pb.ActOnRegistrationsRequest, context: ServicerContext
    ) -> pb.ActOnRegistrationsResponse:
        """Submit or delete each registration on its own; each outcome said (records/grid.py)."""
        principal = require_principal()
        outcomes = await grid.act_many(
            self.service.registrations,
            organisations=_scoped(principal, Action.REGISTRATION_WRITE, request.organisation_id),
            refs=[(r.id, r.version or None) for r in request.registrations],
            action=request.action,
            actor=Actor(principal.author if principal.is_service() else principal.username, "portal"),
            lang=request.language or "en",
        )
        return pb.ActOnRegistrationsResponse(
            outcomes=[
                pb.RegistrationOutcome(
                    id=o.id,
                    done=o.done,
                    status=o.status,
                    problem=o.problem,
                    title=o.title,
                    detail=o.detail,
                    registration_code=o.registration_code,
                    dcd_code=o.dcd_code,
                    dcd_version=o.dcd_version,
                )
                for o in outcomes
            ]
        )

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: ServicerContext
    ) -> pb.ListDeliveriesResponse:
        """An organisation's deliveries in the states asked for, newest change first (of the
        registries granted to the caller)."""
        readable = _scoped(require_principal(), Action.REGISTRATION_READ, request.organisation_id)
        known = {s.value for s in DeliveryState}
        wrong = [s for s in request.states if s not in known]
        if wrong:
            raise invalid(
                [FieldProblem("states", "choice", f"Delivery states are: {', '.join(sorted(known))}.")]
            )
        if request.limit > 500:
            raise invalid([FieldProblem("limit", "range", "At most 500 per page.")])
        rows, total = await self.service.deliveries.listing(
            readable,
            state=None,
            states=[DeliveryState(s) for s in request.states],
            limit=request.limit or 50,
            offset=request.offset,
        )

        def moment(value: datetime | None) -> str:
            return value.isoformat() if value else ""

        return pb.ListDeliveriesResponse(
            deliveries=[
                pb.DeliveryInfo(
                    registration_id=d.registration_id,
                    registration_code=r.registration_code or "",
                    dcd_code=r.dcd_code,
                    status=r.status,
                    state=d.state,
                    reason=d.reason or "",
                    version=d.content_version,
                    attempts=d.attempts,
                    first_sent_at=moment(d.first_sent_at),
                    last_sent_at=moment(d.last_sent_at),
                    parked_at=moment(d.parked_at),
                )
                for d, r in rows
            ],
            total=total,
        )

    # --- data entry (the portal's forms) ----------------------------------------------

    async def GetDcdDefinition(
        self, request: pb.GetDcdDefinitionRequest, context: ServicerContext
    ) -> pb.GetDcdDefinitionResponse:
        """A DCD version's whole definition, for any caller who may read the catalogue."""
        if not require_principal().can(Action.CATALOGUE_READ):
            raise forbidden()
        entry = await self.service.catalogue.get(request.dcd.dcd_code, request.dcd.version)
        newest = await self.service.catalogue.get(request.dcd.dcd_code)
        return pb.GetDcdDefinitionResponse(
            definition_json=json.dumps(entry.definition.to_json(), separators=(",", ":")),
            latest=newest.version == entry.version,
        )

    async def EvaluateForm(
        self, request: pb.EvaluateFormRequest, context: ServicerContext
    ) -> pb.EvaluateFormResponse:
        """A partial record as the form shows it: relevance, required, computed values and
        errors per field, from the one engine that validates every record."""
        return await self._evaluate(require_principal(), request)

    async def EvaluateFormStream(
        self, requests: AsyncIterator[pb.EvaluateFormRequest], context: ServicerContext
    ) -> AsyncIterator[pb.EvaluateFormResponse]:
        """EvaluateForm for each request of the stream, in order, each checked as a call
        is, the token included (its expiry, a revocation: the verifier remembers a token it
        checked, so this costs no signature check), so a form left open does not outlive
        its sign-out. What a message spares is the call's set-up and its interceptors."""
        principal = require_principal()
        async for request in requests:
            # A span per message, continuing the change's trace the message carries (one
            # trace per change, as a call has); the stream's own span is the connection's.
            with stream_message_span(EVALUATE_STREAM, trace.SpanKind.SERVER, request.trace_context):
                await verifier().verify(principal.token)  # UNAUTHENTICATED once expired or revoked
                check_acting_for(principal, request.organisation_id)
                answer = await self._evaluate(principal, request)
            yield answer

    async def _evaluate(
        self, principal: Principal, request: pb.EvaluateFormRequest
    ) -> pb.EvaluateFormResponse:
        _require(principal, Action.REGISTRATION_WRITE, request.organisation_id)
        entry = await self.service.catalogue.get(request.dcd.dcd_code, request.dcd.version)
        principal.require_registry(
            Action.REGISTRATION_WRITE, request.organisation_id, entry.definition.project_code
        )
        state = entry.compiled.form_state(_values(request.values_json), lang=request.language or "en")
        result = state.validation
        by_field: dict[str, list[pb.FieldError]] = {}
        errors = [_field_error(0, e) for e in result.errors]
        for message in errors:
            by_field.setdefault(message.field, []).append(message)
        fields = []
        for f in entry.definition.fields:
            if not f.is_input:
                continue
            for name in f.flat_names:
                value = result.values.get(name) if f.is_computed else None
                fields.append(
                    pb.FormFieldState(
                        field=name,
                        relevant=name not in state.inactive,
                        required=name in state.required,
                        value_json=json.dumps(value) if value is not None else "",
                        errors=by_field.get(name, []),
                    )
                )
        return pb.EvaluateFormResponse(fields=fields, errors=errors, dcd_version=entry.version)

    async def SaveRegistration(
        self, request: pb.SaveRegistrationRequest, context: ServicerContext
    ) -> pb.SaveRegistrationResponse:
        """Save (and submit when asked) one registration from a form, checked against the
        version the person read; a submission that is not complete stores nothing."""
        principal = require_principal()
        orgs = _scoped(principal, Action.REGISTRATION_WRITE, request.organisation_id)
        registrations = self.service.registrations
        values = _values(request.values_json)
        lang = request.language or "en"
        actor = Actor(principal.username, PORTAL)
        if not request.registration_id:
            entry = await self.service.catalogue.get(request.dcd.dcd_code, request.dcd.version or None)
            principal.require_registry(
                Action.REGISTRATION_WRITE, request.organisation_id, entry.definition.project_code
            )
            checked = await registrations.checked(
                dcd_code=request.dcd.dcd_code,
                version=request.dcd.version or None,
                values=values,
                lang=lang,
                submitting=request.submit,
            )
            outcome = await registrations.db.retrying_session(
                orgs,
                lambda session: registrations.put(
                    session,
                    organisation_id=request.organisation_id,
                    record=checked,
                    submit=request.submit,
                    actor=actor,
                    replace_submitted=False,
                ),
            )
            reg, created, warnings = outcome.registration, outcome.created, outcome.warnings
            errors = [field_error_json(e) for e in checked.result.errors]
        else:
            stored = await registrations.get(orgs, request.registration_id)
            if request.submit:  # complete, or nothing is stored
                entry = await self.service.catalogue.get(stored.dcd_code, stored.dcd_version)
                registrations.check(entry, values, lang=lang, submitting=True)
            outcome = await registrations.update(
                organisations=orgs,
                registration_id=request.registration_id,
                expected_version=request.expected_version or None,
                values=values,
                lang=lang,
                actor=actor,
            )
            reg, created, warnings = outcome.registration, False, outcome.warnings
            errors = list(reg.errors)
            if request.submit:
                reg = await registrations.act(
                    organisations=orgs,
                    registration_id=reg.id,
                    expected_version=reg.version,
                    action=LifecycleAction.SUBMIT,
                    actor=actor,
                    lang=lang,
                )
        return pb.SaveRegistrationResponse(
            registration=registration_message(reg),
            errors=[
                pb.FieldError(field=e["field"], path=e["path"], rule=e["rule"], message=e["message"])
                for e in errors
            ],
            warnings=[_field_error(0, w) for w in warnings],
            created=created,
        )

    async def ActOnRegistration(
        self, request: pb.ActOnRegistrationRequest, context: ServicerContext
    ) -> pb.ActOnRegistrationResponse:
        """Submit, reopen or delete, as the lifecycle allows, at the version the caller read."""
        principal = require_principal()
        action = ACTIONS.get(request.action)
        if action is None:
            raise invalid([FieldProblem("action", "choice", "The action must be submit, reopen or delete")])
        registrations = self.service.registrations
        org = await registrations.organisation_of(request.id)
        if not principal.can(Action.REGISTRATION_READ, org):
            raise not_found("Registration")  # another organisation's: as if there were none
        reg = await registrations.act(
            organisations=_scoped(principal, Action.REGISTRATION_WRITE, org),
            registration_id=request.id,
            expected_version=request.expected_version or None,
            action=action,
            actor=Actor(principal.username, PORTAL),
            lang=request.language or "en",
        )
        return pb.ActOnRegistrationResponse(registration=registration_message(reg))

    async def GetRegistrationHistory(
        self, request: pb.GetRegistrationHistoryRequest, context: ServicerContext
    ) -> pb.GetRegistrationHistoryResponse:
        """One registration within the caller's organisations, its versions (oldest first,
        with the values at each) and its delivery; NOT_FOUND otherwise."""
        principal = require_principal()
        # Scoped by registry too: a registration of a registry not granted is unknown.
        readable = principal.scope_for(Action.REGISTRATION_READ)
        reg = await self.service.registrations.get(readable, request.id)
        history = await self.service.registrations.history(readable, request.id)
        delivery = (await self.service.deliveries.of([reg.organisation_id], [reg.id])).get(reg.id)
        decision = await self.service.deliveries.latest_applied([reg.organisation_id], reg.id)
        return pb.GetRegistrationHistoryResponse(
            decision=pb.CentralDecisionInfo(
                status=decision.status,
                comment=decision.comment,
                fields=list(decision.fields or []),
                decided_at=decision.decided_at,
            )
            if decision is not None
            else None,
            registration=registration_message(reg),
            versions=[
                pb.RegistrationVersion(
                    version=v.version,
                    action=v.action,
                    status=v.status,
                    dcd_version=v.dcd_version,
                    actor=v.actor,
                    via=v.via,
                    at=_moment(v.at),
                    changed_fields=[str(f) for f in v.changed_fields],
                    values_json=json.dumps(values, separators=(",", ":")),
                    comment=v.comment or "",
                )
                for v, values in history
            ],
            delivery=delivery_message(delivery) if delivery is not None else None,
            errors=[
                pb.FieldError(field=e["field"], path=e["path"], rule=e["rule"], message=e["message"])
                for e in reg.errors
            ],
        )

    # --- follow-ups and exports for the portal's pages (portalret) ---------------------------

    async def ListFollowUps(
        self, request: pb.ListFollowUpsRequest, context: ServicerContext
    ) -> pb.ListFollowUpsResponse:
        """The organisation's follow-ups due, soonest first, of the registries granted to the
        caller (as ``GET /api/v1/follow-ups``); PERMISSION_DENIED for a non-member."""
        principal = require_principal()
        _require(principal, Action.REGISTRATION_READ, request.organisation_id)
        if request.limit > 500:
            raise invalid([FieldProblem("limit", "range", "At most 500 per page.")])
        dcds = await self.service.catalogue.granted_dcds(principal, request.organisation_id)
        rows, total = await self.service.deliveries.follow_ups(
            request.organisation_id,
            due_before=None,
            dcd_codes=None if dcds is None else sorted(dcds),
            limit=request.limit or 50,
            offset=request.offset,
        )
        return pb.ListFollowUpsResponse(
            follow_ups=[
                pb.FollowUpInfo(
                    id=f.id,
                    registration_id=f.registration_id,
                    registration_code=f.registration_code or "",
                    project_code=f.project_code,
                    dcd_code=f.dcd_code,
                    comment=f.comment or "",
                    due_at=_moment(f.due_at),
                )
                for f in rows
            ],
            total=total,
        )

    async def RequestExport(
        self, request: pb.RequestExportRequest, context: ServicerContext
    ) -> pb.RequestExportResponse:
        """Ask for an export as ``POST /api/v1/exports`` does: the organisation's CSV Upload
        Manager, of a registry granted; a bad filter is INVALID_ARGUMENT naming its field."""
        from hdhub.registrations.exports.service import Exports, Filters

        principal = require_principal()
        if not request.organisation_id:
            raise organisation_required()
        if principal.is_service() or request.organisation_id not in Exports.organisations(principal):
            raise forbidden()
        problems = []
        if request.format not in ("csv", "xlsx", "parquet"):
            problems.append(FieldProblem("format", "choice", "The format is csv, xlsx or parquet."))
        moments: dict[str, datetime | None] = {}
        for name in ("created_from", "created_to", "updated_from", "updated_to"):
            text = getattr(request, name)
            try:
                moment = datetime.fromisoformat(text) if text else None
            except ValueError:
                moment = None
                problems.append(FieldProblem(name, "type", "Not a date and time (RFC 3339)."))
            if moment is not None and moment.tzinfo is None:
                problems.append(FieldProblem(name, "type", "A date and time needs its offset."))
            elif moment is not None:
                try:
                    moment = in_utc(moment)
                except ValueError as exc:
                    problems.append(FieldProblem(name, "range", f"The moment {exc}."))
            moments[name] = moment
        if problems:
            raise invalid(problems)
        export = await self.service.exports.request(
            principal,
            organisation_id=request.organisation_id,
            dcd_code=request.dcd_code,
            version=request.version or None,
            fmt=request.format,
            filters=Filters(tuple(request.statuses), **moments),
        )
        return pb.RequestExportResponse(export=export_message(export))

    async def ListExports(
        self, request: pb.ListExportsRequest, context: ServicerContext
    ) -> pb.ListExportsResponse:
        """The organisation's exports, newest first, of the registries granted to the caller
        (a CSV Upload Manager of it); PERMISSION_DENIED otherwise."""
        if not request.organisation_id:
            raise organisation_required()
        from hdhub.registrations.exports.service import Exports

        principal = require_principal()
        if principal.is_service() or request.organisation_id not in Exports.organisations(principal):
            raise forbidden()
        if request.limit > 200:
            raise invalid([FieldProblem("limit", "range", "At most 200 per page.")])
        rows, total = await self.service.exports.listing(
            principal, [request.organisation_id], limit=request.limit or 50, offset=request.offset
        )
        return pb.ListExportsResponse(exports=[export_message(e) for e in rows], total=total)

    async def GetExport(self, request: pb.GetExportRequest, context: ServicerContext) -> pb.GetExportResponse:
        """One export of the caller's organisations (NOT_FOUND for any other, or one of a
        registry not granted); with ``issue_link`` and once ready, a download token that
        expires, its issue audited."""
        principal = require_principal()
        if principal.is_service():
            raise forbidden()
        export = await self.service.exports.get(principal, request.id)
        if not (request.issue_link and export.state == "ready"):
            return pb.GetExportResponse(export=export_message(export))
        token, expires = await self.service.exports.link(export, principal)
        return pb.GetExportResponse(
            export=export_message(export), download_token=token, download_expires_at=expires.isoformat()
        )


def export_message(e: Any) -> pb.ExportInfo:
    return pb.ExportInfo(
        id=e.id,
        organisation_id=e.organisation_id,
        dcd_code=e.dcd_code,
        version=e.dcd_version,
        format=e.format,
        state=e.state,
        rows_total=e.rows_total,
        rows_done=e.rows_done,
        size=e.size,
        requested_by=e.requested_by,
        created_at=_moment(e.created_at),
        ready_at=_moment(e.ready_at),
        filters_json=json.dumps(e.filters or {}),
    )
