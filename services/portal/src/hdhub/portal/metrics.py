"""Portal's domain gauges, read from its database just before a scrape (see
:func:`hdhub.common.metrics.register_domain_metrics`): when each organisation's published
certificate expires, so an expiry is seen weeks ahead rather than as refused deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Gauge
from sqlalchemy import select

from hdhub.portal.store import Certificate

if TYPE_CHECKING:
    from hdhub.portal.runtime import PortalService

CERTIFICATE_NOT_AFTER = Gauge(
    "hdhub_certificate_not_after_timestamp_seconds",
    "When the published certificate of each organisation expires (its not-after, Unix time); "
    "an organisation without a published certificate has no series",
    ["organisation"],
)


async def refresh(service: PortalService) -> None:
    async with service.db.system_session() as session:
        rows = (
            await session.execute(
                select(Certificate.organisation_id, Certificate.not_after).where(Certificate.published)
            )
        ).all()
    # An organisation that unpublished its certificate leaves the gauge rather than reading 0
    # (which would read as "expired in 1970"); no await between clearing and setting.
    CERTIFICATE_NOT_AFTER.clear()
    for org, not_after in rows:
        CERTIFICATE_NOT_AFTER.labels(str(org)).set(not_after.timestamp())
