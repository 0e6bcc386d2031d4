"""Typed requests and answers of the HD4DP v2-compatible API (api.py), in v2's camelCase,
so the OpenAPI document describes them and a generated client can use them, and how each
is built from a DCD version or a registration."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from hdhub.registrations.engine.dcd import Codelist, DcdDefinition, FieldType, translate
from hdhub.registrations.engine.dcd import Field as DcdField
from hdhub.registrations.engine.v2form import FIELD_TYPES, codelist_id, v2_values, value_id
from hdhub.registrations.records.lifecycle import RegistrationStatus
from hdhub.registrations.store import Registration

# How a value of each type is written (payload definition's ``format``).
FORMATS = {
    FieldType.DATE: "dd/mm/yyyy",
    FieldType.TIME: "HH:MM",
    FieldType.DATETIME: "dd/mm/yyyy HH:MM",
}


class DataSrcType(StrEnum):
    """v2's ``data-src-type``: where the record comes from (HD4DP when not given)."""

    API = "API"
    CSV = "CSV"
    HD4DP = "HD4DP"


#: The request body of ``payload/submit``: one record, keyed by technical field name.
SUBMIT_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One record: technical field name -> value, plus the optional keys STATUS (draft | submit), "
        "TX_AUTHOR_GR, TX_AUTHOR and TX_COAUTHOR. Values are strings, numbers, booleans or, for a "
        "multi-select, a list; CODE fields take the code or its codeListValue id."
    ),
    "additionalProperties": {
        "anyOf": [
            {"type": "string"},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
            {"type": "null"},
        ]
    },
    "example": {
        "IDC_PAT": "85.04.02-169.32",
        "DT_HOSPZ": "03/02/2025",
        "CD_PAT_SEX": "M",
        "STATUS": "submit",
    },
}


class Organization(BaseModel):
    id: str = Field(description="The organizationId the other calls take")
    name: str
    identificationType: str = Field(description="Always NIHDI")
    identificationValue: str = Field(description="The organisation's NIHDI (RIZIV/INAMI) number")
    roles: list[str] = Field(description="The caller's roles in it (hdhub's addition)")


class MenuVersion(BaseModel):
    dcdVersionId: str
    version: str


class MenuDcd(BaseModel):
    dcdId: int = Field(description="The DCD's number; its code is accepted wherever dcd-id is")
    dcdCode: str
    name: str
    versions: list[MenuVersion] = Field(description="Newest first")


class MenuProject(BaseModel):
    projectId: str
    projectAbbreviation: str
    name: str
    dcds: list[MenuDcd]


class MenuTranslation(BaseModel):
    languageId: str
    projectId: str
    projectName: str
    dcdId: int
    dcdName: str
    dcdVersionId: str


class CodeListItem(BaseModel):
    id: int = Field(description="The codeListValue id: send it, or the code, as a CODE field's value")
    code: str
    label: str = Field(description="In the language asked for (English when not given)")
    translations: dict[str, str]


class PayloadField(BaseModel):
    key: str = Field(description="The key the record carries (technical name; repeats flattened _1.._n)")
    fieldType: str = Field(description="TEXT, NUMBER, DATE, TIME, DATETIME, CODE or CALCULATED")
    label: str
    required: bool | str = Field(description="true, false, or the condition under which it is")
    multiple: bool = Field(description="A CODE field that takes several codes")
    codeListId: int | None = None
    format: str | None = Field(
        default=None, description="dd/mm/yyyy, HH:MM, dd/mm/yyyy HH:MM, x.y digits, ssin"
    )
    readOnly: bool = Field(description="Computed by hdhub; a value sent is ignored")


class FieldDefinition(PayloadField):
    name: str = Field(description="The field's XLSForm name")
    description: str | None = Field(default=None, description="The hint, in the language asked for")
    translations: dict[str, str]
    codeListName: str | None = None
    codeListValues: list[CodeListItem] | None = Field(
        default=None, description="For CODE fields, unless included-codelist-values=false"
    )
    relevant: str | None = None
    constraint: str | None = None
    personalData: bool
    repeat: str | None = None
    repeatMax: int | None = None


class PayloadDefinition(BaseModel):
    dcdId: int
    dcdCode: str
    dcdVersionId: str
    projectId: str
    languageId: str
    businessKey: list[str] = Field(
        description="The fields whose values identify a record (see docs/hospital-it.md)"
    )
    fields: list[PayloadField]


class SubmitAccepted(BaseModel):
    businessKey: str = Field(description="Identifies the record: send it again to correct it")
    registrationId: str
    status: RegistrationStatus
    registrationCode: str | None = Field(description="Given on the first submission; None for a draft")


class SubmittedError(BaseModel):
    field: str
    path: str
    rule: str
    message: str


class SubmittedRecord(BaseModel):
    businessKey: str
    registrationId: str
    registrationCode: str | None
    status: RegistrationStatus
    statusConfirmation: str | None
    organizationId: str
    dcdId: int
    dcdCode: str
    dcdVersionId: str
    createdBy: str
    updatedAt: datetime
    payload: dict[str, Any] = Field(
        description="The values in v2's form (dates dd/mm/yyyy, numbers as numbers)"
    )
    errors: list[SubmittedError] = Field(
        description="What still blocks submission (a draft may be incomplete)"
    )


class SubmittedPage(BaseModel):
    items: list[SubmittedRecord]
    total: int
    limit: int
    offset: int


class SadmiDevice(BaseModel):
    """A medical device type of FAMHP's SADMI register, with the members v2's documentation
    lists for ``externalreference/sadmi``. hdhub holds no copy of the register and answers
    that call 404 ``sadmi-not-available``: the schema says what an HD4DP v2 answers."""

    notificationCode: str
    name: str
    referenceUrl: str | None = Field(description="The device's reference (a URL)")
    distributor: str | None
    manufacturer: str | None
    classification: str | None
    state: str | None


# --- built from a DCD and from registrations ---------------------------------------------


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


def _format(f: DcdField) -> str | None:
    if f.type in FORMATS:
        return FORMATS[f.type]
    if f.number_format is not None:
        return str(f.number_format)
    return f.format


def _required(f: DcdField) -> bool | str:
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


def field_definition(d: DcdDefinition, f: DcdField, lang: str, with_values: bool) -> FieldDefinition:
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
