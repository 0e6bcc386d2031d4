"""Registrations' internal edge (hdhub.registrations.v1) for the Upload Center, intake and
the portal: batch validation and upsert over Arrow batches, look-ups for file linking."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hdhub.common.auth import Action as Permission
from hdhub.common.auth import Principal
from hdhub.common.errors import Problem, forbidden
from hdhub.common.grpc import ServicerContext, register_idempotent, require_principal
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
from hdhub.registrations.arrow import decode_rows
from hdhub.registrations.domain.lifecycle import Status
from hdhub.registrations.domain.nippin import Reimbursement, is_reimbursed, reimbursement
from hdhub.registrations.service import Actor, BatchOptions, BatchResult, upsert_batch
from hdhub.registrations.store import Registration

if TYPE_CHECKING:
    from hdhub.registrations.runtime import RegistrationsService

# Safe to retry on UNAVAILABLE: they change nothing. UpsertBatch is not retried blindly.
register_idempotent(
    "hdhub.registrations.v1.RegistrationsService",
    [
        "ValidateBatch",
        "GetRegistration",
        "FindRegistrationsByField",
        "GetDcdVersion",
        "ListReimbursedDcds",
        "ListReimbursedRegistrations",
    ],
)

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


def _field_error(index: int, e: object) -> pb.FieldError:
    return pb.FieldError(
        row_index=index,
        field=getattr(e, "field", ""),
        path=getattr(e, "path", "") or "",
        rule=getattr(e, "rule", ""),
        message=getattr(e, "message", ""),
    )


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
    )


def _require(principal: Principal, action: Permission, organisation_id: str) -> None:
    if not organisation_id:
        raise Problem(400, "organisation-required", "organisation_id is required")
    if not principal.can(action, organisation_id):
        raise forbidden()


class RegistrationsServicer(pb_grpc.RegistrationsServiceServicer):
    def __init__(self, service: RegistrationsService) -> None:
        self.service = service

    def _rows(self, data: bytes) -> list[dict[str, str]]:
        rows = decode_rows(data)
        if len(rows) > self.service.settings.max_batch_rows:
            raise Problem(
                413, "batch-too-large", f"At most {self.service.settings.max_batch_rows} rows per batch"
            )
        return rows

    async def ValidateBatch(
        self, request: pb.ValidateBatchRequest, context: ServicerContext
    ) -> pb.ValidateBatchResponse:
        """Validate rows against a DCD version; stores nothing. Errors name row, field, path, rule, message."""
        principal = require_principal()
        _require(principal, Permission.REGISTRATION_WRITE, request.organisation_id)
        entry = await self.service.catalogue.get(request.dcd.dcd_code, request.dcd.version or None)
        rows = self._rows(request.rows_arrow)
        results = entry.compiled.validate_many(rows, lang=request.language or "en")
        return pb.ValidateBatchResponse(
            rows=len(rows),
            valid_rows=sum(1 for r in results if r.ok),
            errors=[_field_error(i, e) for i, r in enumerate(results) for e in r.errors],
            warnings=[_field_error(i, w) for i, r in enumerate(results) for w in r.warnings],
            dcd_version=entry.version,
        )

    async def UpsertBatch(
        self, request: pb.UpsertBatchRequest, context: ServicerContext
    ) -> pb.UpsertBatchResponse:
        """Save or submit rows in one transaction, matched by business key, under the upload's settings."""
        principal = require_principal()
        _require(principal, Permission.REGISTRATION_WRITE, request.organisation_id)
        rows = self._rows(request.rows_arrow)
        try:
            result = await self._upsert(request, rows, principal)
        except IntegrityError as exc:
            # Another writer stored the same batch or business key meanwhile; nothing of
            # this call was kept. Retrying (same batch id) replays or applies it cleanly.
            raise Problem(
                409, "concurrent-write", "A concurrent write touched the same records; retry"
            ) from exc
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
        self, request: pb.UpsertBatchRequest, rows: list[dict[str, str]], principal: Principal
    ) -> BatchResult:
        return await upsert_batch(
            self.service.registrations,
            organisation_id=request.organisation_id,
            dcd_code=request.dcd.dcd_code,
            version=request.dcd.version or None,
            rows=rows,
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
        reg = await self.service.registrations.get(
            principal.organisations_for(Permission.REGISTRATION_READ), request.id
        )
        return pb.GetRegistrationResponse(registration=registration_message(reg))

    async def FindRegistrationsByField(
        self, request: pb.FindRegistrationsByFieldRequest, context: ServicerContext
    ) -> pb.FindRegistrationsByFieldResponse:
        """Live registrations of an organisation whose field equals the value (file linking)."""
        principal = require_principal()
        _require(principal, Permission.REGISTRATION_READ, request.organisation_id)
        items, _ = await self.service.registrations.search(
            [request.organisation_id],
            field_name=request.field,
            field_value=request.value,
            project_code=request.project_code or None,
            limit=min(request.limit or 100, 1000),
        )
        return pb.FindRegistrationsByFieldResponse(registrations=[registration_message(r) for r in items])

    async def GetDcdVersion(
        self, request: pb.GetDcdVersionRequest, context: ServicerContext
    ) -> pb.GetDcdVersionResponse:
        """A DCD version's fields (flattened technical names), for CSV header checks;
        ``required`` marks those every record must fill (``required_in_every_record``)."""
        principal = require_principal()
        if not principal.can(Permission.CATALOGUE_READ):
            raise forbidden()
        entry = await self.service.catalogue.get(request.dcd.dcd_code, request.dcd.version or None)
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

    async def ListReimbursedDcds(
        self, request: pb.ListReimbursedDcdsRequest, context: ServicerContext
    ) -> pb.ListReimbursedDcdsResponse:
        """The DCDs whose newest version binds fields for NIPPIN (the reimbursed registries)."""
        if not require_principal().can(Permission.CATALOGUE_READ):
            raise forbidden()
        return pb.ListReimbursedDcdsResponse(
            dcds=[
                pb.ReimbursedDcd(project_code=d.project_code, dcd_code=d.dcd_code, labels=dict(d.dcd_titles))
                for d in await self._reimbursed()
            ]
        )

    async def _reimbursed(self) -> list[Any]:
        found = []
        for _project, dcds in await self.service.catalogue.tree():
            for dcd, versions in dcds:
                if versions:
                    entry = await self.service.catalogue.get(dcd.code, versions[0].version)
                    if is_reimbursed(entry.definition):
                        found.append(entry.definition)
        return found

    async def ListReimbursedRegistrations(
        self, request: pb.ListReimbursedRegistrationsRequest, context: ServicerContext
    ) -> pb.ListReimbursedRegistrationsResponse:
        """An organisation's stored registrations of reimbursed DCDs (submitted at least
        once, not deleted), by id, each with whether it makes a NIPPIN message and its bound
        values that are no personal data (reconciliation for the nightly report)."""
        _require(require_principal(), Permission.REGISTRATION_READ, request.organisation_id)
        codes = [d.dcd_code for d in await self._reimbursed()]
        if not codes:
            return pb.ListReimbursedRegistrationsResponse()
        r = Registration
        columns = (r.id, r.dcd_code, r.dcd_version, r.registration_code, r.version, r.status, r.values)
        async with self.service.db.session([request.organisation_id]) as session:
            rows = (
                await session.execute(
                    select(*columns)
                    .where(
                        r.organisation_id == request.organisation_id,
                        r.dcd_code.in_(codes),
                        r.first_submitted_at.is_not(None),
                        r.status != Status.DELETED,
                        r.id > request.after_id,
                    )
                    .order_by(r.id)
                    .limit(min(request.limit or 1000, 5000))
                )
            ).all()
        rules: dict[tuple[str, str], Reimbursement] = {}
        out = []
        for row in rows:
            key = (row.dcd_code, row.dcd_version)
            rule = rules.get(key)
            if rule is None:
                rule = rules[key] = reimbursement((await self.service.catalogue.get(*key)).definition)
            out.append(
                pb.ReimbursedRegistration(
                    registration_id=row.id,
                    dcd_code=row.dcd_code,
                    registration_code=row.registration_code or "",
                    version=row.version,
                    status=row.status,
                    nippin_relevant=rule.makes_message(row.values),
                    values=rule.report_values(row.values),
                )
            )
        return pb.ListReimbursedRegistrationsResponse(registrations=out)
