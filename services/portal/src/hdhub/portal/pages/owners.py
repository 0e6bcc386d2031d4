"""The owning services the data pages call over gRPC, with the signed-in person's token
(``Page.metadata``): the Upload Center, intake's files, the registrations catalogue.

A stub is kept per channel: building one makes a callable for each of the service's
methods (registrations has some fifty), which the form's live validation paid on every
keystroke's round trip. :func:`~hdhub.common.grpc.channel` hands out a new channel when
the old one is retired (certificates rotated, another event loop), and a new stub with it."""

from __future__ import annotations

from typing import Any

from hdhub.common.grpc import channel
from hdhub.proto.intake.v1 import intake_pb2_grpc
from hdhub.proto.registrations.v1 import registrations_pb2_grpc
from hdhub.proto.uploads.v1 import uploads_pb2_grpc

#: A file sent from a page streams to its owner for as long as the browser sends it.
SENDING_SECONDS = 3600.0
#: A watched upload's stream is renewed this often (the browser's EventSource reconnects).
WATCH_SECONDS = 300.0

_stubs: dict[Any, tuple[Any, Any]] = {}


def _stub(current: Any, make: Any) -> Any:
    """The stub ``make`` built over the channel ``current``; built again for a new channel.
    (Each caller names its service as a literal: the chart's NetworkPolicies follow them.)"""
    kept = _stubs.get(make)
    if kept is None or kept[0] is not current:
        kept = _stubs[make] = (current, make(current))
    return kept[1]


def uploads() -> uploads_pb2_grpc.UploadsServiceAsyncStub:
    stub: uploads_pb2_grpc.UploadsServiceAsyncStub = _stub(
        channel("uploads"), uploads_pb2_grpc.UploadsServiceStub
    )
    return stub


def intake() -> intake_pb2_grpc.IntakeServiceAsyncStub:
    stub: intake_pb2_grpc.IntakeServiceAsyncStub = _stub(channel("intake"), intake_pb2_grpc.IntakeServiceStub)
    return stub


def registrations() -> registrations_pb2_grpc.RegistrationsServiceAsyncStub:
    stub: registrations_pb2_grpc.RegistrationsServiceAsyncStub = _stub(
        channel("registrations"), registrations_pb2_grpc.RegistrationsServiceStub
    )
    return stub
