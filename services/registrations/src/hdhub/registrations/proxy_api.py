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

from typing import TYPE_CHECKING, Annotated, Any

import grpc
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from hdhub.common.auth import Action as Permission
from hdhub.common.errors import Problem, forbidden, not_found
from hdhub.common.grpc import channel, problem_from_rpc_error, register_idempotent
from hdhub.common.limits import load_json
from hdhub.common.web import CurrentPrincipal, Language, request_fingerprint
from hdhub.proto.identity.v1 import identity_pb2, identity_pb2_grpc
from hdhub.registrations.api import actor_of, csv_template_response, readable
from hdhub.registrations.catalogue import CatalogueEntry
from hdhub.registrations.domain.dcd import Codelist, DcdDefinition, Field, FieldType, translate
from hdhub.registrations.domain.lifecycle import Status
from hdhub.registrations.domain.v2form import FIELD_TYPES, codelist_id, codes_from_ids, v2_values, value_id
from hdhub.registrations.domain.validation import ROW_STATUSES
from hdhub.registrations.proxy_schemas import (
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
    PayloadField,
    SubmitAccepted,
    SubmittedError,
    SubmittedPage,
    SubmittedRecord,
)
from hdhub.registrations.store import Registration

if TYPE_CHECKING:
    from hdhub.registrations.runtime import RegistrationsService

register_idempotent("hdhub.identity.v1.IdentityService", ["ListMyOrganisations", "GetOrganisation"])

# Columns a v2 CSV / JSON record may carry besides the DCD's fields (DOMAIN.md).
META_FIELDS = ("STATUS", "TX_AUTHOR_GR", "TX_AUTHOR", "TX_COAUTHOR")
LANGUAGES = ("en", "fr", "nl", "de")
# How a value of each type is written (payload definition's ``format``).
FORMATS = {
    FieldType.DATE: "dd/mm/yyyy",
    FieldType.TIME: "HH:MM",
    FieldType.DATETIME: "dd/mm/yyyy HH:MM",
}

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


def _latest(version: str | None) -> str | None:
    return None if version in (None, "", "latest") else version


# --- shapes ------------------------------------------------------------------------------


def code_list_items(codelist: Codelist, lang: str, default_language: str) -> list[CodeListItem]:
    return [
        CodeListItem(
            id=value_id(codelist.name, c.name),
            code=c.name,
            label=c.label(lang, default_language),
            translations=dict(c.labels),
        )
        for c in codelist.choices
    ]


def _format(f: Field) -> str | None:
    if f.type in FORMATS:
        return FORMATS[f.type]
    if f.number_format is not None:
        return str(f.number_format)
    return f.format


def _required(f: Field) -> bool | str:
    return True if f.always_required else (f.required or False)


def payload_fields(d: DcdDefinition, lang: str) -> list[PayloadField]:
    """Every key a record may carry (repeats flattened), in form order."""
    return [
        PayloadField(
            key=key,
            fieldType=FIELD_TYPES[f.type],
            label=f.label(lang, d.default_language),
            required=_required(f),
            multiple=f.type is FieldType.SELECT_MULTIPLE,
            codeListId=codelist_id(f.list_name) if f.list_name else None,
            format=_format(f),
            readOnly=f.is_computed,
        )
        for f in d.fields
        if f.is_input
        for key in f.flat_names
    ]


def field_definition(d: DcdDefinition, f: Field, lang: str, with_values: bool) -> FieldDefinition:
    codelist = d.codelists.get(f.list_name) if f.list_name else None
    return FieldDefinition(
        key=f.technical_name,
        name=f.name,
        fieldType=FIELD_TYPES[f.type],
        label=f.label(lang, d.default_language),
        description=translate(f.hints, lang, d.default_language),
        translations=dict(f.labels),
        required=_required(f),
        multiple=f.type is FieldType.SELECT_MULTIPLE,
        codeListId=codelist_id(f.list_name) if f.list_name else None,
        codeListName=f.list_name,
        codeListValues=code_list_items(codelist, lang, d.default_language)
        if codelist and with_values
        else None,
        format=_format(f),
        readOnly=f.is_computed,
        relevant=f.relevant,
        constraint=f.constraint,
        personalData=f.personal_data,
        repeat=f.repeat,
        repeatMax=f.repeat_max if f.repeat else None,
    )


def submitted_record(reg: Registration, d: DcdDefinition) -> SubmittedRecord:
    return SubmittedRecord(
        businessKey=reg.business_key,
        registrationId=reg.id,
        registrationCode=reg.registration_code,
        status=reg.status,  # type: ignore[arg-type]
        statusConfirmation=reg.status_confirmation,
        organizationId=reg.organisation_id,
        dcdId=d.dcd_number,
        dcdCode=reg.dcd_code,
        dcdVersionId=reg.dcd_version,
        createdBy=reg.created_by,
        updatedAt=reg.updated_at,
        payload=v2_values(d, reg.values),
        errors=[SubmittedError(**e) for e in reg.errors],
    )


def _record(raw: bytes) -> dict[str, Any]:
    # Read whatever the Content-Type says (v2 clients send JSON as text/plain too), so the
    # JSON rules of every other route (depth, surrogates, our own words) apply here by hand.
    record = load_json(raw)
    if not isinstance(record, dict):
        raise Problem(400, "malformed-json", "The request body must be a JSON object of field values")
    return record


# --- routes --------------------------------------------------------------------------------


def build_router(service: RegistrationsService) -> APIRouter:
    router = APIRouter(prefix="/proxy/api", tags=["HD4DP v2 compatible"])
    catalogue, registrations = service.catalogue, service.registrations

    async def entry_for(dcd_id: str, version: str | None) -> CatalogueEntry:
        code = await catalogue.resolve_dcd(dcd_id)
        return await catalogue.get(code, _latest(version))

    async def latest_entries() -> list[CatalogueEntry]:
        return [await catalogue.get(d.code) for _, dcds in await catalogue.tree() for d, vs in dcds if vs]

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
        principal: CurrentPrincipal,
        dcd_id: DcdId,
        dcd_version_id: DcdVersionId = None,
        language_id: LanguageId = None,
    ) -> list[MenuTranslation]:
        principal.require(Permission.CATALOGUE_READ)
        d = (await entry_for(dcd_id, dcd_version_id)).definition
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
    )
    async def definition(
        principal: CurrentPrincipal,
        dcd_id: DcdId,
        version: Annotated[
            str | None, Query(min_length=1, max_length=32, description="latest when absent")
        ] = None,
        dcd_version_id: DcdVersionId = None,
        language_id: LanguageId = None,
    ) -> PayloadDefinition:
        principal.require(Permission.CATALOGUE_READ)
        d = (await entry_for(dcd_id, version or dcd_version_id)).definition
        lang = _lang(language_id)
        return PayloadDefinition(
            dcdId=d.dcd_number,
            dcdCode=d.dcd_code,
            dcdVersionId=str(d.version),
            projectId=d.project_code,
            languageId=lang,
            businessKey=list(d.business_key),
            fields=payload_fields(d, lang),
        )

    @router.get(
        "/dcd/field",
        response_model=list[FieldDefinition],
        summary="Field definitions of a DCD version (all, or the one named), with code-list values",
    )
    async def field(
        principal: CurrentPrincipal,
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
                description="Same as field-name (hdhub's earlier name)",
            ),
        ] = None,
    ) -> list[FieldDefinition]:
        principal.require(Permission.CATALOGUE_READ)
        d = (await entry_for(dcd_id, dcd_version_id)).definition
        lang, wanted = _lang(language_id), field_name or field_alias
        if wanted is None:
            fields = [f for f in d.fields if f.is_input]
        else:
            try:
                fields = [d.resolve_flat_name(wanted)[0]]
            except KeyError:
                raise not_found(f"Field {wanted}") from None
        return [field_definition(d, f, lang, included_codelist_values) for f in fields]

    @router.get(
        "/dcd/codelist",
        response_model=list[CodeListItem],
        summary="The values of a code list, by its code-list-id (or name)",
    )
    async def codelist(
        principal: CurrentPrincipal,
        code_list_id: Annotated[str, Query(alias="code-list-id", min_length=1, max_length=100)],
        language: Annotated[str | None, Query(max_length=8)] = None,
        language_id: LanguageId = None,
        dcd_id: OptionalDcdId = None,
        dcd_version_id: DcdVersionId = None,
    ) -> list[CodeListItem]:
        """A code list is found in the latest version of every DCD (or in the DCD version
        named, hdhub's addition); lists of one name that differ between DCDs need dcd-id."""
        principal.require(Permission.CATALOGUE_READ)
        entries = [await entry_for(dcd_id, dcd_version_id)] if dcd_id else await latest_entries()
        lang = _lang(language, language_id)
        found: list[tuple[Codelist, str]] = []
        for entry in entries:
            for c in entry.definition.codelists.values():
                if code_list_id in (c.name, str(codelist_id(c.name))):
                    found.append((c, entry.definition.default_language))
        if not found:
            raise not_found(f"Code list {code_list_id}")
        if any(c != found[0][0] for c, _ in found[1:]):
            raise Problem(
                422,
                "codelist-ambiguous",
                "DCDs hold different code lists under this id",
                "Name the DCD with dcd-id (and dcd-version-id).",
            )
        return code_list_items(found[0][0], lang, found[0][1])

    @router.get(
        "/externalreference/sadmi",
        summary="SADMI medical devices (not available in hdhub: 404)",
        responses={404: {"description": "hdhub holds no copy of the SADMI register"}},
    )
    async def sadmi(
        principal: CurrentPrincipal,  # noqa: ARG001 (authenticated callers only)
        notification_code: Annotated[str, Query(alias="notificationCode", max_length=64)],  # noqa: ARG001
        name: Annotated[str | None, Query(max_length=200)] = None,  # noqa: ARG001
        reference: Annotated[str | None, Query(max_length=200)] = None,  # noqa: ARG001
        distributor_name: Annotated[str | None, Query(alias="distributorName", max_length=200)] = None,  # noqa: ARG001
        manufacturer_name: Annotated[str | None, Query(alias="manufacturerName", max_length=200)] = None,  # noqa: ARG001
        classification_code: Annotated[str | None, Query(alias="classificationCode", max_length=64)] = None,  # noqa: ARG001
    ) -> JSONResponse:
        """Answers 404 to any authenticated caller: hdhub holds no copy of the register (a 5xx
        would say the platform failed; nothing failed, the resource is not here)."""
        raise Problem(
            404,
            "sadmi-not-available",
            "The SADMI medical device register is not available in hdhub",
            "Look the device up in SADMI (FAMHP) and send its notification code as the field's value.",
        )

    async def dcd_for_record(
        dcd_id: str | None, version: str | None, record: dict[str, Any]
    ) -> CatalogueEntry:
        """The DCD named, else the one DCD whose latest version has every key of the record."""
        if dcd_id is not None:
            return await entry_for(dcd_id, version)
        keys = set(record) - set(META_FIELDS)
        fits = [e for e in await latest_entries() if keys <= set(e.definition.flat_field_names())]
        if len(fits) != 1:
            raise Problem(
                422,
                "dcd-id-required",
                "Name the DCD with dcd-id",
                f"The record's fields fit {len(fits)} DCDs; dcd-id may be left out only when they fit exactly one.",
            )
        return await entry_for(fits[0].definition.dcd_code, version)

    @router.get(
        "/dcd/template",
        summary="The CSV template of a DCD version (as the drop folder reads it), with a commented line of hints",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def template(principal: CurrentPrincipal, dcd_id: DcdId, dcd_version_id: DcdVersionId) -> Response:
        principal.require(Permission.CATALOGUE_READ)
        entry = await entry_for(dcd_id, dcd_version_id)
        return csv_template_response(entry.definition)

    @router.post(
        "/dcd/payload/submit",
        status_code=202,
        response_model=SubmitAccepted,
        summary="Submit (or, with STATUS=draft, save) one record; answers 202 with the business key",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": SUBMIT_BODY_SCHEMA}}}
        },
        responses={
            202: {
                "headers": {
                    "Location": {"schema": {"type": "string"}},
                    "Idempotent-Replayed": {"schema": {"type": "string"}},
                }
            }
        },
    )
    async def submit(
        request: Request,
        principal: CurrentPrincipal,
        lang: Language,
        organization_id: OrganizationId,
        dcd_id: OptionalDcdId = None,
        dcd_version_id: DcdVersionId = None,
        data_src_type: Annotated[DataSrcType, Query(alias="data-src-type")] = DataSrcType.HD4DP,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        principal.require(Permission.REGISTRATION_WRITE, organization_id)
        sent = _record(await request.body())
        record = dict(sent)
        status = str(record.pop("STATUS", "submit") or "submit").strip().lower()
        if status not in ROW_STATUSES:
            raise Problem(422, "invalid-status", "STATUS must be draft or submit")
        entry = await dcd_for_record(dcd_id, dcd_version_id, record)
        d = entry.definition
        known = set(d.flat_field_names())
        for meta in META_FIELDS[1:]:
            if meta not in known:
                record.pop(meta, None)
        record = codes_from_ids(d, record)
        via = "v2" if data_src_type is DataSrcType.HD4DP else f"v2-{data_src_type.value.lower()}"

        async def effect(session: Any = None) -> tuple[int, Any, dict[str, str]]:
            outcome = await registrations.put_record(
                session=session,
                organisation_id=organization_id,
                dcd_code=d.dcd_code,
                version=entry.version,
                values=record,
                submit=status != "draft",
                lang=lang,
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

        if idempotency_key is None:
            code, body, headers = await effect()
            return JSONResponse(body, status_code=code, headers=headers)
        # The request as sent (not the version it resolved to): a retry after a new version
        # was imported is still the same request, and gets the first answer.
        what = {"query": sorted(request.query_params.multi_items()), "record": sent}
        return await registrations.put_idempotently(
            organization_id,
            key=idempotency_key,
            fingerprint=request_fingerprint("POST", request.url.path, what),
            effect=effect,
        )

    @router.get(
        "/dcd/submit",
        response_model=SubmittedPage,
        summary="What the organisation submitted: records with business keys, statuses and validation errors",
    )
    async def submitted(
        principal: CurrentPrincipal,
        organization_id: OrganizationId,
        dcd_id: OptionalDcdId = None,
        dcd_version_id: DcdVersionId = None,
        business_key: Annotated[str | None, Query(alias="business-key", max_length=64)] = None,
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> SubmittedPage:
        if organization_id not in readable(principal):
            raise forbidden()
        dcd_code = await catalogue.resolve_dcd(dcd_id) if dcd_id else None
        items, total = await registrations.search(
            [organization_id],
            dcd_code=dcd_code,
            status=status,
            business_key=business_key,
            dcd_version=_latest(dcd_version_id),
            limit=limit,
            offset=offset,
        )
        out = [
            submitted_record(r, (await catalogue.get(r.dcd_code, r.dcd_version)).definition) for r in items
        ]
        return SubmittedPage(items=out, total=total, limit=limit, offset=offset)

    return router
