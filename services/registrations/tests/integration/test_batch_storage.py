"""What a batch stores (migration 0008): one row per registration, one history entry the
batch's registrations share, one delivery job per chunk of them; and every guarantee the
per-registration rows gave still holds: history read version by version (REST and gRPC),
each registration delivered once, a worker killed mid-batch losing and duplicating
nothing, a registration that must wait keeping a job of its own, tenancy."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from hdhub.common.auth import current_principal, verifier
from hdhub.common.db import utcnow
from hdhub.common.grpc import channel
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
from hdhub.registrations.delivery.queue import DELIVER, DELIVER_BATCH, REGISTRATIONS_PER_JOB
from hdhub.registrations.delivery.worker import Delivery
from hdhub.registrations.store import BatchHistory, Job, Registration, RegistrationVersion
from services.registrations.tests.integration.test_delivery import Central, Killed
from tests.support import central as support
from tests.support.arrow_rows import encode_rows
from tests.support.clock import ManualClock
from tests.support.samples import record
from tests.support.stack import Stack
from tests.support.tokens import bearer

HIS = "az-demo-his"


@pytest.fixture
async def central(stack: Stack) -> AsyncIterator[Central]:
    with support.on_clock(Central(stack, ManualClock(utcnow() - timedelta(hours=1)))) as c:
        await c.settle()
        yield c


async def upsert(
    stack: Stack, rows: list[dict[str, str]], *, token: str | None = None, org: str = "az-demo"
) -> list[str]:
    current_principal.set(await verifier().verify(token or await stack.token(HIS)))
    stub = pb_grpc.RegistrationsServiceStub(channel("registrations"))
    reply = await stub.UpsertBatch(
        pb.UpsertBatchRequest(
            organisation_id=org,
            dcd=pb.DcdRef(dcd_code="ANGIO_HOSP"),
            rows_arrow=encode_rows(rows),
            batch_id=uuid.uuid4().hex,
            submit=True,
        )
    )
    assert [r.outcome for r in reply.results] == [pb.ROW_OUTCOME_CREATED] * len(rows)
    return [r.registration_id for r in reply.results]


async def stored(stack: Stack, ids: list[str]) -> dict[str, Any]:
    """What the database holds for these registrations, beside their rows."""
    db = stack.service("registrations").db
    async with db.system_session() as session:
        versions = (
            await session.execute(select(func.count()).where(RegistrationVersion.registration_id.in_(ids)))
        ).scalar_one()
        shared = set(
            (
                await session.execute(select(Registration.batch_history_id).where(Registration.id.in_(ids)))
            ).scalars()
        )
        jobs = list(
            (await session.execute(select(Job).where(Job.kind.in_([DELIVER, DELIVER_BATCH])))).scalars()
        )
    own = [j for j in jobs if j.kind == DELIVER and j.subject_id in ids]
    batch = [j for j in jobs if j.kind == DELIVER_BATCH and set(j.payload["registrations"]) & set(ids)]
    return {"versions": versions, "shared": shared, "own": own, "batch": batch}


async def history(stack: Stack, reg_id: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    r = await stack.client.get(
        f"/api/v1/registrations/{reg_id}/history", headers=headers or await stack.headers(HIS)
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_batch_writes_one_row_per_registration_and_each_history_reads_version_by_version(
    central: Central,
) -> None:
    stack = central.stack
    rows = [record(), record(STATUS="draft"), record()]
    ids = await upsert(stack, rows)
    found = await stored(stack, ids)
    # No history row and no job of their own: one shared entry per kind of creation
    # (submitted, open), one delivery job for the submitted ones.
    assert found["versions"] == 0 and found["own"] == []
    assert len(found["shared"]) == 2 and None not in found["shared"]
    [job] = found["batch"]
    assert sorted(job.payload["registrations"]) == sorted([ids[0], ids[2]])
    async with stack.service("registrations").db.system_session() as session:
        entries = list(
            (
                await session.execute(select(BatchHistory).where(BatchHistory.id.in_(found["shared"])))
            ).scalars()
        )
    assert sorted(e.submitted for e in entries) == [False, True]
    assert {e.batch_id for e in entries} == {entries[0].batch_id} and entries[0].batch_id

    submitted, draft = ids[0], ids[1]
    reg = (
        await stack.client.get(f"/api/v1/registrations/{submitted}", headers=await stack.headers(HIS))
    ).json()
    items = await history(stack, submitted)
    assert [(h["version"], h["action"], h["status"]) for h in items] == [
        (1, "create", "open"),
        (2, "submit", "sending"),
    ]
    assert items[0]["changed_fields"] == sorted(reg["values"]) and items[1]["changed_fields"] == []
    assert all(h["values"] == reg["values"] and h["via"] == "upload" for h in items)
    assert all(h["actor"] == items[0]["actor"] and h["dcd_version"] == "1.0.0" for h in items)
    assert [(h["version"], h["action"]) for h in await history(stack, draft)] == [(1, "create")]

    # gRPC (the portal's registration page) reads the same history.
    current_principal.set(await verifier().verify(await stack.token(HIS)))
    stub = pb_grpc.RegistrationsServiceStub(channel("registrations"))
    answer = await stub.GetRegistrationHistory(pb.GetRegistrationHistoryRequest(id=submitted))
    assert [(v.version, v.action, v.status) for v in answer.versions] == [
        (1, "create", "open"),
        (2, "submit", "sending"),
    ]
    assert json.loads(answer.versions[0].values_json) == reg["values"]
    assert list(answer.versions[0].changed_fields) == sorted(reg["values"])

    # A later change is a version row of its own; the shared entry's values are rebuilt
    # from what it replaced.
    read = await stack.client.get(f"/api/v1/registrations/{draft}", headers=await stack.headers(HIS))
    before = read.json()
    changed = {**rows[1], "MS_HEIGHT": "181"}
    changed.pop("STATUS")
    r = await stack.client.put(
        f"/api/v1/registrations/{draft}",
        json={"values": changed},
        headers={**await stack.headers(HIS), "If-Match": read.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    items = await history(stack, draft)
    assert [(h["version"], h["action"]) for h in items] == [(1, "create"), (2, "save")]
    assert items[0]["values"] == before["values"] and items[0]["values"]["MS_HEIGHT"] != 181
    assert items[1]["values"]["MS_HEIGHT"] == 181
    assert items[1]["changed_fields"] == ["MS_BMI", "MS_HEIGHT"]  # the BMI is calculated from it

    # Delivered once each; the worker's entries follow the shared ones.
    central.start()
    await central.settle()
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    for reg_id in (ids[0], ids[2]):
        reg = await central.registration(reg_id)
        assert (reg["status"], reg["status_confirmation"]) == ("submitted", "ok")
        records, halves = await central.at_receiver(await central.technical_id(reg_id))
        assert (len(records), len(halves)) == (1, 1)
        assert [h["action"] for h in await history(stack, reg_id)] == [
            "create",
            "submit",
            "processed",
            "confirmation_ok",
        ]
    found = await stored(stack, ids)
    assert [j.status for j in found["batch"]] == ["done"] and found["own"] == []


async def test_another_organisation_sees_nothing_of_a_batch(central: Central) -> None:
    stack = central.stack
    ids = await upsert(stack, [record()])
    lab = await stack.headers("biologist@lab-demo.test")
    r = await stack.client.get(f"/api/v1/registrations/{ids[0]}/history", headers=lab)
    assert r.status_code == 404


async def test_a_worker_killed_in_a_batch_loses_nothing_and_duplicates_nothing(central: Central) -> None:
    stack = central.stack
    ids = await upsert(stack, [record() for _ in range(3)])
    service = stack.service("registrations")
    own_clock = ManualClock(utcnow() + timedelta(seconds=1))
    doomed = Delivery(service.db, service.catalogue, service.settings, clock=own_clock)

    async def die(*_: Any) -> None:
        raise Killed

    doomed.sender.central.receive = die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await doomed.process_jobs(worker="doomed")
    assert {(await central.registration(i))["status"] for i in ids} == {"sending"}

    central.clock.set(own_clock.now() + timedelta(seconds=30))
    # The lease still holds: nobody takes the batch over yet (jobs other tests left may
    # fall due on this clock and be done meanwhile; ours stays with the dead worker).
    await central.delivery.process_jobs()
    assert {(await central.registration(i))["status"] for i in ids} == {"sending"}
    central.clock.set(own_clock.now() + timedelta(seconds=61))  # the lease ran out
    await central.settle()
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    for reg_id in ids:
        reg = await central.registration(reg_id)
        assert (reg["status"], reg["status_confirmation"]) == ("submitted", "ok")
        records, halves = await central.at_receiver(await central.technical_id(reg_id))
        assert (len(records), len(halves)) == (1, 1)
        assert halves[0].receipts == 2  # the pseudonyms went twice, one half is kept
        assert [h["action"] for h in await history(stack, reg_id)].count("processed") == 1
    found = await stored(stack, ids)
    assert [j.status for j in found["batch"]] == ["done"] and found["own"] == []


async def test_registrations_of_a_batch_that_must_wait_get_a_job_of_their_own(central: Central) -> None:
    stack = central.stack
    org = f"nocert-{uuid.uuid4().hex[:8]}"
    headers = await bearer(stack, {org: ["registrant"]})
    ids = await upsert(
        stack, [record(), record()], token=headers["Authorization"].removeprefix("Bearer "), org=org
    )
    central.start()
    await central.settle()
    for reg_id in ids:
        reg = (await stack.client.get(f"/api/v1/registrations/{reg_id}", headers=headers)).json()
        assert reg["status"] == "sending"
        d = (await stack.client.get(f"/api/v1/registrations/{reg_id}/delivery", headers=headers)).json()
        assert (d["state"], d["reason"]) == ("sending", "no-published-certificate")
    found = await stored(stack, ids)
    # The batch job is done; each registration waits with a deliver job of its own, due later.
    assert [j.status for j in found["batch"]] == ["done"]
    assert sorted(j.subject_id for j in found["own"]) == sorted(ids)
    assert all(j.status == "queued" and j.run_after > central.clock.now() for j in found["own"])
    assert all(j.payload["version"] == 2 and j.organisation_id == org for j in found["own"])


async def test_a_big_batch_is_delivered_by_a_job_per_chunk(stack: Stack) -> None:
    ids = await upsert(stack, [record() for _ in range(REGISTRATIONS_PER_JOB + 1)])
    found = await stored(stack, ids)
    assert found["versions"] == 0 and found["own"] == []
    assert sorted(len(j.payload["registrations"]) for j in found["batch"]) == [1, REGISTRATIONS_PER_JOB]
