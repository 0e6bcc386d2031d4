"""The registrations grid at 1,000,000 registrations in one organisation (PostgreSQL):
the first page and deep pages (100, 10,000) through ``ListRegistrations`` over gRPC and
through the portal's page, against the same keyset SQL run directly on the same
database; and the counts per status as the grid reads them against counting the rows.

    .venv/bin/python bench/bench_grid.py [--rows 1000000] [--requests 30] [--processes]

Needs postgresql://postgres@127.0.0.1:5432 (HDHUB_BENCH_POSTGRES_URL elsewhere); creates
fresh databases and drops them at the end. ``--processes``: the deployed shape, a process
per service (and Redis), as ``bench_portal_validation.py --processes``; by default
``hdhub run all``. The workers poll at their deployed intervals (as
``bench_portal_validation.py``), and the cases of a page are timed one request of each in
turn, so that the shared machine's load falls on all alike; the portal's page in a second
such round beside the SQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_portal import password_token, portal_session  # noqa: E402
from bench_portal_validation import DEPLOYED_POLLING  # noqa: E402
from bench_submissions import Databases  # noqa: E402

from tests.e2e.conftest import run_all  # noqa: E402
from tests.support.stack import free_port  # noqa: E402

ORG = "az-demo"
PAGE = 50
COLUMNS = (
    "organisation_id, id, project_code, dcd_code, dcd_version, business_key, status, status_confirmation,"
    " registration_code, values, errors, version, created_by, created_at, updated_at, submitted_at,"
    " first_submitted_at"
)
# (status, confirmation) in the proportions of an organisation some years in.
MIX = (
    [("submitted", "ok")] * 14
    + [("submitted", "nok"), ("submitted", "pending"), ("open", None)]
    + [
        ("open", None),
        ("deleted", None),
        ("corrections_needed", None),
    ]
)
DCDS = [("HDBP0012", "ANGIO_HOSP", 1), ("HDBP0012", "ANGIO_HOSP_PCI", 2), ("HDBP0300", "PACEMAKER", 3)]
# The page's SQL as the grid runs it (records/grid.py), written out: the columns a row shows.
ROW = (
    "id, project_code, dcd_code, dcd_version, business_key, status, status_confirmation,"
    " registration_code, version, created_at, updated_at, created_by, errors"
)
COUNTS_SQL = (
    "SELECT status, status_confirmation, sum(n), count(*) FROM registration_counts WHERE organisation_id = %s"
    " GROUP BY 1, 2"
)
FIRST_SQL = (
    f"SELECT {ROW} FROM registrations WHERE organisation_id = %s AND status <> 'deleted'"
    " ORDER BY updated_at DESC, id DESC LIMIT %s"
)
AFTER_SQL = (
    f"SELECT {ROW} FROM registrations WHERE organisation_id = %s AND status <> 'deleted'"
    " AND (updated_at, id) < (%s, %s) ORDER BY updated_at DESC, id DESC LIMIT %s"
)


def rows_copy(n: int) -> io.StringIO:
    """COPY text of ``n`` registrations: one per 30 seconds back from now, spread over DCDs."""
    out = io.StringIO()
    now = datetime.now(UTC)
    values = json.dumps(
        {"DT_HOSPZ": "01/02/2024", "CD_PAT_SEX": "1", "MS_HEIGHT": "172", "MS_WEIGHT": "80.5"}
    )
    for i in range(n):
        project, dcd, number = DCDS[i % 3]
        status, conf = MIX[i % len(MIX)]
        at = (now - timedelta(seconds=30 * (n - i))).isoformat()
        code = f"{number:04d}-{i:09d}" if status != "open" else "\\N"
        sent = at if status != "open" else "\\N"
        out.write(
            f"{ORG}\t{uuid.UUID(int=i + 1)}\t{project}\t{dcd}\t1.0.0\tbench{i:012d}\t{status}\t{conf or chr(92) + 'N'}"
            f"\t{code}\t{values}\t[]\t2\tbench\t{at}\t{at}\t{sent}\t{sent}\n"
        )
    out.seek(0)
    return out


def seed(url: str, n: int) -> float:
    import psycopg

    start = time.perf_counter()
    with psycopg.connect(url) as conn:
        with conn.cursor().copy(f"COPY registrations ({COLUMNS}) FROM STDIN") as copy:
            data = rows_copy(n)
            while chunk := data.read(1 << 20):
                copy.write(chunk)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE registrations")
        conn.execute("VACUUM ANALYZE registration_counts")
    return time.perf_counter() - start


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def timed(call: Any, n: int) -> list[float]:
    for _ in range(3):
        call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def interleaved(calls: dict[str, Any], n: int) -> dict[str, list[float]]:
    """``n`` timed calls of each, one of each in turn after twenty of each to warm up
    (psycopg prepares a statement at its fifth run, on both sides)."""
    for _ in range(20):
        for call in calls.values():
            call()
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            out[name].append(time.perf_counter() - start)
    return out


async def atimed(call: Any, n: int) -> list[float]:
    for _ in range(3):
        await call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


def bare_server(url: str, port: int) -> None:
    """The least a Python gRPC server answering the page can cost, in a process of its own:
    ``grpc.aio`` on uvloop with no interceptors, one async psycopg connection, the same two
    statements (FIRST_SQL or AFTER_SQL, COUNTS_SQL) sent together and the same response built (rows added
    in place, timestamps in ISO 8601); no token, no tracing, no log line."""
    import grpc
    import psycopg
    import uvloop

    from hdhub.proto.registrations.v1 import registrations_pb2 as pb
    from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
    from hdhub.registrations.grpc import add_grid_rows
    from hdhub.registrations.records.grid import decode_cursor, encode_cursor

    async def serve() -> None:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)

        class Bare(pb_grpc.RegistrationsServiceServicer):
            async def ListRegistrations(self, request: Any, _context: Any) -> Any:
                n = (request.limit or PAGE) + 1
                async with conn.pipeline():  # both sent at once, as hdhub sends them
                    if request.cursor:
                        key, id_ = decode_cursor(request.cursor, "updated", True)
                        paged = await conn.execute(AFTER_SQL, (ORG, key, id_, n))
                    else:
                        paged = await conn.execute(FIRST_SQL, (ORG, n))
                    counted = await conn.execute(COUNTS_SQL, (ORG,))
                page, counts = await paged.fetchall(), await counted.fetchall()
                last = page[n - 2] if len(page) == n else None
                answer = pb.ListRegistrationsResponse(
                    next_cursor=encode_cursor("updated", True, last[10], last[0]) if last else "",
                    counts=[
                        pb.StatusCount(status=st, status_confirmation=c or "", count=int(k))
                        for st, c, k, _ in counts
                    ],
                )
                add_grid_rows(answer.registrations, page[: n - 1])
                return answer

        server = grpc.aio.server()
        pb_grpc.add_RegistrationsServiceServicer_to_server(Bare(), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(serve())


def measure(args: argparse.Namespace, url: str, edge: str, issuer: str, address: str) -> None:
    """The cases against a running hdhub: its registrations database (``url``), its portal
    (``edge``), identity (``issuer``) and registrations' gRPC ``address``."""
    import psycopg
    from _result import result

    from hdhub.registrations.records.grid import encode_cursor

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    took = seed(plain, args.rows)
    print(f"seeded {args.rows:,} registrations of {ORG} by COPY (triggers kept the counts) in {took:.0f} s")
    db = psycopg.connect(plain, autocommit=True)
    # The cursors of pages 1, 100 and --deep: the last row of the page before.
    pages = [p for p in (1, 100, args.deep) if (p - 1) * PAGE < args.rows]
    cursors: dict[int, tuple[datetime, str] | None] = {1: None}
    for p in pages[1:]:
        row = db.execute(
            "SELECT updated_at, id FROM registrations WHERE organisation_id = %s AND status <> 'deleted'"
            " ORDER BY updated_at DESC, id DESC OFFSET %s LIMIT 1",
            (ORG, (p - 1) * PAGE - 1),
        ).fetchone()
        assert row is not None
        cursors[p] = (row[0], row[1])

    def sql(p: int, *, together: bool = False) -> list[Any]:
        """The statements the method runs, written out and run directly (no transaction, as
        ``Database.plain_reads`` runs them): the page, the counts. One after the other: the
        baseline of the ratios, which with psycopg's sync connection is faster than sending
        them ``together`` (one round trip, pipeline mode), as the method does."""
        c = cursors[p]
        with db.pipeline() if together else contextlib.nullcontext():
            if c is None:
                paged = db.execute(FIRST_SQL, (ORG, PAGE + 1))
            else:
                paged = db.execute(AFTER_SQL, (ORG, c[0], c[1], PAGE + 1))
            counted = db.execute(COUNTS_SQL, (ORG,))
        counted.fetchall()
        return paged.fetchall()

    deepest_cursor = cursors[pages[-1]] or (datetime.now(UTC), "")
    plan = db.execute("EXPLAIN " + AFTER_SQL, (ORG, *deepest_cursor, PAGE + 1)).fetchall()
    print("deep page plan:", " / ".join(r[0].strip() for r in plan[:3]))

    token = password_token(issuer, "nurse@az-demo.test", "demo-nurse")
    browser = portal_session(edge, "nurse@az-demo.test", "demo-nurse")

    def cursor_of(p: int) -> str:
        c = cursors[p]
        return "" if c is None else encode_cursor("updated", True, c[0], c[1])

    # Per page: the SQL, gRPC, the portal's page, and the SQL timed beside the page.
    results: list[tuple[str, list[float], list[float], list[float], list[float]]] = []

    import multiprocessing

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from hdhub.proto.registrations.v1 import registrations_pb2 as pb
    from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc

    bare_port = free_port()
    bare = multiprocessing.get_context("spawn").Process(
        target=bare_server, args=(plain, bare_port), daemon=True
    )
    bare.start()
    bare_channel = grpc.insecure_channel(f"127.0.0.1:{bare_port}")
    grpc.channel_ready_future(bare_channel).result(timeout=60)
    bare_stub = pb_grpc.RegistrationsServiceStub(bare_channel)
    bares: list[float] = []
    togethers: list[list[float]] = []
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.RegistrationsServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    floors: list[float] = []
    metadata = (("authorization", f"Bearer {token}"),)
    for p in pages:
        request = pb.ListRegistrationsRequest(organisation_id=ORG, cursor=cursor_of(p), limit=PAGE)
        reply = stub.ListRegistrations(request, metadata=metadata)
        assert len(reply.registrations) == PAGE and reply.total_known, reply.total
        path = f"/portal/o/{ORG}/registrations" + (f"?cursor={cursor_of(p)}" if cursor_of(p) else "")
        assert browser.get(path).status_code == 200
        cases = {
            "sql": lambda p=p: sql(p),
            "sql_together": lambda p=p: sql(p, together=True),
            "grpc": lambda request=request: stub.ListRegistrations(request, metadata=metadata),
            # The floor: a gRPC call to the same server that does nothing (health).
            "floor": lambda: health.Check(health_pb2.HealthCheckRequest(service="")),
            "bare": lambda request=request: bare_stub.ListRegistrations(request),
        }
        # One request of each in turn, so that the shared machine's load falls on all alike.
        times = interleaved(cases, args.requests)
        # The portal's page beside the SQL again, apart: the 20-odd ms of work it
        # makes in the platform's process (the page rendered, its log line) would
        # still be running when the next of the calls above arrived.
        paged = interleaved(
            {
                "sql": lambda p=p: sql(p),
                "page": lambda path=path: browser.get(path).raise_for_status(),
            },
            args.requests,
        )
        results.append((f"page {p:,}", times["sql"], times["grpc"], paged["page"], paged["sql"]))
        floors += times["floor"]
        togethers.append(times["sql_together"])
        bares += times["bare"]
    channel.close()
    bare_channel.close()
    bare.kill()
    count_sql = timed(
        lambda: db.execute(
            "SELECT status, status_confirmation, count(*) FROM registrations WHERE organisation_id = %s"
            " GROUP BY 1, 2",
            (ORG,),
        ).fetchall(),
        max(5, args.requests // 6),
    )
    kept = timed(lambda: db.execute(COUNTS_SQL, (ORG,)).fetchall(), args.requests)
    # A date range is not among the kept counts' groups: the matches are counted, up
    # to grid.COUNT_CAP, by the capped statement below (run directly, then over gRPC
    # with the page).
    from hdhub.registrations.records.grid import COUNT_CAP

    since = datetime.now(UTC) - timedelta(days=30)
    capped_sql = (
        "SELECT status, coalesce(status_confirmation, ''), count(*) FROM (SELECT status, status_confirmation"
        " FROM registrations WHERE organisation_id = %s AND created_at >= %s ORDER BY created_at DESC"
        " LIMIT %s) m GROUP BY 1, 2"
    )
    plan = db.execute("EXPLAIN " + capped_sql, (ORG, since, COUNT_CAP + 1)).fetchall()
    print("capped count plan: " + " / ".join(r[0].strip() for r in plan))
    capped = timed(lambda: db.execute(capped_sql, (ORG, since, COUNT_CAP + 1)).fetchall(), args.requests)

    async def ranged(label: str, start: datetime, end: datetime | None = None) -> list[float]:
        """``ListRegistrations`` with a creation-date range, sorted by last change (the
        grid's default)."""
        import grpc

        from hdhub.proto.registrations.v1 import registrations_pb2 as pb
        from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc

        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.RegistrationsServiceStub(channel)
            request = pb.ListRegistrationsRequest(
                organisation_id=ORG,
                created_from=start.isoformat(),
                created_to=end.isoformat() if end else "",
                limit=PAGE,
            )
            metadata = (("authorization", f"Bearer {token}"),)
            reply = await stub.ListRegistrations(request, metadata=metadata)
            print(
                f"{label}: {len(reply.registrations)} on the page, more_than {reply.more_than:,},"
                f" {sum(c.count for c in reply.counts):,} counted"
            )

            async def call() -> None:
                await stub.ListRegistrations(request, metadata=metadata)

            return await atimed(call, args.requests)

    by_range = asyncio.run(ranged("a 30-day range", since))
    # A range on creation far back, sorted by last change: a day of it (2,880 registrations,
    # under the count's cap: read first along its index, then sorted) and a month (86,400:
    # walked along the sort's index from the newest row until the page is full).
    back = datetime.now(UTC) - timedelta(days=300)
    old_day = asyncio.run(ranged("a day 300 days back", back, back + timedelta(days=1)))
    old_month = asyncio.run(ranged("a month 300 days back", back, back + timedelta(days=30)))
    head = f"{'case':12} {'SQL p50':>9} {'SQL p95':>9} {'gRPC p50':>9} {'gRPC p95':>9} {'gRPC/SQL':>9}"
    print(head + f" {'page p50':>9} {'page p95':>9} {'page/SQL':>9}")
    for name, base, g, page, page_base in results:
        print(
            f"{name:12} {p50(base) * 1000:7.2f}ms {p95(base) * 1000:7.2f}ms {p50(g) * 1000:7.2f}ms "
            f"{p95(g) * 1000:7.2f}ms {p95(g) / p95(base):8.2f}x {p50(page) * 1000:7.2f}ms "
            f"{p95(page) * 1000:7.2f}ms {p95(page) / p95(page_base):8.2f}x"
        )
    print(
        f"floor: a gRPC health check of the same server p50 {p50(floors) * 1000:.2f} ms, p95"
        f" {p95(floors) * 1000:.2f} ms ({p50(floors) / p50(results[-1][1]):.2f}x the deep page's SQL"
        " by p50)"
    )
    for (name, _base, g, *_), together in zip(results, togethers, strict=True):
        print(
            f"{name}: the statements sent together as the method sends them (pipeline) p50"
            f" {p50(together) * 1000:.2f} ms, p95 {p95(together) * 1000:.2f} ms; gRPC over them"
            f" {p95(g) / p95(together):.2f}x by p95, {p50(g) / p50(together):.2f}x by p50"
        )
    sql_all = [t for _, base, *_ in results for t in base]
    print(
        f"a bare gRPC server (grpc.aio on uvloop, one psycopg connection, the same statements and"
        f" response; no token, tracing or log) p50 {p50(bares) * 1000:.2f} ms, p95 {p95(bares) * 1000:.2f}"
        f" ms: {p50(bares) / p50(sql_all):.2f}x / {p95(bares) / p95(sql_all):.2f}x the SQL (p50 / p95)"
    )
    first, deepest = results[0], results[-1]
    print(
        f"flatness (page {pages[-1]:,} over page 1, p95): SQL {p95(deepest[1]) / p95(first[1]):.2f}x, "
        f"gRPC {p95(deepest[2]) / p95(first[2]):.2f}x, portal page {p95(deepest[3]) / p95(first[3]):.2f}x"
    )
    print(
        f"counts per status: kept counts p50 {p50(kept) * 1000:.2f} ms against count(*) over the rows "
        f"p50 {p50(count_sql) * 1000:.1f} ms ({p50(count_sql) / p50(kept):.0f}x)"
    )
    print(
        f"counts under a 30-day created range (counted up to {COUNT_CAP:,}): the capped count p50"
        f" {p50(capped) * 1000:.1f} ms p95 {p95(capped) * 1000:.1f} ms; ListRegistrations with it"
        f" p50 {p50(by_range) * 1000:.1f} ms p95 {p95(by_range) * 1000:.1f} ms"
    )
    print(
        "creation dates 300 days back, sorted by last change: ListRegistrations for a day"
        f" p50 {p50(old_day) * 1000:.1f} ms p95 {p95(old_day) * 1000:.1f} ms; for a month"
        f" p50 {p50(old_month) * 1000:.1f} ms p95 {p95(old_month) * 1000:.1f} ms"
    )
    db.close()
    # bench-check: the deepest page's medians (p95 of a few requests is one outlier here)
    result(
        {
            "grpc_over_sql_p50": p50(deepest[2]) / p50(deepest[1]),
            "page_over_sql_p50": p50(deepest[3]) / p50(deepest[4]),
            "grpc_over_sql_p95": p95(deepest[2]) / p95(deepest[1]),
            "page_over_sql_p95": p95(deepest[3]) / p95(deepest[4]),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--deep", type=int, default=10_000, help="the deep page's number")
    parser.add_argument(
        "--processes", action="store_true", help="a process per service (PostgreSQL, Redis), as deployed"
    )
    parser.add_argument(
        "--quick", action="store_true", help="bench-check's short run: 50,000 rows, page 500, 15 requests"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.deep, args.requests = 50_000, 500, 15
    from _result import load_average

    print(f"load average at the start: {load_average()}")
    databases = Databases()
    try:
        if args.processes:
            from bench_submissions import POSTGRES_ADMIN, per_service

            async def deployed() -> None:
                with tempfile.TemporaryDirectory() as tmp:
                    async with per_service(args, Path(tmp), databases) as shape:
                        (name,) = [n for n in databases.names if "_registrations_" in n]
                        base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace(
                            "postgresql://", "postgresql+psycopg://", 1
                        )
                        print(f"shape: {shape.name}")
                        await asyncio.to_thread(
                            measure,
                            args,
                            f"{base}/{name}",
                            shape.portal,
                            shape.issuer,
                            shape.grpc_registrations,
                        )

            asyncio.run(deployed())
            return
        url = databases.create("registrations")
        address = f"127.0.0.1:{free_port()}"
        with (
            tempfile.TemporaryDirectory() as tmp,
            run_all(
                Path(tmp),
                HDHUB_REGISTRATIONS_DATABASE_URL=url,
                HDHUB_REGISTRATIONS_GRPC_BIND=address,
                HDHUB_GRPC_REGISTRATIONS=address,
                **DEPLOYED_POLLING,
            ) as platform,
        ):
            print("shape: one process (hdhub run all)")
            measure(args, url, platform.base_url, platform.base_url, address)
    finally:
        databases.drop_all()


if __name__ == "__main__":
    main()
