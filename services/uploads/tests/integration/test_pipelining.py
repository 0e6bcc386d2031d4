"""Batches are pipelined (the next one goes to registrations while the previous one is
stored): answers are still recorded in file order and the later row of a business key
still wins across batches."""

from __future__ import annotations

from services.uploads.tests.integration.test_uploads_api import HIS, csv_bytes, finished, report, upload
from tests.support.samples import record
from tests.support.stack import Stack


async def test_the_later_row_wins_across_pipelined_batches(stack: Stack) -> None:
    uploads = stack.service("uploads").uploads
    first = record(MS_WEIGHT="70.0")
    rows = [
        first,
        record(),
        record(MS_HEIGHT="tall"),
        {**first, "MS_WEIGHT": "71.0"},
        record(),
        {**first, "MS_WEIGHT": "72.0"},
        record(),
    ]
    uploads.settings.batch_rows = 1  # seven batches, each sent while the one before is stored
    try:
        done = await finished(stack, (await upload(stack, csv_bytes(rows), autosubmit=True))["id"])
    finally:
        uploads.settings.batch_rows = 2000
    assert done["status"] == "done", done
    counts = done["counts"]
    assert (counts["rows_read"], counts["created"], counts["updated"], counts["rejected"]) == (7, 4, 2, 1), (
        counts
    )
    success = await report(stack, done["id"], "success")
    assert [(s["line"], s["outcome"]) for s in success] == [
        ("2", "created"),
        ("3", "created"),
        ("5", "updated"),
        ("6", "created"),
        ("7", "updated"),
        ("8", "created"),
    ]
    same = {s["registration_id"] for s in success if s["line"] in ("2", "5", "7")}
    assert len(same) == 1
    errors = await report(stack, done["id"], "errors")
    assert [(e["line"], e["column"]) for e in errors] == [("4", "MS_HEIGHT")]
    r = await stack.client.get(f"/api/v1/registrations/{same.pop()}", headers=await stack.headers(HIS))
    assert r.json()["values"]["MS_WEIGHT"] == "72.0"  # the last row of the file
