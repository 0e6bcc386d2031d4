"""The live form's stream to registrations (``LiveEvaluation``), against a stand-in of the
stream: each change a message; a stream that ended (deadline, restart) opened again once;
registrations not answering within a call's deadline is a 504 for that change, the stream
given up; closing it reads its end."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from opentelemetry import trace

from hdhub.common.errors import Problem
from hdhub.portal.pages import entry
from hdhub.proto.registrations.v1 import registrations_pb2 as pb


class Stream:
    """A stand-in ``EvaluateFormStream`` call: answers, ends or stalls as told."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour, self.written, self.cancelled, self.done = behaviour, [], False, False

    async def write(self, request: pb.EvaluateFormRequest) -> None:
        if self.behaviour == "ended-well":
            raise asyncio.InvalidStateError("RPC already finished.")
        self.written.append(request)

    async def read(self) -> Any:
        if self.behaviour == "answers":
            return grpc.aio.EOF if self.done else pb.EvaluateFormResponse(dcd_version="1.0.0")
        if self.behaviour == "eof":
            return grpc.aio.EOF
        if self.behaviour == "unavailable":
            raise _error(grpc.StatusCode.UNAVAILABLE)
        if self.behaviour == "invalid":
            raise _error(grpc.StatusCode.INVALID_ARGUMENT)
        await asyncio.sleep(3600)  # stalls
        raise AssertionError

    async def done_writing(self) -> None:
        self.done = True

    def cancel(self) -> bool:
        self.cancelled = True
        return True


def _error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


class Page:
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer t"),)


class Opened(list[Stream]):
    """The streams the portal opened, in order; ``queued``: the next ones' behaviours."""

    queued: list[str]


@pytest.fixture
def streams(monkeypatch: pytest.MonkeyPatch) -> Opened:
    opened = Opened()
    opened.queued = []

    class Stub:
        def EvaluateFormStream(self, **_: Any) -> Stream:
            opened.append(Stream(opened.queued.pop(0) if opened.queued else "answers"))
            return opened[-1]

    monkeypatch.setattr(entry, "registrations", Stub)
    return opened


def live() -> entry.LiveEvaluation:
    return entry.LiveEvaluation(trace.INVALID_SPAN)


async def test_each_change_is_a_message_on_one_stream(streams: Opened) -> None:
    evaluation = live()
    for _ in range(3):
        answer = await evaluation.evaluate(Page(), pb.EvaluateFormRequest(organisation_id="az-demo"))  # type: ignore[arg-type]
        assert answer.dcd_version == "1.0.0"
    assert len(streams) == 1 and len(streams[0].written) == 3
    await evaluation.close()
    assert streams[0].done and not streams[0].cancelled  # ended as a call ends


@pytest.mark.parametrize("ended", ["eof", "unavailable", "ended-well"])
async def test_a_stream_that_ended_is_opened_again_once(streams: Opened, ended: str) -> None:
    streams.queued += [ended]
    answer = await live().evaluate(Page(), pb.EvaluateFormRequest())  # type: ignore[arg-type]
    assert answer.dcd_version == "1.0.0" and len(streams) == 2


async def test_a_refusal_is_the_changes_and_the_next_change_opens_a_new_stream(streams: Opened) -> None:
    streams.queued += ["invalid"]
    evaluation = live()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await evaluation.evaluate(Page(), pb.EvaluateFormRequest())  # type: ignore[arg-type]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(streams) == 1
    assert (await evaluation.evaluate(Page(), pb.EvaluateFormRequest())).dcd_version == "1.0.0"  # type: ignore[arg-type]
    assert len(streams) == 2


async def test_registrations_not_answering_in_a_calls_deadline_is_a_504(
    streams: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hdhub.common.config import platform

    monkeypatch.setenv("HDHUB_GRPC_TIMEOUT_SECONDS", "0.2")
    platform.cache_clear()
    try:
        streams.queued += ["stalls"]
        evaluation = live()
        with pytest.raises(Problem) as late:
            await evaluation.evaluate(Page(), pb.EvaluateFormRequest())  # type: ignore[arg-type]
        assert late.value.status == 504 and streams[0].cancelled and evaluation.call is None
    finally:
        platform.cache_clear()
