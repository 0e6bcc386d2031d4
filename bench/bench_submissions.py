"""Submission throughput of `hdhub run all` against a bare FastAPI baseline, same run.

    .venv/bin/python bench/bench_submissions.py [--requests N] [--concurrency C] [--postgres]

Baseline: a FastAPI app with one POST endpoint that parses the JSON body and answers 202
``{"businessKey": ...}``, served by uvicorn in a subprocess with hdhub's uvicorn settings
(one process, uvloop when installed, h11 with the request head capped).

Subject: ``hdhub run all --port P`` in a subprocess with a temporary HDHUB_DATA_DIR
(SQLite), or with ``--postgres`` fresh databases on postgresql://postgres@127.0.0.1:5432
(dropped at the end). Every port (HTTP and both gRPC servers) is a free loopback port,
so the bench never collides with a running `make run`.

Measured, after a warm-up:
- the HD4DP v2 submit call with valid unique ANGIO_HOSP records (REST, validation, the
  database and a delivery job for the background worker), at a fixed concurrency;
- the drain: time until every submitted registration left Sending (worker done);
- gRPC ``RegistrationsService/UpsertBatch`` with one row per call and with 1000-row
  Arrow batches (submit=true), in rows/s.

Prints a table with req/s, p50 and p99 for baseline and hdhub and their ratios. Never
prints tokens or SSINs. Subprocesses (whole process groups), temporary directories and
databases are cleaned up on every exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import importlib.util
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# At module level: the endpoint's `Request` annotation is resolved from these globals.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ROOT = Path(__file__).resolve().parents[1]
ORG = "az-demo"
CLIENT_ID, CLIENT_SECRET = "az-demo-his", "demo-his-secret"
DCD, DCD_VERSION = "ANGIO_HOSP", "1.0.0"
SUBMIT_PATH = f"/proxy/api/dcd/payload/submit?organization-id={ORG}&dcd-id={DCD}&dcd-version-id={DCD_VERSION}"
TOKEN_PATH = "/realms/hdhub/protocol/openid-connect/token"
SENDING_PATH = f"/api/v1/registrations?status=sending&organisation_id={ORG}&limit=1"
POSTGRES_ADMIN = os.environ.get("HDHUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH_ROWS = 1000


class BenchError(RuntimeError):
    """A failed step; reported in one line (never with a token or an SSIN)."""


_SSIN_LIKE = re.compile(r"(?<!\d)\d{2}[.]?\d{2}[.]?\d{2}[- ]?\d{3}[.]?\d{2}(?!\d)")
_TOKEN_LIKE = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*|(?i:bearer)\s+\S+")


def redact(text: str) -> str:
    """Mask anything shaped like an SSIN or a bearer token before a log line is shown."""
    return _TOKEN_LIKE.sub("<token>", _SSIN_LIKE.sub("<ssin>", text))


# ----------------------------------------------------------------------------- baseline server


def serve_baseline(port: int) -> None:
    """The baseline: parse the JSON body, answer 202 with a business key. Nothing else."""
    import uvicorn

    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/proxy/api/dcd/payload/submit", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        record = json.loads(await request.body())
        return JSONResponse({"businessKey": uuid.uuid4().hex, "fields": len(record)}, status_code=202)

    # The settings `hdhub run` gives uvicorn (src/hdhub/cli/http.py).
    from hdhub.cli.http import server_config

    config = server_config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    uvicorn.Server(config).run()


# ----------------------------------------------------------------------------- records


def _load_samples() -> Any:
    path = ROOT / "services" / "registrations" / "dcds" / "samples.py"
    spec = importlib.util.spec_from_file_location("hdhub_bench_dcd_samples", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ssin(birth: dt.date, serial: int) -> str:
    """A valid SSIN for a birth date before 2000: yymmdd + serial (1..997) + mod-97 check."""
    body = f"{birth:%y%m%d}{serial:03d}"
    return f"{body}{97 - int(body) % 97:02d}"


class Records:
    """Valid ANGIO_HOSP records, each for a patient no other record uses.

    Patient i is born on one of ~25,000 days between 1930 and 1998 (so the SSIN's
    century check is the pre-2000 one), with serial 1..997 once the days are used up;
    the admission falls in 2024 or early 2025, after birth and before today.
    """

    DAYS = 25_000
    FIRST_BIRTH = dt.date(1930, 1, 1)
    FIRST_ADMISSION = dt.date(2024, 1, 1)

    def __init__(self) -> None:
        self.template = dict(_load_samples().VALID[DCD])
        self.next = 0

    def take(self, n: int) -> list[dict[str, str]]:
        out = [self.make(i) for i in range(self.next, self.next + n)]
        self.next += n
        return out

    def make(self, i: int) -> dict[str, str]:
        birth = self.FIRST_BIRTH + dt.timedelta(days=i % self.DAYS)
        serial = (i // self.DAYS) % 997 + 1
        admission = self.FIRST_ADMISSION + dt.timedelta(days=i % 400)
        discharge = admission + dt.timedelta(days=1 + i % 9)
        return {
            **self.template,
            "IDC_PAT": ssin(birth, serial),
            "DT_PAT_DOB": f"{birth:%d/%m/%Y}",
            "CD_PAT_SEX": "M" if serial % 2 else "F",
            "DT_HOSPZ": f"{admission:%d/%m/%Y}",
            "DT_DISCH": f"{discharge:%d/%m/%Y}",
        }


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return redact("\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]))
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL if it lingers."""
        if self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Children of the group that outlived their leader.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def clean_env() -> dict[str, str]:
    """The parent's environment without any HDHUB_* setting, so nothing leaks in from a shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HDHUB_")}


def spawn(name: str, argv: Sequence[str], env: dict[str, str], cwd: Path, logs: Path) -> Process:
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Process(name, popen, log_path)


def hdhub_command() -> list[str]:
    script = Path(sys.executable).parent / "hdhub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hdhub.cli.main"]


async def wait_healthy(process: Process, base: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise BenchError(f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise BenchError(f"{process.name} not healthy after {timeout:.0f}s:\n{process.tail()}")


class Databases:
    """Fresh PostgreSQL databases, dropped at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self, service: str) -> str:
        import psycopg

        name = f"hdhub_bench_{service}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}/{name}"

    def drop_all(self) -> None:
        import psycopg

        for name in self.names:
            try:
                with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:  # keep dropping the others
                print(f"warning: could not drop database {name}: {type(exc).__name__}", file=sys.stderr)
        self.names.clear()


# ----------------------------------------------------------------------------- load


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc; 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    label: str
    count: int  # calls
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, one per call
    rows: int = 0
    server_cpu: float = 0.0  # seconds of server CPU over the run
    client_cpu: float = 0.0  # seconds of this process's CPU over the run
    failed: collections.Counter[str] = field(default_factory=collections.Counter)  # server errors, by kind

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def cpu_ms(self, cpu: float, per: int | None = None) -> float:
        n = per if per is not None else self.count
        return cpu / n * 1000 if n else float("nan")

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
        return ordered[rank - 1] * 1000


def _problem_type(response: Any) -> str:
    """What went wrong, without echoing the body (a problem may quote submitted values)."""
    try:
        body = response.json()
    except ValueError:
        return "non-JSON body"
    if isinstance(body, dict):
        errors = body.get("errors") or []
        rules = sorted({f"{e.get('field')}:{e.get('rule')}" for e in errors if isinstance(e, dict)})
        return f"{body.get('type', '?')} {' '.join(rules)}".strip()
    return type(body).__name__


JSON_HEADERS = {"Content-Type": "application/json"}


def encode(records: Sequence[dict[str, str]]) -> list[bytes]:
    return [json.dumps(r, separators=(",", ":")).encode() for r in records]


class Load:
    """``concurrency`` workers, each with its own httpx.AsyncClient of one keep-alive
    connection, POSTing pre-encoded bodies to the submit path.

    One client per worker rather than one shared pool: httpcore's pool re-examines every
    connection on each request and release, which at 16 connections made the client,
    not the server, the bottleneck of the baseline (measured: 2.7 vs 1.9 ms of client CPU
    per request, and fewer requests/s).
    """

    def __init__(self, base: str, concurrency: int, server_pid: int) -> None:
        import httpx

        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.clients = [
            httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) for _ in range(concurrency)
        ]
        self.server_pid = server_pid

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def post_all(self, bodies: Sequence[bytes], headers: dict[str, str], label: str) -> Run:
        """POST every body. A 5xx or a dropped connection is counted and reported (up to 1%
        of the requests): the server's own failure under load. Anything else but 202 stops
        the run."""
        import httpx

        latencies: list[float] = []
        failed: collections.Counter[str] = collections.Counter()
        refused: list[str] = []
        tolerated = max(1, len(bodies) // 100)
        position = 0

        async def worker(client: Any) -> None:
            nonlocal position
            while position < len(bodies) and not refused:
                body = bodies[position]
                position += 1
                start = time.perf_counter()
                try:
                    response = await client.post(SUBMIT_PATH, content=body, headers=headers)
                except httpx.TransportError as exc:  # the server dropped the connection
                    latencies.append(time.perf_counter() - start)
                    failed[f"connection lost ({type(exc).__name__})"] += 1
                    if sum(failed.values()) > tolerated:
                        refused.append(f"more than {tolerated} server errors, e.g. {type(exc).__name__}")
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code == 202:
                    continue
                kind = f"HTTP {response.status_code} {_problem_type(response)}"
                if response.status_code < 500:
                    refused.append(kind)
                else:
                    failed[kind] += 1
                    if sum(failed.values()) > tolerated:
                        refused.append(f"more than {tolerated} server errors, e.g. {kind}")

        server_cpu, client_cpu = cpu_seconds(self.server_pid), own_cpu_seconds()
        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in self.clients))
        seconds = time.perf_counter() - start
        if refused:
            raise BenchError(f"{label}: {refused[0]}")
        return Run(
            label,
            len(latencies) - sum(failed.values()),
            seconds,
            latencies,
            server_cpu=cpu_seconds(self.server_pid) - server_cpu,
            client_cpu=own_cpu_seconds() - client_cpu,
            failed=failed,
        )


# ----------------------------------------------------------------------------- phases


async def bench_baseline(bodies_warmup: list[bytes], bodies: list[bytes], concurrency: int, tmp: Path) -> Run:
    port = free_port()
    process = spawn(
        "baseline",
        [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(port)],
        clean_env(),
        tmp,
        tmp,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_healthy(process, base, timeout=30)
        load = Load(base, concurrency, process.popen.pid)
        try:
            await load.post_all(bodies_warmup, JSON_HEADERS, "baseline warm-up")
            return await load.post_all(bodies, JSON_HEADERS, "baseline")
        finally:
            await load.aclose()
    finally:
        process.stop()


@dataclass
class HdhubResults:
    rest: Run
    drain_seconds: float
    end_to_end: Run
    grpc_single: Run
    grpc_batch: Run


async def sending_total(client: Any, headers: dict[str, str]) -> int:
    response = await client.get(SENDING_PATH, headers=headers)
    if response.status_code != 200:
        raise BenchError(
            f"registration search answered HTTP {response.status_code} {_problem_type(response)}"
        )
    return int(response.json()["total"])


async def wait_drained(client: Any, headers: dict[str, str], timeout: float) -> float:
    """Seconds until no registration of the organisation is Sending any more.

    Polls often at first and then every 0.5 s at most: each poll is a request the server
    (and its worker) pays for, so a tight loop would slow the drain it measures.
    """
    start = time.perf_counter()
    while True:
        if await sending_total(client, headers) == 0:
            return time.perf_counter() - start
        elapsed = time.perf_counter() - start
        if elapsed > timeout:
            raise BenchError(f"registrations still Sending after {timeout:.0f}s")
        await asyncio.sleep(min(0.5, 0.02 + elapsed / 40))


async def token_for(client: Any) -> str:
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    response = await client.post(TOKEN_PATH, data=form)
    if response.status_code != 200:
        raise BenchError(f"token endpoint answered HTTP {response.status_code}")
    return str(response.json()["access_token"])


async def grpc_upsert(
    stub: Any, pb: Any, metadata: Sequence[tuple[str, str]], rows: Sequence[dict[str, str]]
) -> None:
    from hdhub.registrations.arrow import encode_rows

    request = pb.UpsertBatchRequest(
        organisation_id=ORG,
        dcd=pb.DcdRef(dcd_code=DCD, version=DCD_VERSION),
        rows_arrow=encode_rows(rows),
        language="en",
        validation_mode=pb.VALIDATION_MODE_NONE,
        conflict_master=pb.CONFLICT_MASTER_NEW,
        submit=True,
    )
    reply = await stub.UpsertBatch(request, metadata=metadata, timeout=300)
    created = sum(1 for r in reply.results if r.outcome == pb.ROW_OUTCOME_CREATED)
    if reply.errors or created != len(rows):
        rules = sorted({f"{e.field}:{e.rule}" for e in reply.errors})
        raise BenchError(f"UpsertBatch created {created} of {len(rows)} rows; errors: {' '.join(rules[:5])}")


async def grpc_runs(
    target: str,
    token: str,
    server_pid: int,
    single_rows: list[dict[str, str]],
    batches: list[list[dict[str, str]]],
    concurrency: int,
    drained: Callable[[], Awaitable[float]],
) -> tuple[Run, Run]:
    import grpc

    from hdhub.proto.registrations.v1 import registrations_pb2 as pb
    from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc

    server_failures = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN}
    metadata = (("authorization", f"Bearer {token}"),)
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.RegistrationsServiceStub(channel)
        await grpc_upsert(stub, pb, metadata, single_rows[:1])  # warm-up: connection, verified token
        rows = single_rows[1:]
        latencies: list[float] = []
        failed: collections.Counter[str] = collections.Counter()
        tolerated = max(1, len(rows) // 100)
        position = 0

        async def worker() -> None:
            nonlocal position
            while position < len(rows):
                row = rows[position]
                position += 1
                start = time.perf_counter()
                try:
                    await grpc_upsert(stub, pb, metadata, [row])
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in server_failures or sum(failed.values()) >= tolerated:
                        raise BenchError(f"UpsertBatch: {exc.code().name}") from None
                    failed[exc.code().name] += 1
                latencies.append(time.perf_counter() - start)

        server_cpu = cpu_seconds(server_pid)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        ok = len(latencies) - sum(failed.values())
        single = Run(
            "gRPC UpsertBatch, 1 row/call",
            ok,
            time.perf_counter() - start,
            latencies,
            rows=ok,
            server_cpu=cpu_seconds(server_pid) - server_cpu,
            failed=failed,
        )

        await drained()  # the batches start with an idle worker, as the REST run did
        batch_latencies: list[float] = []
        server_cpu = cpu_seconds(server_pid)
        start = time.perf_counter()
        for batch in batches:
            t = time.perf_counter()
            await grpc_upsert(stub, pb, metadata, batch)
            batch_latencies.append(time.perf_counter() - t)
        batch_run = Run(
            f"gRPC UpsertBatch, {BATCH_ROWS} rows/call",
            len(batches),
            time.perf_counter() - start,
            batch_latencies,
            rows=sum(len(b) for b in batches),
            server_cpu=cpu_seconds(server_pid) - server_cpu,
        )
    return single, batch_run


async def bench_hdhub(
    args: argparse.Namespace,
    records: Records,
    bodies_warmup: list[bytes],
    bodies: list[bytes],
    tmp: Path,
    databases: Databases | None,
) -> HdhubResults:
    import httpx

    port, grpc_identity, grpc_registrations = free_port(), free_port(), free_port()
    env = clean_env()
    data_dir = tmp / "data"
    data_dir.mkdir()
    env.update(
        HDHUB_DATA_DIR=str(data_dir),
        HDHUB_IDENTITY_GRPC_BIND=f"127.0.0.1:{grpc_identity}",
        HDHUB_REGISTRATIONS_GRPC_BIND=f"127.0.0.1:{grpc_registrations}",
        HDHUB_GRPC_IDENTITY=f"127.0.0.1:{grpc_identity}",
        HDHUB_GRPC_REGISTRATIONS=f"127.0.0.1:{grpc_registrations}",
        # Never the SFTP port of a `make run` on the same machine.
        HDHUB_INTAKE_SFTP_PORT=str(free_port()),
    )
    from hdhub.cli.services import SERVICES

    for name in SERVICES:  # every other service on free ports too
        if name not in ("identity", "registrations"):
            env[f"HDHUB_{name.upper()}_GRPC_BIND"] = env[f"HDHUB_GRPC_{name.upper()}"] = (
                f"127.0.0.1:{free_port()}"
            )
    if databases is not None:
        env["HDHUB_IDENTITY_DATABASE_URL"] = databases.create("identity")
        env["HDHUB_REGISTRATIONS_DATABASE_URL"] = databases.create("registrations")
    process = spawn("hdhub", [*hdhub_command(), "run", "all", "--port", str(port)], env, tmp, tmp)
    pid = process.popen.pid
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_healthy(process, base, timeout=90)
        load = Load(base, args.concurrency, pid)
        try:
            async with httpx.AsyncClient(base_url=base, timeout=60.0) as control:
                token = await token_for(control)
                headers = {**JSON_HEADERS, "Authorization": f"Bearer {token}"}
                auth = {"Authorization": f"Bearer {token}"}
                await load.post_all(bodies_warmup, headers, "hdhub warm-up")
                await wait_drained(control, auth, timeout=60)

                server_cpu = cpu_seconds(pid)
                rest = await load.post_all(bodies, headers, "hdhub v2 submit")
                drain = await wait_drained(control, auth, timeout=300)
                end_to_end = Run(
                    "hdhub submit + drain",
                    rest.count,
                    rest.seconds + drain,
                    server_cpu=cpu_seconds(pid) - server_cpu,
                )

                single_rows = records.take(args.grpc_calls + 1)
                batches = [records.take(BATCH_ROWS) for _ in range(args.grpc_batches)]
                target = f"127.0.0.1:{grpc_registrations}"
                drained = lambda: wait_drained(control, auth, timeout=300)  # noqa: E731
                single, batch = await grpc_runs(
                    target, token, pid, single_rows, batches, args.concurrency, drained
                )
        finally:
            await load.aclose()
        return HdhubResults(rest, drain, end_to_end, single, batch)
    except BaseException:
        if process.popen.poll() is not None:
            print(
                f"hdhub exited with {process.popen.returncode}; last log lines:\n{process.tail()}",
                file=sys.stderr,
            )
        raise
    finally:
        process.stop()


# ----------------------------------------------------------------------------- report


def report(args: argparse.Namespace, baseline: Run, hdhub: HdhubResults, elapsed: float) -> str:
    backend = "PostgreSQL" if args.postgres else "SQLite"
    rest, single, batch = hdhub.rest, hdhub.grpc_single, hdhub.grpc_batch
    w = 46

    def line(label: str, *cells: str) -> str:
        return f"{label:<{w}}" + "".join(f"{c:>11}" for c in cells)

    def ms(value: float) -> str:
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.1f}x" if b else "n/a"

    rule = "-" * (w + 44)
    cpu_rest = rest.cpu_ms(rest.server_cpu)
    cpu_base = baseline.cpu_ms(baseline.server_cpu)
    out = [
        "",
        f"hdhub submissions: {backend}, {args.requests} requests, concurrency {args.concurrency}, "
        f"warm-up {args.warmup}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        rule,
        line("REST POST -> 202", "req/s", "p50 ms", "p99 ms", "CPU ms/req"),
        rule,
        line(
            "baseline: bare FastAPI endpoint",
            f"{baseline.per_second:,.0f}",
            ms(baseline.percentile(50)),
            ms(baseline.percentile(99)),
            f"{cpu_base:.2f}",
        ),
        line(
            "hdhub: v2 submit, valid ANGIO_HOSP",
            f"{rest.per_second:,.1f}",
            ms(rest.percentile(50)),
            ms(rest.percentile(99)),
            f"{cpu_rest:.1f}",
        ),
        line(
            "ratio hdhub / baseline",
            f"{rest.per_second / baseline.per_second:.3f}",
            ratio(rest.percentile(50), baseline.percentile(50)),
            ratio(rest.percentile(99), baseline.percentile(99)),
            ratio(cpu_rest, cpu_base),
        ),
        line(
            "hdhub incl. drain until all Submitted",
            f"{hdhub.end_to_end.per_second:,.1f}",
            "",
            "",
            f"{hdhub.end_to_end.cpu_ms(hdhub.end_to_end.server_cpu):.1f}",
        ),
        line("  drain after the last 202", f"{hdhub.drain_seconds:.1f} s"),
        rule,
        line("gRPC UpsertBatch, submit=true", "rows/s", "p50 ms", "p99 ms", "CPU ms/row"),
        rule,
        line(
            f"1 row per call, concurrency {args.concurrency} ({single.rows} calls)",
            f"{single.rows_per_second:,.1f}",
            ms(single.percentile(50)),
            ms(single.percentile(99)),
            f"{single.cpu_ms(single.server_cpu, single.rows):.1f}",
        ),
        line(
            f"{BATCH_ROWS} rows per call ({batch.count} call{'s' if batch.count != 1 else ''})",
            f"{batch.rows_per_second:,.1f}",
            ms(batch.percentile(50)),
            ms(batch.percentile(99)),
            f"{batch.cpu_ms(batch.server_cpu, batch.rows):.1f}",
        ),
        rule,
        *[
            f"FAILED under load: {run.label}: {n} x {kind} (not counted in req/s or rows/s)"
            for run in (baseline, rest, single)
            for kind, n in run.failed.items()
        ],
        "ratio: hdhub req/s over baseline req/s (1.0 = as fast as a bare endpoint); latency and CPU: hdhub as a",
        "multiple of the baseline. CPU ms: the server process's own CPU per request or row (hdhub's includes its",
        f"worker{'; not PostgreSQL' if args.postgres else ''}). Load generator: {rest.cpu_ms(rest.client_cpu):.1f} ms CPU per hdhub request, "
        f"{baseline.cpu_ms(baseline.client_cpu):.1f} per baseline request. Total {elapsed:.0f} s.",
    ]
    if baseline.client_cpu > baseline.server_cpu:
        out.append(
            "Note: the load generator spent more CPU per baseline request than the baseline server, so the "
            "baseline req/s is a floor (client-bound); the CPU ratio is the steadier comparison."
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="measured REST requests per server (default 2000)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument(
        "--warmup", type=int, default=100, help="REST requests before measuring (default 100)"
    )
    parser.add_argument(
        "--grpc-calls", type=int, default=200, help="gRPC UpsertBatch calls of one row (default 200)"
    )
    parser.add_argument(
        "--grpc-batches", type=int, default=1, help=f"gRPC UpsertBatch calls of {BATCH_ROWS} rows (default 1)"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432 instead of SQLite"
    )
    parser.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="copy the servers' logs to DIR at the end"
    )
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (
        args.requests < 1
        or args.concurrency < 1
        or args.warmup < 1
        or args.grpc_calls < 1
        or args.grpc_batches < 1
    ):
        parser.error(
            "--requests, --concurrency, --warmup, --grpc-calls and --grpc-batches must be at least 1"
        )
    return args


def event_loop_runner() -> Callable[[Any], Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


@contextlib.contextmanager
def temporary_directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hdhub-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _interrupt(_signum: int, _frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return 0
    # A SIGTERM unwinds like Ctrl-C, so the finally blocks stop servers and drop databases.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    records = Records()
    warmup = encode(records.take(args.warmup))
    measured = encode(records.take(args.requests))
    databases = Databases() if args.postgres else None

    async def run(tmp: Path) -> tuple[Run, HdhubResults]:
        # The baseline gets the same bodies; it stops before hdhub starts (2 CPUs to share).
        baseline = await bench_baseline(warmup, measured, args.concurrency, tmp)
        hdhub = await bench_hdhub(args, records, warmup, measured, tmp, databases)
        return baseline, hdhub

    try:
        with temporary_directory() as tmp:
            try:
                baseline, hdhub = event_loop_runner()(run(tmp))
            finally:
                if args.keep_logs:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    for log in tmp.glob("*.log"):
                        shutil.copy(log, args.keep_logs / log.name)
    except BenchError as exc:
        hint = (
            f" (server logs in {args.keep_logs})"
            if args.keep_logs
            else " (--keep-logs DIR keeps the server logs)"
        )
        print(f"benchmark failed: {exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "benchmark interrupted; servers stopped, temporary files and databases removed", file=sys.stderr
        )
        return 130
    finally:
        if databases is not None:
            databases.drop_all()
    print(report(args, baseline, hdhub, time.perf_counter() - started), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
