"""The Upload Center's metrics: rows by outcome (counted when an upload ends) and uploads
by status and jobs (read from the database before a scrape)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select

from hdhub.common.metrics import job_metrics, set_gauge
from hdhub.uploads.store import Job, Upload

if TYPE_CHECKING:
    from hdhub.uploads.runtime import UploadsService

UPLOAD_ROWS = Counter(
    "hdhub_upload_rows_total",
    "Rows of finished uploads by outcome (created, updated, ignored_duplicate, kept_stored, rejected)",
    ["outcome"],
)
UPLOADS = Gauge("hdhub_uploads", "Uploads by status (queued, processing, held, done, failed)", ["status"])
OUTCOMES = ("created", "updated", "ignored_duplicate", "kept_stored", "rejected")


def count_rows(counts: Mapping[str, int]) -> None:
    for outcome in OUTCOMES:
        if counts.get(outcome):
            UPLOAD_ROWS.labels(outcome).inc(counts[outcome])


async def refresh(service: UploadsService) -> None:
    async with service.db.system_session() as session:
        rows = (await session.execute(select(Upload.status, func.count()).group_by(Upload.status))).all()
    set_gauge(UPLOADS, {(status,): n for status, n in rows})
    await job_metrics("uploads", service.db, Job)
