"""A stored batch's result, kept for replay, reads back as it was written."""

from __future__ import annotations

import dataclasses
import json

from hdhub.registrations.batches.replay import BatchResult, RowPlan, kept


def test_every_row_plan_field_is_kept() -> None:
    plan = RowPlan(7, "updated", "reg-1", "key-1", "submitted")
    body = json.loads(kept("org", "batch", "fp", BatchResult([plan], [], [], False, "1.0.0")).body)
    assert RowPlan(**body["rows"][0]) == plan
    # A field added to RowPlan must be kept too (kept() names each one).
    assert set(body["rows"][0]) == {f.name for f in dataclasses.fields(RowPlan)}
