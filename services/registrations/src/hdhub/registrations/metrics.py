"""Registrations' domain gauges, read from its database just before a scrape (see
:func:`hdhub.common.metrics.register_domain_metrics`): what SREs alert on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Gauge
from sqlalchemy import func, select

from hdhub.common.metrics import job_metrics, set_gauge
from hdhub.registrations.records.lifecycle import RegistrationStatus, StatusConfirmation
from hdhub.registrations.store import Job, Registration

if TYPE_CHECKING:
    from hdhub.registrations.runtime import RegistrationsService

REGISTRATIONS = Gauge(
    "hdhub_registrations", "Registrations by status and status confirmation", ["status", "confirmation"]
)
DELIVERY_BACKLOG_AGE = Gauge(
    "hdhub_delivery_backlog_age_seconds",
    "How long the oldest registration of each registry has been waiting in Sending",
    ["registry"],
)
UNCONFIRMED_AGE = Gauge(
    "hdhub_oldest_unconfirmed_age_seconds",
    "How long ago the oldest registration of each registry still without the central "
    "platform's confirmation (Pending, or NOK: resent or parked) was submitted",
    ["registry"],
)
NOK = Gauge(
    "hdhub_registrations_nok",
    "Registrations whose status confirmation is NOK (no confirmation within 48 hours), by registry",
    ["registry"],
)
#: Still waiting for the central platform's confirmation: a NOK registration has waited
#: longer than a pending one, it has not stopped waiting.
UNCONFIRMED = (StatusConfirmation.PENDING, StatusConfirmation.NOK)


async def refresh(service: RegistrationsService) -> None:
    async with service.db.system_session() as session:
        counts = (
            await session.execute(
                select(Registration.status, Registration.status_confirmation, func.count()).group_by(
                    Registration.status, Registration.status_confirmation
                )
            )
        ).all()
        sending_since = (
            await session.execute(
                select(Registration.project_code, func.min(Registration.updated_at))
                .where(Registration.status == RegistrationStatus.SENDING)
                .group_by(Registration.project_code)
            )
        ).all()
        unconfirmed_since = (
            await session.execute(
                select(Registration.project_code, func.min(Registration.submitted_at))
                .where(Registration.status_confirmation.in_(UNCONFIRMED))
                .group_by(Registration.project_code)
            )
        ).all()
        nok = (
            await session.execute(
                select(Registration.project_code, func.count())
                .where(Registration.status_confirmation == StatusConfirmation.NOK)
                .group_by(Registration.project_code)
            )
        ).all()
    set_gauge(REGISTRATIONS, {(status, confirmation or ""): n for status, confirmation, n in counts})
    set_gauge(NOK, {(registry,): n for registry, n in nok})
    now = service.delivery.clock.now()  # the delivery rules' clock (a test's ManualClock)
    for gauge, rows in ((DELIVERY_BACKLOG_AGE, sending_since), (UNCONFIRMED_AGE, unconfirmed_since)):
        set_gauge(
            gauge, {(registry,): max(0.0, (now - since).total_seconds()) for registry, since in rows if since}
        )
    await job_metrics("registrations", service.db, Job)
