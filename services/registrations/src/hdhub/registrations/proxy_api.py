"""HD4DP v2-compatible endpoints under /proxy/api, so hospital integrations written for
HD4DP 2.0 can point at hdhub: organisations, the DCD menu, payload definitions, field and
code-list look-ups with translations, and submission answering 202 with the business key.

Parameters keep v2's kebab-case names (``organization-id``, ``dcd-id``,
``dcd-version-id``); ``dcd-id`` accepts the DCD's number or its code, and
``dcd-version-id`` a semantic version (or ``latest``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import grpc
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from hdhub.common.auth import Action as Permission
from hdhub.common.errors import Problem, not_found
from hdhub.common.grpc import channel, problem_from_rpc_error, register_idempotent
from hdhub.common.limits import load_json
from hdhub.common.web import CurrentPrincipal, Language
from hdhub.proto.identity.v1 import identity_pb2, identity_pb2_grpc
from hdhub.registrations.api import actor_of, csv_template_response
from hdhub.registrations.catalogue import CatalogueEntry
from hdhub.registrations.domain.validation import ROW_STATUSES

if TYPE_CHECKING:
    from hdhub.registrations.runtime import RegistrationsService

register_idempotent("hdhub.identity.v1.IdentityService", ["ListMyOrganisations", "GetOrganisation"])

# Columns a v2 CSV / JSON record may carry besides the DCD's fields (DOMAIN.md).
META_FIELDS = ("STATUS", "TX_AUTHOR_GR", "TX_AUTHOR", "TX_COAUTHOR")

DcdId = Annotated[str, Query(alias="dcd-id", min_length=1, max_length=64)]
DcdVersionId = Annotated[str, Query(alias="dcd-version-id", min_length=1, max_length=32)]
LanguageParam = Annotated[str | None, Query(alias="language")]


def _label(texts: Any, lang: str, default: str = "en") -> str:
    return str(texts.get(lang) or texts.get(default) or texts.get("en") or next(iter(texts.values()), ""))


def build_router(service: RegistrationsService) -> APIRouter:
    router = APIRouter(prefix="/proxy/api", tags=["HD4DP v2 compatible"])
    catalogue, registrations = service.catalogue, service.registrations

    async def entry_for(dcd_id: str, version: str) -> CatalogueEntry:
        code = await catalogue.resolve_dcd(dcd_id)
        return await catalogue.get(code, None if version == "latest" else version)

    @router.get("/organizations", summary="Organisations the caller may act for")
    async def organizations(principal: CurrentPrincipal) -> list[dict[str, Any]]:
        # The caller's token (verified here) is forwarded; identity answers from it.
        assert principal.subject
        stub = identity_pb2_grpc.IdentityServiceStub(channel("identity"))
        try:
            reply = await stub.ListMyOrganisations(identity_pb2.ListMyOrganisationsRequest())
        except grpc.aio.AioRpcError as exc:
            raise problem_from_rpc_error(exc) from exc
        return [
            {
                "id": m.organisation.id,
                "name": m.organisation.title,
                "identificationType": "NIHDI",
                "identificationValue": m.organisation.nihdi_number,
                "roles": list(m.roles),
            }
            for m in reply.memberships
        ]

    @router.get("/dcd/menu/structure", summary="Projects, their DCDs and versions")
    async def menu(principal: CurrentPrincipal, language: LanguageParam = None, lang: Language = "en") -> list[dict[str, Any]]:
        principal.require(Permission.CATALOGUE_READ)
        lang = (language or lang)[:2].lower()
        return [
            {
                "projectId": p.code,
                "projectAbbreviation": p.abbreviation,
                "name": _label(p.titles, lang),
                "dcds": [
                    {
                        "dcdId": d.number,
                        "dcdCode": d.code,
                        "name": _label(d.titles, lang),
                        "versions": [{"dcdVersionId": v.version, "version": v.version} for v in vs],
                    }
                    for d, vs in dcds
                ],
            }
            for p, dcds in await catalogue.tree()
        ]

    @router.get("/dcd/payload/definition", summary="A DCD version's payload definition")
    async def definition(
        principal: CurrentPrincipal, dcd_id: DcdId, dcd_version_id: DcdVersionId, language: LanguageParam = None
    ) -> dict[str, Any]:
        principal.require(Permission.CATALOGUE_READ)
        entry = await entry_for(dcd_id, dcd_version_id)
        body = entry.definition.to_json()
        if language:
            body["language"] = language[:2].lower()
        return body

    @router.get("/dcd/field", summary="One field of a DCD version, with translations")
    async def field(
        principal: CurrentPrincipal,
        dcd_id: DcdId,
        dcd_version_id: DcdVersionId,
        field_name: Annotated[str, Query(alias="field", min_length=1, max_length=100)],
    ) -> dict[str, Any]:
        principal.require(Permission.CATALOGUE_READ)
        entry = await entry_for(dcd_id, dcd_version_id)
        try:
            return entry.definition.field(field_name).to_json()
        except KeyError:
            raise not_found(f"Field {field_name}") from None

    @router.get("/dcd/codelist", summary="A code list of a DCD version, with translations")
    async def codelist(
        principal: CurrentPrincipal,
        dcd_id: DcdId,
        dcd_version_id: DcdVersionId,
        name: Annotated[str, Query(alias="codelist", min_length=1, max_length=100)],
        language: LanguageParam = None,
    ) -> dict[str, Any]:
        principal.require(Permission.CATALOGUE_READ)
        entry = await entry_for(dcd_id, dcd_version_id)
        try:
            body = entry.definition.codelist(name).to_json()
        except KeyError:
            raise not_found(f"Code list {name}") from None
        if language:
            lang = language[:2].lower()
            for choice in body["choices"]:
                choice["label"] = _label(choice["labels"], lang)
        return body

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
        summary="Submit (or, with STATUS=draft, save) one record; answers 202 with the business key",
    )
    async def submit(
        request: Request,
        principal: CurrentPrincipal,
        lang: Language,
        organization_id: Annotated[str, Query(alias="organization-id", min_length=1, max_length=64)],
        dcd_id: DcdId,
        dcd_version_id: DcdVersionId,
    ) -> JSONResponse:
        principal.require(Permission.REGISTRATION_WRITE, organization_id)
        # Read whatever the Content-Type says (v2 clients send JSON as text/plain too), so
        # the JSON rules of every other route are applied here by hand.
        record = load_json(await request.body())
        if not isinstance(record, dict):
            raise Problem(400, "malformed-json", "The request body must be a JSON object of field values")
        status = str(record.pop("STATUS", "submit") or "submit").strip().lower()
        if status not in ROW_STATUSES:
            raise Problem(422, "invalid-status", "STATUS must be draft or submit")
        code = await catalogue.resolve_dcd(dcd_id)
        known = set((await catalogue.get(code, None if dcd_version_id == "latest" else dcd_version_id)).definition.flat_field_names())
        for meta in META_FIELDS[1:]:
            if meta not in known:
                record.pop(meta, None)
        outcome = await registrations.put_record(
            organisation_id=organization_id,
            dcd_code=code,
            version=None if dcd_version_id == "latest" else dcd_version_id,
            values=record,
            submit=status != "draft",
            lang=lang,
            actor=actor_of(principal, "v2"),
            replace_submitted=True,
        )
        reg = outcome.registration
        return JSONResponse(
            {
                "businessKey": reg.business_key,
                "registrationId": reg.id,
                "status": reg.status,
                "registrationCode": reg.registration_code,
            },
            status_code=202,
            headers={"Location": f"/api/v1/registrations/{reg.id}"},
        )

    return router
