"""Delivery to the central platform through pseudonymisation and the stand-in receiver
(sim), with status confirmation, resends and parking, on the whole in-process stack.

Time is a ManualClock shared by registrations' delivery and the sim: it starts an hour in
the past, so the background worker finds nothing due until a test moves it; then the
test and the worker drive the same jobs, and whoever takes one, the outcome is the same.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from hdhub.common.db import utcnow
from hdhub.common.logging import JsonFormatter
from hdhub.registrations.delivery.queue import CONFIRM
from hdhub.registrations.delivery.worker import Delivery
from hdhub.registrations.store import Job
from tests.support import central as support
from tests.support.central import Mode
from tests.support.clock import ManualClock
from tests.support.samples import record
from tests.support.stack import Stack, free_port

NURSE = "nurse@az-demo.test"
IDENTIFIERS = ("IDC_PAT", "DT_PAT_DOB", "TX_PAT_LAST_NAME", "TX_PAT_FIRST_NAME")


class Central(support.Central):
    """The stand-in, and registrations as a nurse sees it through the REST API."""

    @property
    def delivery(self) -> Delivery:
        return self.stack.service("registrations").delivery  # type: ignore[no-any-return]

    async def run_for(self, hours: float, *, step_hours: float = 3.0) -> None:
        elapsed = 0.0
        while elapsed < hours:
            self.clock.advance(timedelta(hours=step_hours))
            elapsed += step_hours
            await self.settle()

    async def submit(self, values: dict[str, str] | None = None) -> str:
        r = await self.stack.client.post(
            "/api/v1/registrations",
            json={
                "organisation_id": "az-demo",
                "dcd": "ANGIO_HOSP",
                "values": values or record(),
                "submit": True,
            },
            headers=await self.stack.headers(NURSE),
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def registration(self, registration_id: str) -> dict[str, Any]:
        r = await self.stack.client.get(
            f"/api/v1/registrations/{registration_id}", headers=await self.stack.headers(NURSE)
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def delivery_of(self, registration_id: str) -> dict[str, Any]:
        r = await self.stack.client.get(
            f"/api/v1/registrations/{registration_id}/delivery", headers=await self.stack.headers(NURSE)
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def technical_id(self, registration_id: str) -> str:
        from hdhub.registrations.store import Delivery as Row

        async with self.delivery.db.system_session() as session:
            row = await session.get(Row, registration_id)
            assert row is not None
            return row.technical_id


@pytest.fixture
async def central(stack: Stack) -> AsyncIterator[Central]:
    with support.on_clock(Central(stack, ManualClock(utcnow() - timedelta(hours=1)))) as c:
        await c.settle()
        yield c


async def test_a_submission_reaches_the_central_platform_split_and_is_confirmed(central: Central) -> None:
    values = record()
    reg_id = await central.submit(values)
    central.start()
    await central.settle()
    reg = await central.registration(reg_id)
    assert (reg["status"], reg["status_confirmation"]) == ("submitted", "pending")
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    reg = await central.registration(reg_id)
    assert (reg["status"], reg["status_confirmation"]) == ("submitted", "ok")
    d = await central.delivery_of(reg_id)
    assert d["state"] == "ok" and d["attempts"] == 1 and d["reason"] is None

    records, halves = await central.at_receiver(await central.technical_id(reg_id))
    assert len(records) == 1 and len(halves) == 1
    variables = records[0].variables
    # The central platform gets the register variables, never the identifiers...
    assert (
        variables["DT_HOSPZ"] == reg["values"]["DT_HOSPZ"]
        and variables["CD_ADM_TYPE"] == values["CD_ADM_TYPE"]
    )
    assert not set(IDENTIFIERS) & set(variables)
    assert values["IDC_PAT"] not in json.dumps(variables)
    # ...and the pseudonym, which the provider never sees.
    assert (
        halves[0].kind == "ssin" and len(halves[0].pseudonym) == 64 and halves[0].project_code == "HDBP0012"
    )
    assert "AZ Demo Hospital" in records[0].signer_subject
    history = (
        await central.stack.client.get(
            f"/api/v1/registrations/{reg_id}/history", headers=await central.stack.headers(NURSE)
        )
    ).json()["items"]
    assert [h["action"] for h in history][-2:] == ["processed", "confirmation_ok"]
    # The worker's history entries: its versions and statuses, the values as they stand.
    assert [(h["version"], h["status"], h["actor"]) for h in history][-2:] == [
        (reg["version"] - 1, "submitted", "hdhub"),
        (reg["version"], "submitted", "hdhub"),
    ]
    assert all(h["values"] == reg["values"] for h in history[-3:])


async def test_many_registrations_go_out_in_concurrent_batches_each_once(central: Central) -> None:
    settings = central.delivery.settings
    original = settings.delivery_batch
    settings.delivery_batch = 3  # 4 batches of 3 side by side per claim: several claims
    try:
        ids = [await central.submit() for _ in range(20)]
        central.start()
        await central.settle()
        for reg_id in ids:
            reg = await central.registration(reg_id)
            assert (reg["status"], reg["status_confirmation"]) == ("submitted", "pending")
        async with central.delivery.db.system_session() as session:
            confirms = (
                await session.execute(
                    select(Job.subject_id, func.count())
                    .where(Job.kind == CONFIRM, Job.subject_id.in_(ids))
                    .group_by(Job.subject_id)
                )
            ).all()
        assert sorted(confirms) == sorted((i, 1) for i in ids)  # one confirmation job each
        central.clock.advance(timedelta(seconds=5))
        await central.settle()
        technical_ids = set()
        for reg_id in ids:
            reg = await central.registration(reg_id)
            assert reg["status_confirmation"] == "ok"
            d = await central.delivery_of(reg_id)
            assert d["state"] == "ok" and d["attempts"] == 1
            technical_id = await central.technical_id(reg_id)
            technical_ids.add(technical_id)
            records, halves = await central.at_receiver(technical_id)
            assert len(records) == len(halves) == 1 and records[0].receipts == halves[0].receipts == 1
            history = (
                await central.stack.client.get(
                    f"/api/v1/registrations/{reg_id}/history", headers=await central.stack.headers(NURSE)
                )
            ).json()["items"]
            assert [h["action"] for h in history][-2:] == ["processed", "confirmation_ok"]
            assert [h["version"] for h in history] == list(range(1, reg["version"] + 1))
        assert len(technical_ids) == len(ids)
    finally:
        settings.delivery_batch = original


async def test_the_same_patient_gets_the_same_pseudonym_across_registrations(central: Central) -> None:
    first = record()
    second = record(IDC_PAT=first["IDC_PAT"], DT_HOSPZ="04/03/2025", DT_DISCH="06/03/2025")
    ids = [await central.submit(first), await central.submit(second)]
    central.start()
    await central.settle()
    halves = [(await central.at_receiver(await central.technical_id(i)))[1][0] for i in ids]
    assert halves[0].technical_id != halves[1].technical_id
    assert halves[0].pseudonym == halves[1].pseudonym  # the central side can link them


async def test_receiver_down_for_three_days_goes_nok_after_48_hours_then_ok_after_resends(
    central: Central,
) -> None:
    central.behave(Mode.REFUSE)
    reg_id = await central.submit()
    central.start()
    await central.settle()
    reg = await central.registration(reg_id)
    assert (reg["status"], reg["status_confirmation"]) == ("submitted", "pending")
    assert (await central.delivery_of(reg_id))["reason"] == "central-unavailable"

    await central.run_for(45)
    assert (await central.registration(reg_id))["status_confirmation"] == "pending"
    await central.run_for(6)  # past 48 hours
    assert (await central.registration(reg_id))["status_confirmation"] == "nok"
    assert (await central.delivery_of(reg_id))["state"] == "nok"

    await central.run_for(21)  # three days in all: the receiver comes back
    central.behave(Mode.ACCEPT)
    await central.run_for(12)
    reg = await central.registration(reg_id)
    assert reg["status_confirmation"] == "ok"
    d = await central.delivery_of(reg_id)
    assert d["state"] == "ok" and d["attempts"] >= 1
    records, halves = await central.at_receiver(await central.technical_id(reg_id))
    assert len(records) == 1 and len(halves) == 1
    # The resend carried the registration's register variables (read for the resend).
    assert records[0].variables["DT_HOSPZ"] == reg["values"]["DT_HOSPZ"]
    assert not set(IDENTIFIERS) & set(records[0].variables)


async def test_a_delivery_lost_on_the_way_is_resent_after_48_hours_without_a_second_record(
    central: Central,
) -> None:
    central.behave(Mode.DROP)  # accepted, never kept: no confirmation will come
    reg_id = await central.submit()
    central.start()
    await central.settle()
    tid = await central.technical_id(reg_id)
    assert (await central.at_receiver(tid)) == ([], [])
    d = await central.delivery_of(reg_id)
    assert (d["state"], d["attempts"], d["reason"]) == ("pending", 1, None)  # sent, as far as hdhub can tell
    await central.run_for(51)
    d = await central.delivery_of(reg_id)
    assert d["state"] == "nok" and d["attempts"] >= 2  # resent at once when it turned NOK
    central.behave(Mode.ACCEPT)
    await central.run_for(15)
    assert (await central.registration(reg_id))["status_confirmation"] == "ok"
    records, halves = await central.at_receiver(tid)
    assert (len(records), len(halves)) == (1, 1)


async def test_a_slow_confirmation_turns_nok_and_the_resends_leave_one_record(central: Central) -> None:
    reg_id = await central.submit()
    central.behave(Mode.ACCEPT, delay=72 * 3600)  # kept at once, confirmed three days later
    central.start()
    await central.settle()
    tid = await central.technical_id(reg_id)
    await central.run_for(51)
    assert (await central.delivery_of(reg_id))["state"] == "nok"
    await central.run_for(24)
    records, halves = await central.at_receiver(tid)
    assert len(records) == 1 and records[0].receipts >= 2  # resent, still one record
    assert len(halves) == 1 and halves[0].receipts >= 2
    assert (await central.registration(reg_id))["status_confirmation"] == "ok"


async def test_receiver_down_for_eleven_days_parks_the_delivery_where_organisation_and_operator_see_it(
    central: Central,
) -> None:
    central.behave(Mode.REFUSE)
    reg_id = await central.submit()
    central.start()
    await central.settle()
    await central.run_for(11 * 24, step_hours=12)
    d = await central.delivery_of(reg_id)
    assert d["state"] == "parked" and d["parked_at"] is not None
    reg = await central.registration(reg_id)
    assert (reg["status"], reg["status_confirmation"]) == ("submitted", "nok")
    history = (
        await central.stack.client.get(
            f"/api/v1/registrations/{reg_id}/history", headers=await central.stack.headers(NURSE)
        )
    ).json()["items"]
    assert [h["action"] for h in history][-3:] == ["processed", "confirmation_nok", "delivery_parked"]
    assert "48 hours" in history[-2]["comment"] and "parked" in history[-1]["comment"]

    stack = central.stack
    own = await stack.client.get(
        "/api/v1/deliveries",
        params={"organisation_id": "az-demo", "state": "parked"},
        headers=await stack.headers(NURSE),
    )
    assert own.status_code == 200 and reg_id in [x["registration_id"] for x in own.json()["items"]]
    from hdhub.common.auth import OPERATOR_ROLE
    from tests.support.tokens import bearer

    operator = await bearer(stack, {}, [OPERATOR_ROLE])
    across = await stack.client.get("/api/v1/operator/deliveries", headers=operator)
    assert across.status_code == 200 and reg_id in [x["registration_id"] for x in across.json()["items"]]
    # Another organisation sees neither the list nor the registration's delivery.
    lab = await stack.headers("biologist@lab-demo.test")
    assert (
        await stack.client.get("/api/v1/deliveries", params={"organisation_id": "az-demo"}, headers=lab)
    ).status_code == 403
    assert (
        await stack.client.get(f"/api/v1/registrations/{reg_id}/delivery", headers=lab)
    ).status_code == 404
    assert (await stack.client.get("/api/v1/operator/deliveries", headers=lab)).status_code == 403
    lab_own = await stack.client.get(
        "/api/v1/deliveries", params={"organisation_id": "lab-demo"}, headers=lab
    )
    assert reg_id not in [x["registration_id"] for x in lab_own.json()["items"]]

    # Parked stays parked: no more resends however long we wait.
    central.behave(Mode.ACCEPT)
    await central.run_for(24, step_hours=12)
    assert (await central.delivery_of(reg_id))["state"] == "parked"


class Killed(BaseException):
    """The worker process dying: nothing after it runs, not even error handling."""


async def test_a_worker_killed_between_the_halves_loses_nothing_and_duplicates_nothing(
    central: Central,
) -> None:
    reg_id = await central.submit()
    service = central.stack.service("registrations")
    own_clock = ManualClock(utcnow() + timedelta(seconds=1))
    doomed = Delivery(service.db, service.catalogue, service.settings, clock=own_clock)

    async def die(*_: Any) -> None:
        raise Killed

    doomed.sender.central.receive = die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await doomed.process_jobs(worker="doomed")
    tid = await central.technical_id(reg_id)
    records, halves = await central.at_receiver(tid)
    assert (len(records), len(halves)) == (0, 1)  # killed after pseudonymisation, before the record
    assert (await central.registration(reg_id))["status"] == "sending"

    central.clock.set(own_clock.now() + timedelta(seconds=30))
    assert await central.delivery.process_jobs() == 0  # the lease still holds: nobody takes over yet
    assert (await central.registration(reg_id))["status"] == "sending"
    central.clock.set(own_clock.now() + timedelta(seconds=61))  # the lease ran out
    await central.settle()
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    reg = await central.registration(reg_id)
    assert (reg["status"], reg["status_confirmation"]) == ("submitted", "ok")
    records, halves = await central.at_receiver(tid)
    assert (len(records), len(halves)) == (1, 1)
    assert halves[0].receipts == 2  # the pseudonyms went twice, one half is kept


async def test_pseudonymisation_unreachable_keeps_registrations_sending_then_they_go_on(
    central: Central,
) -> None:
    saved = os.environ.get("HDHUB_GRPC_PSEUDONYMISATION")
    os.environ["HDHUB_GRPC_PSEUDONYMISATION"] = f"127.0.0.1:{free_port()}"
    try:
        reg_id = await central.submit()
        central.start()
        await central.settle()
        await central.run_for(0.5, step_hours=0.1)
        assert (await central.registration(reg_id))["status"] == "sending"
        d = await central.delivery_of(reg_id)
        assert (d["state"], d["reason"]) == ("sending", "pseudonymisation-unavailable")
    finally:
        if saved is None:
            os.environ.pop("HDHUB_GRPC_PSEUDONYMISATION", None)
        else:
            os.environ["HDHUB_GRPC_PSEUDONYMISATION"] = saved
    central.clock.advance(timedelta(minutes=2))
    await central.settle()
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    reg = await central.registration(reg_id)
    assert (reg["status"], reg["status_confirmation"]) == ("submitted", "ok")


async def test_reopen_and_resubmit_deliver_the_new_version_under_the_same_technical_id(
    central: Central,
) -> None:
    reg_id = await central.submit()
    central.start()
    await central.settle()
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    stack = central.stack
    nurse = await stack.headers(NURSE)
    reg = await central.registration(reg_id)
    assert reg["status_confirmation"] == "ok"
    r = await stack.client.post(
        f"/api/v1/registrations/{reg_id}/reopen", headers={**nurse, "If-Match": f'"{reg["version"]}"'}
    )
    assert r.status_code == 200, r.text
    values = {**r.json()["values"], "CD_ADM_TYPE": "urgent"}
    r = await stack.client.put(
        f"/api/v1/registrations/{reg_id}",
        json={"values": values},
        headers={**nurse, "If-Match": f'"{r.json()["version"]}"'},
    )
    assert r.status_code == 200, r.text
    r = await stack.client.post(
        f"/api/v1/registrations/{reg_id}/submit", headers={**nurse, "If-Match": f'"{r.json()["version"]}"'}
    )
    assert r.status_code == 202, r.text
    central.clock.set(max(central.clock.now(), utcnow()) + timedelta(seconds=1))
    await central.settle()
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    reg = await central.registration(reg_id)
    assert (reg["status"], reg["status_confirmation"]) == ("submitted", "ok")
    records, _ = await central.at_receiver(await central.technical_id(reg_id))
    assert len(records) == 1 and records[0].variables["CD_ADM_TYPE"] == "urgent"


async def test_no_identifier_reaches_a_log_line_or_a_span(central: Central) -> None:
    from tests.support.spans import recorded_spans

    exporter = recorded_spans()
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # production's level: what would be written
    try:
        with_ssin = record()
        without_ssin = record(IDC_PAT="", TX_PAT_LAST_NAME="Vandenbroucke-Dürr", TX_PAT_FIRST_NAME="Émilie")
        ids = [await central.submit(with_ssin), await central.submit(without_ssin)]
        central.start()
        await central.settle()
        central.clock.advance(timedelta(seconds=5))
        await central.settle()
        for reg_id in ids:
            assert (await central.registration(reg_id))["status_confirmation"] == "ok"
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    halves = [(await central.at_receiver(await central.technical_id(i)))[1][0] for i in ids]
    assert [h.kind for h in halves] == ["ssin", "pseudocode"]
    ssin = with_ssin["IDC_PAT"]
    secrets = [
        ssin,
        f"{ssin[:2]}.{ssin[2:4]}.{ssin[4:6]}-{ssin[6:9]}.{ssin[9:]}",
        "Vandenbroucke",
        "Dürr",
        "Émilie",
        "Emilie",
        # birth dates as entered and as stored
        with_ssin["DT_PAT_DOB"],
        "-".join(reversed(with_ssin["DT_PAT_DOB"].split("/"))),
        without_ssin["DT_PAT_DOB"],
        "-".join(reversed(without_ssin["DT_PAT_DOB"].split("/"))),
    ]
    logged = lines.getvalue()
    assert "delivery attempt" in logged and "pseudonyms forwarded" in logged  # the scan saw the run
    spans = exporter.get_finished_spans()
    assert spans, "no span was recorded: the scan would prove nothing"
    exported = "\n".join(s.to_json() for s in spans)
    for secret in secrets:
        leaks = [line for line in logged.splitlines() if secret in line]
        assert not leaks, f"an identifier reached a log line: {leaks[0][:300]}"
        assert secret not in exported, "an identifier reached a span"


async def test_an_organisation_without_a_published_certificate_waits_in_sending_with_the_reason(
    central: Central,
) -> None:
    import uuid

    from tests.support.tokens import bearer

    stack = central.stack
    org = f"nocert-{uuid.uuid4().hex[:8]}"
    headers = await bearer(stack, {org: ["registrant"]})
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": org, "dcd": "ANGIO_HOSP", "values": record(), "submit": True},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    reg_id = r.json()["id"]
    central.start()
    await central.settle()
    await central.run_for(1, step_hours=0.25)
    reg = (await stack.client.get(f"/api/v1/registrations/{reg_id}", headers=headers)).json()
    assert reg["status"] == "sending"
    d = (await stack.client.get(f"/api/v1/registrations/{reg_id}/delivery", headers=headers)).json()
    assert (d["state"], d["reason"], d["attempts"]) == ("sending", "no-published-certificate", 0)
    listed = await stack.client.get(
        "/api/v1/deliveries", params={"organisation_id": org, "state": "sending"}, headers=headers
    )
    assert [x["registration_id"] for x in listed.json()["items"]] == [reg_id]
    # Nothing of it reached the central side.
    records, halves = await central.at_receiver(await central.technical_id(reg_id))
    assert (records, halves) == ([], [])


async def test_without_its_own_service_token_delivery_waits_in_sending_then_goes_on(
    central: Central, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import asynccontextmanager

    import hdhub.registrations.delivery.clients as delivery_clients
    from hdhub.common.errors import Problem

    @asynccontextmanager
    async def issuer_down(*_: object) -> AsyncIterator[None]:
        raise Problem(503, "issuer-unavailable", "The identity provider cannot be reached")
        yield  # pragma: no cover

    central.delivery.sender.certificates.cached.clear()  # the cached certificate would spare one call
    monkeypatch.setattr(delivery_clients, "acting_as_service", issuer_down)
    reg_id = await central.submit()
    central.start()
    await central.settle()
    assert (await central.registration(reg_id))["status"] == "sending"
    d = await central.delivery_of(reg_id)
    assert (d["state"], d["reason"]) == ("sending", "service-identity-unavailable")
    monkeypatch.undo()
    central.clock.advance(timedelta(minutes=2))
    await central.settle()
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    assert (await central.registration(reg_id))["status_confirmation"] == "ok"


async def test_a_resend_reads_the_values_and_leaves_out_a_registration_reopened_meanwhile(
    central: Central,
) -> None:
    from hdhub.registrations.delivery.outgoing import Outgoing, with_values_read

    central.behave(Mode.REFUSE)
    ids = [await central.submit(), await central.submit()]
    central.start()
    await central.settle()
    reg = await central.registration(ids[1])
    r = await central.stack.client.post(
        f"/api/v1/registrations/{ids[1]}/reopen",
        headers={**await central.stack.headers(NURSE), "If-Match": f'"{reg["version"]}"'},
    )
    assert r.status_code == 200, r.text
    items = [
        Outgoing(
            job=None,
            registration_id=i,
            organisation_id="az-demo",
            project_code="HDBP0012",
            dcd_code="ANGIO_HOSP",
            dcd_version="",
            registration_code="",
            version=0,
            values={},
        )
        for i in ids
    ]
    kept = await with_values_read(central.delivery.db, items)
    assert [o.registration_id for o in kept] == [ids[0]]
    assert kept[0].values == (await central.registration(ids[0]))["values"]


async def test_a_resend_is_asked_about_seconds_after_it_went_out(central: Central) -> None:
    central.behave(Mode.DROP)  # nothing confirmed until the receiver is back
    reg_id = await central.submit()
    central.start()
    await central.settle()
    await central.run_for(51)
    before = await central.delivery_of(reg_id)
    assert before["state"] == "nok"
    central.behave(Mode.ACCEPT)
    # To the next resend (12 h after the last send), and one second past it.
    last_sent = datetime.fromisoformat(before["last_sent_at"])
    central.clock.advance(last_sent + timedelta(hours=12, seconds=1) - central.clock.now())
    await central.settle()
    resent = await central.delivery_of(reg_id)
    assert resent["attempts"] == before["attempts"] + 1 and resent["state"] == "nok"
    central.clock.advance(timedelta(seconds=3))  # the first check after a send: 2 s
    await central.settle()
    assert (await central.delivery_of(reg_id))["state"] == "ok"


async def test_deliveries_are_listed_by_a_state_of_the_delivery_vocabulary_only(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    for state in ("sending", "pending", "ok", "nok", "parked"):
        r = await stack.client.get(
            "/api/v1/deliveries", params={"organisation_id": "az-demo", "state": state}, headers=h
        )
        assert r.status_code == 200 and all(d["state"] == state for d in r.json()["items"])
    r = await stack.client.get(
        "/api/v1/deliveries", params={"organisation_id": "az-demo", "state": "submitted"}, headers=h
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "state"


async def test_a_registration_parked_while_sending_is_archived_then_retried_and_delivered(
    central: Central,
) -> None:
    """Pseudonymisation refused its SSIN for good, so it was parked before it ever reached
    the central platform. The operator's archive and retry are in its history; the retry
    sends it again (refused again while the value is still refused), and once the value
    passes, the retry delivers it."""
    from sqlalchemy import update

    from hdhub.common.jobs import DONE, PARKED
    from hdhub.registrations.delivery import parked
    from hdhub.registrations.delivery.queue import DELIVER
    from hdhub.registrations.store import Delivery as DeliveryRow
    from hdhub.registrations.store import Registration

    db = central.delivery.db
    queue = central.stack.service("registrations").queue
    values = record()
    reg_id = await central.submit(values)

    async def store_ssin(ssin: str) -> None:
        # Stands in for a value pseudonymisation's rule refuses (stored before the rule
        # existed): registrations itself never takes an SSIN with bad check digits.
        async with db.system_session() as session:
            reg = await session.get(Registration, reg_id)
            assert reg is not None
            await session.execute(
                update(Registration)
                .where(Registration.id == reg_id)
                .values(values={**reg.values, "IDC_PAT": ssin})
            )

    async def deliver_jobs() -> list[tuple[str, int]]:
        async with db.system_session() as session:
            found = await session.execute(
                select(Job.status, Job.payload).where(Job.subject_id == reg_id, Job.kind == DELIVER)
            )
            return sorted((status, int(payload["version"])) for status, payload in found)

    good = values["IDC_PAT"]
    await store_ssin(good[:-2] + f"{(int(good[-2:]) + 1) % 100:02d}")
    central.start()
    await central.settle()
    d = await central.delivery_of(reg_id)
    assert (d["state"], d["reason"]) == ("parked", "identifier-refused:ssin")
    assert (await central.registration(reg_id))["status"] == "sending"
    assert [status for status, _ in await deliver_jobs()] == [PARKED]

    now = central.clock.now()
    org = "az-demo"
    archived = await parked.archive(
        db,
        organisation_id=org,
        actor="ops@hdhub.test",
        reason="asked the hospital",
        now=now,
        registration_ids=[reg_id],
    )
    assert archived == 1
    version = (await central.registration(reg_id))["version"]
    retried = await parked.retry(
        db,
        queue,
        organisation_id=org,
        actor="ops@hdhub.test",
        reason="try again",
        now=now,
        archived=True,
        registration_ids=[reg_id],
    )
    assert retried == 1
    reg = await central.registration(reg_id)
    assert (reg["status"], reg["version"]) == ("sending", version + 1)
    d = await central.delivery_of(reg_id)
    assert (d["state"], d["reason"]) == ("sending", None)
    async with db.system_session() as session:
        row = await session.get(DeliveryRow, reg_id)
        assert row is not None and (row.archived_at, row.archive_reason) == (None, None)
    # The parked job is done; a new one sends the version the history entry made (the
    # background worker may have taken it already).
    done, new = await deliver_jobs()
    assert done == (DONE, version - 1) and new[1] == version + 1
    central.start()
    await central.settle()
    assert (await central.delivery_of(reg_id))["reason"] == "identifier-refused:ssin"

    await store_ssin(good)
    assert (
        await parked.retry(
            db,
            queue,
            organisation_id=org,
            actor="ops@hdhub.test",
            reason="rule fixed",
            now=now,
            registration_ids=[reg_id],  # other tests leave parked deliveries in az-demo
        )
        == 1
    )
    central.start()
    await central.settle()
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    reg = await central.registration(reg_id)
    assert (reg["status"], reg["status_confirmation"]) == ("submitted", "ok")
    history = (
        await central.stack.client.get(
            f"/api/v1/registrations/{reg_id}/history", headers=await central.stack.headers(NURSE)
        )
    ).json()["items"]
    operator = [(h["action"], h["comment"]) for h in history if h["via"] == "operator"]
    assert operator == [
        ("delivery_archived", "asked the hospital"),
        ("delivery_retried", "try again"),
        ("delivery_retried", "rule fixed"),
    ]
    records, _ = await central.at_receiver(await central.technical_id(reg_id))
    assert len(records) == 1
