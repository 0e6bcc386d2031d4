"""NIPPIN: the nightly report against one SQL query, and messages built and validated against
xmlschema validating the same prebuilt documents alone. Both ratios are printed in one run.

    .venv/bin/python bench/bench_nippin.py [--rows 1000000] [--messages 5000]

Messages: ``--messages`` implant messages, each built from its bound fields
(:func:`hdhub.nippin.domain.message.build`) and validated against the XSD
(:func:`~hdhub.nippin.domain.message.validate`), against ``XMLSchema.iter_errors`` over the
same documents prebuilt: the ratio is the builder's rate over the validator's (aim: >= 0.5).

Report: the in-process stack on PostgreSQL (fresh databases, dropped at the end) with
``--rows`` submitted PACEMAKER registrations bulk-inserted into registrations' database and
their messages into nippin's (90% SENT, 3% INVALID, 3% ERROR, 4% with no message: the
not_found ones), then :func:`hdhub.nippin.reports.build`, which asks registrations for every
registration over gRPC (reconciliation: Arrow pages streamed by
``StreamReimbursedRegistrations``), copies them into a temporary table and writes one row
each with one ``INSERT ... SELECT``; against the same report as one ``INSERT ... SELECT``
joining the same rows (the registrations copied into nippin's database beforehand, the copy
not timed): the ratio is the report's time over the query's (aim: at most 3x). The load
average is printed with the figures: on a shared machine they move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ORG = "az-demo"
NIGHT = dt.date(2026, 12, 3)


def bench_messages(count: int) -> tuple[float, float]:
    from hdhub.nippin.domain.message import Header, build, schema, validate

    def fields(n: int) -> list[tuple[str, str]]:
        return [
            ("PatientSSIN", f"{62010100000 + n:011d}"),
            ("ImplantDate", f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}"),
            ("DeviceCode", f"PM-{n:08d}"),
            ("DeviceSerial", f"SN-{n}"),
            ("NomenclatureCode", "172711"),
            ("PhysicianNihdi", "12345678730"),
            ("HospitalNihdi", "71000436"),
        ]

    now = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
    headers = [
        Header(f"00000000-0000-4000-8000-{n:012d}", now, f"R-{n}", "PACEMAKER", "1.0.0") for n in range(count)
    ]
    prebuilt = [build(h, fields(n)).decode() for n, h in enumerate(headers)]
    xsd = schema()
    validate(build(headers[0], fields(0)))  # warm: the schema parsed once

    def validate_prebuilt() -> None:
        for document in prebuilt:
            assert not list(xsd.iter_errors(document))

    def build_and_validate() -> None:
        for n, h in enumerate(headers):
            assert validate(build(h, fields(n))).valid

    # Alternated, the best of three each: the machine is shared.
    times: dict[str, list[float]] = {"baseline": [], "subject": []}
    for _ in range(3):
        for name, run in (("baseline", validate_prebuilt), ("subject", build_and_validate)):
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    subject, baseline = count / min(times["subject"]), count / min(times["baseline"])
    return subject, baseline


def _registration_rows(first: int, last: int) -> list[dict[str, Any]]:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    out = []
    for n in range(first, last):
        values = {
            "IDC_PAT": f"{62010100000 + n:011d}",
            "DT_PAT_DOB": "1962-01-01",
            "CD_PAT_SEX": "M",
            "DT_IMPLANT": f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
            "CD_IMPLANT_KIND": "first",
            "CD_DEVICE_TYPE": "dual",
            "CD_DEVICE": f"PM-{n:08d}",
            "CD_NOMENCLATURE": "172711",
            "CD_RIZIV_IMPL_PHYS": "12345678730",
            "CD_RIZIV_HOSP": "71000436",
            "CD_REIMBURSEMENT": "yes",
        }
        out.append(
            {
                "organisation_id": ORG,
                "id": f"00000000-0000-4000-8000-{n:012d}",
                "project_code": "HDBP0300",
                "dcd_code": "PACEMAKER",
                "dcd_version": "1.0.0",
                "business_key": f"bench-{n}",
                "status": "submitted",
                "status_confirmation": "ok",
                "registration_code": f"B300-{n}",
                "values": values,
                "errors": [],
                "version": 3,
                "created_by": "bench",
                "created_at": now,
                "updated_at": now,
                "submitted_at": now,
                "first_submitted_at": now,
            }
        )
    return out


def _message_rows(registrations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    out = []
    for r in registrations:
        n = int(r["id"].rsplit("-", 1)[1])
        bucket = n % 100
        if bucket >= 96:
            continue  # no message: not_found
        status = "SENT" if bucket < 90 else "INVALID" if bucket < 93 else "ERROR"
        out.append(
            {
                "organisation_id": ORG,
                "id": f"10000000-0000-4000-8000-{n:012d}",
                "registration_id": r["id"],
                "registration_version": 2,
                "registration_code": r["registration_code"],
                "project_code": "HDBP0300",
                "dcd_code": "PACEMAKER",
                "dcd_version": "1.0.0",
                "schema_version": "1.0",
                "status": status,
                "implant_date": dt.date.fromisoformat(r["values"]["DT_IMPLANT"]),
                "xml_sealed": b"sealed",
                "wrapped_key": b"k",
                "master_key_id": "bench",
                "invalid_reasons": ["implant: bench"] if status == "INVALID" else [],
                "interface": "REST",
                "tack_major": "urn:nip:tack:result:major:success" if status == "SENT" else "",
                "tack_outcome": "success" if status == "SENT" else "",
                "tack_messages": [],
                "tack_at": now if status == "SENT" else None,
                "sends": 1,
                "refusals": 0,
                "last_error": "MyCareNet answered HTTP 503" if status == "ERROR" else "",
                "created_at": now,
                "updated_at": now,
                "sent_at": now if status == "SENT" else None,
                "purged_at": None,
            }
        )
    return out


BASELINE_SQL = """
INSERT INTO nippin_report_rows
  (report_id, organisation_id, registration_id, registration_code, dcd_code, implant_date,
   result, message_id, message_status, reason)
SELECT :report_id, r.organisation_id, r.id, r.registration_code, r.dcd_code,
       COALESCE(m.implant_date, (r.values->>'DT_IMPLANT')::date),
       CASE WHEN m.status IS NULL THEN 'not_found'
            WHEN m.status IN ('SENT', 'TO_SEND') THEN 'valid'
            WHEN m.status IN ('INVALID', 'ARCHIVED') THEN 'invalid'
            ELSE 'not_sent' END,
       m.id, m.status,
       CASE WHEN m.status IS NULL THEN 'no NIPPIN message was made for this registration'
            WHEN m.status = 'INVALID' THEN array_to_string(ARRAY(SELECT json_array_elements_text(m.invalid_reasons::json)), '; ')
            WHEN m.status IN ('ERROR', 'ARCHIVED') THEN m.last_error
            ELSE '' END
FROM bench_registrations r
LEFT JOIN LATERAL (
  SELECT * FROM nippin_messages n WHERE n.registration_id = r.id
  ORDER BY n.registration_version DESC LIMIT 1) m ON true
WHERE r.organisation_id = :org AND r.dcd_code = 'PACEMAKER' AND r.first_submitted_at IS NOT NULL
  AND r.status <> 'deleted' AND (m.id IS NOT NULL OR r.values->>'CD_REIMBURSEMENT' = 'yes')
"""


async def bench_report(rows: int) -> tuple[float, float]:
    from sqlalchemy import text

    from hdhub.common.db import bulk_insert, new_id
    from hdhub.nippin import reports
    from hdhub.nippin.store import NippinMessage, Report
    from hdhub.registrations.store import Registration
    from tests.support.stack import running_stack

    with tempfile.TemporaryDirectory() as tmp:
        async with running_stack("postgres", Path(tmp), workers=False) as stack:
            reg_db = stack.service("registrations").db
            nippin_db = stack.service("nippin").db
            # The baseline's copy of the registrations, beside nippin's tables (not timed).
            async with nippin_db.system_session() as session:
                await session.execute(
                    text(
                        "CREATE TABLE bench_registrations (organisation_id text, id text primary key, "
                        "registration_code text, dcd_code text, status text, values jsonb, first_submitted_at timestamptz)"
                    )
                )
            for start in range(0, rows, 50_000):
                chunk = _registration_rows(start, min(start + 50_000, rows))
                async with reg_db.session([ORG]) as session:
                    await bulk_insert(session, Registration, chunk)
                async with nippin_db.session([ORG]) as session:
                    await bulk_insert(session, NippinMessage, _message_rows(chunk))
                copy = [
                    {
                        "organisation_id": r["organisation_id"],
                        "id": r["id"],
                        "registration_code": r["registration_code"],
                        "dcd_code": r["dcd_code"],
                        "status": r["status"],
                        "values": json.dumps(r["values"]),
                        "first_submitted_at": r["first_submitted_at"],
                    }
                    for r in chunk
                ]
                async with nippin_db.system_session() as session:
                    await session.execute(
                        text(
                            "INSERT INTO bench_registrations VALUES (:organisation_id, :id, :registration_code, "
                            ":dcd_code, :status, CAST(:values AS jsonb), :first_submitted_at)"
                        ),
                        copy,
                    )
            async with reg_db.system_session() as session:
                await session.execute(text("ANALYZE"))
            async with nippin_db.system_session() as session:
                await session.execute(text("ANALYZE"))

            started = time.perf_counter()
            report = await reports.build(nippin_db, ORG, NIGHT)
            subject = time.perf_counter() - started
            assert sum(report.counts.values()) == rows, report.counts

            report_id = new_id()
            async with nippin_db.system_session() as session:
                session.add(
                    Report(id=report_id, organisation_id=ORG, night=NIGHT + dt.timedelta(days=1), counts={})
                )
            started = time.perf_counter()
            async with nippin_db.system_session() as session:
                result = await session.execute(text(BASELINE_SQL), {"report_id": report_id, "org": ORG})
            baseline = time.perf_counter() - started
            assert result.rowcount == rows  # type: ignore[attr-defined]
            return subject, baseline


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="reimbursed registrations in the report")
    parser.add_argument("--messages", type=int, default=5000, help="messages built and validated")
    parser.add_argument(
        "--quick", action="store_true", help="bench-check's short run: 20,000 rows, 500 messages"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.messages = 20_000, 500
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    built, validated = bench_messages(args.messages)
    print(
        f"messages: built+validated {built:,.0f}/s, xmlschema alone {validated:,.0f}/s, ratio {built / validated:.2f} (aim >= 0.5)"
    )
    report, query = asyncio.run(bench_report(args.rows))
    print(
        f"report over {args.rows:,} registrations: {report:.1f} s by reconciliation over gRPC, "
        f"{query:.1f} s as one SQL query, ratio {report / query:.2f}x (aim <= 3x); "
        f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    from _result import result

    result({"messages_over_xmlschema": built / validated, "report_over_sql": report / query})
    return 0


if __name__ == "__main__":
    sys.exit(main())
