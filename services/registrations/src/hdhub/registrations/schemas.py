"""REST shapes of the registrations service (separate from the tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from hdhub.registrations.domain.lifecycle import Status
from hdhub.registrations.store import Registration, RegistrationVersion


class RegistrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organisation_id: str = Field(min_length=1, max_length=64)
    dcd: str = Field(min_length=1, max_length=64, description="DCD code, e.g. ANGIO_HOSP_PCI")
    dcd_version: str | None = Field(default=None, description="Semantic version; the newest when omitted")
    values: dict[str, Any] = Field(description="Values keyed by technical field name")
    # Strict: a JSON body's true is a boolean; "true" or 1 is a mistake to refuse, not to guess.
    submit: StrictBool = Field(default=False, description="Submit at once (the record must be valid)")


class ValuesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any]
    dcd_version: str | None = Field(
        default=None, description="Move the registration to this version of its DCD"
    )


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["corrections_needed", "approved", "follow_up_needed"]
    comment: str | None = Field(default=None, max_length=2000)


class ValidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any]


class FieldIssue(BaseModel):
    field: str
    path: str
    rule: str
    message: str


class RegistrationSummary(BaseModel):
    id: str
    organisation_id: str
    project_code: str
    dcd: str
    dcd_version: str
    business_key: str
    status: Status
    status_label: str
    status_confirmation: str | None
    registration_code: str | None
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None

    @classmethod
    def of(cls, r: Registration) -> RegistrationSummary:
        status = Status(r.status)
        return cls(
            id=r.id,
            organisation_id=r.organisation_id,
            project_code=r.project_code,
            dcd=r.dcd_code,
            dcd_version=r.dcd_version,
            business_key=r.business_key,
            status=status,
            status_label=status.label,
            status_confirmation=r.status_confirmation,
            registration_code=r.registration_code,
            version=r.version,
            created_by=r.created_by,
            created_at=r.created_at,
            updated_at=r.updated_at,
            submitted_at=r.submitted_at,
        )


class RegistrationOut(RegistrationSummary):
    values: dict[str, Any]
    open_issues: list[FieldIssue] = Field(
        description="What still blocks submission (drafts may be incomplete)"
    )
    warnings: list[FieldIssue] = []
    superseded_by: str | None = Field(
        default=None,
        description="A newer major version of the DCD: the registration must move to it to be submitted",
    )

    @classmethod
    def full(
        cls, r: Registration, warnings: list[Any] | None = None, superseded_by: str | None = None
    ) -> RegistrationOut:
        base = RegistrationSummary.of(r).model_dump()
        return cls(
            **base,
            superseded_by=superseded_by,
            values=r.values,
            open_issues=[FieldIssue(**e) for e in r.errors],
            warnings=[
                FieldIssue(field=w.field, path=w.path, rule=w.rule, message=w.message) for w in warnings or []
            ],
        )


class RegistrationPage(BaseModel):
    items: list[RegistrationSummary]
    total: int
    limit: int
    offset: int


class HistoryEntry(BaseModel):
    version: int
    action: str
    status: Status
    dcd_version: str
    actor: str
    via: str
    at: datetime
    changed_fields: list[str]
    comment: str | None
    values: dict[str, Any]

    @classmethod
    def of(cls, v: RegistrationVersion, values: dict[str, Any]) -> HistoryEntry:
        return cls(
            version=v.version,
            action=v.action,
            status=Status(v.status),
            dcd_version=v.dcd_version,
            actor=v.actor,
            via=v.via,
            at=v.at,
            changed_fields=v.changed_fields,
            comment=v.comment,
            values=values,
        )


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


class DeliveryOut(BaseModel):
    """Where a registration's delivery to the central platform stands (docs/delivery.md)."""

    registration_id: str
    organisation_id: str
    registration_code: str | None = None
    dcd_code: str | None = None
    status: str | None = None
    #: sending (still with hdhub), pending, ok, nok (being resent), parked (resends stopped)
    state: str
    #: Why it waits or what the last attempt met (a slug), e.g. no-published-certificate.
    reason: str | None
    version: int = Field(description="The registration version being delivered")
    attempts: int = Field(description="Sends that reached the central platform")
    first_sent_at: datetime | None
    last_sent_at: datetime | None
    confirmed_at: datetime | None
    parked_at: datetime | None

    @classmethod
    def of(cls, d: Any, reg: Registration | None = None) -> DeliveryOut:
        return cls(
            registration_id=d.registration_id,
            organisation_id=d.organisation_id,
            registration_code=reg.registration_code if reg else None,
            dcd_code=reg.dcd_code if reg else None,
            status=reg.status if reg else None,
            state=d.state,
            reason=d.reason,
            version=d.content_version,
            attempts=d.attempts,
            first_sent_at=d.first_sent_at,
            last_sent_at=d.last_sent_at,
            confirmed_at=d.confirmed_at,
            parked_at=d.parked_at,
        )
