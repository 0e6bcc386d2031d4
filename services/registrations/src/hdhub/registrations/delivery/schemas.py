"""REST shapes of delivery to the central platform."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from hdhub.common.paging import Page
from hdhub.registrations.store import CentralDecision, Delivery, FollowUp, Registration


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
    def of(cls, d: Delivery, reg: Registration | None = None) -> DeliveryOut:
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


class DeliveryPage(Page[DeliveryOut]):
    """A page of deliveries, newest change first."""


class DecisionOut(BaseModel):
    """A decision of the central platform on a registration, as hdhub took it."""

    decision_id: str
    registration_id: str | None
    status: str = Field(
        description="What the central platform decided: corrections_needed, approved, follow_up_needed, error"
    )
    comment: str = Field(description="The central platform's comment for the data provider")
    fields: list[str] = Field(description="Technical names of the fields concerned (may be empty)")
    version: int = Field(description="The registration version decided on")
    decided_at: str = Field(description="When the central platform decided (RFC 3339)")
    received_at: datetime
    outcome: str = Field(description="applied, or refused (then `reason`)")
    reason: str | None = Field(
        description="Why it was refused: registration-changed, transition-not-allowed, unknown-fields, no-follow-up-defined"
    )
    acknowledged_at: datetime | None = Field(description="When the central platform had the outcome")

    @classmethod
    def of(cls, d: CentralDecision) -> DecisionOut:
        return cls(
            decision_id=d.decision_id,
            registration_id=d.registration_id,
            status=d.status,
            comment=d.comment,
            fields=list(d.fields),
            version=d.version,
            decided_at=d.decided_at,
            received_at=d.received_at,
            outcome=d.outcome,
            reason=d.reason,
            acknowledged_at=d.acknowledged_at,
        )


class DecisionPage(Page[DecisionOut]):
    """A page of a registration's decisions, newest first."""


class FollowUpOut(BaseModel):
    """A follow-up registration due, as the DCD defines it (ANGIO: one year after PCI)."""

    id: str
    organisation_id: str
    registration_id: str = Field(description="The registration followed up")
    registration_code: str | None
    project_code: str
    dcd_code: str = Field(description="The DCD to register the follow-up with")
    comment: str = Field(description="The central platform's comment")
    due_at: datetime
    created_at: datetime

    @classmethod
    def of(cls, f: FollowUp) -> FollowUpOut:
        return cls(
            id=f.id,
            organisation_id=f.organisation_id,
            registration_id=f.registration_id,
            registration_code=f.registration_code,
            project_code=f.project_code,
            dcd_code=f.dcd_code,
            comment=f.comment,
            due_at=f.due_at,
            created_at=f.created_at,
        )


class FollowUpPage(Page[FollowUpOut]):
    """A page of follow-ups, soonest due first."""
