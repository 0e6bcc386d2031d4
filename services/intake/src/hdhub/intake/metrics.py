"""Intake's metrics: transfers as they happen (counters), and the files' states read from
the database just before a scrape (gauges, see :func:`hdhub.common.metrics.register_domain_metrics`).
Labels are registry folders, sources and rule slugs: never a file name or an organisation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select

from hdhub.common.db import utcnow
from hdhub.common.metrics import job_metrics, set_gauge
from hdhub.intake.store import ACCEPTED, IntakeFile, Job

if TYPE_CHECKING:
    from hdhub.intake.runtime import IntakeService

BYTES_RECEIVED = Counter("hdhub_intake_bytes_received", "Bytes received into the object store", ["source"])
TRANSFERS = Counter(
    "hdhub_intake_transfers",
    "Transfers ended, by source and outcome (received, or the rule that aborted them)",
    ["source", "outcome"],
)
FILES = Gauge("hdhub_intake_files", "Files by registry folder and state", ["registry", "state"])
OLDEST_UNMATCHED_AGE = Gauge(
    "hdhub_intake_oldest_unmatched_age_seconds",
    "How long the oldest accepted file of each registry has been waiting for its registration",
    ["registry"],
)

BYTES_SENT = Counter("hdhub_intake_bytes_sent_to_central", "File bytes streamed to the central platform")
SEND_ATTEMPTS = Counter(
    "hdhub_intake_send_attempts",
    "Attempts at sending a file to the central platform, by outcome (acknowledged, or why it waits)",
    ["outcome"],
)

LATE_VCFS = Gauge(
    "hdhub_intake_late_vcfs",
    "NGS registrations whose VCF has not arrived vcf_late_hours after they were created (no labels: "
    "never an organisation or a file name)",
)


async def refresh(service: IntakeService) -> None:
    async with service.db.system_session() as session:
        counts = (
            await session.execute(
                select(IntakeFile.registry_folder, IntakeFile.state, func.count()).group_by(
                    IntakeFile.registry_folder, IntakeFile.state
                )
            )
        ).all()
        waiting = (
            await session.execute(
                select(IntakeFile.registry_folder, func.min(IntakeFile.delivered_at))
                .where(IntakeFile.state == ACCEPTED, IntakeFile.unmatched.is_(True))
                .group_by(IntakeFile.registry_folder)
            )
        ).all()
    set_gauge(FILES, {(registry, state): n for registry, state, n in counts})
    now = utcnow()
    set_gauge(
        OLDEST_UNMATCHED_AGE,
        {
            (registry,): max(0.0, (now - since).total_seconds())
            for registry, since in waiting
            if since is not None
        },
    )
    await job_metrics("intake", service.db, Job)
