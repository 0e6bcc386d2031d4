"""The data-entry form's live validation: a field change's round trip through the portal
(the browser's POST to the form's evaluate route: session, CSRF, the person's token, gRPC
``EvaluateForm`` to registrations, the answer as JSON) against the bare ``EvaluateForm``
call over gRPC with the same token and the same partial ANGIO_HOSP record. Prints p50/p95
of both and the ratio of p95s (aim: at most 1.5x), and the floor: ``GET /healthz`` through
the same HTTP server and app (middleware, routing, nothing else), which every page pays.
And the same change over the form's live connection (the WebSocket ``static/portal.js``
opens at the first change: one message and its answer, no HTTP request), with its ratio;
the portal answers it with a message on one ``EvaluateFormStream`` per open form, so a
message on such a stream from the bench itself is timed too (what the live change costs
above its own call to registrations).

    .venv/bin/python bench/bench_portal_validation.py [--requests 200] [--postgres | --processes]

``--postgres``: registrations, the portal and identity on fresh PostgreSQL databases
(postgresql://postgres@127.0.0.1:5432, HDHUB_BENCH_POSTGRES_URL elsewhere), dropped at
the end. ``--processes``: the deployed shape, a process per service on PostgreSQL and
Redis (``bench_submissions.per_service``): the portal's call to registrations crosses
processes, as between pods. Default: SQLite, as ``hdhub run all`` starts.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import grpc
import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_portal import p95, portal_session  # noqa: E402
from bench.bench_submissions import Databases  # noqa: E402
from hdhub.proto.registrations.v1 import registrations_pb2 as pb  # noqa: E402
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc  # noqa: E402
from tests.e2e.conftest import run_all  # noqa: E402
from tests.support.stack import free_port  # noqa: E402

NURSE = ("nurse@az-demo.test", "demo-nurse")
#: The workers' polling as deployed (the tests' platform polls the drop folder and intake
#: several times a second, which on one event loop delays every request measured here).
DEPLOYED_POLLING = {
    "HDHUB_UPLOADS_DROPFOLDER_POLL_SECONDS": "30",
    "HDHUB_UPLOADS_DROPFOLDER_SETTLE_SECONDS": "5",
    "HDHUB_UPLOADS_DROPFOLDER_CHECK_SECONDS": "2",
    "HDHUB_UPLOADS_DROPFOLDER_TICK_SECONDS": "1",
    "HDHUB_INTAKE_SEND_RETRY_SECONDS": "60",
    "HDHUB_INTAKE_WORKER_POLL_SECONDS": "30",
}
#: A record half filled in, as a person has it while typing: a skip rule, a cross-field
#: constraint (discharged before admitted), calculations, required fields still empty.
VALUES = {
    "IDC_PAT": "49111000228",
    "DT_PAT_DOB": "10/11/1949",
    "CD_PAT_SEX": "M",
    "CD_RIZIV_TREAT_PHYS": "12345678730",
    "CD_PAT_CONSENT": "yes",
    "DT_HOSPZ": "03/02/2025",
    "DT_DISCH": "01/02/2025",
    "CD_INDICATION": "other",
    "MS_HEIGHT": "171",
    "MS_WEIGHT": "80.5",
    "CD_RISK_FACTORS": ["hypertension", "diabetes"],
}


def timed(call: object, n: int) -> list[float]:
    assert callable(call)
    for _ in range(10):
        call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--postgres", action="store_true", help="the services' databases on PostgreSQL")
    parser.add_argument(
        "--processes", action="store_true", help="a process per service (PostgreSQL, Redis), as deployed"
    )
    parser.add_argument("--quick", action="store_true", help="bench-check's short run: 80 requests")
    args = parser.parse_args()
    if args.quick:
        args.requests = 80
    databases = Databases()
    try:
        run(args, databases)
    finally:
        databases.drop_all()


def run(args: argparse.Namespace, databases: Databases) -> None:
    from _result import load_average

    print(f"load average at the start: {load_average()}")
    if args.processes:
        import asyncio

        from bench.bench_submissions import per_service

        async def deployed() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                async with per_service(args, Path(tmp), databases) as shape:
                    await asyncio.to_thread(
                        measure, args, shape.portal, shape.issuer, shape.grpc_registrations
                    )

        asyncio.run(deployed())
        return
    address = f"127.0.0.1:{free_port()}"
    env = {"HDHUB_REGISTRATIONS_GRPC_BIND": address, "HDHUB_GRPC_REGISTRATIONS": address, **DEPLOYED_POLLING}
    if args.postgres:
        for service in ("registrations", "portal", "identity"):
            env[f"HDHUB_{service.upper()}_DATABASE_URL"] = databases.create(service)
    with tempfile.TemporaryDirectory() as tmp, run_all(Path(tmp), **env) as platform:
        measure(args, platform.base_url, platform.base_url, address)


def measure(args: argparse.Namespace, portal: str, identity: str, address: str) -> None:
    """The four cases, interleaved, against a running hdhub: its portal and identity edges,
    registrations' gRPC address."""
    from _result import result

    token = httpx.post(
        f"{identity}/realms/hdhub/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": NURSE[0],
            "password": NURSE[1],
        },
    ).json()["access_token"]
    browser = portal_session(portal, *NURSE)
    form = browser.get("/portal/o/az-demo/registrations/new?dcd=ANGIO_HOSP&version=1.0.0")
    form.raise_for_status()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    body = [("csrf_token", csrf.group(1))]
    for name, value in VALUES.items():
        body += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]

    def through_the_portal() -> None:
        r = browser.post(
            "/portal/o/az-demo/forms/ANGIO_HOSP/1.0.0/evaluate",
            data=dict(body) | {"CD_RISK_FACTORS": VALUES["CD_RISK_FACTORS"]},
            headers={"X-CSRF-Token": csrf.group(1), "Origin": portal},
        )
        r.raise_for_status()
        assert r.json()["fields"]["DT_DISCH"]["errors"]

    # As a browser opens it: the session's cookie, the portal's origin, compressed.
    socket = connect(
        portal.replace("http://", "ws://") + "/portal/o/az-demo/forms/ANGIO_HOSP/1.0.0/live",
        origin=portal,  # type: ignore[arg-type]
        additional_headers={"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())},
        legacy=True,  # not a context manager: closed with the other clients below
    )
    sent = [0]

    def over_the_live_connection() -> None:
        sent[0] += 1
        socket.send(json.dumps({"seq": sent[0], "form": urlencode(body)}))
        answer = json.loads(socket.recv())
        assert answer["seq"] == sent[0] and answer["fields"]["DT_DISCH"]["errors"]

    channel = grpc.insecure_channel(address)
    stub = pb_grpc.RegistrationsServiceStub(channel)
    request = pb.EvaluateFormRequest(
        organisation_id="az-demo",
        dcd=pb.DcdRef(dcd_code="ANGIO_HOSP", version="1.0.0"),
        values_json=json.dumps(VALUES),
        language="en",
    )

    def bare_grpc() -> None:
        answer = stub.EvaluateForm(request, metadata=(("authorization", f"Bearer {token}"),))
        assert any(f.field == "DT_DISCH" and f.errors for f in answer.fields)

    # What the live connection's messages ride on: one EvaluateFormStream, a message each.
    asked: queue.SimpleQueue[pb.EvaluateFormRequest] = queue.SimpleQueue()
    answers = stub.EvaluateFormStream(
        iter(asked.get, None), metadata=(("authorization", f"Bearer {token}"),), timeout=3600
    )

    def bare_stream_message() -> None:
        asked.put(request)
        answer = next(answers)
        assert any(f.field == "DT_DISCH" and f.errors for f in answer.fields)

    plain = httpx.Client(base_url=portal)

    def http_floor() -> None:
        plain.get("/healthz").raise_for_status()

    # Interleaved rounds, so that the shared machine's load falls on all alike.
    grpc_times: list[float] = []
    floor_times: list[float] = []
    portal_times: list[float] = []
    live_times: list[float] = []
    stream_times: list[float] = []
    rounds = 4
    for _ in range(rounds):
        grpc_times += timed(bare_grpc, args.requests // rounds)
        floor_times += timed(http_floor, args.requests // rounds)
        portal_times += timed(through_the_portal, args.requests // rounds)
        live_times += timed(over_the_live_connection, args.requests // rounds)
        stream_times += timed(bare_stream_message, args.requests // rounds)
    asked.put(None)  # type: ignore[arg-type]  # the stream's end
    channel.close()
    plain.close()
    socket.close()
    print(f"{'case':44} {'p50':>9} {'p95':>9}")
    for name, times in (
        ("EvaluateForm over gRPC (baseline)", grpc_times),
        ("floor: GET /healthz through the app", floor_times),
        ("field change through the portal", portal_times),
        ("field change over the live connection", live_times),
        ("its EvaluateFormStream message over gRPC", stream_times),
    ):
        print(f"{name:44} {statistics.median(times) * 1000:8.1f}ms {p95(times) * 1000:8.1f}ms")
    print(f"ratio p95 portal/gRPC: {p95(portal_times) / p95(grpc_times):.2f}x (aim: at most 1.5x)")
    print(f"ratio p95 live/gRPC: {p95(live_times) / p95(grpc_times):.2f}x (aim: at most 1.5x)")
    live_median = statistics.median(live_times) / statistics.median(grpc_times)
    print(f"ratio p50 live/gRPC: {live_median:.2f}x")
    print(
        f"ratio live/its stream message alone: p95 {p95(live_times) / p95(stream_times):.2f}x, "
        f"p50 {statistics.median(live_times) / statistics.median(stream_times):.2f}x"
    )
    median = statistics.median(portal_times) / statistics.median(grpc_times)
    print(
        f"ratio p50 portal/gRPC: {median:.2f}x; "
        f"the floor alone p50 {statistics.median(floor_times) / statistics.median(grpc_times):.2f}x, "
        f"p95 {p95(floor_times) / p95(grpc_times):.2f}x the gRPC call"
    )
    result(
        {
            "portal_over_grpc_p95": p95(portal_times) / p95(grpc_times),
            "portal_over_grpc_p50": median,
            "live_over_grpc_p95": p95(live_times) / p95(grpc_times),
            "live_over_grpc_p50": live_median,
            "live_over_stream_p95": p95(live_times) / p95(stream_times),
        }
    )


if __name__ == "__main__":
    main()
