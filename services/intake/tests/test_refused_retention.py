"""What intake keeps of a refused file: its bytes encrypted at rest, and only for
``refused_retention_days``; the refusal itself (rule, reason) stays visible after."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from hdhub.common.config import platform
from hdhub.common.db import utcnow
from hdhub.intake.settings import IntakeSettings
from hdhub.intake.worker import PURGE_JOB, schedule
from services.intake.tests.support import LAB, file_named, unique, vcf
from services.intake.tests.test_http_and_linking import put
from tests.support.stack import Stack


async def test_a_refused_file_is_encrypted_at_rest_and_purged_after_its_retention(stack: Stack) -> None:
    intake = stack.service("intake")
    name = unique() + ".vcf"
    data = vcf(meta=("##DOB=1985-07-30",), samples=("PEETERS_JAN",))
    out = (await put(stack, "NGS", name, data)).json()
    assert (out["state"], out["rule"]) == ("rejected", "vcf-patient-data")
    key = (await intake.files.listing(LAB, file_id=out["id"])).files[0].object_key
    at_rest = await intake.objects.inner.read(key)
    assert at_rest[:4] == b"HDS1" and b"1985-07-30" not in at_rest and b"PEETERS" not in at_rest

    # Kept while it may be looked into (3 days by default), then its bytes go.
    assert await intake.files.purge_refused(utcnow() + timedelta(days=2)) == 0
    assert await intake.objects.stat(key) is not None
    assert await intake.files.purge_refused(utcnow() + timedelta(days=4)) >= 1
    assert await intake.objects.stat(key) is None
    shown = await file_named(stack, name)
    assert (shown["state"], shown["rule"], shown["reason"]) == (out["state"], out["rule"], out["reason"])
    assert shown["content_purged_at"]
    assert await intake.files.purge_refused(utcnow() + timedelta(days=5)) == 0  # once


async def test_an_accepted_file_is_not_purged(stack: Stack) -> None:
    intake = stack.service("intake")
    out = (await put(stack, "NGS", unique() + ".vcf", vcf())).json()
    assert out["state"] == "accepted"
    await intake.files.purge_refused(utcnow() + timedelta(days=30))
    key = (await intake.files.listing(LAB, file_id=out["id"])).files[0].object_key
    assert await intake.objects.read(key) == vcf()


async def test_the_purge_runs_as_an_hourly_job_queued_once_between_workers(stack: Stack) -> None:
    files = stack.service("intake").files
    slot = (utcnow() + timedelta(days=400)).strftime("%Y-%m-%dT%H")
    assert [await schedule(files, PURGE_JOB, slot) for _ in range(2)] == [True, False]


def test_production_needs_the_intake_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDHUB_ENVIRONMENT", "production")
    monkeypatch.setenv("HDHUB_INTAKE_SECRET_KEY", "a-real-secret")
    monkeypatch.setenv("HDHUB_SERVICE_CLIENT_SECRET", "a-real-service-secret")
    monkeypatch.setenv("HDHUB_REDIS_URL", "redis://redis:6379/0")
    # Checked apart, each naming its own setting:
    monkeypatch.setenv("HDHUB_INTAKE_SFTP_HOST_KEY_FILE", "/run/secrets/ssh_host_ed25519_key")
    monkeypatch.setenv("HDHUB_INTAKE_DATABASE_URL", "postgresql+psycopg://intake@db/intake")
    monkeypatch.setenv("HDHUB_OBJECT_STORE_URL", "s3://hdhub")
    monkeypatch.delenv("HDHUB_INTAKE_MASTER_KEY", raising=False)  # a test stack may have set one
    platform.cache_clear()
    try:
        with pytest.raises(ValueError, match="HDHUB_INTAKE_MASTER_KEY is unset or a placeholder"):
            IntakeSettings()
        monkeypatch.setenv("HDHUB_INTAKE_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
        assert IntakeSettings().master_keys() == [bytes(range(32))]
    finally:
        monkeypatch.undo()
        platform.cache_clear()
