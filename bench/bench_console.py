"""The operator's installation overview against the equivalent aggregate SQL over the same
tables, on PostgreSQL with 500 organisations.

    .venv/bin/python bench/bench_console.py [--organisations 500] [--registrations 1000000] [--requests 15]

``hdhub run all`` on fresh PostgreSQL databases for registrations, uploads, intake and nippin
(migrated by the process: the tally triggers included; dropped at the end). The data goes
in with ``COPY`` while the platform runs, so the triggers count it as it arrives:
``--registrations`` registrations spread over the organisations (five DCDs), one delivery
each (90% ok, 4% pending of which a quarter sent three days ago, 2% NOK, 2% sending, 2%
parked), and per organisation 20 uploads (5 failed, 3 of them within the day), 20 intake
files (2 refused, 3 unmatched) and 20 NIPPIN messages (2 in error, 1 invalid).

Three timings, alternated, the median of ``--requests`` each:

- **page**: ``GET /portal/operator`` as the signed-in operator (session, token, the four
  services' ``OrganisationHealth`` and identity's ``ListInstallationOrganisations`` over
  gRPC at once, Jinja2, 500 rows of HTML);
- **aggregate SQL** (the baseline): what the page shows, computed by scanning the same
  tables (``GROUP BY`` over registrations, deliveries, uploads, intake files and messages),
  on connections opened beforehand;
- **tally SQL**: the statements the four services run to answer (tallies, the oldest
  delivery per state by index, the overdue pending range), on the same connections.

Prints each and the ratios page / aggregate and page / tally SQL, with the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_portal import portal_session  # noqa: E402
from bench_submissions import Databases  # noqa: E402

from tests.e2e.conftest import run_all  # noqa: E402

NOW = dt.datetime.now(dt.UTC)
DCDS = [
    ("HDBP0012", "ANGIO_HOSP"),
    ("HDBP0012", "ANGIO_FU_PCI"),
    ("HDBP0300", "PACEMAKER"),
    ("HDBP0257", "NGS"),
    ("HDBP0263", "HIV_SEQUENCE"),
]
VALUES = json.dumps(
    {
        "IDC_PAT": "62112308720",
        "DT_PAT_DOB": "23/11/1962",
        "CD_PAT_SEX": "M",
        "DT_IMPLANT": "20/11/2025",
        "CD_DEVICE": "PM-40012345",
        "TX_DEVICE_SERIAL": "SN-77001",
        "CD_NOMENCLATURE": "172711",
        "CD_RIZIV_HOSP": "71000436",
    }
)

AGGREGATE = {
    "registrations": [
        "SELECT organisation_id, count(*), array_agg(DISTINCT dcd_code) FROM registrations "
        "WHERE status <> 'deleted' GROUP BY organisation_id",
        "SELECT organisation_id, state, count(*), min(updated_at) FROM deliveries GROUP BY 1, 2",
        "SELECT organisation_id, count(*) FROM deliveries WHERE state = 'pending' "
        "AND first_sent_at < now() - interval '48 hours' GROUP BY 1",
    ],
    "uploads": [
        "SELECT organisation_id, count(*) FROM uploads WHERE status = 'failed' "
        "AND finished_at >= now() - interval '24 hours' GROUP BY 1"
    ],
    "intake": [
        "SELECT organisation_id, count(*) FILTER (WHERE state = 'rejected'), count(*) FILTER (WHERE unmatched) "
        "FROM intake_files GROUP BY 1"
    ],
    "nippin": [
        "SELECT organisation_id, count(*) FILTER (WHERE status IN ('ERROR', 'INVALID')) FROM nippin_messages GROUP BY 1"
    ],
}
TALLY = {
    "registrations": [
        "SELECT organisation_id, bucket, n FROM registration_tallies WHERE n > 0",
        "SELECT organisation_id, bucket, n FROM delivery_tallies",
        "SELECT t.organisation_id, (SELECT min(d.updated_at) FROM deliveries d WHERE d.organisation_id = "
        "t.organisation_id AND d.state = t.bucket) FROM delivery_tallies t "
        "WHERE t.bucket IN ('sending', 'pending', 'nok') AND t.n > 0",
        "SELECT organisation_id, count(*) FROM deliveries WHERE state = 'pending' "
        "AND first_sent_at < now() - interval '48 hours' GROUP BY 1",
    ],
    "uploads": [
        "SELECT organisation_id, bucket, n FROM upload_failure_tallies WHERE n <> 0 AND bucket >= %s"
    ],
    "intake": ["SELECT organisation_id, bucket, n FROM intake_file_tallies WHERE n <> 0"],
    "nippin": ["SELECT organisation_id, bucket, n FROM nippin_message_tallies WHERE n <> 0"],
}


def org(n: int) -> str:
    return f"bench-org-{n:04d}"


def delivery_state(n: int) -> tuple[str, dt.datetime | None]:
    bucket = n % 100
    if bucket < 90:
        return "ok", NOW - dt.timedelta(days=5)
    if bucket < 93:
        return "pending", NOW - dt.timedelta(hours=2)
    if bucket < 94:
        return "pending", NOW - dt.timedelta(days=3)
    if bucket < 96:
        return "nok", NOW - dt.timedelta(days=4)
    if bucket < 98:
        return "sending", None
    return "parked", NOW - dt.timedelta(days=11)


def registration_rows(first: int, last: int, organisations: int) -> Iterator[tuple[Any, ...]]:
    for n in range(first, last):
        project, dcd = DCDS[n % len(DCDS)]
        yield (
            org(n % organisations),
            f"00000000-0000-4000-8000-{n:012d}",
            project,
            dcd,
            "1.0.0",
            f"bench-{n}",
            "submitted",
            "ok",
            VALUES,
            "[]",
            2,
            "bench",
            NOW,
            NOW,
            NOW,
            NOW,
        )


def delivery_rows(first: int, last: int, organisations: int) -> Iterator[tuple[Any, ...]]:
    for n in range(first, last):
        state, sent = delivery_state(n)
        yield (
            f"00000000-0000-4000-8000-{n:012d}",
            org(n % organisations),
            f"10000000-0000-4000-8000-{n:012d}",
            2,
            state,
            1,
            sent,
            sent,
            NOW - dt.timedelta(minutes=n % 5000),
            NOW - dt.timedelta(days=11) if state == "parked" else None,
        )


def load(urls: dict[str, str], registrations: int, organisations: int) -> float:
    """Everything the overview counts, through COPY and the ORM; the seconds it took."""
    import psycopg
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from hdhub.common.db import SYSTEM_KEY

    started = time.perf_counter()
    with psycopg.connect(urls["registrations"].replace("+psycopg", "")) as conn, conn.cursor() as cur:
        chunk = 1_000_000  # one COPY (one statement: one tally upsert) per million rows
        for first in range(0, registrations, chunk):
            size = min(chunk, registrations - first)
            with cur.copy(
                "COPY registrations (organisation_id, id, project_code, dcd_code, dcd_version, business_key, "
                "status, status_confirmation, values, errors, version, created_by, created_at, updated_at, "
                "submitted_at, first_submitted_at) FROM STDIN"
            ) as copy:
                for row in registration_rows(first, first + size, organisations):
                    copy.write_row(row)
            with cur.copy(
                "COPY deliveries (registration_id, organisation_id, technical_id, content_version, state, "
                "attempts, first_sent_at, last_sent_at, updated_at, parked_at) FROM STDIN"
            ) as copy:
                for row in delivery_rows(first, first + size, organisations):
                    copy.write_row(row)
            conn.commit()
            print(
                f"  {first + size:,} registrations and deliveries in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        cur.execute("ANALYZE")
    makers: dict[str, Callable[[str], Iterator[Any]]] = {
        "uploads": _uploads,
        "intake": _files,
        "nippin": _messages,
    }
    for service, make in makers.items():
        engine = create_engine(urls[service])
        with Session(engine) as session, session.begin():
            session.info[SYSTEM_KEY] = True  # seeding across organisations
            for n in range(organisations):
                session.add_all(make(org(n)))
        engine.dispose()
    return time.perf_counter() - started


def _uploads(organisation: str) -> Iterator[Any]:
    from hdhub.uploads.store import Upload

    for i in range(20):
        failed = i < 5
        yield Upload(
            organisation_id=organisation,
            filename=f"u{i}.csv",
            object_key=f"bench/{organisation}/{i}",
            project_code="HDBP0012",
            dcd_code="ANGIO_HOSP",
            dcd_version="1.0.0",
            uploaded_by="bench",
            status="failed" if failed else "done",
            finished_at=NOW - dt.timedelta(hours=2 if i < 3 else 50),
        )


def _files(organisation: str) -> Iterator[Any]:
    from hdhub.intake.store import IntakeFile

    for i in range(20):
        yield IntakeFile(
            organisation_id=organisation,
            registry_folder="HDBP0257",
            filename=f"f{i}.vcf",
            source="sftp",
            sender="bench",
            object_key=f"bench/{organisation}/{i}",
            state="rejected" if i < 2 else "loaded",
            unmatched=2 <= i < 5,
        )


def _messages(organisation: str) -> Iterator[Any]:
    from hdhub.nippin.store import NippinMessage

    for i in range(20):
        yield NippinMessage(
            organisation_id=organisation,
            registration_id=str(uuid.uuid4()),
            registration_version=1,
            dcd_code="PACEMAKER",
            dcd_version="1.0.0",
            schema_version="1.0",
            wrapped_key=b"k",
            master_key_id="bench",
            status="ERROR" if i < 2 else "INVALID" if i == 2 else "SENT",
        )


def check_tallies(url: str) -> None:
    """The tallies the triggers kept through COPY say what the rows say."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        counted = set(conn.execute("SELECT organisation_id, state, count(*) FROM deliveries GROUP BY 1, 2"))
        tallied = set(conn.execute("SELECT organisation_id, bucket, n FROM delivery_tallies WHERE n <> 0"))
        assert counted == tallied, "delivery tallies differ from the rows"
        counted = set(
            conn.execute(
                "SELECT organisation_id, dcd_code || '@' || dcd_version, count(*) FROM registrations GROUP BY 1, 2"
            )
        )
        tallied = set(
            conn.execute("SELECT organisation_id, bucket, n FROM registration_tallies WHERE n <> 0")
        )
        assert counted == tallied, "registration tallies differ from the rows"


def sql_runner(
    urls: dict[str, str], statements: dict[str, list[str]]
) -> tuple[Callable[[], int], Callable[[], None]]:
    """A function running ``statements`` on connections opened now (rows read), and a closer."""
    import psycopg

    connections = {s: psycopg.connect(u.replace("+psycopg", ""), autocommit=True) for s, u in urls.items()}
    since = (NOW - dt.timedelta(hours=24)).strftime("%Y-%m-%dT%H")

    def run() -> int:
        rows = 0
        for service, queries in statements.items():
            for q in queries:
                rows += len(connections[service].execute(q, (since,) if "%s" in q else None).fetchall())
        return rows

    def close() -> None:
        for c in connections.values():
            c.close()

    return run, close


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--organisations", type=int, default=500)
    parser.add_argument("--registrations", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument(
        "--quick", action="store_true", help="bench-check's short run: 50 organisations, 50,000 registrations"
    )
    args = parser.parse_args()
    if args.quick:
        args.organisations, args.registrations = 50, 50_000
    from _result import load_average, result

    print(f"load average at the start: {load_average()}")
    databases = Databases()
    try:
        urls = {s: databases.create(s) for s in ("registrations", "uploads", "intake", "nippin")}
        env = {f"HDHUB_{s.upper()}_DATABASE_URL": u for s, u in urls.items()}
        with tempfile.TemporaryDirectory() as tmp, run_all(Path(tmp), **env) as platform:
            print(
                f"loading {args.registrations:,} registrations over {args.organisations} organisations (COPY)"
            )
            seconds = load(urls, args.registrations, args.organisations)
            print(f"loaded in {seconds:.0f} s ({seconds / args.registrations * 1e6:.1f} µs per registration)")
            browser = portal_session(platform.base_url, "operator@hdhub.test", "demo-operator")
            aggregate, close_aggregate = sql_runner(urls, AGGREGATE)
            tally, close_tally = sql_runner(urls, TALLY)

            def page() -> int:
                r = browser.get("/portal/operator")
                r.raise_for_status()
                return r.text.count("<tr data-organisation=")

            # The bench's organisations and identity's own (the demo's): each a row.
            shown = page()
            print(f"organisations on the page: {shown}")
            assert shown >= args.organisations, f"every organisation on the page: {shown}"
            check_tallies(urls["registrations"])
            times: dict[str, list[float]] = {"page": [], "aggregate SQL": [], "tally SQL": []}
            runs = {"page": page, "aggregate SQL": aggregate, "tally SQL": tally}
            for run in runs.values():  # warm
                run()
            for _ in range(args.requests):
                for name, run in runs.items():
                    started = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - started)
            close_aggregate()
            close_tally()
        median = {name: statistics.median(t) for name, t in times.items()}
        load1, load5, _ = os.getloadavg()
        print(
            f"overview of {args.organisations} organisations, {args.registrations:,} registrations "
            f"(median of {args.requests}; load average {load1:.2f} / {load5:.2f}):"
        )
        for name, m in median.items():
            print(f"  {name:14} {m * 1000:9.1f} ms")
        print(f"  page / aggregate SQL: {median['page'] / median['aggregate SQL']:.2f}x")
        print(f"  page / tally SQL:     {median['page'] / median['tally SQL']:.2f}x")
        result(
            {
                "page_over_aggregate_sql": median["page"] / median["aggregate SQL"],
                "page_over_tally_sql": median["page"] / median["tally SQL"],
            }
        )
    finally:
        databases.drop_all()


if __name__ == "__main__":
    main()
