"""An SRE follows a registration's journey in its trace, in both run shapes: `hdhub run all`
(one process) and a process per service (and per worker) on PostgreSQL, each exporting
over OTLP to one receiver, as to a collector.

Three journeys, each one trace from the request that started it through every service it
touches, jobs included (a job's span continues the request's trace; a batch of several
requests' jobs links to each): a hospital's v2 submit until its status confirmation is OK,
a CSV upload and the delivery of its rows, and an SFTP file until it is linked. Then
nothing of the patients seeded for them (SSINs, names, birth dates) in any span, event,
metric label or log line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from hdhub.common.config import SERVICES
from services.uploads.tests.integration.test_uploads_api import csv_bytes
from tests.e2e.conftest import Platform, base_env, hdhub_process, otel_env
from tests.e2e.test_intake import VCF, sftp_port
from tests.support.otlp import Receiver, Span, otlp_receiver
from tests.support.samples import record
from tests.support.stack import create_database, drop_database, free_port

pytestmark = pytest.mark.e2e
SUBMIT = "/proxy/api/dcd/payload/submit?organization-id=az-demo&dcd-id=ANGIO_HOSP_PCI&dcd-version-id=latest"
ROWS = 300  # the 1,000 rows take 3x as long and show nothing more: 2 delivery batches
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP span kinds


@dataclass
class Shape:
    """One running platform, as an SRE sees it: REST edges, logs, metrics, traces."""

    name: str
    urls: dict[str, str]  # service -> base URL of its REST edge
    logs: list[Path]
    metrics: list[str]
    receiver: Receiver
    sftp: Callable[[], int]
    edge: Callable[[str], str]  # service -> the service.name of its HTTP server spans
    seeded: set[str] = field(default_factory=set)  # what no telemetry may hold

    def token(self, client_id: str, secret: str) -> str:
        r = httpx.post(
            f"{self.urls['identity']}/realms/hdhub/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def client(self, service: str, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.urls[service], headers={"Authorization": f"Bearer {token}"}, timeout=30
        )


@pytest.fixture(scope="module")
def one_process(traced_platform: tuple[Platform, Receiver]) -> Shape:
    platform, receiver = traced_platform
    return Shape(
        "one process",
        urls=dict.fromkeys(SERVICES, platform.base_url),
        logs=[platform.log],
        metrics=[f"{platform.base_url}/metrics"],
        receiver=receiver,
        sftp=lambda: sftp_port(platform),
        edge=lambda service: "hdhub",  # one REST edge for every service
    )


@pytest.fixture(scope="module")
def per_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shape]:
    """Each service in a process of its own (`hdhub run <service>`), the registrations,
    uploads and intake workers in theirs (`hdhub worker <service>`), on PostgreSQL."""
    data = Path(tmp_path_factory.mktemp("per-service"))
    with otlp_receiver(Path(tmp_path_factory.mktemp("otlp-per-service"))) as receiver, ExitStack() as stack:
        http = {service: free_port() for service in SERVICES}
        env = {
            **base_env(data),
            **otel_env(receiver.endpoint),
            "HDHUB_ENVIRONMENT": "development",
            "HDHUB_OIDC_ISSUER": f"http://127.0.0.1:{http['identity']}/realms/hdhub",
            "HDHUB_SERVICE_CLIENT_SECRET": uuid.uuid4().hex,
            "HDHUB_UPLOADS_DROPFOLDER_ENABLED": "false",
            # Without Redis a worker learns of a job from another process by polling.
            "HDHUB_INTAKE_WORKER_POLL_SECONDS": "0.5",
        }
        databases: list[str] = []
        processes: list[subprocess.Popen[bytes]] = []
        for service in SERVICES:
            databases.append(name := f"hdhub_traces_{service}_{uuid.uuid4().hex[:8]}")
            env[f"HDHUB_{service.upper()}_DATABASE_URL"] = create_database(name)
        try:
            stack.enter_context(hdhub_process(["seed"], env, data / "seed.log")).wait(timeout=240)
            logs, metrics = [], []
            for service in SERVICES:
                logs.append(log := data / f"{service}.log")
                processes.append(
                    stack.enter_context(
                        hdhub_process(["run", service, "--port", str(http[service])], env, log)
                    )
                )
            for service in ("registrations", "uploads", "intake"):
                port = free_port()
                own = {**env, "HDHUB_METRICS_PORT": str(port), "HDHUB_METRICS_HOST": "127.0.0.1"}
                logs.append(log := data / f"{service}-worker.log")
                processes.append(stack.enter_context(hdhub_process(["worker", service], own, log)))
                metrics.append(f"http://127.0.0.1:{port}/metrics")
            for service in SERVICES:
                wait_healthy(http[service], data / f"{service}.log")
            yield Shape(
                "per service",
                urls={service: f"http://127.0.0.1:{port}" for service, port in http.items()},
                logs=logs,
                metrics=metrics + [f"http://127.0.0.1:{port}/metrics" for port in http.values()],
                receiver=receiver,
                sftp=lambda: int(env["HDHUB_INTAKE_SFTP_PORT"]),
                edge=lambda service: f"hdhub-{service}",
            )
        finally:
            for process in processes:  # all stop at once, not one after the other
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
            stack.close()
            for name in databases:
                drop_database(name)


def wait_healthy(port: int, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{log.name} did not start:\n{log.read_text()[-3000:]}")


@pytest.fixture(
    scope="module", params=["one process", pytest.param("per service", marks=pytest.mark.postgres)]
)
def shape(request: pytest.FixtureRequest) -> Shape:
    fixture = "one_process" if request.param == "one process" else "per_service"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


# --- reading a journey out of the receiver ---------------------------------------------------


def journey(receiver: Receiver, trace_id: str) -> list[Span]:
    """The spans of ``trace_id`` and of every trace that links back into it (a batch job
    serving several requests), transitively."""
    spans = receiver.spans
    traces = {trace_id}
    while True:
        more = {s.trace_id for s in spans if any(link["trace_id"] in traces for link in s.links)} - traces
        if not more:
            return [s for s in spans if s.trace_id in traces]
        traces |= more


def wait_for(
    receiver: Receiver,
    trace_id: str,
    done: Callable[[list[Span]], bool],
    what: str,
    shape: Shape,
    entry: str = "",
) -> list[Span]:
    deadline = time.monotonic() + 60
    while True:
        spans = journey(receiver, trace_id)
        if done(spans) and not orphans(spans, entry):  # a parent ends (is exported) after its children
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: {sorted({(s.service, s.name) for s in spans})}\n"
                + "\n".join(log.read_text()[-1500:] for log in shape.logs[:2])
                + receiver.log.read_text()[-1000:]
            )
        time.sleep(0.3)


def orphans(spans: list[Span], entry: str = "") -> list[str]:
    """Spans whose parent is not in the journey, but for its ``entry`` (the caller's span,
    not exported: the test's traceparent)."""
    ids = {s.span_id for s in spans} | {entry}
    return [s.name for s in spans if s.parent_id and s.parent_id not in ids]


def assert_whole(spans: list[Span], entry: str = "") -> None:
    """Every span's parent is in the journey (but the entry), and the names follow the
    conventions (gRPC without a leading '/')."""
    assert orphans(spans, entry) == []
    assert [s.name for s in spans if s.name.startswith("/")] == []


def assert_one_journey(spans: list[Span], trace_id: str) -> None:
    """One trace, or more only for batch jobs: a trace other than ``trace_id`` starts at a
    job's consumer span that links back into the journey (a batch of several requests'
    jobs, the messaging conventions' batch receive)."""
    traces = {s.trace_id for s in spans}
    for other in traces - {trace_id}:
        roots = [s for s in spans if s.trace_id == other and not s.parent_id]
        assert roots and all(
            r.kind == CONSUMER and {link["trace_id"] for link in r.links} & traces for r in roots
        ), roots


def continues(job: Span, producers: list[str], spans: list[Span], trace_id: str) -> bool:
    """``job`` runs under ``producers`` (nearest first) in the journey's trace, or (a batch
    of several traces' jobs) links back to the journey's trace."""
    if job.trace_id == trace_id:
        names = ancestors(job, spans)
        return names[: len(producers) - 1] == producers[:-1] and producers[-1] in names
    return job.kind == CONSUMER and any(link["trace_id"] == trace_id for link in job.links)


def ancestors(span: Span, spans: list[Span]) -> list[str]:
    by_id, names = {s.span_id: s for s in spans}, []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        names.append(span.name)
    return names


def tree(spans: list[Span]) -> str:
    """The trace as an SRE's viewer shows it: one line per span, children indented, in
    start order (shown by ``pytest -s``; docs/operations.md quotes one)."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in children.get(parent, []):
            lines.append(f"{'  ' * depth}{s.name}  [{s.service}]")
            walk(s.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


def traceparent() -> tuple[str, str, str]:
    trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def seed(shape: Shape, values: dict[str, str]) -> None:
    """Remember a record's patient data: no telemetry may hold it."""
    ssin, dob = values["IDC_PAT"], values["DT_PAT_DOB"]
    dd, mm, yyyy = dob.split("/")
    shape.seeded |= {
        ssin,
        f"{ssin[:2]}.{ssin[2:4]}.{ssin[4:6]}-{ssin[6:9]}.{ssin[9:]}",
        dob,
        f"{yyyy}-{mm}-{dd}",
    }


# --- the journeys ------------------------------------------------------------------------------


def test_a_v2_submit_is_one_trace_until_its_confirmation_is_ok(shape: Shape) -> None:
    trace_id, entry, header = traceparent()
    values = record("ANGIO_HOSP_PCI")
    seed(shape, values)
    with shape.client("registrations", shape.token("az-demo-his", "demo-his-secret")) as c:
        r = c.post(SUBMIT, json=values, headers={"traceparent": header})
        assert r.status_code == 202, r.text
        registration = r.json()["registrationId"]
        deadline = time.monotonic() + 60
        while (reg := c.get(f"/api/v1/registrations/{registration}").json())["status_confirmation"] != "ok":
            assert time.monotonic() < deadline, reg
            time.sleep(0.3)
    services = {
        shape.edge("registrations"),
        "hdhub-registrations-worker",
        "hdhub-pseudonymisation",
        "hdhub-sim",
    }

    def whole(spans: list[Span]) -> bool:
        names = {s.name for s in spans}
        # The sim's answer to the confirmation too: each process exports its spans in
        # batches of its own, so the worker's client span may arrive before the sim's.
        answered = any(
            s.service == "hdhub-sim" and s.kind == SERVER and s.name.endswith("/GetConfirmations")
            for s in spans
        )
        return (
            services <= {s.service for s in spans}
            and {"process deliver", "process confirm"} <= names
            and answered
        )

    spans = wait_for(shape.receiver, trace_id, whole, "the submit's journey", shape, entry)
    print(f"\n{shape.name}: the trace of registration {registration}\n{tree(spans)}")
    assert_one_journey(spans, trace_id)
    assert_whole(spans, entry)
    request = next(s for s in spans if s.kind == SERVER and s.name == "POST /proxy/api/dcd/payload/submit")
    assert (
        request.attributes["http.route"] == request.attributes["url.path"] == "/proxy/api/dcd/payload/submit"
    )
    assert (
        request.attributes["http.request.method"] == "POST"
        and request.attributes["http.response.status_code"] == 202
    )
    for deliver in [s for s in spans if s.name == "process deliver"]:
        assert continues(deliver, ["send deliver", request.name], spans, trace_id)
    for confirm in [s for s in spans if s.name == "process confirm"]:
        # The confirmation follows its delivery: queued by it, processed under its producer.
        assert continues(confirm, ["send confirm", "process deliver"], spans, trace_id)
    # The central platform's confirmation answered inside the confirm job's span.
    assert any(
        s.service == "hdhub-sim" and s.kind == SERVER and "process confirm" in ancestors(s, spans)
        for s in spans
    )
    sql = [s.attributes["db.operation"] for s in spans if "db.operation" in s.attributes]
    assert sql and {op for op in sql if " " in op or not op.isupper()} == set()  # "SELECT", not "SELECT db"
    resource = next(s.resource for s in spans if s.service == "hdhub-registrations-worker")
    assert resource["service.version"] and resource["deployment.environment"] == "development"


def test_a_csv_upload_and_the_delivery_of_its_rows_is_one_trace(shape: Shape) -> None:
    trace_id, entry, header = traceparent()
    rows = [record() for _ in range(ROWS)]
    for row in rows:
        seed(shape, row)
    with shape.client("uploads", shape.token("az-demo-his", "demo-his-secret")) as c:
        r = c.post(
            "/api/v1/uploads?dcd_code=ANGIO_HOSP&autosubmit=true",
            files={"file": ("angio.csv", csv_bytes(rows), "text/csv")},
            headers={"traceparent": header},
        )
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while (upload := c.get(f"/api/v1/uploads/{r.json()['id']}").json())["status"] not in (
            "done",
            "failed",
        ):
            assert time.monotonic() < deadline, upload
            time.sleep(0.2)
        assert upload["status"] == "done" and upload["counts"]["created"] == ROWS, upload
    services = {
        shape.edge("uploads"),
        "hdhub-uploads-worker",
        "hdhub-registrations",
        "hdhub-registrations-worker",
        "hdhub-pseudonymisation",
        "hdhub-sim",
    }

    # A batch's submissions are delivered by deliver_batch jobs (200 registrations each),
    # each continuing UpsertBatch's trace; single submissions by deliver jobs.
    def delivered(spans: list[Span]) -> int:
        return sum(
            int(s.attributes.get("hdhub.registrations", 0))
            if s.name == "process deliver_batch"
            else int(s.attributes.get("messaging.batch.message_count", 1))
            for s in spans
            if s.name in ("process deliver", "process deliver_batch")
        )

    def whole(spans: list[Span]) -> bool:
        return services <= {s.service for s in spans} and delivered(spans) >= ROWS

    spans = wait_for(shape.receiver, trace_id, whole, "the upload's journey", shape, entry)
    assert_whole(spans, entry)
    # Every row's delivery job was processed under the upload's trace: the upload job,
    # UpsertBatch (which queued them), then the delivery batches.
    assert_one_journey(spans, trace_id)
    batches = [s for s in spans if s.name in ("process deliver", "process deliver_batch")]
    assert len(batches) >= 2
    for batch in batches:
        sent = batch.name.replace("process ", "send ", 1)
        assert continues(batch, [sent, "process upload.process"], spans, trace_id)
    upsert = [s for s in spans if s.name.endswith("RegistrationsService/UpsertBatch") and s.kind == SERVER]
    assert upsert and all(s.service == "hdhub-registrations" for s in upsert)


@pytest.mark.skipif(shutil.which("sftp") is None, reason="OpenSSH's sftp client is missing: make openssh")
def test_an_sftp_file_is_one_trace_until_it_is_linked(shape: Shape, tmp_path: Path) -> None:
    name = f"Wauters_Hilde_19700615_{uuid.uuid4().hex[:8]}.vcf"  # a file named after its patient
    values = record("NGS", TX_VCF_FILE_NAME=name)
    seed(shape, values)
    shape.seeded |= {"Wauters", "Hilde", "19700615", name}
    token = shape.token("lab-demo-lims", "demo-lims-secret")
    with shape.client("registrations", token) as c:
        r = c.post(
            "/api/v1/registrations",
            json={"organisation_id": "lab-demo", "dcd": "NGS", "values": values, "submit": True},
        )
        assert r.status_code in (200, 201, 202), r.text
    send_by_sftp(shape.sftp(), tmp_path, name)
    with shape.client("intake", token) as c:
        # The same kind of name through the web upload: its URL holds the name.
        web = f"Wauters_Hilde_19700615_{uuid.uuid4().hex[:8]}.vcf"
        shape.seeded.add(web)
        assert c.put(f"/api/v1/files/lab-demo/NGS/{web}", content=VCF.encode()).status_code == 201
        deadline = time.monotonic() + 30
        while (
            not (
                files := [f for f in c.get("/api/v1/files/lab-demo").json()["items"] if f["filename"] == name]
            )
            or not files[0]["links"]
        ):
            assert time.monotonic() < deadline, files
            time.sleep(0.2)
    file_id = files[0]["id"]
    deadline = time.monotonic() + 30
    while not (
        found := [s for s in shape.receiver.spans if s.attributes.get("hdhub.intake.file_id") == file_id]
    ):
        assert time.monotonic() < deadline, "no span of the file"
        time.sleep(0.2)
    services = {"hdhub-intake", "hdhub-intake-worker", "hdhub-registrations"}

    def whole(spans: list[Span]) -> bool:
        names = {s.name for s in spans}
        return services <= {s.service for s in spans} and {"sftp session", "process link"} <= names

    spans = wait_for(shape.receiver, found[0].trace_id, whole, "the file's journey", shape)
    assert_whole(spans)
    [session] = [s for s in spans if s.name == "sftp session"]
    assert session.parent_id == "" and session.kind == SERVER
    file_spans = [s for s in spans if s.name == "sftp file"]
    assert file_spans and all(
        s.parent_id == session.span_id and s.service == "hdhub-intake" for s in file_spans
    )
    link = next(s for s in spans if s.name == "process link")
    assert ancestors(link, spans)[:3] == ["send link", "sftp deliver", "sftp session"]
    assert any(
        s.service == "hdhub-registrations" and s.kind == SERVER and "process link" in ancestors(s, spans)
        for s in spans
    )


def send_by_sftp(port: int, folder: Path, name: str) -> None:
    (folder / name).write_text(VCF)
    askpass = folder / "askpass.sh"
    askpass.write_text("#!/bin/sh\necho 'demo-sftp-lab-secret'\n")
    askpass.chmod(0o700)
    (folder / "batch").write_text(f"cd /NGS\nput {name}\nrename {name} Finished/{name}\n")
    options = [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "PreferredAuthentications=password",
        "BatchMode=no",
        "LogLevel=ERROR",
    ]
    done = subprocess.run(
        ["sftp", "-F", "/dev/null", *[a for o in options for a in ("-o", o)], "-P", str(port), "-b", "batch"]
        + ["lab-demo-sftp@127.0.0.1"],
        cwd=folder,
        env={
            "PATH": "/usr/bin:/bin",
            "SSH_ASKPASS": str(askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": ":0",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_idle_worker_exports_no_trace(shape: Shape) -> None:
    """Workers poll for jobs every half second (the drop folder too) and Prometheus
    scrapes: a poll that finds nothing, or a scrape, is no trace. New traces only start at a
    request, an SFTP session or a job."""
    before = len(shape.receiver.spans)
    for _ in range(4):  # four polls of each worker, and scrapes (/metrics reads the database)
        for url in shape.metrics:
            assert httpx.get(url, timeout=10).status_code == 200
        time.sleep(0.5)
    roots = [s for s in shape.receiver.spans[before:] if not s.parent_id]
    # An HTTP request's or an SFTP session's server span, a job's consumer span: anything
    # else starting a trace (a claim's SQL, a scan of the object store, an RPC made by a
    # poll) is an idle poll.
    started = [
        s
        for s in roots
        if s.kind == CONSUMER
        or s.kind == SERVER
        and ("http.request.method" in s.attributes or s.name == "sftp session")
    ]
    idle = [(s.service, s.name) for s in roots if s not in started]
    assert idle == []


# --- what left the platform --------------------------------------------------------------------


def test_no_patient_data_in_any_span_event_metric_or_log_line(shape: Shape) -> None:
    """After the journeys above: every span (names, attributes, events, links, status) the
    receiver got, every metric of every process and every log line, against the SSINs,
    birth dates, names and file names seeded for them. 0 allowed."""
    assert len(shape.seeded) > 100, "the journeys above seed the data this test looks for"
    time.sleep(0.5)  # the last batch of spans
    sources: dict[str, str] = {"spans": shape.receiver.path.read_text()}
    for url in shape.metrics:
        sources[url] = httpx.get(url, timeout=10).text
    for log in shape.logs:
        sources[log.name] = log.read_text()
    seeded = re.compile("|".join(re.escape(s) for s in sorted(shape.seeded, key=len, reverse=True)))
    found = [
        (where, hit.group(0), text[max(0, hit.start() - 150) : hit.end() + 150])
        for where, text in sources.items()
        for hit in seeded.finditer(text)
    ]
    assert found == [], found[:10]
    # The pair pseudonymisation keeps apart never shares a log line.
    lines = [line for log in shape.logs for line in log.read_text().splitlines() if line.startswith("{")]
    paired = [line for line in lines if '"registration_id"' in line and '"technical_id"' in line]
    assert paired == [], paired[:3]
    assert any('"delivery attempt"' in line for line in lines)
    assert len(sources["spans"].splitlines()) > 100 and sum(len(t) for t in sources.values()) > 100_000
