"""An upload job carries the organisation and the person (or hospital system) who uploaded;
the worker acts for them alone, and registrations records that person as the author."""

from __future__ import annotations

from sqlalchemy import select

from hdhub.common.auth import ActingFor
from hdhub.uploads.store import Job
from services.uploads.tests.integration.test_uploads_api import csv_bytes, finished, report, upload
from tests.support.samples import record
from tests.support.stack import Stack

NURSE = "nurse@az-demo.test"


async def test_an_upload_job_carries_the_organisation_and_the_uploader(stack: Stack) -> None:
    uploads = stack.service("uploads").uploads
    created = await upload(stack, csv_bytes([record()]), NURSE, organisation_id="az-demo", autosubmit=False)
    async with uploads.db.system_session() as session:
        job = (await session.execute(select(Job).where(Job.subject_id == created["id"]))).scalar_one()
    assert uploads.jobs.acting_for(job) == ActingFor("az-demo", NURSE)
    done = await finished(stack, created["id"], NURSE)
    assert done["status"] == "done" and done["counts"]["created"] == 1, done
    registration_id = (await report(stack, created["id"], "success", who=NURSE))[0]["registration_id"]
    history = await stack.client.get(
        f"/api/v1/registrations/{registration_id}/history", headers=await stack.headers(NURSE)
    )
    assert [(h["actor"], h["via"]) for h in history.json()["items"]] == [(NURSE, "upload")]
