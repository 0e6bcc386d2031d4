"""The sim's switches over gRPC (``SimControlService``, the portal's operator page): the
operator reads and sets them, anyone else is refused, and bad switches are said."""

from __future__ import annotations

import grpc
import pytest

from hdhub.common.auth import current_principal, verifier
from hdhub.common.grpc import channel
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.proto.sim.v1 import central_pb2_grpc as pb_grpc
from tests.support.stack import Stack


async def control_as(stack: Stack, who: str) -> pb_grpc.SimControlServiceStub:
    current_principal.set(await verifier().verify(await stack.token(who)))
    return pb_grpc.SimControlServiceStub(channel("sim"))


async def test_the_operator_switches_the_receiver(stack: Stack) -> None:
    stub = await control_as(stack, "operator@hdhub.test")
    try:
        state = await stub.SetReceiver(pb.SetReceiverRequest(mode="refuse", ack_delay_seconds=2.5))
        assert (state.mode, state.ack_delay_seconds) == ("refuse", 2.5)
        assert (await stub.GetReceiver(pb.GetReceiverRequest())).mode == "refuse"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SetReceiver(pb.SetReceiverRequest(mode="explode", ack_delay_seconds=-1))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await stub.SetReceiver(pb.SetReceiverRequest(mode="accept"))


@pytest.mark.parametrize("who", ["nurse@az-demo.test", "az-demo-his", "manager@az-demo.test"])
async def test_anyone_else_is_refused(stack: Stack, who: str) -> None:
    stub = await control_as(stack, who)
    for call in (
        stub.GetReceiver(pb.GetReceiverRequest()),
        stub.SetReceiver(pb.SetReceiverRequest(mode="drop")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
