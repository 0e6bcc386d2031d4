"""NIPPIN's metrics: messages by registry and status, read from the database just before a
scrape. Labels are DCD codes and statuses: never an organisation, a message or a patient."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Gauge
from sqlalchemy import func, select

from hdhub.common.metrics import job_metrics, set_gauge
from hdhub.nippin.store import Job, NippinMessage

if TYPE_CHECKING:
    from hdhub.nippin.runtime import NippinService

MESSAGES = Gauge("hdhub_nippin_messages", "NIPPIN messages by DCD and status", ["dcd", "status"])


async def refresh(service: NippinService) -> None:
    async with service.db.system_session() as session:
        counts = (
            await session.execute(
                select(NippinMessage.dcd_code, NippinMessage.status, func.count()).group_by(
                    NippinMessage.dcd_code, NippinMessage.status
                )
            )
        ).all()
    set_gauge(MESSAGES, {(dcd, status): n for dcd, status, n in counts})
    await job_metrics("nippin", service.db, Job)
