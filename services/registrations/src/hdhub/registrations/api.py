"""Registrations' REST edge under /api/v1: registries and DCDs, validation, registrations
with their lifecycle, history, ETag / If-Match and Idempotency-Key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Header, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from hdhub.common.auth import Action as Permission
from hdhub.common.auth import Principal
from hdhub.common.errors import FieldProblem, Problem, forbidden, invalid, not_found
from hdhub.common.web import CurrentPrincipal, Language, Moment, Offset, request_fingerprint
from hdhub.registrations.domain.csv_template import csv_template
from hdhub.registrations.domain.dcd import DcdDefinition
from hdhub.registrations.domain.lifecycle import Action, Status
from hdhub.registrations.domain.period import Period
from hdhub.registrations.schemas import (
    DcdImported,
    DcdOut,
    DcdVersionRef,
    DeliveryOut,
    FieldIssue,
    HistoryEntry,
    RegistrationIn,
    RegistrationOut,
    RegistrationPage,
    RegistrationSummary,
    RegistryOut,
    ReviewIn,
    ValidateIn,
    ValidationOut,
    ValuesIn,
)
from hdhub.registrations.service import Actor

if TYPE_CHECKING:
    from hdhub.registrations.runtime import RegistrationsService

REVIEW_ACTIONS = {
    "corrections_needed": Action.REQUEST_CORRECTIONS,
    "approved": Action.APPROVE,
    "follow_up_needed": Action.REQUEST_FOLLOW_UP,
}


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(value: str | None, *, required: bool = True) -> int | None:
    """The version an If-Match names; 428 when it is required and missing."""
    if value is None or value.strip() == "*":
        if required and value is None:
            raise Problem(
                428,
                "if-match-required",
                "If-Match is required",
                "Send the ETag you read as If-Match to change a registration.",
            )
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not (tag.isascii() and tag.isdigit() and len(tag) <= 18):  # our ETags are versions: small ints
        raise Problem(400, "bad-if-match", "If-Match must be an ETag this API gave you")
    return int(tag)


def actor_of(principal: Principal, via: str = "api") -> Actor:
    return Actor(
        principal.client_id if principal.is_system and principal.client_id else principal.username, via
    )


def readable(principal: Principal) -> list[str]:
    return principal.organisations_for(Permission.REGISTRATION_READ)


def writable(principal: Principal) -> list[str]:
    return principal.organisations_for(Permission.REGISTRATION_WRITE)


def issues(items: list[Any]) -> list[FieldIssue]:
    return [FieldIssue(field=e.field, path=e.path, rule=e.rule, message=e.message) for e in items]


def csv_template_response(definition: DcdDefinition) -> Response:
    """The template as a download, UTF-8 with BOM as Excel wants it to read the accents."""
    name = f"{definition.project_code}_{definition.dcd_code}_{definition.version}_template.csv"
    return Response(
        "\ufeff" + csv_template(definition),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


SINCE = "Only those at or after this moment (ISO 8601; without an offset, UTC)."
UNTIL = "Only those before this moment (ISO 8601; without an offset, UTC)."


def refuse_empty_periods(**periods: Period | None) -> None:
    """A range whose end is not after its start is a mistake, not an empty answer."""
    problems = [
        FieldProblem(f"{name}_to", "period", f"{name}_to must be after {name}_from")
        for name, period in periods.items()
        if period is not None and period.empty
    ]
    if problems:
        raise invalid(problems)


def build_router(service: RegistrationsService) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    catalogue, registrations = service.catalogue, service.registrations

    def require_catalogue(principal: Principal) -> None:
        if not principal.can(Permission.CATALOGUE_READ):
            raise forbidden()

    # --- catalogue ------------------------------------------------------------------

    @router.get(
        "/registries",
        response_model=list[RegistryOut],
        tags=["catalogue"],
        summary="Registries, DCDs and versions",
    )
    async def list_registries(principal: CurrentPrincipal) -> list[RegistryOut]:
        require_catalogue(principal)
        return [
            RegistryOut(
                code=p.code,
                abbreviation=p.abbreviation,
                titles=p.titles,
                dcds=[
                    DcdOut(
                        code=d.code,
                        number=d.number,
                        titles=d.titles,
                        versions=[DcdVersionRef(version=v.version, imported_at=v.imported_at) for v in vs],
                    )
                    for d, vs in dcds
                ],
            )
            for p, dcds in await catalogue.tree()
        ]

    @router.post(
        "/dcds",
        status_code=201,
        tags=["catalogue"],
        summary="Import a DCD workbook (XLSForm)",
        responses={
            201: {"model": DcdImported, "description": "A new DCD version"},
            200: {"model": DcdImported, "description": "This version was imported before (`created` false)"},
        },
    )
    async def import_dcd(
        principal: CurrentPrincipal, workbook: Annotated[UploadFile, File()]
    ) -> JSONResponse:
        principal.require(Permission.CATALOGUE_WRITE)
        data = await workbook.read()
        entry, created = await catalogue.import_workbook(data, actor=principal.username)
        d = entry.definition
        body = {
            "project_code": d.project_code,
            "dcd": d.dcd_code,
            "version": str(d.version),
            "created": created,
        }
        return JSONResponse(body, status_code=201 if created else 200)

    @router.get("/dcds/{dcd}/versions/{version}", tags=["catalogue"], summary="A DCD version's definition")
    async def get_dcd_version(dcd: str, version: str, principal: CurrentPrincipal) -> dict[str, Any]:
        require_catalogue(principal)
        entry = await catalogue.get(dcd, None if version == "latest" else version)
        return entry.definition.to_json()

    @router.get(
        "/dcds/{dcd}/versions/{version}/template.csv",
        tags=["catalogue"],
        summary="The CSV template of a DCD version: the Upload Center's header, a commented line of hints",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def get_csv_template(dcd: str, version: str, principal: CurrentPrincipal) -> Response:
        require_catalogue(principal)
        entry = await catalogue.get(dcd, None if version == "latest" else version)
        return csv_template_response(entry.definition)

    @router.get("/dcds/{dcd}/versions/{version}/fields/{field}", tags=["catalogue"], summary="One field")
    async def get_field(dcd: str, version: str, field: str, principal: CurrentPrincipal) -> dict[str, Any]:
        require_catalogue(principal)
        entry = await catalogue.get(dcd, None if version == "latest" else version)
        try:
            return entry.definition.field(field).to_json()
        except KeyError:
            raise not_found(f"Field {field}") from None

    @router.get(
        "/dcds/{dcd}/versions/{version}/codelists/{name}", tags=["catalogue"], summary="One code list"
    )
    async def get_codelist(dcd: str, version: str, name: str, principal: CurrentPrincipal) -> dict[str, Any]:
        require_catalogue(principal)
        entry = await catalogue.get(dcd, None if version == "latest" else version)
        try:
            return entry.definition.codelist(name).to_json()
        except KeyError:
            raise not_found(f"Code list {name}") from None

    @router.post(
        "/dcds/{dcd}/versions/{version}/validate",
        response_model=ValidationOut,
        tags=["catalogue"],
        summary="Validate a record without storing it",
    )
    async def validate(
        dcd: str, version: str, body: ValidateIn, principal: CurrentPrincipal, lang: Language
    ) -> ValidationOut:
        require_catalogue(principal)
        entry = await catalogue.get(dcd, None if version == "latest" else version)
        result = entry.compiled.validate(body.values, lang=lang)
        return ValidationOut(
            valid=result.ok,
            values=result.values,
            errors=issues(result.errors),
            warnings=issues(result.warnings),
        )

    # --- registrations --------------------------------------------------------------

    @router.post(
        "/registrations",
        status_code=201,
        response_model=RegistrationOut,
        tags=["registrations"],
        summary="Create (or replace by business key) a registration, optionally submitting it",
        responses={
            200: {
                "model": RegistrationOut,
                "description": "An existing registration with the same business key was updated",
            }
        },
    )
    async def create(
        body: RegistrationIn,
        request: Request,
        principal: CurrentPrincipal,
        lang: Language,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        principal.require(Permission.REGISTRATION_WRITE, body.organisation_id)

        async def effect(session: Any = None) -> tuple[int, Any, dict[str, str]]:
            outcome = await registrations.put_record(
                session=session,
                organisation_id=body.organisation_id,
                dcd_code=body.dcd,
                version=body.dcd_version,
                values=body.values,
                submit=body.submit,
                lang=lang,
                actor=actor_of(principal),
                replace_submitted=False,
            )
            reg = outcome.registration
            out = RegistrationOut.full(reg, outcome.warnings).model_dump(mode="json")
            headers = {"ETag": etag(reg.version), "Location": f"/api/v1/registrations/{reg.id}"}
            return (201 if outcome.created else 200), out, headers

        if idempotency_key is None:
            status, out, headers = await effect()
            return JSONResponse(out, status_code=status, headers=headers)
        return await registrations.put_idempotently(
            body.organisation_id,
            key=idempotency_key,
            fingerprint=request_fingerprint("POST", request.url.path, body.model_dump()),
            effect=effect,
        )

    @router.get(
        "/registrations",
        response_model=RegistrationPage,
        tags=["registrations"],
        summary="Search registrations",
    )
    async def search(
        principal: CurrentPrincipal,
        organisation_id: str | None = None,
        dcd: str | None = None,
        status: Status | None = None,
        business_key: str | None = None,
        include_deleted: bool = False,
        created_from: Annotated[Moment | None, Query(description=SINCE)] = None,
        created_to: Annotated[Moment | None, Query(description=UNTIL)] = None,
        updated_from: Annotated[Moment | None, Query(description=SINCE)] = None,
        updated_to: Annotated[Moment | None, Query(description=UNTIL)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Offset = 0,
    ) -> RegistrationPage:
        scope = readable(principal)
        if organisation_id is not None:
            if organisation_id not in scope:
                raise forbidden()
            scope = [organisation_id]
        refuse_empty_periods(
            created=Period.of(created_from, created_to), updated=Period.of(updated_from, updated_to)
        )
        items, total = await registrations.search(
            scope,
            dcd_code=dcd,
            status=status,
            business_key=business_key,
            include_deleted=include_deleted,
            created=Period.of(created_from, created_to),
            updated=Period.of(updated_from, updated_to),
            limit=limit,
            offset=offset,
        )
        return RegistrationPage(
            items=[RegistrationSummary.of(r) for r in items], total=total, limit=limit, offset=offset
        )

    @router.get("/registrations/{registration_id}", response_model=RegistrationOut, tags=["registrations"])
    async def get(registration_id: str, principal: CurrentPrincipal, response: Response) -> RegistrationOut:
        reg = await registrations.get(readable(principal), registration_id)
        response.headers["ETag"] = etag(reg.version)
        return RegistrationOut.full(
            reg, superseded_by=await catalogue.superseded_by(reg.dcd_code, reg.dcd_version)
        )

    @router.put(
        "/registrations/{registration_id}",
        response_model=RegistrationOut,
        tags=["registrations"],
        summary="Save new values",
    )
    async def put(
        registration_id: str,
        body: ValuesIn,
        principal: CurrentPrincipal,
        response: Response,
        lang: Language,
        if_match: Annotated[str | None, Header()] = None,
    ) -> RegistrationOut:
        outcome = await registrations.update(
            organisations=writable(principal),
            registration_id=registration_id,
            expected_version=parse_if_match(if_match),  # type: ignore[arg-type]
            values=body.values,
            lang=lang,
            actor=actor_of(principal),
            dcd_version=body.dcd_version,
        )
        response.headers["ETag"] = etag(outcome.registration.version)
        return RegistrationOut.full(outcome.registration, outcome.warnings)

    async def transition(
        registration_id: str,
        action: Action,
        principal: Principal,
        if_match: str | None,
        lang: str,
        response: Response,
    ) -> RegistrationOut:
        reg = await registrations.act(
            organisations=writable(principal),
            registration_id=registration_id,
            expected_version=parse_if_match(if_match),
            action=action,
            actor=actor_of(principal),
            lang=lang,
        )
        response.headers["ETag"] = etag(reg.version)
        return RegistrationOut.full(reg)

    @router.post(
        "/registrations/{registration_id}/submit",
        status_code=202,
        response_model=RegistrationOut,
        tags=["registrations"],
        summary="Submit: Sending, then Submitted once processed",
    )
    async def submit(
        registration_id: str,
        principal: CurrentPrincipal,
        response: Response,
        lang: Language,
        if_match: Annotated[str | None, Header()] = None,
    ) -> RegistrationOut:
        return await transition(registration_id, Action.SUBMIT, principal, if_match, lang, response)

    @router.post(
        "/registrations/{registration_id}/reopen", response_model=RegistrationOut, tags=["registrations"]
    )
    async def reopen(
        registration_id: str,
        principal: CurrentPrincipal,
        response: Response,
        lang: Language,
        if_match: Annotated[str | None, Header()] = None,
    ) -> RegistrationOut:
        return await transition(registration_id, Action.REOPEN, principal, if_match, lang, response)

    @router.delete("/registrations/{registration_id}", response_model=RegistrationOut, tags=["registrations"])
    async def delete(
        registration_id: str,
        principal: CurrentPrincipal,
        response: Response,
        lang: Language,
        if_match: Annotated[str | None, Header()] = None,
    ) -> RegistrationOut:
        return await transition(registration_id, Action.DELETE, principal, if_match, lang, response)

    @router.post(
        "/registrations/{registration_id}/review",
        response_model=RegistrationOut,
        tags=["registrations"],
        summary="The central platform's decision: corrections needed, approved or follow-up needed",
    )
    async def review(
        registration_id: str,
        body: ReviewIn,
        principal: CurrentPrincipal,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> RegistrationOut:
        principal.require(Permission.REGISTRATION_REVIEW)
        organisation = await service.organisation_of(registration_id)
        principal.require(Permission.REGISTRATION_REVIEW, organisation)
        reg = await registrations.act(
            organisations=[organisation],
            registration_id=registration_id,
            expected_version=parse_if_match(if_match, required=False),
            action=REVIEW_ACTIONS[body.decision],
            actor=actor_of(principal, "review"),
            comment=body.comment,
        )
        response.headers["ETag"] = etag(reg.version)
        return RegistrationOut.full(reg)

    @router.get(
        "/registrations/{registration_id}/history", response_model=list[HistoryEntry], tags=["registrations"]
    )
    async def history(registration_id: str, principal: CurrentPrincipal) -> list[HistoryEntry]:
        return [
            HistoryEntry.of(v, values)
            for v, values in await registrations.history(readable(principal), registration_id)
        ]

    # --- delivery to the central platform (delivery.py) ------------------------------
    delivery = service.delivery

    @router.get("/registrations/{registration_id}/delivery", response_model=DeliveryOut, tags=["delivery"])
    async def registration_delivery(registration_id: str, principal: CurrentPrincipal) -> DeliveryOut:
        """Where this registration's delivery stands; 404 before its first submission."""
        reg = await registrations.get(readable(principal), registration_id)
        found = (await delivery.of([reg.organisation_id], [reg.id])).get(reg.id)
        if found is None:
            raise not_found("Delivery")
        return DeliveryOut.of(found, reg)

    @router.get(
        "/deliveries",
        response_model=list[DeliveryOut],
        tags=["delivery"],
        summary="An organisation's deliveries",
    )
    async def deliveries(
        principal: CurrentPrincipal,
        organisation_id: Annotated[str, Query(max_length=64)],
        state: Annotated[str | None, Query(pattern="^(sending|pending|ok|nok|parked)$")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Offset = 0,
    ) -> list[DeliveryOut]:
        """The organisation's deliveries, newest change first; ``state=parked`` lists the ones
        whose resends stopped."""
        principal.require(Permission.REGISTRATION_READ, organisation_id)
        rows = await delivery.listing([organisation_id], state=state, limit=limit, offset=offset)
        return [DeliveryOut.of(d, r) for d, r in rows]

    @router.get(
        "/operator/deliveries",
        response_model=list[DeliveryOut],
        tags=["delivery"],
        summary="Deliveries across organisations",
    )
    async def operator_deliveries(
        principal: CurrentPrincipal,
        state: Annotated[str | None, Query(pattern="^(sending|pending|ok|nok|parked)$")] = "parked",
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Offset = 0,
    ) -> list[DeliveryOut]:
        """For the operator: deliveries of every organisation (parked ones by default)."""
        if not principal.is_operator:
            raise forbidden("Only the operator sees deliveries across organisations.")
        rows = await delivery.listing(None, state=state, limit=limit, offset=offset)
        return [DeliveryOut.of(d, r) for d, r in rows]

    return router
