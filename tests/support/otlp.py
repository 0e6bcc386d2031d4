"""An OTLP/gRPC trace receiver on loopback: what a collector would get from a process,
written as JSON lines for tests to read.

It runs in a process of its own: a synchronous gRPC server inside a test process that has
already run grpc.aio servers and clients stopped answering after a few exports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    service: str
    attributes: dict[str, Any]
    links: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""
    resource: dict[str, Any] = field(default_factory=dict)


@dataclass
class Receiver:
    endpoint: str
    path: Path
    log: Path

    @property
    def spans(self) -> list[Span]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [Span(**json.loads(line)) for line in lines if line.strip()]

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]


@contextmanager
def otlp_receiver(folder: Path) -> Iterator[Receiver]:
    out, ready, log = folder / "spans.jsonl", folder / "port", folder / "receiver.log"
    with log.open("wb") as stderr:  # what the receiver says, for a failing test to show
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.otlp", str(out), str(ready)],
            cwd=ROOT,
            start_new_session=True,
            stdout=stderr,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the OTLP receiver did not start")
            time.sleep(0.05)
        yield Receiver(f"http://127.0.0.1:{ready.read_text().strip()}", out, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


def _serve(out: Path, ready: Path) -> None:
    import threading

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc

    lock = threading.Lock()

    class Collector(pb_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            lines = []
            for rs in request.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                service = resource.get("service.name", "")
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        span = {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": s.kind,
                            "service": str(service),
                            "attributes": {a.key: _value(a.value) for a in s.attributes},
                            "links": [
                                {
                                    "trace_id": link.trace_id.hex(),
                                    "span_id": link.span_id.hex(),
                                    "attributes": {a.key: _value(a.value) for a in link.attributes},
                                }
                                for link in s.links
                            ],
                            "events": [
                                {"name": e.name, "attributes": {a.key: _value(a.value) for a in e.attributes}}
                                for e in s.events
                            ],
                            "status": s.status.message,
                            "resource": resource,
                        }
                        lines.append(json.dumps(span, default=str))
            with lock, out.open("a") as f:
                f.write("".join(line + "\n" for line in lines))
            return pb.ExportTraceServiceResponse()

    # A batch of spans with SQL statements easily passes gRPC's default 4 MB.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        # Never share the port with another gRPC server (gRPC's default is SO_REUSEPORT):
        # an export landing on the wrong one would be lost without a word here.
        options=[("grpc.max_receive_message_length", 256 * 1024 * 1024), ("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ready.write_text(str(port))
    server.wait_for_termination()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), Path(sys.argv[2]))
