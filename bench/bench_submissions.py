"""Single submissions: hdhub's HD4DP v2 submit against two baselines measured in the same run.

    .venv/bin/python bench/bench_submissions.py [--requests N] [--concurrency C]
        [--shapes all,processes] [--sqlite] [--profile DIR]

Baselines, each a FastAPI app served by uvicorn in a subprocess with hdhub's uvicorn
settings (one process, uvloop when installed, h11 with the request head capped):
- bare: parses the JSON body and answers 202 ``{"businessKey": ...}``;
- database: also writes the body as one row into a PostgreSQL table in a transaction
  (psycopg, a pool of connections), committed before the 202: the least a durable
  submit can cost.

Subjects, on fresh PostgreSQL databases on postgresql://postgres@127.0.0.1:5432 (dropped
at the end; ``--sqlite``: the one-process shape on SQLite files instead):
- ``all``: one process, ``hdhub run all`` (REST, gRPC servers and workers together);
- ``processes``: a process per service as deployed (``hdhub run identity``,
  ``registrations``, ``pseudonymisation``, ``portal``, ``sim``) and the registrations
  worker (``hdhub worker registrations``), with Redis (redis://127.0.0.1:6379) for
  wake-ups and revocations. CPU is reported per process: the registrations API, its
  worker, the sim (the central platform's stand-in), the rest.
Every port (HTTP and gRPC) is a free loopback port, so the bench never collides with a
running `make run`.

Measured in each shape, after a warm-up:
- the HD4DP v2 submit call with valid unique ANGIO_HOSP records (REST, validation, the
  database and a delivery job for the background worker), at a fixed concurrency;
- the drain: time until every submitted registration left Sending (worker done);
- gRPC ``RegistrationsService/UpsertBatch`` with one row per call and with 1000-row
  Arrow batches (submit=true), in rows/s.

Prints req/s, p50 and p99 and CPU per request for the baselines and each shape, and the
ratios against the database baseline. ``--profile DIR`` samples the measured REST run of
each hdhub process with py-spy (collapsed stacks in DIR). Never prints tokens or SSINs.
Subprocesses (whole process groups), temporary directories and databases are cleaned up
on every exit path.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# At module level: the endpoints' `Request` annotation is resolved from these globals.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support (the gRPC rows' Arrow encoding)

ORG = "az-demo"
CLIENT_ID, CLIENT_SECRET = "az-demo-his", "demo-his-secret"
DCD, DCD_VERSION = "ANGIO_HOSP", "1.0.0"
SUBMIT_PATH = f"/proxy/api/dcd/payload/submit?organization-id={ORG}&dcd-id={DCD}&dcd-version-id={DCD_VERSION}"
TOKEN_PATH = "/realms/hdhub/protocol/openid-connect/token"
SENDING_PATH = f"/api/v1/registrations?status=sending&organisation_id={ORG}&limit=1"
POSTGRES_ADMIN = os.environ.get("HDHUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HDHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BATCH_ROWS = 1000
#: The services a v2 submit and its delivery reach, each in its own process in `processes`.
PER_SERVICE = ("identity", "registrations", "pseudonymisation", "portal", "sim")
SHAPES = {"all": "one process (hdhub run all)", "processes": "a process per service"}


class BenchError(RuntimeError):
    """A failed step; reported in one line (never with a token or an SSIN)."""


_SSIN_LIKE = re.compile(r"(?<!\d)\d{2}[.]?\d{2}[.]?\d{2}[- ]?\d{3}[.]?\d{2}(?!\d)")
_TOKEN_LIKE = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*|(?i:bearer)\s+\S+")


def redact(text: str) -> str:
    """Mask anything shaped like an SSIN or a bearer token before a log line is shown."""
    return _TOKEN_LIKE.sub("<token>", _SSIN_LIKE.sub("<ssin>", text))


# ----------------------------------------------------------------------------- baseline servers


def _serve(app: FastAPI, port: int) -> None:
    """``app`` with the settings `hdhub run` gives uvicorn (src/hdhub/cli/http.py)."""
    import uvicorn

    from hdhub.cli.http import server_config

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    config = server_config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    uvicorn.Server(config).run()


def serve_baseline(port: int) -> None:
    """The bare baseline: parse the JSON body, answer 202 with a business key. Nothing else."""
    app = FastAPI()

    @app.post("/proxy/api/dcd/payload/submit", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        record = json.loads(await request.body())
        return JSONResponse({"businessKey": uuid.uuid4().hex, "fields": len(record)}, status_code=202)

    _serve(app, port)


#: The database baseline's table: the submitted body, as JSON, with its key and time.
BASELINE_TABLE = """
CREATE TABLE IF NOT EXISTS submission (
    id uuid PRIMARY KEY,
    organisation_id text NOT NULL,
    dcd text NOT NULL,
    body jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)
"""


def serve_db_baseline(port: int, url: str, connections: int) -> None:
    """The database baseline: parse the JSON body, INSERT it as one row in a transaction
    on a pooled psycopg connection, commit, answer 202 with the row's key."""
    import psycopg
    from psycopg.types.json import Jsonb

    pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for _ in range(connections):
            pool.put_nowait(await psycopg.AsyncConnection.connect(url))
        try:
            yield
        finally:
            while not pool.empty():
                await pool.get_nowait().close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/proxy/api/dcd/payload/submit", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        record = json.loads(await request.body())
        key = uuid.uuid4()
        conn = await pool.get()
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO submission (id, organisation_id, dcd, body) VALUES (%s, %s, %s, %s)",
                    (key, request.query_params.get("organization-id", ""), DCD, Jsonb(record)),
                )
        finally:
            pool.put_nowait(conn)
        return JSONResponse({"businessKey": key.hex, "fields": len(record)}, status_code=202)

    _serve(app, port)


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


class CpuMeter:
    """CPU seconds of named processes between two readings."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def used(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}


@dataclass
class Run:
    label: str
    count: int  # calls
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, one per call
    rows: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # seconds of CPU over the run, per process
    client_cpu: float = 0.0  # seconds of this process's CPU over the run
    failed: collections.Counter[str] = field(default_factory=collections.Counter)  # server errors, by kind
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # 1-minute load average at the end

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def server_cpu(self) -> float:
        """Every server process's CPU together."""
        return sum(self.cpu.values())

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

    def __init__(self, base: str, concurrency: int, pids: dict[str, int]) -> None:
        import httpx

        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.clients = [
            httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) for _ in range(concurrency)
        ]
        self.pids = pids

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

        meter, client_cpu = CpuMeter(self.pids), own_cpu_seconds()
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
            cpu=meter.used(),
            client_cpu=own_cpu_seconds() - client_cpu,
            failed=failed,
        )


@contextlib.contextmanager
def profiled(folder: Path | None, pids: dict[str, int]) -> Iterator[None]:
    """With ``--profile DIR``: py-spy samples each process while the block runs, written to
    DIR/<name>.txt as collapsed stacks (one line per stack with its sample count; only
    samples holding the GIL, i.e. running Python, not waiting)."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    recorders = []
    for name, pid in pids.items():
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        argv = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--gil"]
        argv += ["--nonblocking", "--output", str(folder / f"{slug}.txt")]
        with (folder / f"{slug}.py-spy.log").open("wb") as log:
            recorders.append(
                subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            )
    try:
        time.sleep(1.0)  # py-spy attaches
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            try:
                recorder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                recorder.kill()


# ----------------------------------------------------------------------------- baselines


async def bench_baselines(
    bodies_warmup: list[bytes],
    bodies: list[bytes],
    concurrency: int,
    tmp: Path,
    databases: Databases,
) -> tuple[Run, Run]:
    """The bare endpoint, then the one writing each body to PostgreSQL; one after the other
    (2 CPUs to share), each stopped before the next starts."""
    import psycopg

    runs = []
    url = databases.create("baseline").replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BASELINE_TABLE)
    for name, extra in (("baseline", []), ("baseline-db", ["--database-url", url])):
        port = free_port()
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(port), *extra]
        argv += ["--concurrency", str(concurrency)]
        process = spawn(name, argv, clean_env(), tmp, tmp)
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_healthy(process, base, timeout=30)
            load = Load(base, concurrency, {name: process.popen.pid})
            try:
                await load.post_all(bodies_warmup, JSON_HEADERS, f"{name} warm-up")
                runs.append(await load.post_all(bodies, JSON_HEADERS, name))
            finally:
                await load.aclose()
        finally:
            process.stop()
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM submission").fetchone()
    if not stored or stored[0] != len(bodies_warmup) + len(bodies):
        raise BenchError(
            f"the database baseline stored {stored} rows, not {len(bodies_warmup) + len(bodies)}"
        )
    return runs[0], runs[1]


# ----------------------------------------------------------------------------- hdhub shapes


@dataclass
class Shape:
    """A running hdhub: where its REST and gRPC edges are, and its processes by role.
    ``api`` names the process serving the registrations REST API (the one the aims
    measure), ``worker`` the one delivering (None when it is the same)."""

    name: str
    base: str  # registrations' REST edge (the v2 API and the search)
    issuer: str  # identity's REST edge (tokens)
    grpc_registrations: str
    processes: dict[str, Process]
    api: str
    worker: str | None = None
    portal: str = ""  # the portal's edge (the same as base in one process)
    edges: dict[str, str] = field(default_factory=dict)  # each service's REST edge, per service
    data_dir: Path | None = None  # HDHUB_DATA_DIR of every process

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.popen.pid for name, p in self.processes.items()}


def grpc_ports(env: dict[str, str]) -> None:
    """Every service's gRPC on a free port (and never the SFTP port of a `make run`)."""
    from hdhub.common.config import SERVICES

    for name in SERVICES:
        env[f"HDHUB_{name.upper()}_GRPC_BIND"] = env[f"HDHUB_GRPC_{name.upper()}"] = (
            f"127.0.0.1:{free_port()}"
        )
    env.setdefault("HDHUB_INTAKE_SFTP_PORT", str(free_port()))


@contextlib.asynccontextmanager
async def one_process(args: argparse.Namespace, tmp: Path, databases: Databases) -> AsyncIterator[Shape]:
    """``hdhub run all``: every service and worker in one process."""
    port = free_port()
    env = clean_env()
    data_dir = tmp / "data-all"
    data_dir.mkdir()
    env["HDHUB_DATA_DIR"] = str(data_dir)
    grpc_ports(env)
    if not args.sqlite:
        from hdhub.common.config import SERVICES

        for service in SERVICES:
            env[f"HDHUB_{service.upper()}_DATABASE_URL"] = databases.create(service)
    process = spawn("hdhub-all", [*hdhub_command(), "run", "all", "--port", str(port)], env, tmp, tmp)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_healthy(process, base, timeout=180)
        yield Shape(
            SHAPES["all"],
            base,
            base,
            env["HDHUB_GRPC_REGISTRATIONS"],
            {"hdhub (all)": process},
            api="hdhub (all)",
            portal=base,
        )
    except BaseException:
        if process.popen.poll() is not None:
            print(f"hdhub exited with {process.popen.returncode}:\n{process.tail()}", file=sys.stderr)
        raise
    finally:
        process.stop()


@contextlib.asynccontextmanager
async def per_service(args: argparse.Namespace, tmp: Path, databases: Databases) -> AsyncIterator[Shape]:
    """A process per service a submit and its delivery reach, and the registrations
    worker, on PostgreSQL and Redis: the deployment's shape. ``args`` may add services
    (``extra_services``), their workers (``extra_workers``) and settings (``extra_env``)."""
    from hdhub.common.config import SERVICES

    services = PER_SERVICE + tuple(getattr(args, "extra_services", ()))
    workers = ("registrations", *getattr(args, "extra_workers", ()))
    ports = {service: free_port() for service in services}
    env = clean_env()
    data_dir = tmp / "data-processes"
    data_dir.mkdir()
    env.update(
        HDHUB_DATA_DIR=str(data_dir),
        HDHUB_ENVIRONMENT="development",
        HDHUB_OIDC_ISSUER=f"http://127.0.0.1:{ports['identity']}/realms/hdhub",
        # Where people go: the portal (its sign-in callback, the origin its forms accept).
        HDHUB_PUBLIC_URL=f"http://127.0.0.1:{ports['portal']}",
        HDHUB_SERVICE_CLIENT_SECRET=uuid.uuid4().hex,
        HDHUB_REDIS_URL=REDIS_URL,
        # Other people's runs share this Redis: keys and wake-ups of this run only.
        HDHUB_IDENTITY_LOGIN_KEY_PREFIX=f"hdhub:bench:{uuid.uuid4().hex}:login",
        HDHUB_REVOCATION_KEY_PREFIX=f"hdhub:bench:{uuid.uuid4().hex}:revoked",
        HDHUB_UPLOADS_DROPFOLDER_ENABLED="false",
    )
    env.update(getattr(args, "extra_env", {}))
    grpc_ports(env)
    for service in SERVICES:
        env[f"HDHUB_{service.upper()}_DATABASE_URL"] = databases.create(service)
    seed = spawn("hdhub-seed", [*hdhub_command(), "seed"], env, tmp, tmp)
    try:
        if await asyncio.to_thread(seed.popen.wait, 600) != 0:
            raise BenchError(f"hdhub seed exited with {seed.popen.returncode}:\n{seed.tail()}")
    finally:
        seed.stop()
    processes: dict[str, Process] = {}
    try:
        for service in services:
            argv = [*hdhub_command(), "run", service, "--port", str(ports[service])]
            processes[service] = spawn(f"hdhub-{service}", argv, env, tmp, tmp)
        for service in workers:
            processes[f"{service} worker"] = spawn(
                f"hdhub-{service}-worker", [*hdhub_command(), "worker", service], env, tmp, tmp
            )
        for service in services:
            await wait_healthy(processes[service], f"http://127.0.0.1:{ports[service]}", timeout=180)
        yield Shape(
            SHAPES["processes"],
            f"http://127.0.0.1:{ports['registrations']}",
            f"http://127.0.0.1:{ports['identity']}",
            env["HDHUB_GRPC_REGISTRATIONS"],
            processes,
            api="registrations",
            worker="registrations worker",
            portal=f"http://127.0.0.1:{ports['portal']}",
            edges={service: f"http://127.0.0.1:{port}" for service, port in ports.items()},
            data_dir=data_dir,
        )
    except BaseException:
        for process in processes.values():
            if process.popen.poll() is not None:
                print(
                    f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}",
                    file=sys.stderr,
                )
        raise
    finally:
        for process in processes.values():  # all at once: each may take seconds
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGINT)
        for process in processes.values():
            process.stop()


@dataclass
class HdhubResults:
    shape: Shape
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
    from tests.support.arrow_rows import encode_rows

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
    pids: dict[str, int],
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

        meter = CpuMeter(pids)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        ok = len(latencies) - sum(failed.values())
        single = Run(
            "gRPC UpsertBatch, 1 row/call",
            ok,
            time.perf_counter() - start,
            latencies,
            rows=ok,
            cpu=meter.used(),
            failed=failed,
        )

        await drained()  # the batches start with an idle worker, as the REST run did
        batch_latencies: list[float] = []
        meter = CpuMeter(pids)
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
            cpu=meter.used(),
        )
    return single, batch_run


async def bench_shape(
    args: argparse.Namespace,
    shape: Shape,
    records: Records,
    bodies_warmup: list[bytes],
    bodies: list[bytes],
) -> HdhubResults:
    import httpx

    pids = shape.pids
    load = Load(shape.base, args.concurrency, pids)
    try:
        async with httpx.AsyncClient(base_url=shape.base, timeout=60.0) as control:
            async with httpx.AsyncClient(base_url=shape.issuer, timeout=60.0) as issuer:
                token = await token_for(issuer)
            headers = {**JSON_HEADERS, "Authorization": f"Bearer {token}"}
            auth = {"Authorization": f"Bearer {token}"}
            await load.post_all(bodies_warmup, headers, f"{shape.name}: warm-up")
            await wait_drained(control, auth, timeout=120)

            meter = CpuMeter(pids)
            profile = args.profile / re.sub(r"\W+", "-", shape.name).strip("-") if args.profile else None
            with profiled(profile, pids):
                rest = await load.post_all(bodies, headers, f"{shape.name}: v2 submit")
            drain = await wait_drained(control, auth, timeout=300)
            end_to_end = Run(
                f"{shape.name}: submit + drain", rest.count, rest.seconds + drain, cpu=meter.used()
            )

            single_rows = records.take(args.grpc_calls + 1)
            batches = [records.take(BATCH_ROWS) for _ in range(args.grpc_batches)]
            drained = lambda: wait_drained(control, auth, timeout=300)  # noqa: E731
            single, batch = await grpc_runs(
                shape.grpc_registrations, token, pids, single_rows, batches, args.concurrency, drained
            )
    finally:
        await load.aclose()
    return HdhubResults(shape, rest, drain, end_to_end, single, batch)


# ----------------------------------------------------------------------------- report

#: The aims of issue 24 for one submit, against the database baseline.
AIM_THROUGHPUT, AIM_CPU, AIM_P99_MS = 0.5, 2.0, 50.0


def report(
    args: argparse.Namespace,
    bare: Run,
    db: Run,
    shapes: Sequence[HdhubResults],
    elapsed: float,
    load_at_start: float,
) -> str:
    backend = "SQLite (one process)" if args.sqlite else "PostgreSQL"
    w = 50

    def line(label: str, *cells: str) -> str:
        return f"{label:<{w}}" + "".join(f"{c:>10}" for c in cells)

    def ms(value: float) -> str:
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.1f}x" if b else "n/a"

    def api_cpu(result: HdhubResults, run: Run) -> float:
        return run.cpu_ms(run.cpu.get(result.shape.api, 0.0), run.rows or None)

    rule = "-" * (w + 50)
    cpu_db = db.cpu_ms(db.server_cpu)
    out = [
        "",
        f"hdhub submissions: {backend}, {args.requests} requests, concurrency {args.concurrency}, "
        f"warm-up {args.warmup}, {os.cpu_count()} CPUs, load average {load_at_start:.1f} at the start",
        rule,
        line("REST POST -> 202", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "load avg"),
        rule,
        line(
            "baseline: bare FastAPI endpoint",
            f"{bare.per_second:,.0f}",
            ms(bare.percentile(50)),
            ms(bare.percentile(99)),
            f"{bare.cpu_ms(bare.server_cpu):.2f}",
            f"{bare.load:.1f}",
        ),
        line(
            "baseline: FastAPI + INSERT of the body (PG)",
            f"{db.per_second:,.0f}",
            ms(db.percentile(50)),
            ms(db.percentile(99)),
            f"{cpu_db:.2f}",
            f"{db.load:.1f}",
        ),
    ]
    verdicts = []
    for result in shapes:
        rest = result.rest
        cpu = api_cpu(result, rest)
        api = "whole process" if result.shape.worker is None else f"{result.shape.api} API process"
        out += [
            line(
                f"hdhub, {result.shape.name}",
                f"{rest.per_second:,.1f}",
                ms(rest.percentile(50)),
                ms(rest.percentile(99)),
                f"{cpu:.2f}",
                f"{rest.load:.1f}",
            ),
            line(
                "  ratio to the database baseline",
                f"{rest.per_second / db.per_second:.3f}",
                ratio(rest.percentile(50), db.percentile(50)),
                ratio(rest.percentile(99), db.percentile(99)),
                ratio(cpu, cpu_db),
            ),
            f"  CPU ms/req: {api}"
            + (
                ""
                if result.shape.worker is None
                else "; by process: "
                + ", ".join(f"{name} {rest.cpu_ms(cpu):.2f}" for name, cpu in rest.cpu.items())
                + f" (all {rest.cpu_ms(rest.server_cpu):.2f})"
            ),
            line(
                "  incl. drain until all Submitted",
                f"{result.end_to_end.per_second:,.1f}",
                "",
                "",
                f"{result.end_to_end.cpu_ms(result.end_to_end.server_cpu):.2f}",
            )
            + f"  (drain {result.drain_seconds:.1f} s after the last 202; CPU of every process)",
        ]
        met = [
            (rest.per_second / db.per_second >= AIM_THROUGHPUT, f"throughput >= {AIM_THROUGHPUT}x"),
            (cpu_db > 0 and cpu / cpu_db <= AIM_CPU, f"API CPU <= {AIM_CPU:.0f}x"),
            (rest.percentile(99) <= AIM_P99_MS, f"p99 <= {AIM_P99_MS:.0f} ms"),
        ]
        verdicts.append(
            f"aims, {result.shape.name}: "
            + ", ".join(f"{label} {'met' if ok else 'NOT met'}" for ok, label in met)
        )
    out += [rule, line("gRPC UpsertBatch, submit=true", "rows/s", "p50 ms", "p99 ms", "CPU ms/row"), rule]
    for result in shapes:
        single, batch = result.grpc_single, result.grpc_batch
        out += [
            line(
                f"{result.shape.name}: 1 row per call ({single.rows} calls)",
                f"{single.rows_per_second:,.1f}",
                ms(single.percentile(50)),
                ms(single.percentile(99)),
                f"{api_cpu(result, single):.2f}",
            ),
            line(
                f"{result.shape.name}: {BATCH_ROWS} rows per call ({batch.count})",
                f"{batch.rows_per_second:,.1f}",
                ms(batch.percentile(50)),
                ms(batch.percentile(99)),
                f"{api_cpu(result, batch):.2f}",
            ),
        ]
    client = ", ".join(f"{r.shape.name} {r.rest.cpu_ms(r.rest.client_cpu):.1f}" for r in shapes)
    out += [
        rule,
        *verdicts,
        *[
            f"FAILED under load: {run.label}: {n} x {kind} (not counted in req/s or rows/s)"
            for run in (bare, db, *(r.rest for r in shapes), *(r.grpc_single for r in shapes))
            for kind, n in run.failed.items()
        ],
        "ratios: hdhub req/s over the database baseline's (1.0 = as fast as one INSERT per request); latency and",
        "CPU as multiples of it. CPU ms: the registrations API process's own CPU per request or row (in one",
        "process: everything, workers included), not PostgreSQL's. Load average: 1 minute, at the end of each run.",
        f"Load generator: {bare.cpu_ms(bare.client_cpu):.1f} ms CPU per bare-baseline request, "
        f"{db.cpu_ms(db.client_cpu):.1f} per database-baseline request, {client} per hdhub request. "
        f"Total {elapsed:.0f} s.",
    ]
    if bare.client_cpu > bare.server_cpu:
        out.append(
            "Note: the load generator spent more CPU per bare-baseline request than the server, so its req/s "
            "is a floor (client-bound)."
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
        "--shapes",
        default="all,processes",
        help="which hdhub shapes to run, comma-separated: all (one process), processes (default both)",
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="the one-process shape on SQLite files instead of PostgreSQL"
    )
    parser.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="copy the servers' logs to DIR at the end"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample each hdhub process with py-spy during the measured REST run (collapsed stacks in DIR)",
    )
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="bench-check's short run: 300 requests, warm-up 30, 50 gRPC calls, one process only",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.grpc_calls, args.grpc_batches = 300, 30, 50, 1
        args.shapes = "all"
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
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown or not args.shapes:
        parser.error(f"--shapes: one or more of {', '.join(SHAPES)}")
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
        if args.database_url:
            serve_db_baseline(args.serve_baseline, args.database_url, args.concurrency)
        else:
            serve_baseline(args.serve_baseline)
        return 0
    # A SIGTERM unwinds like Ctrl-C, so the finally blocks stop servers and drop databases.
    signal.signal(signal.SIGTERM, _interrupt)
    started, load_at_start = time.perf_counter(), os.getloadavg()[0]
    records = Records()
    warmup = encode(records.take(args.warmup))
    databases = Databases()
    starters = {"all": one_process, "processes": per_service}

    async def run(tmp: Path) -> tuple[Run, Run, list[HdhubResults]]:
        # Every server gets the same number of fresh bodies; one server runs at a time.
        bare, db = await bench_baselines(
            warmup, encode(records.take(args.requests)), args.concurrency, tmp, databases
        )
        results = []
        for name in args.shapes:
            async with starters[name](args, tmp, databases) as shape:
                bodies = encode(records.take(args.warmup + args.requests))
                results.append(
                    await bench_shape(args, shape, records, bodies[: args.warmup], bodies[args.warmup :])
                )
        return bare, db, results

    try:
        with temporary_directory() as tmp:
            try:
                bare, db, results = event_loop_runner()(run(tmp))
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
        databases.drop_all()
    print(report(args, bare, db, results, time.perf_counter() - started, load_at_start), flush=True)
    from _result import result

    # bench-check's ratios: the first shape (one process with --quick) against the
    # database baseline.
    first = results[0]
    rest = first.rest
    result(
        {
            "rest_rps_over_baseline": rest.per_second / db.per_second,
            "rest_cpu_over_baseline": rest.cpu_ms(rest.cpu.get(first.shape.api, 0.0))
            / db.cpu_ms(db.server_cpu),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
