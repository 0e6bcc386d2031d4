"""Registrations' domain gauges, read from its database just before a scrape (see
:func:`hdhub.common.metrics.register_domain_metrics`): what SREs alert on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Gauge
from sqlalchemy import func, select

from hdhub.common.db import utcnow
from hdhub.common.metrics import job_metrics, set_gauge
from hdhub.registrations.domain.lifecycle import Confirmation, Status
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
PENDING_CONFIRMATION_AGE = Gauge(
    "hdhub_oldest_pending_confirmation_age_seconds",
    "How long ago the oldest registration of each registry still waiting for the central acknowledgement was submitted",
    ["registry"],
)


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
                .where(Registration.status == Status.SENDING)
                .group_by(Registration.project_code)
            )
        ).all()
        pending_since = (
            await session.execute(
                select(Registration.project_code, func.min(Registration.submitted_at))
                .where(Registration.status_confirmation == Confirmation.PENDING)
                .group_by(Registration.project_code)
            )
        ).all()
    set_gauge(REGISTRATIONS, {(status, confirmation or ""): n for status, confirmation, n in counts})
    now = utcnow()
    for gauge, rows in ((DELIVERY_BACKLOG_AGE, sending_since), (PENDING_CONFIRMATION_AGE, pending_since)):
        set_gauge(
            gauge, {(registry,): max(0.0, (now - since).total_seconds()) for registry, since in rows if since}
        )
    await job_metrics("registrations", service.db, Job)
