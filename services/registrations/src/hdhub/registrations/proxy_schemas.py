"""Typed requests and answers of the HD4DP v2-compatible API (proxy_api.py), in v2's
camelCase, so the OpenAPI document describes them and a generated client can use them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from hdhub.registrations.domain.lifecycle import Status


class DataSrcType(StrEnum):
    """v2's ``data-src-type``: where the record comes from (HD4DP when not given)."""

    API = "API"
    CSV = "CSV"
    HD4DP = "HD4DP"


class RecordStatus(StrEnum):
    """The ``STATUS`` key of a record: ``draft`` saves it (Open), ``submit`` (the default) submits it."""

    DRAFT = "draft"
    SUBMIT = "submit"


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
    status: Status
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
    status: Status
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
