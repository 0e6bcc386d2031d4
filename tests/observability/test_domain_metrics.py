"""Domain gauges on /metrics, read from the services' databases before a scrape:
registrations by status, delivery backlog age, pending confirmations, uploads, jobs."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from hdhub.common.metrics import refresh_domain_metrics
from tests.support.samples import record
from tests.support.stack import Stack

HIS = "az-demo-his"
SUBMIT = "/proxy/api/dcd/payload/submit?organization-id=az-demo&dcd-id=ANGIO_HOSP&dcd-version-id=latest"


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        got = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if metric.split("{")[0] == name and all(got.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


async def test_domain_gauges_follow_the_database(stack: Stack) -> None:
    from sqlalchemy import select, update

    from hdhub.common.db import utcnow
    from hdhub.registrations.store import Registration

    r = await stack.client.post(SUBMIT, json=record(), headers=await stack.headers(HIS))
    assert r.status_code == 202, r.text
    key = r.json()["businessKey"]
    db = stack.service("registrations").db
    for _ in range(200):  # let the worker finish with it first
        async with db.system_session() as session:
            status = (
                await session.execute(select(Registration.status).where(Registration.business_key == key))
            ).scalar()
        if status != "sending":
            break
        await asyncio.sleep(0.05)
    # Then make it a registration of a registry of its own, waiting two hours for its
    # acknowledgement, and one more waiting in Sending for an hour.
    async with db.system_session() as session:
        await session.execute(
            update(Registration)
            .where(Registration.business_key == key)
            .values(
                project_code="HDBP9901",
                status="submitted",
                status_confirmation="pending",
                submitted_at=utcnow() - timedelta(hours=2),
            )
        )
    await refresh_domain_metrics(force=True)
    text = (await stack.client.get("/metrics")).text
    total = sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("hdhub_registrations{")
    )
    assert total >= 1
    assert sample(text, "hdhub_registrations", status="submitted", confirmation="pending") is not None
    age = sample(text, "hdhub_oldest_unconfirmed_age_seconds", registry="HDBP9901")
    assert age is not None and 7000 < age < 7400
    for gauge in (
        "hdhub_uploads",
        "hdhub_jobs",
        "hdhub_job_backlog_age_seconds",
        "hdhub_upload_rows_total",
        "hdhub_delivery_backlog_age_seconds",
    ):
        assert f"# HELP {gauge} " in text, gauge
    # Labels are bounded: statuses, registries and job kinds, never a patient or a key, nor
    # an organisation but on the one gauge that is about organisations (certificate expiry).
    for line in text.splitlines():
        if line.startswith("hdhub_"):
            assert key not in line
            assert "az-demo" not in line or line.startswith("hdhub_certificate_not_after_timestamp_seconds{")


async def test_a_failing_refresh_never_breaks_the_scrape(stack: Stack) -> None:
    from hdhub.common import metrics

    async def broken() -> None:
        raise RuntimeError("database down")

    metrics.register_domain_metrics("broken-test", broken)
    try:
        await refresh_domain_metrics(force=True)
        r = await stack.client.get("/metrics")
        assert r.status_code == 200 and "http_server_requests_total" in r.text
    finally:
        metrics.unregister_domain_metrics("broken-test")


async def test_readiness_lists_each_service_and_liveness_ignores_databases(stack: Stack) -> None:
    r = await stack.client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert set(r.json()["checks"]) >= {"identity", "registrations", "uploads", "intake", "portal"}
    assert all(state == "ok" for state in r.json()["checks"].values())
    # Probes are not requests: they stay out of the request metrics.
    assert 'route="/readyz"' not in (await stack.client.get("/metrics")).text
