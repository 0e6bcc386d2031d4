"""Exports against PostgreSQL's own `COPY ... TO` of the same rows, same run.

    .venv/bin/python bench/bench_export.py [--rows 1000000] [--formats csv,parquet,xlsx] [--runs 1]
    .venv/bin/python bench/bench_export.py --quick      # bench-check: 20,000 rows, best of 3

Needs postgresql://postgres@127.0.0.1:5432 and redis://127.0.0.1:6379 (`make services`).
The stack runs in this process on fresh PostgreSQL databases (tests.support.stack).

1. ``--rows`` ANGIO_HOSP registrations of one organisation are generated in the real
   ``registrations`` table by the server itself (one ``INSERT ... SELECT`` over
   ``generate_series``: canonical values of the shipped sample, a business key, a
   status and dates varying per row), then ANALYZEd;
2. baseline: ``COPY (SELECT <the registration's columns> FROM registrations WHERE <the
   export's filter>) TO STDOUT`` read to the end by psycopg;
3. hdhub: ``Exports.produce`` for each format, writing into the object store (a folder,
   sealed as in production), rows/s, the ratio to the baseline and the growth of this
   process's peak RSS while it ran (it must not grow with the rows).

With ``--runs N`` the baseline and each export run N times, alternated, and the best of
each counts (a shared machine only ever makes a run slower).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ORG = "az-demo"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class PeakRss:
    """The highest RSS seen while the block runs (sampled every 50 ms)."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def growth(self) -> float:
        return self.peak - self.start


async def generate(service: object, rows: int) -> None:
    from sqlalchemy import text

    from hdhub.registrations.records.service import Registrations  # noqa: F401 - the real table
    from tests.support.samples import record

    registrations = service.registrations  # type: ignore[attr-defined]
    entry = await service.catalogue.get("ANGIO_HOSP", None)  # type: ignore[attr-defined]
    values = entry.compiled.validate(
        record("ANGIO_HOSP", CD_INDICATION="other", TX_INDICATION_OTHER="=1+1")
    ).values
    del registrations
    sql = text(
        """
        INSERT INTO registrations (organisation_id, id, project_code, dcd_code, dcd_version, business_key,
            status, registration_code, "values", errors, version, created_by, created_at, updated_at)
        SELECT :org, gen_random_uuid()::text, 'HDBP0012', 'ANGIO_HOSP', :version, 'bench-' || g,
            CASE WHEN g % 3 = 0 THEN 'open' ELSE 'submitted' END, NULL,
            jsonb_set(CAST(:values AS jsonb), '{MS_HEIGHT}', to_jsonb(150 + g % 50)),
            '[]'::jsonb, 1, 'bench', now() - make_interval(secs => g), now()
        FROM generate_series(1, :rows) AS g
        """
    )
    async with service.db.system_session() as session:  # type: ignore[attr-defined]
        await session.execute(
            sql, {"org": ORG, "version": entry.version, "values": json.dumps(values), "rows": rows}
        )
    async with service.db.engine.connect() as conn:  # type: ignore[attr-defined]
        await conn.execute(text("COMMIT"))
        await conn.execute(text("ANALYZE registrations"))


async def baseline(service: object, runs: int = 1) -> float:
    return min([await baseline_once(service) for _ in range(runs)])


async def baseline_once(service: object) -> float:
    where = f"organisation_id = '{ORG}' AND dcd_code = 'ANGIO_HOSP' AND status <> 'deleted'"
    statement = (
        "COPY (SELECT id, registration_code, business_key, status, dcd_version, created_at, updated_at, "
        f'submitted_at, "values" FROM registrations WHERE {where} ORDER BY created_at, id) TO STDOUT'
    )
    async with service.db.system_session() as session:  # type: ignore[attr-defined]
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        start = time.perf_counter()
        size = 0
        async with driver.cursor() as cursor:
            async with cursor.copy(statement) as copy:
                async for data in copy:
                    size += len(data)
        took = time.perf_counter() - start
    print(f"baseline COPY TO: {took:.2f} s, {size / 1e6:.0f} MB")
    return took


async def run_export(service: object, fmt: str) -> tuple[float, int, int, float]:
    from hdhub.common.db import utcnow
    from hdhub.registrations.store import Export

    exports = service.exports  # type: ignore[attr-defined]
    entry = await service.catalogue.get("ANGIO_HOSP", None)  # type: ignore[attr-defined]
    async with service.db.system_session() as session:  # type: ignore[attr-defined]
        export = Export(
            organisation_id=ORG,
            dcd_code="ANGIO_HOSP",
            dcd_version=entry.version,
            format=fmt,
            filters={"status": []},
            requested_by="bench",
            state="queued",
            rows_total=0,
            rows_done=0,
            size=0,
            object_key="",
            problem="",
            created_at=utcnow(),
        )
        session.add(export)
        await session.flush()
        export_id = export.id
    with PeakRss() as rss:
        start = time.perf_counter()
        done = await exports.produce(export_id)
        took = time.perf_counter() - start
    return took, done.rows_done, done.size, rss.growth


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default="csv,parquet,xlsx")
    parser.add_argument("--runs", type=int, default=1, help="best of N, baseline and exports alternated")
    parser.add_argument(
        "--quick", action="store_true", help="bench-check's short run: 20,000 rows, best of 3"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.runs = 20_000, 3
    from _result import load_average, result

    from tests.support.stack import running_stack

    print(f"load average at the start: {load_average()}")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HDHUB_OBJECT_STORE_URL"] = f"file://{tmp}/objects"
        async with running_stack("postgres", Path(tmp) / "stack", workers=False) as stack:
            service = stack.service("registrations")
            start = time.perf_counter()
            await generate(service, args.rows)
            print(f"generated {args.rows} registrations in {time.perf_counter() - start:.1f} s")
            base = float("inf")
            best: dict[str, tuple[float, int, int, float]] = {}
            for n in range(args.runs):
                base = min(base, await baseline(service))
                for fmt in args.formats.split(","):
                    took, rows, size, growth = await run_export(service, fmt)
                    if args.runs > 1:
                        print(f"  run {n + 1}: {fmt} {took:.2f} s")
                    if fmt not in best or took < best[fmt][0]:
                        best[fmt] = (took, rows, size, max(growth, best.get(fmt, (0, 0, 0, 0.0))[3]))
            print(f"baseline COPY TO, best of {args.runs}: {base:.2f} s")
            for fmt, (took, rows, size, growth) in best.items():
                print(
                    f"{fmt:8} {rows} rows in {took:.2f} s = {rows / took:,.0f} rows/s, {size / 1e6:.0f} MB, "
                    f"ratio to COPY TO {took / base:.1f}x, peak RSS growth {growth:.0f} MB"
                )
    result({f"{fmt}_over_copy": took / base for fmt, (took, *_) in best.items()})


if __name__ == "__main__":
    asyncio.run(main())
