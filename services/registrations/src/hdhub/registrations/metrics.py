"""Registrations' domain gauges, read from its database just before a scrape (see
:func:`hdhub.common.metrics.register_domain_metrics`): what SREs alert on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Gauge
from sqlalchemy import func, select

from hdhub.common.db import utcnow
from hdhub.common.metrics import job_metrics
from hdhub.registrations.domain.lifecycle import Confirmation, Status
from hdhub.registrations.store import Job, Registration

if TYPE_CHECKING:
    from hdhub.registrations.runtime import RegistrationsService

REGISTRATIONS = Gauge(
    "hdhub_registrations", "Registrations by status and status confirmation", ["status", "confirmation"]
)
DELIVERY_BACKLOG_AGE = Gauge(
    "hdhub_delivery_backlog_age_seconds", "How long the oldest registration has been waiting in Sending"
)
PENDING_CONFIRMATION_AGE = Gauge(
    "hdhub_pending_confirmation_oldest_seconds",
    "How long ago the oldest registration still waiting for the central acknowledgement was submitted",
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
            await session.execute(select(func.min(Registration.updated_at)).where(Registration.status == Status.SENDING))
        ).scalar()
        pending_since = (
            await session.execute(
                select(func.min(Registration.submitted_at)).where(
                    Registration.status_confirmation == Confirmation.PENDING
                )
            )
        ).scalar()
    REGISTRATIONS.clear()
    for status, confirmation, n in counts:
        REGISTRATIONS.labels(status, confirmation or "").set(n)
    now = utcnow()
    DELIVERY_BACKLOG_AGE.set((now - sending_since).total_seconds() if sending_since else 0.0)
    PENDING_CONFIRMATION_AGE.set((now - pending_since).total_seconds() if pending_since else 0.0)
    await job_metrics("registrations", service.db, Job)
