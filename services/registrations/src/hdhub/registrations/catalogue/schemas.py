"""REST shapes of the DCD catalogue (separate from the tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hdhub.common.errors import FieldError, field_error_json
from hdhub.common.paging import Page


class FieldIssue(BaseModel):
    field: str
    path: str
    rule: str
    message: str

    @classmethod
    def of(cls, error: FieldError) -> FieldIssue:
        return cls(**field_error_json(error))


class ValidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any]


class ValidationOut(BaseModel):
    valid: bool
    values: dict[str, Any]
    errors: list[FieldIssue]
    warnings: list[FieldIssue]


class DcdImported(BaseModel):
    """What ``POST /api/v1/dcds`` answers: the DCD version the workbook holds."""

    project_code: str
    dcd: str
    version: str
    created: bool = Field(description="false: this version was imported before with the same content")


class DcdVersionRef(BaseModel):
    version: str
    imported_at: datetime


class DcdOut(BaseModel):
    code: str
    number: int
    titles: dict[str, str]
    versions: list[DcdVersionRef]


class RegistryOut(BaseModel):
    code: str
    abbreviation: str
    titles: dict[str, str]
    dcds: list[DcdOut]


class RegistryPage(Page[RegistryOut]):
    """A page of registries, each with its DCDs and their versions."""
