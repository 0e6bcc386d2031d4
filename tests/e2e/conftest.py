"""`hdhub run all` started as a process, on embedded defaults, as `make run` does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from hdhub.common.config import SERVICES
from tests.support.otlp import Receiver, otlp_receiver
from tests.support.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


class Platform:
    def __init__(self, base_url: str, log: Path, data_dir: Path) -> None:
        self.base_url = base_url
        self.log = log
        self.data_dir = data_dir

    def token(self, client_id: str, secret: str) -> str:
        r = httpx.post(
            f"{self.base_url}/realms/hdhub/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


def base_env(data: Path) -> dict[str, str]:
    """The environment of an hdhub process started by the tests: nothing of the in-process
    stacks' HDHUB_* settings, a data folder of its own, free gRPC ports for every service."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HDHUB_", "OTEL_"))},
        "HDHUB_DATA_DIR": str(data / "var"),
        "HDHUB_LOG_LEVEL": "INFO",
        # The drop folder looked at twice a second instead of every 30 s.
        "HDHUB_UPLOADS_DROPFOLDER_POLL_SECONDS": "0.5",
        "HDHUB_UPLOADS_DROPFOLDER_SETTLE_SECONDS": "0.2",
        "HDHUB_UPLOADS_DROPFOLDER_CHECK_SECONDS": "0.2",
        "HDHUB_UPLOADS_DROPFOLDER_TICK_SECONDS": "0.2",
        # A linked file waiting for its registration's delivery is tried again after 1 s.
        "HDHUB_INTAKE_SEND_RETRY_SECONDS": "1",
        "HDHUB_INTAKE_WORKER_POLL_SECONDS": "1",
        # Two platforms may run at once (the traced one): never both on SFTP port 2222.
        "HDHUB_INTAKE_SFTP_PORT": str(free_port()),
    }
    for name in SERVICES:
        env[f"HDHUB_{name.upper()}_GRPC_BIND"] = env[f"HDHUB_GRPC_{name.upper()}"] = (
            f"127.0.0.1:{free_port()}"
        )
    return env


@contextmanager
def hdhub_process(
    args: list[str], env: dict[str, str], log: Path, *, port: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``hdhub <args>`` as a process of its own; with ``port``, started once /healthz answers."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hdhub.cli.main", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while port is not None:
            if process.poll() is not None:
                raise RuntimeError(f"hdhub {' '.join(args)} exited early:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"hdhub {' '.join(args)} did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def run_all(data: Path, **extra_env: str) -> Iterator[Platform]:
    """`hdhub run all` on embedded defaults, as `make run` starts it."""
    port = free_port()
    env = {**base_env(data), **extra_env}
    log = data / "hdhub.log"
    with hdhub_process(["run", "all", "--port", str(port)], env, log, port=port):
        yield Platform(f"http://127.0.0.1:{port}", log, data / "var")


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with run_all(tmp_path_factory.mktemp("e2e")) as running:
        yield running


def otel_env(endpoint: str) -> dict[str, str]:
    """Export every span over OTLP/gRPC to ``endpoint``, a batch every 100 ms."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        # Start-up (migrations, seeding) makes thousands of SQL spans: none may be dropped.
        "OTEL_BSP_MAX_QUEUE_SIZE": "200000",
    }


@pytest.fixture(scope="session")
def traced_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Receiver]]:
    """`hdhub run all` exporting its traces to an OTLP receiver (shared by the trace tests)."""
    with otlp_receiver(Path(tmp_path_factory.mktemp("otlp"))) as receiver:
        # Intake's worker polls like the others (it is woken in-process anyway): the idle
        # test sees its polls, and the process stops without waiting out a 30 s poll.
        env = {**otel_env(receiver.endpoint), "HDHUB_INTAKE_WORKER_POLL_SECONDS": "0.5"}
        with run_all(Path(tmp_path_factory.mktemp("traced")), **env) as running:
            yield running, receiver
