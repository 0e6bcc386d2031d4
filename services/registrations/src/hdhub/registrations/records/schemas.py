"""REST shapes of the registrations service (separate from the tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from hdhub.common.paging import Page
from hdhub.registrations.catalogue.schemas import FieldIssue
from hdhub.registrations.delivery.schemas import DecisionOut
from hdhub.registrations.records.lifecycle import RegistrationStatus, StatusConfirmation
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


class RegistrationSummary(BaseModel):
    id: str
    organisation_id: str
    project_code: str
    dcd: str
    dcd_version: str
    business_key: str
    status: RegistrationStatus
    status_label: str
    status_confirmation: StatusConfirmation | None = Field(
        description="Whether the central platform confirmed a submitted registration's arrival; null before"
    )
    registration_code: str | None
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None

    @classmethod
    def of(cls, r: Registration) -> RegistrationSummary:
        status = RegistrationStatus(r.status)
        return cls(
            id=r.id,
            organisation_id=r.organisation_id,
            project_code=r.project_code,
            dcd=r.dcd_code,
            dcd_version=r.dcd_version,
            business_key=r.business_key,
            status=status,
            status_label=status.label,
            status_confirmation=StatusConfirmation(r.status_confirmation) if r.status_confirmation else None,
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
    central_decision: DecisionOut | None = Field(
        default=None,
        description="The central platform's latest decision applied to it (read one registration: "
        "the comment and fields concerned of Corrections needed); all of them under /decisions",
    )

    @classmethod
    def full(
        cls,
        r: Registration,
        warnings: list[Any] | None = None,
        superseded_by: str | None = None,
        central_decision: DecisionOut | None = None,
    ) -> RegistrationOut:
        base = RegistrationSummary.of(r).model_dump()
        return cls(
            **base,
            superseded_by=superseded_by,
            central_decision=central_decision,
            values=r.values,
            open_issues=[FieldIssue(**e) for e in r.errors],
            warnings=[FieldIssue.of(w) for w in warnings or []],
        )


class RegistrationPage(Page[RegistrationSummary]):
    """A page of registrations (search results)."""


class HistoryEntry(BaseModel):
    version: int
    action: str
    status: RegistrationStatus
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
            status=RegistrationStatus(v.status),
            dcd_version=v.dcd_version,
            actor=v.actor,
            via=v.via,
            at=v.at,
            changed_fields=v.changed_fields,
            comment=v.comment,
            values=values,
        )


class HistoryPage(Page[HistoryEntry]):
    """A page of a registration's history, oldest version first."""
