"""The catalogue's REST routes under /api/v1: registries and their DCD versions, a
version's definition, fields, code lists and CSV template, validation without storing,
and workbook import (the operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import JSONResponse, Response

from hdhub.common.auth import Action
from hdhub.common.paging import Limit, Offset
from hdhub.common.web import CurrentPrincipal, Language
from hdhub.registrations.catalogue.schemas import (
    DcdImported,
    DcdOut,
    DcdVersionRef,
    FieldIssue,
    RegistryOut,
    RegistryPage,
    ValidateIn,
    ValidationOut,
)
from hdhub.registrations.catalogue.service import codelist_named, field_named
from hdhub.registrations.deps import CatalogueDep, CatalogueReader, DcdVersion, ServiceDep
from hdhub.registrations.engine.csv_template import csv_template
from hdhub.registrations.engine.dcd import DcdDefinition

router = APIRouter(prefix="/api/v1", tags=["catalogue"])


def csv_template_response(definition: DcdDefinition) -> Response:
    """The template as a download, UTF-8 with BOM as Excel wants it to read the accents."""
    name = f"{definition.project_code}_{definition.dcd_code}_{definition.version}_template.csv"
    return Response(
        "\ufeff" + csv_template(definition),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/registries", response_model=RegistryPage, summary="Registries, DCDs and versions")
async def list_registries(
    _: CatalogueReader, catalogue: CatalogueDep, limit: Limit = 100, offset: Offset = 0
) -> RegistryPage:
    registries = [
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
    return RegistryPage.window(registries, limit=limit, offset=offset)


@router.post(
    "/dcds",
    status_code=201,
    summary="Import a DCD workbook (XLSForm)",
    responses={
        201: {"model": DcdImported, "description": "A new DCD version"},
        200: {"model": DcdImported, "description": "This version was imported before (`created` false)"},
    },
)
async def import_dcd(
    principal: CurrentPrincipal, service: ServiceDep, workbook: Annotated[UploadFile, File()]
) -> JSONResponse:
    principal.require(Action.CATALOGUE_WRITE)
    entry, created = await service.catalogue.import_workbook(await workbook.read(), actor=principal.username)
    if created:
        await service.reuse.refresh()  # data reuse: a view of the new version for every organisation
    d = entry.definition
    body = DcdImported(project_code=d.project_code, dcd=d.dcd_code, version=str(d.version), created=created)
    return JSONResponse(body.model_dump(), status_code=201 if created else 200)


@router.get("/dcds/{dcd}/versions/{version}", summary="A DCD version's definition")
async def get_dcd_version(entry: DcdVersion) -> dict[str, Any]:
    return entry.definition.to_json()


@router.get(
    "/dcds/{dcd}/versions/{version}/template.csv",
    summary="The CSV template of a DCD version: the Upload Center's header, a commented line of hints",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def get_csv_template(entry: DcdVersion) -> Response:
    return csv_template_response(entry.definition)


@router.get("/dcds/{dcd}/versions/{version}/fields/{field}", summary="One field")
async def get_field(field: str, entry: DcdVersion) -> dict[str, Any]:
    return field_named(entry.definition, field).to_json()


@router.get("/dcds/{dcd}/versions/{version}/codelists/{name}", summary="One code list")
async def get_codelist(name: str, entry: DcdVersion) -> dict[str, Any]:
    codelist, _ = codelist_named([entry], name)
    return codelist.to_json()


@router.post(
    "/dcds/{dcd}/versions/{version}/validate",
    response_model=ValidationOut,
    summary="Validate a record without storing it",
)
async def validate(entry: DcdVersion, body: ValidateIn, lang: Language) -> ValidationOut:
    result = entry.compiled.validate(body.values, lang=lang)
    return ValidationOut(
        valid=result.ok,
        values=result.values,
        errors=[FieldIssue.of(e) for e in result.errors],
        warnings=[FieldIssue.of(w) for w in result.warnings],
    )
