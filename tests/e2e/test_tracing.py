"""One trace follows a CSV upload through every hop, exported over OTLP to a receiver on
loopback: the HTTP request, the object store, SQL, the job the request queued (continued
by the worker from the context stored with it), the gRPC call to registrations and its SQL.
And no patient identifier travels in any span."""

from __future__ import annotations

import os
import time

import pytest

from services.uploads.tests.integration.test_uploads_api import csv_bytes
from tests.e2e.conftest import Platform
from tests.support.otlp import Receiver, Span
from tests.support.samples import record

pytestmark = pytest.mark.e2e
UPSERT = "hdhub.registrations.v1.RegistrationsService/UpsertBatch"
SERVER, CLIENT, CONSUMER = 2, 3, 5  # OTLP span kinds


@pytest.fixture
def traced(traced_platform: tuple[Platform, Receiver]) -> tuple[Platform, Receiver]:
    return traced_platform


def ancestors(span: Span, by_id: dict[str, Span]) -> list[str]:
    names = []
    while span.parent_id and span.parent_id in by_id:
        span = by_id[span.parent_id]
        names.append(span.name)
    return names


def test_one_trace_follows_an_upload_through_every_hop(traced: tuple[Platform, Receiver]) -> None:
    platform, receiver = traced
    rows = [record(), record()]
    trace_id = os.urandom(16).hex()
    traceparent = f"00-{trace_id}-{os.urandom(8).hex()}-01"
    token = platform.token("az-demo-his", "demo-his-secret")
    with platform.client(token) as c:
        r = c.post(
            "/api/v1/uploads?dcd_code=ANGIO_HOSP&autosubmit=true",
            files={"file": ("angio.csv", csv_bytes(rows), "text/csv")},
            headers={"traceparent": traceparent},
        )
        assert r.status_code == 202, r.text
        upload_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while c.get(f"/api/v1/uploads/{upload_id}").json()["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, "upload not finished"
            time.sleep(0.1)
    wanted = {
        "POST /api/v1/uploads",
        "process upload.process",
        UPSERT,
        "objectstore.put",
        "objectstore.stream",
    }
    deadline = time.monotonic() + 90
    while True:
        spans = receiver.trace(trace_id)
        names = {s.name for s in spans}
        sql = [s for s in spans if "db.system" in s.attributes]
        server_upsert = [s for s in spans if s.name == UPSERT and s.kind == SERVER]
        if wanted <= names and server_upsert and sql or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert wanted <= names, (
        sorted(names),
        len(receiver.spans),
        platform.log.read_text()[-3000:],
        receiver.log.read_text()[-2000:],
    )
    by_id = {s.span_id: s for s in spans}
    request = next(s for s in spans if s.name == "POST /api/v1/uploads" and s.kind == SERVER)
    job = next(s for s in spans if s.name == "process upload.process")
    assert job.kind == CONSUMER and job.attributes["hdhub.job.kind"] == "upload.process"
    # The job continues the request's trace: its parent is the request's context.
    assert request.name in ancestors(job, by_id) or job.parent_id == traceparent.split("-")[2]
    # The worker's call to registrations, client and server side, under the job.
    assert server_upsert, sorted(names)
    assert "process upload.process" in ancestors(server_upsert[0], by_id)
    assert any(s.name == UPSERT and s.kind == CLIENT for s in spans)
    # The file went into the object store during the request and was read by the worker.
    put = next(s for s in spans if s.name == "objectstore.put")
    assert request.name in ancestors(put, by_id) and put.attributes["objectstore.prefix"] == "uploads"
    stream = next(s for s in spans if s.name == "objectstore.stream")
    assert "process upload.process" in ancestors(stream, by_id)
    # SQL on both sides: the upload recorded in the request, registrations stored by the RPC.
    assert any(request.name in ancestors(s, by_id) for s in sql)
    assert any(UPSERT in ancestors(s, by_id) for s in sql)
    # Nothing of the patients in any span of the run.
    secrets = {r["IDC_PAT"] for r in rows} | {r["IDC_PAT"].replace(".", "").replace("-", "") for r in rows}
    exported = repr(receiver.spans)
    assert not [s for s in secrets if s and s in exported]


LIVE = "/portal/o/{organisation_id}/forms/{dcd}/{version}/live"
EVALUATE = "hdhub.registrations.v1.RegistrationsService/EvaluateForm"
#: Each change over the live connection is a message of one EvaluateFormStream.
EVALUATE_MESSAGE = "hdhub.registrations.v1.RegistrationsService/EvaluateFormStream message"
STREAM = "hdhub.registrations.v1.RegistrationsService/EvaluateFormStream"


def test_each_change_over_a_forms_live_connection_is_a_trace_of_its_own(
    traced: tuple[Platform, Receiver],
) -> None:
    """The connection is one span, as long as it is open, with the form's
    ``EvaluateFormStream`` to registrations under it; each change a trace of its own
    linked to it, with its message on that stream under it (client and server spans, the
    context carried in the message), as a POST's trace has its call; no span per frame."""
    from services.portal.tests.test_live_evaluation import NURSE, ask, csrf_of, live, signed_in

    platform, receiver = traced
    client = signed_in(platform, *NURSE)
    csrf = csrf_of(client)
    with live(platform, client) as socket:
        for seq in (1, 2):
            assert ask(socket, seq, csrf)["seq"] == seq
    deadline = time.monotonic() + 60
    while True:
        spans = receiver.spans
        connections = [s for s in spans if s.name == f"WEBSOCKET {LIVE}" and s.kind == SERVER]
        messages = [s for s in spans if s.name == f"WEBSOCKET message {LIVE}" and s.kind == SERVER]
        evaluated = {s.trace_id for s in spans if s.name == EVALUATE_MESSAGE and s.kind == SERVER}
        streams = {s.kind for s in spans if s.name == STREAM}
        done = connections and len(messages) >= 2 and {m.trace_id for m in messages} <= evaluated
        done = done and streams == {CLIENT, SERVER}
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert connections and len(messages) >= 2, sorted({s.name for s in spans if "WEBSOCKET" in s.name})
    [connection] = connections
    assert connection.attributes["http.route"] == LIVE and connection.service == "hdhub-portal"
    assert len({m.trace_id for m in messages} | {connection.trace_id}) == len(messages) + 1
    for message in messages:
        assert message.service == "hdhub-portal"
        assert [(link["trace_id"], link["span_id"]) for link in message.links] == [
            (connection.trace_id, connection.span_id)
        ]
        in_trace = receiver.trace(message.trace_id)
        by_id = {s.span_id: s for s in in_trace}
        for kind in (CLIENT, SERVER):
            call = next(s for s in in_trace if s.name == EVALUATE_MESSAGE and s.kind == kind)
            assert message.name in ancestors(call, by_id)
        assert not [s for s in in_trace if s.name == STREAM]  # the stream is the connection's
    stream = [s for s in receiver.trace(connection.trace_id) if s.name == STREAM]
    assert {s.kind for s in stream} == {CLIENT, SERVER}
    assert not [s for s in spans if s.name.endswith((" websocket receive", " websocket send"))]
