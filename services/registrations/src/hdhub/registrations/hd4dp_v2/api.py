"""HD4DP v2-compatible endpoints under /proxy/api, call by call as healthdata.be's HD4DP v2
S2S documentation describes them, so integrations written for HD4DP 2.0 can point at hdhub:
organisations, the DCD menu and its translations, payload definitions, field and code-list
look-ups, submission (202 with the business key) and reading back what was submitted.

Parameters keep v2's kebab-case names (``organization-id``, ``dcd-id``, ``dcd-version-id``,
``field-name``, ``code-list-id``, ``language-id``) and v2's defaults: the latest DCD version
when none is given, English when no language is. ``dcd-id`` accepts the DCD's number or
its code. docs/hospital-it.md keeps the table of documented calls and hdhub's answers,
with every deliberate difference and why.
"""

from __future__ import annotations

from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.auth import Action
from hdhub.common.errors import FieldProblem, Problem, forbidden
from hdhub.common.grpc import channel, problem_from_rpc_error
from hdhub.common.limits import load_json
from hdhub.common.web import LANGUAGES, CurrentPrincipal, Language, request_fingerprint
from hdhub.common.xml import XML_MEDIA_TYPE, dumps, is_xml, parse_record, wants_xml, xml_responses
from hdhub.proto.identity.v1 import identity_pb2, identity_pb2_grpc
from hdhub.registrations.catalogue.api import csv_template_response
from hdhub.registrations.catalogue.service import (
    Catalogue,
    CatalogueEntry,
    codelist_named,
    field_named,
    pinned,
)
from hdhub.registrations.deps import (
    CatalogueDep,
    CatalogueReader,
    IdempotencyKey,
    Readable,
    RegistrationsDep,
    actor_of,
)
from hdhub.registrations.engine.dcd import translate
from hdhub.registrations.engine.v2form import codes_from_ids
from hdhub.registrations.engine.validation import ROW_STATUSES
from hdhub.registrations.hd4dp_v2.schemas import (
    SUBMIT_BODY_SCHEMA,
    CodeListItem,
    DataSrcType,
    FieldDefinition,
    MenuDcd,
    MenuProject,
    MenuTranslation,
    MenuVersion,
    Organization,
    PayloadDefinition,
    SadmiDevice,
    SubmitAccepted,
    SubmittedPage,
    code_list_items,
    field_definition,
    payload_fields,
    submitted_record,
)
from hdhub.registrations.hd4dp_v2.xsd import dcd_xsd, problem_xsd
from hdhub.registrations.records.api import Answer, store_once
from hdhub.registrations.records.lifecycle import RegistrationStatus
from hdhub.registrations.records.service import Checked

router = APIRouter(prefix="/proxy/api", tags=["HD4DP v2 compatible"])

# Columns a v2 CSV / JSON record may carry besides the DCD's fields (DOMAIN.md).
META_FIELDS = ("STATUS", "TX_AUTHOR_GR", "TX_AUTHOR", "TX_COAUTHOR")

DcdId = Annotated[
    str, Query(alias="dcd-id", min_length=1, max_length=64, description="The DCD's number or code")
]
OptionalDcdId = Annotated[
    str | None, Query(alias="dcd-id", min_length=1, max_length=64, description="The DCD's number or code")
]
DcdVersionId = Annotated[
    str | None,
    Query(
        alias="dcd-version-id",
        min_length=1,
        max_length=32,
        description="A semantic version or latest; latest when absent",
    ),
]
LanguageId = Annotated[
    str | None,
    Query(alias="language-id", min_length=2, max_length=8, description="en, fr, nl or de; en when absent"),
]
OrganizationId = Annotated[str, Query(alias="organization-id", min_length=1, max_length=64)]


def _lang(*candidates: str | None) -> str:
    """The first language given that hdhub has, else English (v2's default)."""
    for candidate in candidates:
        if candidate and candidate[:2].lower() in LANGUAGES:
            return candidate[:2].lower()
    return "en"


XSD_MEDIA_TYPE = "application/xml"


def _xml_answer(request: Request, root: str, answer: JSONResponse) -> Response:
    """``answer`` as the XML ``<root>`` when the caller wants XML (hdhub.common.xml)."""
    if not wants_xml(request):
        return answer
    headers = {k: v for k, v in answer.headers.items() if k.lower() not in ("content-length", "content-type")}
    return Response(
        dumps(root, load_json(bytes(answer.body))),
        status_code=answer.status_code,
        media_type=XML_MEDIA_TYPE,
        headers=headers,
    )


def _record(raw: bytes, content_type: str | None) -> dict[str, Any]:
    if is_xml(content_type):
        return parse_record(raw)
    # Read whatever else the Content-Type says (v2 clients send JSON as text/plain too), so
    # the JSON rules of every other route (depth, surrogates, our own words) apply by hand.
    record = load_json(raw)
    if not isinstance(record, dict):
        raise Problem(400, "malformed-json", "The request body must be a JSON object of field values")
    return record


async def _fitting(
    catalogue: Catalogue, dcd_id: str | None, version: str | None, record: dict[str, Any]
) -> CatalogueEntry:
    """The DCD named, else the one DCD whose newest version has every key of the record."""
    if dcd_id is not None:
        return await catalogue.find(dcd_id, version)
    keys = set(record) - set(META_FIELDS)
    fits = [e for e in await catalogue.newest() if keys <= set(e.definition.flat_field_names())]
    if len(fits) != 1:
        raise Problem(
            422,
            "dcd-id-required",
            "Name the DCD with dcd-id",
            f"The record's fields fit {len(fits)} DCDs; dcd-id may be left out only when they fit exactly one.",
        )
    return await catalogue.get(fits[0].definition.dcd_code, version)


@router.get(
    "/organizations",
    response_model=list[Organization],
    summary="Organisations the caller may act for (a token is needed: see docs/hospital-it.md)",
)
async def organizations(principal: CurrentPrincipal) -> list[Organization]:
    # The caller's token (verified here) is forwarded; identity answers from it.
    assert principal.subject
    stub = identity_pb2_grpc.IdentityServiceStub(channel("identity"))
    try:
        reply = await stub.ListMyOrganisations(identity_pb2.ListMyOrganisationsRequest())
    except grpc.aio.AioRpcError as exc:
        raise problem_from_rpc_error(exc) from exc
    return [
        Organization(
            id=m.organisation.id,
            name=m.organisation.title,
            identificationType="NIHDI",
            identificationValue=m.organisation.nihdi_number,
            roles=list(m.roles),
        )
        for m in reply.memberships
    ]


@router.get(
    "/dcd/menu/structure",
    response_model=list[MenuProject],
    summary="Projects, their DCDs and versions (no token needed: the catalogue is public)",
)
async def menu(
    request: Request,
    catalogue: CatalogueDep,
    organization_id: Annotated[str | None, Query(alias="organization-id", max_length=64)] = None,  # noqa: ARG001 (accepted, same answer)
    language_id: LanguageId = None,
    language: Annotated[str | None, Query(max_length=8, description="Same as language-id")] = None,
) -> list[MenuProject]:
    """Public, like the documentation's: registries, DCDs, versions and their names,
    which healthdata.be publishes. The same for every organisation (hdhub offers every
    registry to all), so ``organization-id`` is accepted and changes nothing; a token,
    if sent, is not looked at."""
    lang = _lang(language_id, language, request.headers.get("accept-language"))
    return [
        MenuProject(
            projectId=p.code,
            projectAbbreviation=p.abbreviation,
            name=translate(p.titles, lang) or p.code,
            dcds=[
                MenuDcd(
                    dcdId=d.number,
                    dcdCode=d.code,
                    name=translate(d.titles, lang) or d.code,
                    versions=[MenuVersion(dcdVersionId=v.version, version=v.version) for v in vs],
                )
                for d, vs in dcds
            ],
        )
        for p, dcds in await catalogue.tree()
    ]


@router.get(
    "/dcd/menu-translations",
    response_model=list[MenuTranslation],
    summary="A DCD's menu texts per language",
)
async def menu_translations(
    _: CatalogueReader,
    catalogue: CatalogueDep,
    dcd_id: DcdId,
    dcd_version_id: DcdVersionId = None,
    language_id: LanguageId = None,
) -> list[MenuTranslation]:
    d = (await catalogue.find(dcd_id, dcd_version_id)).definition
    langs = [_lang(language_id)] if language_id else list(d.languages)
    return [
        MenuTranslation(
            languageId=lang,
            projectId=d.project_code,
            projectName=translate(d.project_titles, lang, d.default_language) or d.project_code,
            dcdId=d.dcd_number,
            dcdName=d.title(lang),
            dcdVersionId=str(d.version),
        )
        for lang in langs
    ]


@router.get(
    "/dcd/payload/definition",
    response_model=PayloadDefinition,
    summary="Every key a record may carry, with its fieldType (latest version when none is given)",
    description="JSON, or `<payloadDefinition>` with `Accept: application/xml` (see `/dcd/payload/xsd`).",
    responses=xml_responses(200, "payloadDefinition"),
)
async def definition(
    request: Request,
    _: CatalogueReader,
    catalogue: CatalogueDep,
    dcd_id: DcdId,
    version: Annotated[
        str | None, Query(min_length=1, max_length=32, description="latest when absent")
    ] = None,
    dcd_version_id: DcdVersionId = None,
    language_id: LanguageId = None,
) -> Any:
    d = (await catalogue.find(dcd_id, version or dcd_version_id)).definition
    lang = _lang(language_id)
    answer = PayloadDefinition(
        dcdId=d.dcd_number,
        dcdCode=d.dcd_code,
        dcdVersionId=str(d.version),
        projectId=d.project_code,
        languageId=lang,
        businessKey=list(d.business_key),
        fields=payload_fields(d, lang),
    )
    if wants_xml(request):
        return Response(dumps("payloadDefinition", answer.model_dump(mode="json")), media_type=XML_MEDIA_TYPE)
    return answer


@router.get(
    "/dcd/payload/xsd",
    summary="The XSD of a DCD version's XML record and of the XML answers (hdhub's addition)",
    response_class=Response,
    responses={200: {"content": {XSD_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
)
async def xsd(
    _: CatalogueReader, catalogue: CatalogueDep, dcd_id: DcdId, dcd_version_id: DcdVersionId = None
) -> Response:
    d = (await catalogue.find(dcd_id, dcd_version_id)).definition
    name = f"{d.dcd_code}_{d.version}.xsd"
    return Response(
        dcd_xsd(d), media_type=XSD_MEDIA_TYPE, headers={"Content-Disposition": f'inline; filename="{name}"'}
    )


@router.get(
    "/problem.xsd",
    summary="The XSD of the XML problem answers (RFC 9457 appendix B; hdhub's addition)",
    response_class=Response,
    responses={200: {"content": {XSD_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
)
async def problem_schema(principal: CurrentPrincipal) -> Response:  # noqa: ARG001 (callers only)
    return Response(problem_xsd(), media_type=XSD_MEDIA_TYPE)


@router.get(
    "/dcd/field",
    response_model=list[FieldDefinition],
    summary="Field definitions of a DCD version (all, or the one named), with code-list values",
)
async def field(
    _: CatalogueReader,
    catalogue: CatalogueDep,
    dcd_id: DcdId,
    dcd_version_id: DcdVersionId = None,
    included_codelist_values: Annotated[bool, Query(alias="included-codelist-values")] = True,
    field_name: Annotated[str | None, Query(alias="field-name", min_length=1, max_length=100)] = None,
    language_id: LanguageId = None,
    field_alias: Annotated[
        str | None,
        Query(
            alias="field",
            min_length=1,
            max_length=100,
            description="Same as field-name",
        ),
    ] = None,
) -> list[FieldDefinition]:
    d = (await catalogue.find(dcd_id, dcd_version_id)).definition
    lang, wanted = _lang(language_id), field_name or field_alias
    fields = [f for f in d.fields if f.is_input] if wanted is None else [field_named(d, wanted)]
    return [field_definition(d, f, lang, included_codelist_values) for f in fields]


@router.get(
    "/dcd/codelist",
    response_model=list[CodeListItem],
    summary="The values of a code list, by its code-list-id (or name)",
)
async def codelist(
    _: CatalogueReader,
    catalogue: CatalogueDep,
    code_list_id: Annotated[str, Query(alias="code-list-id", min_length=1, max_length=100)],
    language: Annotated[str | None, Query(max_length=8)] = None,
    language_id: LanguageId = None,
    dcd_id: OptionalDcdId = None,
    dcd_version_id: DcdVersionId = None,
) -> list[CodeListItem]:
    """A code list is found in the latest version of every DCD (or in the DCD version
    named, hdhub's addition); lists of one name that differ between DCDs need dcd-id."""
    entries = [await catalogue.find(dcd_id, dcd_version_id)] if dcd_id else await catalogue.newest()
    found, d = codelist_named(entries, code_list_id)
    return code_list_items(found, _lang(language, language_id), d.default_language)


@router.get(
    "/externalreference/sadmi",
    summary="SADMI medical devices (not available in hdhub: 404)",
    response_model=list[SadmiDevice],
    responses={
        200: {"description": "The matching device types, as an HD4DP v2 answers (hdhub never does)"},
        404: {"description": "`sadmi-not-available`: hdhub holds no copy of the SADMI register"},
    },
)
async def sadmi(
    principal: CurrentPrincipal,  # noqa: ARG001 (authenticated callers only)
    notification_code: Annotated[str, Query(alias="notificationCode", max_length=64)],  # noqa: ARG001
    name: Annotated[str | None, Query(max_length=200)] = None,  # noqa: ARG001
    reference: Annotated[str | None, Query(max_length=200)] = None,  # noqa: ARG001
    distributor_name: Annotated[str | None, Query(alias="distributorName", max_length=200)] = None,  # noqa: ARG001
    manufacturer_name: Annotated[str | None, Query(alias="manufacturerName", max_length=200)] = None,  # noqa: ARG001
    classification_code: Annotated[str | None, Query(alias="classificationCode", max_length=64)] = None,  # noqa: ARG001
) -> list[SadmiDevice]:
    """Answers 404 to any authenticated caller: hdhub holds no copy of the register (a 5xx
    would say the platform failed; nothing failed, the resource is not here)."""
    raise Problem(
        404,
        "sadmi-not-available",
        "The SADMI medical device register is not available in hdhub",
        "Look the device up in SADMI (FAMHP) and send its notification code as the field's value.",
    )


@router.get(
    "/dcd/template",
    summary="The CSV template of a DCD version (as the drop folder reads it), with a commented line of hints",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def template(
    _: CatalogueReader, catalogue: CatalogueDep, dcd_id: DcdId, dcd_version_id: DcdVersionId
) -> Response:
    return csv_template_response((await catalogue.find(dcd_id, dcd_version_id)).definition)


#: The v2 submit's STATUS (left out or empty: submit), in the caller's language.
_STATUS_MESSAGES = {
    "en": "STATUS must be draft (save, do not submit) or submit; left out, the record is submitted.",
    "fr": "STATUS doit valoir draft (enregistrer sans soumettre) ou submit ; absent, l'enregistrement est soumis.",
    "nl": "STATUS moet draft (bewaren, niet indienen) of submit zijn; zonder STATUS wordt het record ingediend.",
    "de": "STATUS muss draft (speichern, nicht einreichen) oder submit sein; ohne STATUS wird der Datensatz eingereicht.",
}


@router.post(
    "/dcd/payload/submit",
    status_code=202,
    response_model=SubmitAccepted,
    summary="Submit (or, with STATUS=draft, save) one record; answers 202 with the business key",
    description=(
        "The record as JSON, or as the XML `<record>` of `/dcd/payload/xsd` (`Content-Type: "
        "application/xml`); the answer is XML when `Accept` prefers it, or names neither and the "
        "record was XML, problems then as `application/problem+xml` (RFC 9457 appendix B)."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SUBMIT_BODY_SCHEMA},
                XML_MEDIA_TYPE: {"schema": {**SUBMIT_BODY_SCHEMA, "xml": {"name": "record"}}},
            },
        }
    },
    responses={
        202: {
            "headers": {
                "Location": {"schema": {"type": "string"}},
                "Idempotent-Replayed": {"schema": {"type": "string"}},
            },
            **xml_responses(202, "submitAccepted")[202],
        }
    },
)
async def submit(
    request: Request,
    principal: CurrentPrincipal,
    lang: Language,
    catalogue: CatalogueDep,
    registrations: RegistrationsDep,
    organization_id: OrganizationId,
    dcd_id: OptionalDcdId = None,
    dcd_version_id: DcdVersionId = None,
    data_src_type: Annotated[DataSrcType, Query(alias="data-src-type")] = DataSrcType.HD4DP,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    principal.require(Action.REGISTRATION_WRITE, organization_id)
    sent = _record(await request.body(), request.headers.get("content-type"))
    record = dict(sent)
    status = str(record.pop("STATUS", "submit") or "submit").strip().lower()
    if status not in ROW_STATUSES:
        message = _STATUS_MESSAGES.get(lang, _STATUS_MESSAGES["en"])
        raise Problem(
            422,
            "invalid-status",
            "STATUS must be draft or submit",
            errors=[FieldProblem(field="STATUS", rule="status", message=message)],
        )
    entry = await _fitting(catalogue, dcd_id, dcd_version_id, record)
    d = entry.definition
    principal.require_registry(Action.REGISTRATION_WRITE, organization_id, d.project_code)
    known = set(d.flat_field_names())
    for meta in META_FIELDS[1:]:
        if meta not in known:
            record.pop(meta, None)
    record = codes_from_ids(d, record)
    submitting = status != "draft"
    via = "v2" if data_src_type is DataSrcType.HD4DP else f"v2-{data_src_type.value.lower()}"

    async def store(session: AsyncSession, checked: Checked) -> Answer:
        outcome = await registrations.put(
            session,
            organisation_id=organization_id,
            record=checked,
            submit=submitting,
            actor=actor_of(principal, via),
            replace_submitted=True,
        )
        reg = outcome.registration
        body = SubmitAccepted(
            businessKey=reg.business_key,
            registrationId=reg.id,
            status=reg.status,  # type: ignore[arg-type]
            registrationCode=reg.registration_code,
        )
        return 202, body.model_dump(mode="json"), {"Location": f"/api/v1/registrations/{reg.id}"}

    def fingerprint() -> str:
        # The request as sent (not the version it resolved to): a retry after a new version
        # was imported is still the same request, and gets the first answer.
        what = {"query": sorted(request.query_params.multi_items()), "record": sent}
        return request_fingerprint("POST", request.url.path, what)

    answer = await store_once(
        registrations,
        organization_id,
        key=idempotency_key,
        fingerprint=fingerprint,
        check=lambda: registrations.checked(
            dcd_code=d.dcd_code, version=entry.version, values=record, lang=lang, submitting=submitting
        ),
        store=store,
    )
    return _xml_answer(request, "submitAccepted", answer)


@router.get(
    "/dcd/submit",
    response_model=SubmittedPage,
    summary="What the organisation submitted: records with business keys, statuses and validation errors",
)
async def submitted(
    readable: Readable,
    catalogue: CatalogueDep,
    registrations: RegistrationsDep,
    organization_id: OrganizationId,
    dcd_id: OptionalDcdId = None,
    dcd_version_id: DcdVersionId = None,
    business_key: Annotated[str | None, Query(alias="business-key", max_length=64)] = None,
    status: RegistrationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> SubmittedPage:
    if organization_id not in readable:
        raise forbidden()
    dcd_code = await catalogue.resolve_dcd(dcd_id) if dcd_id else None
    if dcd_code and pinned(dcd_version_id):
        await catalogue.get(dcd_code, dcd_version_id)  # a version the DCD does not have: 404
    items, total = await registrations.search(
        readable.narrowed(organization_id),
        dcd_code=dcd_code,
        status=status,
        business_key=business_key,
        dcd_version=pinned(dcd_version_id),
        limit=limit,
        offset=offset,
    )
    out = [submitted_record(r, (await catalogue.get(r.dcd_code, r.dcd_version)).definition) for r in items]
    return SubmittedPage(items=out, total=total, limit=limit, offset=offset)
