"""What the Upload Center keeps of an uploaded file: encrypted at rest while it is kept, a
dry run's file gone once it is read, every other one gone after its retention, and the
upload still readable (findings, reports) saying its file is gone."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from hdhub.common.db import utcnow
from services.uploads.tests.integration.test_linked_uploads import LIMS, post, sequences
from services.uploads.tests.integration.test_uploads_api import csv_bytes, finished, report, upload
from tests.support.samples import record
from tests.support.stack import Stack


async def source_state(stack: Stack, upload_id: str, who: str) -> dict[str, Any]:
    r = await stack.client.get(f"/api/v1/uploads/{upload_id}", headers=await stack.headers(who))
    assert r.status_code == 200, r.text
    return {k: r.json()[k] for k in ("source_file", "source_purged_at")}


async def test_a_processed_source_is_encrypted_at_rest_and_purged_after_its_retention(stack: Stack) -> None:
    uploads = stack.service("uploads").uploads
    data = csv_bytes([record(), record()])
    created = await upload(stack, data)
    done = await finished(stack, created["id"])
    assert done["status"] == "done" and done["source_file"] == "kept"
    key = f"uploads/{done['organisation_id']}/{done['id']}/source.csv"
    at_rest = await uploads.plain_store.read(key)
    header = data.split(b"\r\n", 1)[0]
    assert at_rest[:4] == b"HDS1" and header[:20] not in at_rest and data[-30:] not in at_rest
    assert await uploads.store.read(key) == data  # the service itself reads it back

    # Within the retention nothing goes; past it, the sweep deletes the file and says so.
    assert await uploads.purge_sources(now=utcnow() + timedelta(days=6)) == 0
    assert await uploads.purge_sources(now=utcnow() + timedelta(days=8)) >= 1
    assert await uploads.plain_store.stat(key) is None
    state = await source_state(stack, done["id"], "az-demo-his")
    assert state["source_file"] == "purged" and state["source_purged_at"]
    # The reports do not need it: still served.
    assert len(await report(stack, done["id"], "success")) == 2
    assert await uploads.purge_sources(now=utcnow() + timedelta(days=9)) == 0  # idempotent


async def test_a_dry_runs_source_is_purged_once_it_is_read(stack: Stack) -> None:
    uploads = stack.service("uploads").uploads
    created = await upload(stack, csv_bytes([record()]), dry_run=True)
    done = await finished(stack, created["id"])
    assert done["dry_run"] is True and done["status"] == "done"
    key = f"uploads/{done['organisation_id']}/{done['id']}/source.csv"
    for _ in range(200):  # the purge job queued with the run's end
        if (await source_state(stack, done["id"], "az-demo-his"))["source_file"] == "purged":
            break
        await asyncio.sleep(0.05)
    assert (await source_state(stack, done["id"], "az-demo-his"))["source_file"] == "purged"
    assert await uploads.plain_store.stat(key) is None
    assert await report(stack, done["id"], "errors") == []


async def test_linking_a_held_file_whose_retention_ran_out_is_a_clear_410(stack: Stack) -> None:
    uploads = stack.service("uploads").uploads
    name = "HSP_20240903101500"
    seq = await post(stack, f"{name}.csv", sequences(name, [f"{name}_00001"]), kind="sequences")
    assert await uploads.purge_sources(now=utcnow() + timedelta(days=8)) >= 1
    rows = [record("HIV_SEQUENCE", TX_ATT=name, TX_ATT_RECRD=f"{name}_00001")]
    r = await stack.client.post(
        "/api/v1/uploads",
        params={"dcd_code": "HIV_SEQUENCE", "linked_upload_id": seq["id"]},
        files={"file": ("meta.csv", csv_bytes(rows), "text/csv")},
        headers=await stack.headers(LIMS),
    )
    assert r.status_code == 410, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("upload-source-purged")
    assert (await source_state(stack, seq["id"], LIMS))["source_file"] == "purged"


async def test_the_sweep_is_queued_once_an_hour_between_workers(stack: Stack) -> None:
    uploads = stack.service("uploads").uploads
    at = utcnow() + timedelta(days=30)
    uploads._next_sweep = 0.0
    first = await uploads.schedule_sweep(now=at)
    uploads._next_sweep = 0.0  # a second worker, or this one ten minutes later
    second = await uploads.schedule_sweep(now=at)
    assert (first, second) == (True, False)


async def test_a_file_purged_under_a_running_upload_fails_it_at_once_saying_why(stack: Stack) -> None:
    uploads = stack.service("uploads").uploads
    name = "HSP_20240904101500"
    seq = await post(stack, f"{name}.csv", sequences(name, [f"{name}_00001"]), kind="sequences")
    # The sweep takes the held file between the link's check and its processing.
    await uploads.store.delete(f"uploads/{seq['organisation_id']}/{seq['id']}/source.csv")
    rows = [record("HIV_SEQUENCE", TX_ATT=name, TX_ATT_RECRD=f"{name}_00001")]
    meta = await post(stack, "meta.csv", csv_bytes(rows), linked_upload_id=seq["id"])
    done = await finished(stack, meta["id"], LIMS)
    assert done["status"] == "failed"
    assert [f["message"] for f in done["findings"] if f["rule"] == "technical_failure"] == [
        "The upload could not be processed: the file is gone (its retention ran out); upload it again"
    ]
