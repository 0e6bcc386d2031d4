"""Scale-out, as Kubernetes runs hdhub: each service in processes of its own on
PostgreSQL, Redis and S3, two processes of registrations and of uploads (gRPC clients
balance across them), two workers of each, and every background job done exactly once."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from hdhub.common.config import SERVICES
from services.uploads.tests.integration.test_uploads_api import csv_bytes
from tests.e2e.conftest import hdhub_process
from tests.support.samples import record
from tests.support.stack import create_database, drop_database, free_port

_taken: set[int] = set()


def port() -> int:
    """A free port no other process of this cluster was given (free_port alone may hand the
    same one out twice before anything binds it)."""
    while (candidate := free_port()) in _taken:
        pass
    _taken.add(candidate)
    return candidate


pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
REPLICATED = ("registrations", "uploads")  # two serving processes each
WORKERS = {"registrations": 2, "uploads": 2}
SUBMIT = "/proxy/api/dcd/payload/submit?organization-id=az-demo&dcd-id=ANGIO_HOSP&dcd-version-id=latest"
# Any method of registrations' API: a client alternating GetDcdVersion and UpsertBatch over
# two servers sends every UpsertBatch to the same one, and that is still balancing.
REGISTRATIONS_RPC = 'grpc_service="hdhub.registrations.v1.RegistrationsService"'


@dataclass
class Cluster:
    issuer: str
    rest: dict[str, list[str]] = field(default_factory=dict)  # service -> base URLs
    databases: dict[str, str] = field(default_factory=dict)  # service -> psycopg URL
    worker_metrics: list[str] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)

    def token(self, client_id: str, secret: str) -> str:
        r = httpx.post(
            f"{self.issuer}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )
        r.raise_for_status()
        return str(r.json()["access_token"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_url: str) -> Iterator[Cluster]:
    data = Path(tmp_path_factory.mktemp("cluster"))
    identity_port = port()
    issuer = f"http://127.0.0.1:{identity_port}/realms/hdhub"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HDHUB_", "OTEL_"))},
        "HDHUB_ENVIRONMENT": "development",
        "HDHUB_DATA_DIR": str(data / "var"),
        "HDHUB_OIDC_ISSUER": issuer,
        "HDHUB_REDIS_URL": os.environ.get("HDHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "HDHUB_OBJECT_STORE_URL": s3_url,
        "HDHUB_SERVICE_CLIENT_SECRET": uuid.uuid4().hex,
        "HDHUB_IDENTITY_LOGIN_KEY_PREFIX": f"hdhub:test:{uuid.uuid4().hex}:login",
        "HDHUB_INTAKE_SFTP_PORT": str(port()),
        "HDHUB_UPLOADS_DROPFOLDER_ENABLED": "false",
        "HDHUB_LOG_LEVEL": "INFO",
    }
    cluster = Cluster(issuer)
    names: list[str] = []
    binds: dict[str, list[str]] = {}
    for service in SERVICES:
        db = f"hdhub_scale_{service}_{uuid.uuid4().hex[:8]}"
        names.append(db)
        env[f"HDHUB_{service.upper()}_DATABASE_URL"] = url = create_database(db)
        cluster.databases[service] = url.replace("postgresql+psycopg://", "postgresql://")
        binds[service] = [f"127.0.0.1:{port()}" for _ in range(2 if service in REPLICATED else 1)]
        # A static list of addresses: the client balances round-robin over them, as over
        # the addresses a headless Service resolves to.
        env[f"HDHUB_GRPC_{service.upper()}"] = "ipv4:" + ",".join(binds[service])
    with ExitStack() as stack:
        try:
            stack.enter_context(hdhub_process(["seed"], env, data / "seed.log")).wait(timeout=240)
            # Every process starts at once (one after the other takes minutes on 2 cores).
            starting: list[tuple[int, Path]] = []
            for service in SERVICES:
                for i, bind in enumerate(binds[service]):
                    http = port() if service != "identity" else identity_port
                    own = {**env, f"HDHUB_{service.upper()}_GRPC_BIND": bind}
                    log = data / f"{service}-{i}.log"
                    stack.enter_context(hdhub_process(["run", service, "--port", str(http)], own, log))
                    starting.append((http, log))
                    cluster.rest.setdefault(service, []).append(f"http://127.0.0.1:{http}")
            for service, count in WORKERS.items():
                for i in range(count):
                    metrics_port = port()
                    own = {**env, "HDHUB_METRICS_PORT": str(metrics_port), "HDHUB_METRICS_HOST": "127.0.0.1"}
                    log = data / f"{service}-worker-{i}.log"
                    stack.enter_context(hdhub_process(["worker", service], own, log))
                    cluster.worker_logs.append(log)
                    cluster.worker_metrics.append(f"http://127.0.0.1:{metrics_port}/metrics")
            for http, log in starting:
                wait_healthy(http, log)
            yield cluster
        finally:
            stack.close()
            for db in names:
                drop_database(db)


def wait_healthy(port: int, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{log.name} did not start:\n{log.read_text()[-3000:]}")


def scalar(url: str, sql: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


async def _drive(cluster: Cluster, token: str) -> tuple[list[str], int]:
    headers = {"Authorization": f"Bearer {token}"}
    upload_ids: list[str] = []
    async with httpx.AsyncClient(timeout=60, headers=headers) as client:
        files = [csv_bytes([record() for _ in range(25)]) for _ in range(6)]
        # All at once, through both uploads processes: the two workers compete for the jobs.
        posted = await asyncio.gather(
            *(
                client.post(
                    f"{cluster.rest['uploads'][i % 2]}/api/v1/uploads?dcd_code=ANGIO_HOSP&autosubmit=true",
                    files={"file": (f"part-{i}.csv", body, "text/csv")},
                )
                for i, body in enumerate(files)
            )
        )
        for r in posted:
            assert r.status_code == 202, r.text
            upload_ids.append(r.json()["id"])
        submissions = await asyncio.gather(
            *(client.post(cluster.rest["registrations"][i % 2] + SUBMIT, json=record()) for i in range(20))
        )
        assert all(r.status_code == 202 for r in submissions), [
            r.text for r in submissions if r.status_code != 202
        ]
        deadline = time.monotonic() + 180
        for upload_id in upload_ids:
            while True:
                r = await client.get(f"{cluster.rest['uploads'][0]}/api/v1/uploads/{upload_id}")
                if r.json()["status"] in ("done", "failed"):
                    assert r.json()["status"] == "done" and r.json()["counts"]["created"] == 25, r.json()
                    break
                assert time.monotonic() < deadline, "uploads not finished"
                await asyncio.sleep(0.2)
    return upload_ids, 6 * 25 + 20


def test_two_processes_per_service_and_two_workers_do_every_job_once(cluster: Cluster) -> None:
    token = cluster.token("az-demo-his", "demo-his-secret")
    upload_ids, expected = asyncio.run(_drive(cluster, token))
    regs = cluster.databases["registrations"]
    deadline = time.monotonic() + 120
    while (
        scalar(regs, "SELECT count(*) FROM registrations WHERE status = 'sending'")
        and time.monotonic() < deadline
    ):
        time.sleep(0.3)
    # Every row stored once, and every registration moved on from Sending.
    assert scalar(regs, "SELECT count(*) FROM registrations") == expected
    assert scalar(regs, "SELECT count(DISTINCT business_key) FROM registrations") == expected
    assert scalar(regs, "SELECT count(*) FROM registrations WHERE status = 'sending'") == 0
    # Each job done once: none left, none parked, and no registration passed the
    # worker's step twice.
    # (jobs may wait for later on purpose: a status-confirmation check 48 h ahead)
    for service in ("registrations", "uploads"):
        url = cluster.databases[service]
        assert scalar(url, "SELECT count(*) FROM jobs WHERE status = 'parked'") == 0, service
        due = "SELECT count(*) FROM jobs WHERE status <> 'done' AND run_after < now() - interval '5 seconds'"
        assert scalar(url, due) == 0, service
    assert (
        scalar(
            regs,
            "SELECT count(*) FROM (SELECT registration_id FROM registration_versions WHERE action = 'processed'"
            " GROUP BY registration_id HAVING count(*) > 1) AS twice",
        )
        == 0
    )
    assert scalar(regs, "SELECT count(*) FROM registration_versions WHERE action = 'processed'") == expected
    # Both registrations servers took calls: the clients balanced over them.
    handled = []
    for base in cluster.rest["registrations"]:
        text = httpx.get(f"{base}/metrics").text
        handled.append(
            sum(
                float(m)
                for m in re.findall(
                    r"grpc_server_handled_total\{[^}]*" + REGISTRATIONS_RPC + r"[^}]*\} (\S+)", text
                )
            )
        )
    assert all(n > 0 for n in handled), handled
    # Worker processes expose /metrics too, with the domain gauges and their heartbeat; their
    # /healthz (liveness) follows the claim loop; any other path is a 404.
    for url in cluster.worker_metrics:
        r = httpx.get(url)
        assert r.status_code == 200 and "hdhub_jobs" in r.text
        assert "hdhub_worker_heartbeat_timestamp_seconds{" in r.text
        base = url.removesuffix("/metrics")
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/anything").status_code == 404
    # Workers run on the loop `hdhub run` has (uvloop), once started.
    for log in cluster.worker_logs:
        assert "(event loop: uvloop)" in log.read_text(), log.read_text()[-2000:]
    # Each service process is ready: its database answers.
    for bases in cluster.rest.values():
        for base in bases:
            r = httpx.get(f"{base}/readyz")
            assert r.status_code == 200 and r.json()["status"] == "ok", r.text
