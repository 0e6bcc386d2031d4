"""HL7 FHIR R4 at ``/fhir``: each DCD version a ``Questionnaire``, registrations as
``QuestionnaireResponse`` resources (docs/hospital-it.md, "HL7 FHIR R4").

Everything a response carries goes through the same engine, lifecycle, business keys,
idempotency and tenancy as ``/api/v1``: a QuestionnaireResponse is one more way to write a
record, not a second store. Errors are ``OperationOutcome`` resources
(:mod:`hdhub.common.fhir_outcome`), one issue per field with the item's ``linkId`` in
``expression`` and the message in the caller's language.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.auth import Action, Principal
from hdhub.common.config import platform
from hdhub.common.errors import FieldProblem, Problem, forbidden, not_found
from hdhub.common.fhir_outcome import FHIR_MEDIA_TYPE, operation_outcome
from hdhub.common.limits import load_json
from hdhub.common.web import CurrentPrincipal, Language, request_fingerprint
from hdhub.registrations.catalogue.service import Catalogue, CatalogueEntry
from hdhub.registrations.deps import CatalogueDep, CatalogueReader, Readable, RegistrationsDep, actor_of
from hdhub.registrations.fhir import responses as qr
from hdhub.registrations.fhir.questionnaire import canonical, questionnaire_id, to_questionnaire
from hdhub.registrations.records.api import Answer, store_once
from hdhub.registrations.records.period import Period
from hdhub.registrations.records.service import Checked, Registrations

router = APIRouter(prefix="/fhir", tags=["HL7 FHIR R4"])
FHIR_VERSION = "4.0.1"
_FHIR_JSON = {"content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}}}
_RESOURCE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            FHIR_MEDIA_TYPE: {"schema": {"type": "object", "description": "A QuestionnaireResponse resource"}}
        },
    }
}
_STATUSES = {"in-progress": ["open"], "completed": None, "entered-in-error": ["deleted"]}
_AUTHORED = re.compile(r"^(eq|ge|gt|le|lt)?(\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)$")


def _base() -> str:
    return platform().public_url.rstrip("/")


def fhir(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_MEDIA_TYPE, headers=headers)


# --- capability and questionnaires --------------------------------------------------------


@router.get(
    "/metadata",
    summary="The CapabilityStatement: what this FHIR R4 endpoint does",
    response_class=JSONResponse,
    responses={200: _FHIR_JSON},
)
async def metadata() -> JSONResponse:
    from fhirclient.models.capabilitystatement import CapabilityStatement

    def search(*names: tuple[str, str, str]) -> list[dict[str, str]]:
        return [{"name": n, "type": t, "documentation": d} for n, t, d in names]

    body: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-03",
        "kind": "instance",
        "software": {"name": "hdhub"},
        "implementation": {"description": "hdhub registrations", "url": f"{_base()}/fhir"},
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_MEDIA_TYPE, "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer tokens from the installation's issuer, as on /api/v1.",
                },
                "interaction": [{"code": "batch"}],
                "resource": [
                    {
                        "type": "Questionnaire",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": search(
                            ("url", "uri", "The DCD's canonical URL"),
                            ("name", "string", "The DCD code"),
                            ("version", "token", "The DCD version"),
                        ),
                    },
                    {
                        "type": "QuestionnaireResponse",
                        "interaction": [{"code": "read"}, {"code": "create"}, {"code": "search-type"}],
                        "conditionalCreate": False,
                        "searchParam": search(
                            (
                                "questionnaire",
                                "reference",
                                "The Questionnaire's canonical URL, |version optional",
                            ),
                            ("status", "token", "in-progress, completed or entered-in-error"),
                            ("authored", "date", "With ge, gt, le, lt or eq"),
                            ("identifier", "token", "The business key"),
                        ),
                        "operation": [
                            {
                                "name": "validate",
                                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                            }
                        ],
                    },
                ],
            }
        ],
    }
    CapabilityStatement(body, strict=True)
    return fhir(body)


def _parse_id(questionnaire: str) -> tuple[str, str]:
    match = re.fullmatch(r"(.+)-(\d+\.\d+\.\d+)", questionnaire)
    if not match:
        raise not_found("Questionnaire")
    return match.group(1), match.group(2)


@router.get(
    "/Questionnaire/{questionnaire}",
    summary="A DCD version as a Questionnaire (`ANGIO_HOSP-1.0.0`), texts in the caller's language",
    response_class=JSONResponse,
    responses={200: _FHIR_JSON},
)
async def read_questionnaire(
    questionnaire: str, _: CatalogueReader, catalogue: CatalogueDep, lang: Language
) -> JSONResponse:
    dcd, version = _parse_id(questionnaire)
    try:
        entry = await catalogue.find(dcd, version)
    except Problem as exc:
        raise not_found("Questionnaire") from exc
    return fhir(to_questionnaire(entry.definition, base=_base(), lang=lang))


@router.get(
    "/Questionnaire",
    summary="Search the Questionnaires (every DCD version)",
    response_class=JSONResponse,
    responses={200: _FHIR_JSON},
)
async def search_questionnaires(
    request: Request,
    _: CatalogueReader,
    catalogue: CatalogueDep,
    lang: Language,
    url: Annotated[str | None, Query(max_length=500)] = None,
    name: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[str | None, Query(max_length=32)] = None,
) -> JSONResponse:
    base = _base()
    wanted = url.partition("|")[0] if url else None
    entries: list[CatalogueEntry] = []
    for newest in await catalogue.newest():
        code = newest.definition.dcd_code
        if name and name.lower() not in code.lower():
            continue
        if wanted and wanted != canonical(base, code):
            continue
        for each in await _versions(catalogue, code):
            if version and str(each.definition.version) != version:
                continue
            entries.append(each)
    resources = [to_questionnaire(e.definition, base=base, lang=lang) for e in entries]
    return fhir(_bundle(request, resources, len(resources), "Questionnaire", 0, len(resources) or 1))


async def _versions(catalogue: Catalogue, code: str) -> list[CatalogueEntry]:
    for _project, dcds in await catalogue.tree():
        for dcd, versions in dcds:
            if dcd.code == code:
                return [await catalogue.get(code, v.version) for v in versions]
    return []


# --- questionnaire responses ------------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    return qr.parsed(load_json(await request.body()))


async def _record(
    catalogue: Catalogue, body: dict[str, Any], lang: str
) -> tuple[CatalogueEntry, bool, dict[str, Any]]:
    """The DCD version a response names, whether it submits, and the record its answers make."""
    dcd, version = qr.questionnaire_of(body)
    try:
        entry = await catalogue.find(dcd, version)
    except Problem as exc:
        if exc.status != 404:
            raise
        raise Problem(422, "fhir-questionnaire-unknown", "No such Questionnaire", errors=[]) from None
    return entry, qr.submitting(body), qr.values_from(entry.definition, body, lang)


def _check(
    registrations: Registrations, entry: CatalogueEntry, values: dict[str, Any], lang: str, submitting: bool
) -> Awaitable[Checked]:
    return registrations.checked(
        dcd_code=entry.definition.dcd_code,
        version=str(entry.version),
        values=values,
        lang=lang,
        submitting=submitting,
    )


async def _create(
    principal: Principal,
    registrations: Registrations,
    catalogue: Catalogue,
    body: dict[str, Any],
    lang: str,
    *,
    idempotency_key: str | None = None,
) -> JSONResponse:
    organisation = qr.organisation_of(body, principal.organisations_for(Action.REGISTRATION_WRITE))
    principal.require(Action.REGISTRATION_WRITE, organisation)
    entry, submitting, values = await _record(catalogue, body, lang)
    # Before a replayed Idempotency-Key too: its answer is the first request's registration.
    principal.require_registry(Action.REGISTRATION_WRITE, organisation, entry.definition.project_code)
    base = _base()

    async def store(session: AsyncSession, record: Checked) -> Answer:
        outcome = await registrations.put(
            session,
            organisation_id=organisation,
            record=record,
            submit=submitting,
            actor=actor_of(principal, "fhir"),
            replace_submitted=True,
        )
        reg = outcome.registration
        resource = qr.to_response(record.entry.definition, reg, base=base)
        headers = {
            "Location": f"{base}/fhir/QuestionnaireResponse/{reg.id}",
            "ETag": f'W/"{reg.version}"',
        }
        return (201 if outcome.created else 200), resource, headers

    # Validated once, where store_once says: before the transaction, or in it with an
    # Idempotency-Key (so a replay gets the first answer).
    answer = await store_once(
        registrations,
        organisation,
        key=idempotency_key,
        fingerprint=lambda: request_fingerprint("POST", "/fhir/QuestionnaireResponse", body),
        check=lambda: _check(registrations, entry, values, lang, submitting),
        store=store,
    )
    answer.headers["content-type"] = FHIR_MEDIA_TYPE
    return answer


@router.post(
    "/QuestionnaireResponse",
    status_code=201,
    summary="Create a registration from a QuestionnaireResponse, or update the one with its business key",
    response_class=JSONResponse,
    openapi_extra=_RESOURCE_BODY,
    responses={
        201: _FHIR_JSON,
        200: {"description": "The registration with this business key, updated", **_FHIR_JSON},
    },
)
async def create_response(
    request: Request,
    principal: CurrentPrincipal,
    registrations: RegistrationsDep,
    catalogue: CatalogueDep,
    lang: Language,
) -> JSONResponse:
    body = await _body(request)
    return await _create(
        principal,
        registrations,
        catalogue,
        body,
        lang,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )


@router.post(
    "/QuestionnaireResponse/$validate",
    summary="Validate a QuestionnaireResponse as a submission would, storing nothing",
    response_class=JSONResponse,
    openapi_extra=_RESOURCE_BODY,
    responses={200: _FHIR_JSON},
)
async def validate_response(
    request: Request,
    _: CatalogueReader,
    registrations: RegistrationsDep,
    catalogue: CatalogueDep,
    lang: Language,
) -> JSONResponse:
    body = await _body(request)
    try:
        entry, submitting, values = await _record(catalogue, body, lang)
        await _check(registrations, entry, values, lang, submitting)
    except Problem as exc:
        if exc.status != 422:
            raise
        # $validate answers 200 with the issues: the request worked, the resource is not valid.
        return fhir(operation_outcome(exc.body()))
    ok = {"severity": "information", "code": "informational", "details": {"text": "All OK"}}
    return fhir({"resourceType": "OperationOutcome", "issue": [ok]})


@router.get(
    "/QuestionnaireResponse/{registration_id}",
    summary="A registration as a QuestionnaireResponse",
    response_class=JSONResponse,
    responses={200: _FHIR_JSON},
)
async def read_response(
    registration_id: Annotated[str, Path(max_length=64)],
    readable: Readable,
    registrations: RegistrationsDep,
    catalogue: CatalogueDep,
) -> JSONResponse:
    if not readable:
        raise forbidden()
    reg = await registrations.get(readable, registration_id)
    d = (await catalogue.get(reg.dcd_code, reg.dcd_version)).definition
    return fhir(qr.to_response(d, reg, base=_base()), headers={"ETag": f'W/"{reg.version}"'})


def _authored_refused() -> Problem:
    message = "authored takes a date with a prefix (ge2025-01-01)"
    return Problem(
        400,
        "fhir-search",
        message,
        errors=[FieldProblem(field="authored", rule="fhir-search", message=message)],
    )


def _authored(values: list[str]) -> Period | None:
    start: datetime | None = None
    end: datetime | None = None
    for value in values:
        match = _AUTHORED.match(value)
        if not match:
            raise _authored_refused()
        prefix, moment = match.group(1) or "eq", match.group(2)
        when = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        if prefix in ("ge", "gt", "eq"):
            start = when
        if prefix in ("le", "lt", "eq"):
            end = when if "T" in moment or prefix == "lt" else when.replace(hour=23, minute=59, second=59)
    return Period.of(start, end)


@router.get(
    "/QuestionnaireResponse",
    summary="Search the organisation's QuestionnaireResponses",
    response_class=JSONResponse,
    responses={200: _FHIR_JSON},
)
async def search_responses(
    request: Request,
    readable: Readable,
    registrations: RegistrationsDep,
    catalogue: CatalogueDep,
    questionnaire: Annotated[str | None, Query(max_length=500)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    authored: Annotated[list[str] | None, Query(max_length=2)] = None,
    identifier: Annotated[str | None, Query(max_length=200)] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=500)] = 50,
    offset: Annotated[int, Query(alias="_offset", ge=0, le=1_000_000)] = 0,
) -> JSONResponse:
    if not readable:
        raise forbidden()
    dcd = version = None
    if questionnaire:
        dcd, version = qr.questionnaire_of({"questionnaire": questionnaire})
    statuses = _STATUSES.get(status or "completed", None) if status else None
    if status and status not in _STATUSES:
        raise Problem(
            400,
            "fhir-search",
            "status is in-progress, completed or entered-in-error",
            errors=[
                FieldProblem(
                    field="status",
                    rule="fhir-search",
                    message="status is in-progress, completed or entered-in-error",
                )
            ],
        )
    try:
        period = _authored(authored or [])
    except ValueError:
        raise _authored_refused() from None
    items, total = await registrations.search(
        readable,
        dcd_code=await catalogue.resolve_dcd(dcd) if dcd else None,
        dcd_version=version,
        status=statuses[0] if statuses else None,
        include_deleted=status == "entered-in-error",
        # completed: every status but a draft (and a deleted one), counted and paged in SQL
        exclude_statuses=("open",) if status == "completed" else (),
        business_key=identifier.rpartition("|")[2] if identifier else None,
        updated=period,
        limit=count,
        offset=offset,
        by_creation=True,
    )
    base = _base()
    resources = []
    for reg in items:
        d = (await catalogue.get(reg.dcd_code, reg.dcd_version)).definition
        resources.append(qr.to_response(d, reg, base=base))
    return fhir(_bundle(request, resources, total, "QuestionnaireResponse", offset, count))


def _bundle(
    request: Request, resources: list[dict[str, Any]], total: int, kind: str, offset: int, count: int
) -> dict[str, Any]:
    base = _base()
    self_url = f"{base}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
    links = [{"relation": "self", "url": self_url}]
    if offset + count < total:
        query = dict(request.query_params)
        query["_offset"] = str(offset + count)
        query["_count"] = str(count)
        links.append(
            {
                "relation": "next",
                "url": f"{base}{request.url.path}?{urlencode(query)}",
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {"fullUrl": f"{base}/fhir/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


# --- batch ------------------------------------------------------------------------------------


@router.post(
    "",
    summary="A batch Bundle of QuestionnaireResponses: each entry stored or refused on its own",
    response_class=JSONResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FHIR_MEDIA_TYPE: {"schema": {"type": "object", "description": "A Bundle of type batch"}}
            },
        }
    },
    responses={200: _FHIR_JSON},
)
async def batch(
    request: Request,
    principal: CurrentPrincipal,
    registrations: RegistrationsDep,
    catalogue: CatalogueDep,
    lang: Language,
) -> JSONResponse:
    bundle = load_json(await request.body())
    if (
        not isinstance(bundle, dict)
        or bundle.get("resourceType") != "Bundle"
        or bundle.get("type") != "batch"
    ):
        raise Problem(400, "fhir-bundle", "The body must be a Bundle of type batch")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise Problem(
            400,
            "fhir-bundle",
            "Bundle.entry must be a list of entries",
            errors=[
                FieldProblem(
                    field="Bundle.entry",
                    rule="fhir-structure",
                    message="Bundle.entry must be a list of entries",
                )
            ],
        )
    if len(entries) > 1000:
        raise Problem(
            400,
            "fhir-bundle",
            "A batch holds at most 1,000 entries",
            errors=[
                FieldProblem(
                    field="Bundle.entry", rule="max-entries", message="A batch holds at most 1,000 entries"
                )
            ],
        )
    answered = []
    for entry in entries:
        answered.append(await _batch_entry(entry, principal, registrations, catalogue, lang))
    return fhir({"resourceType": "Bundle", "type": "batch-response", "entry": answered})


async def _batch_entry(
    entry: Any, principal: Principal, registrations: Registrations, catalogue: Catalogue, lang: str
) -> dict[str, Any]:
    try:
        if not isinstance(entry, dict):
            raise Problem(400, "fhir-bundle", "An entry must be an object")
        sent = entry.get("request") or {}
        if sent.get("method") != "POST" or str(sent.get("url", "")).strip("/") != "QuestionnaireResponse":
            raise Problem(400, "fhir-bundle", "Each entry is a POST of a QuestionnaireResponse")
        body = qr.parsed(entry.get("resource"))
        answer = await _create(principal, registrations, catalogue, body, lang)
        resource = load_json(bytes(answer.body))
        status = "201 Created" if answer.status_code == 201 else "200 OK"
        return {
            "resource": resource,
            "response": {
                "status": status,
                "location": answer.headers.get("location", ""),
                "etag": answer.headers.get("etag", ""),
            },
        }
    except Problem as exc:
        return {"response": {"status": str(exc.status), "outcome": operation_outcome(exc.body())}}


__all__ = ["questionnaire_id", "router"]
