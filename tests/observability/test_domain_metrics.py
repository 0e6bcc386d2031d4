"""Domain gauges on /metrics, read from the services' databases before a scrape:
registrations by status, delivery backlog age, pending confirmations, uploads, jobs."""

from __future__ import annotations

import re

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
    r = await stack.client.post(SUBMIT, json=record(), headers=await stack.headers(HIS))
    assert r.status_code == 202, r.text
    await refresh_domain_metrics(force=True)
    text = (await stack.client.get("/metrics")).text
    total = sum(
        float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith("hdhub_registrations{")
    )
    assert total >= 1
    assert sample(text, "hdhub_delivery_backlog_age_seconds") is not None
    assert sample(text, "hdhub_pending_confirmation_oldest_seconds") is not None
    for gauge in ("hdhub_uploads", "hdhub_jobs", "hdhub_job_backlog_age_seconds", "hdhub_upload_rows_total"):
        assert f"# HELP {gauge} " in text, gauge
    # Labels are bounded: statuses and job kinds, never an organisation, a patient or a key.
    for line in text.splitlines():
        if line.startswith("hdhub_"):
            assert "az-demo" not in line and "IDC" not in line


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
