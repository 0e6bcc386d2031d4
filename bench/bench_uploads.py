"""The Upload Center end to end against PostgreSQL COPY of the same rows, same run.

    .venv/bin/python bench/bench_uploads.py [--rows 100000] [--small 20000] [--reader-rows 1000000]

Needs postgresql://postgres@127.0.0.1:5432 and redis://127.0.0.1:6379 (`make services`).
The whole stack runs in this process on fresh PostgreSQL databases (tests.support.stack),
with its workers; the file goes in over the REST edge (ASGI, streamed from a temporary
file) and is processed by the uploads worker through registrations' UpsertBatch.

Measured:
1. a generated ANGIO_HOSP file (realistic values, unique patients, ~3 % invalid rows);
2. baseline: psycopg COPY of the same rows (every column text) into a plain table;
3. hdhub: POST /api/v1/uploads until the upload is done (validation "none", autosubmit),
   rows/s and the ratio to COPY; the same for a smaller file, with the peak RSS growth of
   this process during each upload (it must not grow with the file);
4. the reading pipeline alone (decode, parse, batch, spreadsheet checks; no gRPC) on a
   larger file, to show constant memory at 1M rows without waiting on storage.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.samples import VALID  # noqa: E402

HIS = "az-demo-his"


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def ssin_for(dob: date, serial: int) -> str:
    body = f"{dob:%y%m%d}{serial:03d}"
    return body + f"{97 - int(body) % 97:02d}"


def rows(n: int, seed: int = 0) -> Iterator[dict[str, str]]:
    base = dict(VALID["ANGIO_HOSP"])
    start = date(1930, 1, 1)
    for i in range(n):
        dob = start + timedelta(days=(i * 7 + seed) % 25_000)
        serial = (i // 25_000) + 1 + seed * 50
        r = dict(base)
        r["IDC_PAT"] = ssin_for(dob, serial)
        r["DT_PAT_DOB"] = dob.strftime("%d/%m/%Y")
        r["CD_PAT_SEX"] = "M" if serial % 2 else "F"
        r["MS_HEIGHT"] = str(150 + i % 45)
        r["MS_WEIGHT"] = f"{55 + i % 50}.0"
        if i % 33 == 5:  # ~3 % invalid
            r["MS_HEIGHT"] = "tall"
        yield r


def write_file(path: Path, n: int, seed: int) -> list[str]:
    columns = list(VALID["ANGIO_HOSP"])
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=";", lineterminator="\r\n")
        w.writerow(columns)
        for r in rows(n, seed):
            w.writerow([r.get(c, "") for c in columns])
    return columns


def copy_baseline(path: Path, columns: list[str]) -> float:
    import psycopg

    url = os.environ.get("HDHUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_upload_copy")
        conn.execute(
            "CREATE UNLOGGED TABLE bench_upload_copy (" + ", ".join(f'"{c}" text' for c in columns) + ")"
        )
        conn.execute("DROP TABLE bench_upload_copy")
        conn.execute("CREATE TABLE bench_upload_copy (" + ", ".join(f'"{c}" text' for c in columns) + ")")
        t0 = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY bench_upload_copy FROM STDIN WITH (FORMAT csv, DELIMITER ';', HEADER true)"
            ) as copy,
            path.open("rb") as f,
        ):
            while chunk := f.read(1024 * 1024):
                copy.write(chunk)
        elapsed = time.perf_counter() - t0
        conn.execute("DROP TABLE bench_upload_copy")
    return elapsed


#: What an upload stores, table by table (and the column that says when a row was written).
FLOOR_TABLES = {
    "registrations": "created_at",
    "registration_versions": "at",  # a change's history: none for a creation since migration 0008
    "batch_history": "at",  # the history entry a batch's registrations share (0008)
    "jobs": "created_at",  # deliveries: a deliver_batch job per 200 registrations (0008)
    "idempotency_keys": "created_at",  # each batch's result, replayed to a worker taking over
}


@dataclass
class Floor:
    seconds: float
    registrations: int
    #: Per table: rows, MB of COPY text, seconds.
    tables: dict[str, tuple[int, float, float]]
    #: The registrations COPYed into a table like ours without its indexes: the row alone.
    bare_rows_seconds: float
    #: The plain COPY of the file again, on the same connection just before the floor
    #: (the load moves: the ratio of two figures taken side by side is the one to read).
    copy_seconds: float
    #: CPU seconds of the PostgreSQL backend for that COPY and for the floor's, when the
    #: server runs on this machine (/proc); else None. CPU moves less with the load.
    copy_cpu: float | None = None
    floor_cpu: float | None = None


def _backend_cpu(conn: Any) -> float | None:
    """CPU seconds the connection's PostgreSQL backend has used (a server on this machine)."""
    try:
        with open(f"/proc/{conn.info.backend_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def storage_floor(since: datetime, path: Path, columns: list[str]) -> Floor:
    """What storing an upload's rows costs PostgreSQL alone, without any of our code: the
    rows the upload wrote since ``since`` (registrations, history, delivery jobs, the
    batches' results), exported as they are stored and COPYed back into empty tables
    ``LIKE`` the real ones (same columns, defaults and indexes; foreign keys and triggers
    left out), one COPY per table in one transaction. Then the registrations alone again,
    into a table without indexes: how much of the floor the row is, and how much its
    indexes."""
    import psycopg

    url = os.environ["HDHUB_REGISTRATIONS_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    dumps: dict[str, bytes] = {}
    tables: dict[str, tuple[int, float, float]] = {}

    def copy_in(conn: psycopg.Connection[Any], table: str, data: bytes) -> float:
        t0 = time.perf_counter()
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for start in range(0, len(data), 1 << 20):
                copy.write(data[start : start + (1 << 20)])
        return time.perf_counter() - t0

    with psycopg.connect(url, autocommit=True) as conn:
        for table, at in FLOOR_TABLES.items():
            conn.execute(f"DROP TABLE IF EXISTS floor_{table}")
            conn.execute(f"CREATE TABLE floor_{table} (LIKE {table} INCLUDING ALL)")
            buf = bytearray()
            with conn.cursor().copy(
                f"COPY (SELECT * FROM {table} WHERE {at} >= %s) TO STDOUT", (since,)
            ) as copy:
                for chunk in copy:
                    buf += chunk
            dumps[table] = bytes(buf)
        count = dumps["registrations"].count(b"\n")
        conn.execute("DROP TABLE IF EXISTS floor_plain_copy")
        conn.execute("CREATE TABLE floor_plain_copy (" + ", ".join(f'"{c}" text' for c in columns) + ")")
        cpu0, t0 = _backend_cpu(conn), time.perf_counter()
        with (
            conn.cursor().copy(
                "COPY floor_plain_copy FROM STDIN WITH (FORMAT csv, DELIMITER ';', HEADER true)"
            ) as copy,
            path.open("rb") as f,
        ):
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        copy_seconds, cpu1 = time.perf_counter() - t0, _backend_cpu(conn)
        conn.execute("DROP TABLE floor_plain_copy")
        cpu2, t0 = _backend_cpu(conn), time.perf_counter()
        with conn.transaction():
            for table, data in dumps.items():
                tables[table] = (data.count(b"\n"), len(data) / 1e6, copy_in(conn, f"floor_{table}", data))
        elapsed, cpu3 = time.perf_counter() - t0, _backend_cpu(conn)
        for table in FLOOR_TABLES:
            conn.execute(f"DROP TABLE floor_{table}")
        conn.execute("DROP TABLE IF EXISTS floor_bare_registrations")
        conn.execute("CREATE TABLE floor_bare_registrations (LIKE registrations INCLUDING DEFAULTS)")
        with conn.transaction():
            bare = copy_in(conn, "floor_bare_registrations", dumps["registrations"])
        conn.execute("DROP TABLE floor_bare_registrations")
    cpu = None if None in (cpu0, cpu1, cpu2, cpu3) else (cpu1 - cpu0, cpu3 - cpu2)  # type: ignore[operator]
    return Floor(elapsed, count, tables, bare, copy_seconds, *(cpu or (None, None)))


async def file_body(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            yield chunk


class RpcClock:
    """Wall time with at least one call to registrations (UpsertBatch, ValidateBatch) in
    flight inside the upload. Batches are pipelined (two calls may overlap), so this is
    the union of the calls' intervals, not their sum."""

    def __init__(self) -> None:
        import hdhub.uploads.registrations as regs

        self.seconds = {"UpsertBatch": 0.0, "ValidateBatch": 0.0}
        self._flying = {"UpsertBatch": 0, "ValidateBatch": 0}
        self._since = {"UpsertBatch": 0.0, "ValidateBatch": 0.0}
        for attr, name in (("upsert_batch", "UpsertBatch"), ("validate_batch", "ValidateBatch")):
            original = getattr(regs, attr)

            async def timed(
                *args: object, _original: object = original, _name: str = name, **kw: object
            ) -> object:
                if self._flying[_name] == 0:
                    self._since[_name] = time.perf_counter()
                self._flying[_name] += 1
                try:
                    return await _original(*args, **kw)  # type: ignore[operator]
                finally:
                    self._flying[_name] -= 1
                    if self._flying[_name] == 0:
                        self.seconds[_name] += time.perf_counter() - self._since[_name]

            setattr(regs, attr, timed)

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)


async def validation_only(stack: object, path: Path, rows_per_batch: int = 2000) -> float:
    """ValidateBatch alone over the file's rows, straight to registrations (no storage)."""
    from hdhub.common.auth import current_principal, verifier
    from hdhub.uploads import registrations as regs

    current_principal.set(await verifier().verify(await stack.token(HIS)))  # type: ignore[attr-defined]
    dcd = await regs.dcd_summary("ANGIO_HOSP")
    total = 0.0
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=";")
        header = next(reader)
        while True:
            chunk = [r for _, r in zip(range(rows_per_batch), reader, strict=False)]
            if not chunk:
                break
            columns: dict[str, list[str | None]] = {
                h: [r[i] or None for r in chunk] for i, h in enumerate(header)
            }
            data = regs.encode_columns(columns)
            t0 = time.perf_counter()
            await regs.validate_batch(organisation_id="az-demo", dcd=dcd, rows=data, language="en")
            total += time.perf_counter() - t0
    return total


class DeliveryHeld:
    """Registrations' delivery worker (Sending -> Submitted, and the central platform
    after it) held while an upload is timed, then let go.

    In a deployment it runs in its own worker process (`hdhub worker registrations`);
    here every service shares this process and its one GIL, so a worker draining the
    jobs of the batches already stored would be timed as part of the upload."""

    def __init__(self) -> None:
        from hdhub.registrations.runtime import RegistrationsService

        self.gate = asyncio.Event()
        original = RegistrationsService.work

        async def work(service: object, stop: asyncio.Event, _original: object = original) -> None:
            waiters = [asyncio.ensure_future(self.gate.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if not stop.is_set():
                await _original(service, stop)  # type: ignore[operator]

        RegistrationsService.work = work  # type: ignore[method-assign]

    def release(self) -> None:
        self.gate.set()


async def drain(stack: object, timeout: float = 3600.0) -> float:
    """Let the delivery worker go; seconds until no registration of az-demo is Sending."""
    client = stack.client  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        r = await client.get(
            "/api/v1/registrations",
            params={"status": "sending", "limit": 1},
            headers=await stack.headers(HIS),  # type: ignore[attr-defined]
        )
        if r.status_code == 200 and r.json().get("total", 1) == 0:
            break
        await asyncio.sleep(0.5)
    return time.perf_counter() - t0


async def run_upload(stack: object, path: Path) -> tuple[float, int, dict[str, int]]:
    client = stack.client  # type: ignore[attr-defined]
    headers = {**(await stack.headers(HIS)), "Content-Type": "text/csv"}  # type: ignore[attr-defined]
    base = rss_kb()
    peak = base
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kb())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    t0 = time.perf_counter()
    r = await client.post(
        "/api/v1/uploads",
        params={
            "dcd_code": "ANGIO_HOSP",
            "validation": "none",
            "autosubmit": "true",
            "ignore_duplicates": "false",
        },
        content=file_body(path),
        headers=headers,
    )
    assert r.status_code == 202, r.text
    upload_id = r.json()["id"]
    while True:
        # Fresh headers each time: a 1M-row upload outlasts a token (the stack renews them).
        r = await client.get(f"/api/v1/uploads/{upload_id}", headers=await stack.headers(HIS))  # type: ignore[attr-defined]
        assert r.status_code == 200, r.text
        got = r.json()
        if got["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - t0
    done.set()
    await sampler
    assert got["status"] == "done", got
    return elapsed, peak - base, got["counts"]


def reader_only(path: Path) -> tuple[float, int, int]:
    from hdhub.uploads.domain.batches import Batches
    from hdhub.uploads.domain.cells import FieldInfo
    from hdhub.uploads.domain.csvfile import CsvFile

    fields = {
        c: FieldInfo(c, "date" if c.startswith("DT_") else "text", c == "IDC_PAT")
        for c in VALID["ANGIO_HOSP"]
    }

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(1024 * 1024):
                yield chunk

    base = peak = rss_kb()
    t0 = time.perf_counter()
    f = CsvFile(chunks())
    f.open()
    batches = Batches(f, fields, 2000)
    n = 0
    while (b := batches.next()) is not None:
        n += b.records
        peak = max(peak, rss_kb())
    return time.perf_counter() - t0, peak - base, n


async def trace(n: int) -> None:
    """Where memory that outlives an upload of ``n`` rows sits, by file (tracemalloc)."""
    import tracemalloc

    from tests.support.stack import running_stack

    DeliveryHeld()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        warm, path = tmpdir / "warm.csv", tmpdir / "trace.csv"
        write_file(warm, 200, seed=4)
        write_file(path, n, seed=5)
        async with running_stack("postgres", tmpdir / "stack") as stack:
            await run_upload(stack, warm)
            tracemalloc.start(1)  # deeper tracebacks slow an upload past the 5-minute token
            before = tracemalloc.take_snapshot()
            await run_upload(stack, path)
            after = tracemalloc.take_snapshot()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        print(
            f"{n} rows under tracemalloc: traced peak {peak / 1e6:.0f} MB; still allocated after the upload, by file:"
        )
        for stat in after.compare_to(before, "filename")[:10]:
            print(
                f"  {stat.size_diff / 1e6:+8.1f} MB  {stat.traceback[0].filename.replace(str(ROOT) + '/', '')}"
            )


def processes_run(paths: list[Path], tmpdir: Path) -> list[tuple[float, dict[str, int], dict[str, int]]]:
    """The deployment's shape (Helm, Kustomize): identity, registrations and uploads each
    serving in a process of its own, the uploads worker in another, on fresh PostgreSQL
    databases, an object-store folder they share, Redis; registrations' delivery worker
    not started (its own process in a deployment, not timed here). Each file is uploaded
    over HTTP to the uploads process. Per file: seconds, counts, and the peak RSS growth
    of each process during it (MB)."""
    import uuid
    from contextlib import ExitStack

    import httpx

    from hdhub.common.config import SERVICES
    from hdhub.identity.seed import CLIENTS
    from tests.e2e.conftest import base_env, hdhub_process
    from tests.support.stack import create_database, drop_database, free_port

    tmpdir.mkdir(parents=True, exist_ok=True)
    env = base_env(tmpdir)
    identity_port, uploads_port, registrations_port = free_port(), free_port(), free_port()
    env |= {
        "HDHUB_ENVIRONMENT": "development",
        "HDHUB_OIDC_ISSUER": f"http://127.0.0.1:{identity_port}/realms/hdhub",
        "HDHUB_REDIS_URL": os.environ.get("HDHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "HDHUB_SERVICE_CLIENT_SECRET": uuid.uuid4().hex,
        "HDHUB_IDENTITY_LOGIN_KEY_PREFIX": f"hdhub:bench:{uuid.uuid4().hex}:login",
        "HDHUB_UPLOADS_DROPFOLDER_ENABLED": "false",
        "HDHUB_LOG_LEVEL": "WARNING",
    }
    databases = []
    for service in SERVICES:
        databases.append(name := f"hdhub_bench_{service}_{uuid.uuid4().hex[:8]}")
        env[f"HDHUB_{service.upper()}_DATABASE_URL"] = create_database(name)
    results = []
    try:
        with ExitStack() as stack:
            stack.enter_context(hdhub_process(["seed"], env, tmpdir / "seed.log")).wait(timeout=300)
            procs = {
                "identity": stack.enter_context(
                    hdhub_process(
                        ["run", "identity", "--port", str(identity_port)], env, tmpdir / "identity.log"
                    )
                ),
                "registrations": stack.enter_context(
                    hdhub_process(
                        ["run", "registrations", "--port", str(registrations_port)],
                        env,
                        tmpdir / "registrations.log",
                    )
                ),
                "uploads": stack.enter_context(
                    hdhub_process(
                        ["run", "uploads", "--port", str(uploads_port)], env, tmpdir / "uploads.log"
                    )
                ),
                "uploads worker": stack.enter_context(
                    hdhub_process(["worker", "uploads"], env, tmpdir / "uploads-worker.log")
                ),
            }
            base = f"http://127.0.0.1:{uploads_port}"
            deadline = time.monotonic() + 240
            while True:
                try:
                    if all(
                        httpx.get(f"http://127.0.0.1:{p}/healthz", timeout=1).status_code == 200
                        # Registrations too: the first upload asks it for the DCD.
                        for p in (identity_port, uploads_port, registrations_port)
                    ):
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the processes did not start; logs in " + str(tmpdir))
                time.sleep(0.5)
            client = next(c for c in CLIENTS if c.client_id == HIS)
            issued = [0.0, ""]

            def auth() -> dict[str, str]:  # a fresh token every 2 minutes (they live 5)
                if time.monotonic() - float(issued[0]) > 120:
                    issued[:] = [
                        time.monotonic(),
                        httpx.post(
                            f"{env['HDHUB_OIDC_ISSUER']}/protocol/openid-connect/token",
                            data={
                                "grant_type": "client_credentials",
                                "client_id": HIS,
                                "client_secret": client.secret,
                            },
                        ).json()["access_token"],
                    ]
                return {"Authorization": f"Bearer {issued[1]}"}

            def rss(pid: int) -> int:
                with open(f"/proc/{pid}/status") as f:
                    return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

            for path in paths:
                before = {name: rss(p.pid) for name, p in procs.items()}
                peak = dict(before)
                t0 = time.perf_counter()
                with path.open("rb") as f:
                    r = httpx.post(
                        f"{base}/api/v1/uploads",
                        params={
                            "dcd_code": "ANGIO_HOSP",
                            "validation": "none",
                            "autosubmit": "true",
                            "ignore_duplicates": "false",
                        },
                        content=iter(lambda: f.read(1 << 20), b""),
                        headers={**auth(), "Content-Type": "text/csv"},
                        timeout=600,
                    )
                assert r.status_code == 202, r.text
                upload_id = r.json()["id"]
                while True:
                    r = httpx.get(f"{base}/api/v1/uploads/{upload_id}", headers=auth(), timeout=30)
                    assert r.status_code == 200, r.text
                    got = r.json()
                    peak = {name: max(peak[name], rss(p.pid)) for name, p in procs.items()}
                    if got["status"] in ("done", "failed"):
                        break
                    time.sleep(0.2)
                elapsed = time.perf_counter() - t0
                assert got["status"] == "done", got
                growth = {name: (peak[name] - before[name]) // 1024 for name in procs}
                results.append((elapsed, got["counts"], growth))
    finally:
        for name in databases:
            drop_database(name)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000, help="the file compared with COPY")
    parser.add_argument("--small", type=int, default=20_000, help="a smaller file, for memory")
    parser.add_argument(
        "--large", type=int, default=0, help="also upload a file this big end to end (1000000: ~10 min)"
    )
    parser.add_argument("--reader-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--drain", action="store_true", help="then time the delivery worker taking every row to submitted"
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help="then the same files again with each service in a process of its own, as deployed",
    )
    parser.add_argument(
        "--trace-rows",
        type=int,
        default=0,
        help="only: upload this many rows under tracemalloc, print what stays allocated",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="bench-check's short run: 10,000 rows (small 2,000, reader 10,000), both shapes, COPY best of 3",
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.small, args.large, args.reader_rows, args.processes = 10_000, 2_000, 0, 10_000, True
    ratios: dict[str, float] = {}
    if args.trace_rows:
        await trace(args.trace_rows)
        return

    from tests.support.stack import running_stack

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        big, small, large = tmpdir / "big.csv", tmpdir / "small.csv", tmpdir / "large.csv"
        columns = write_file(big, args.rows, seed=1)
        write_file(small, args.small, seed=2)
        if args.large:
            write_file(large, args.large, seed=6)
        size_mb = big.stat().st_size / 1e6
        copy_s = min(copy_baseline(big, columns) for _ in range(3 if args.quick else 1))
        load = os.getloadavg()[0]
        print(f"file: {args.rows} rows, {len(columns)} columns, {size_mb:.1f} MB; load average {load:.1f}")
        print(f"baseline COPY into a plain table: {copy_s:.2f} s ({args.rows / copy_s:,.0f} rows/s)")
        clock = RpcClock()
        held = DeliveryHeld()
        async with running_stack("postgres", tmpdir / "stack") as stack:
            t_small, mem_small, counts_small = await run_upload(stack, small)
            clock.reset()
            since = datetime.now(UTC)
            t_big, mem_big, counts = await run_upload(stack, big)
            floor = storage_floor(since, big, columns)
            in_upsert = clock.seconds["UpsertBatch"]
            t_validate = await validation_only(stack, big)
            if args.large:
                t_large, mem_large, counts_large = await run_upload(stack, large)
            if args.drain:
                held.release()
                queued = args.small + args.rows + args.large
                t_drain = await drain(stack)
        print(
            f"hdhub upload {args.small} rows: {t_small:.1f} s ({args.small / t_small:,.0f} rows/s), "
            f"peak RSS growth {mem_small / 1024:.0f} MB, counts {counts_small}"
        )
        print(
            f"hdhub upload {args.rows} rows: {t_big:.1f} s ({args.rows / t_big:,.0f} rows/s), "
            f"peak RSS growth {mem_big / 1024:.0f} MB, counts {counts}"
        )
        if args.large:
            print(
                f"hdhub upload {args.large} rows: {t_large:.1f} s ({args.large / t_large:,.0f} rows/s), "
                f"peak RSS growth {mem_large / 1024:.0f} MB, counts {counts_large}"
            )
        print(f"ratio hdhub / COPY: {t_big / copy_s:.1f}x (aim: at most 10x)")
        ratios |= {"upload_over_copy": t_big / copy_s, "floor_over_copy": floor.seconds / floor.copy_seconds}
        print(
            f"  of which with an UpsertBatch in flight: {in_upsert:.1f} s ({in_upsert / t_big:.0%}); "
            f"uploads' own share not overlapped with it (streaming in, scan, reports, progress): "
            f"{t_big - in_upsert:.1f} s"
        )
        print(
            f"  storage floor: PostgreSQL COPYing back the {floor.registrations} registrations this upload stored, "
            f"with their history, delivery jobs and batch results, into empty tables like ours: {floor.seconds:.2f} s "
            f"({floor.seconds / copy_s:.1f}x COPY; aim: at most 8x): what no code of ours can go below with this schema"
        )
        print(
            f"    the same plain COPY again just before it: {floor.copy_seconds:.2f} s, so the floor is "
            f"{floor.seconds / floor.copy_seconds:.1f}x COPY side by side"
            + (
                f"; PostgreSQL's CPU: floor {floor.floor_cpu:.2f} s / COPY {floor.copy_cpu:.2f} s = "
                f"{floor.floor_cpu / floor.copy_cpu:.1f}x"
                if floor.floor_cpu is not None and floor.copy_cpu
                else ""
            )
        )
        for table, (n, mb, seconds) in floor.tables.items():
            print(
                f"    {table}: {n} rows, {mb:.1f} MB of COPY text, {seconds:.2f} s ({seconds / copy_s:.1f}x COPY)"
            )
        print(
            f"    the registrations again into a table like ours without its indexes (the row alone): "
            f"{floor.bare_rows_seconds:.2f} s ({floor.bare_rows_seconds / copy_s:.1f}x COPY)"
        )
        print(
            f"  ValidateBatch alone over the same {args.rows} rows: {t_validate:.1f} s ({args.rows / t_validate:,.0f} rows/s): "
            f"validation is {t_validate / in_upsert:.0%} of UpsertBatch, storage the rest"
        )
        print("  (registrations' delivery worker held during the uploads: its own process in a deployment)")
        if args.drain:
            print(
                f"delivery worker, {queued} submitted rows to submitted: {t_drain:.1f} s ({queued / t_drain:,.0f} rows/s)"
            )
        if args.processes:
            files = [(small, args.small), (big, args.rows)] + ([(large, args.large)] if args.large else [])
            # New databases: the same files are new patients there.
            runs = processes_run([p for p, _ in files], tmpdir / "procs")
            for (_, n), (elapsed, counts_p, growth) in zip(files, runs, strict=True):
                mem = ", ".join(f"{name} {mb} MB" for name, mb in growth.items())
                print(
                    f"as deployed (a process per service): {n} rows {elapsed:.1f} s ({n / elapsed:,.0f} rows/s, "
                    f"{elapsed / copy_s * args.rows / n:.1f}x COPY per row); peak RSS growth {mem}; "
                    f"created {counts_p['created']}"
                )
                if n == args.rows:
                    ratios["upload_processes_over_copy"] = elapsed / copy_s
        print(f"load average at the end of the uploads: {os.getloadavg()[0]:.1f}")
        reader_file = tmpdir / "reader.csv"
        write_file(reader_file, args.reader_rows, seed=3)
        r100 = reader_only(big)
        r1m = reader_only(reader_file)
        print(
            f"reading pipeline alone, {args.rows} rows: {r100[0]:.1f} s, peak RSS growth {r100[1] / 1024:.0f} MB"
        )
        print(
            f"reading pipeline alone, {r1m[2]} rows: {r1m[0]:.1f} s, peak RSS growth {r1m[1] / 1024:.0f} MB"
        )
    from _result import result

    result(ratios)


if __name__ == "__main__":
    io.DEFAULT_BUFFER_SIZE = 1024 * 1024
    asyncio.run(main())
