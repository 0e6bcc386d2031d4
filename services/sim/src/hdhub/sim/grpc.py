"""The stand-in central receiver's gRPC edge (hdhub.sim.v1). Each half comes from the one
service allowed to send it: pseudonyms from pseudonymisation, sealed records and
confirmation queries from registrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hdhub.common.errors import forbidden
from hdhub.common.grpc import ServicerContext, register_idempotent, require_principal
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.proto.sim.v1 import central_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from hdhub.sim.runtime import SimService

# Every method is safe to repeat: the receiver keeps one record per technical id.
register_idempotent(
    "hdhub.sim.v1.CentralReceiverService",
    ["GetPublicKey", "ReceivePseudonyms", "ReceiveRecords", "GetConfirmations"],
)


def _caller_must_be(*services: str) -> None:
    if not require_principal().is_service(*services):
        raise forbidden(f"Only the {' or '.join(services)} service may call this.")


class CentralReceiverServicer(pb_grpc.CentralReceiverServiceServicer):
    def __init__(self, service: SimService) -> None:
        self.receiver = service.receiver

    async def GetPublicKey(
        self, request: pb.GetPublicKeyRequest, context: ServicerContext
    ) -> pb.GetPublicKeyResponse:
        """The receiver's public encryption key and its id, for any platform service."""
        _caller_must_be("registrations", "pseudonymisation")
        key = self.receiver.key
        return pb.GetPublicKeyResponse(public_key_pem=key.public_pem, key_id=key.key_id)

    async def ReceivePseudonyms(
        self, request: pb.ReceivePseudonymsRequest, context: ServicerContext
    ) -> pb.ReceivePseudonymsResponse:
        """Keep the pseudonymised halves (one per technical id, newest version); from the
        pseudonymisation service only."""
        _caller_must_be("pseudonymisation")
        accepted = await self.receiver.receive_pseudonyms(request)
        return pb.ReceivePseudonymsResponse(accepted=accepted)

    async def ReceiveRecords(
        self, request: pb.ReceiveRecordsRequest, context: ServicerContext
    ) -> pb.ReceiveRecordsResponse:
        """Verify, decrypt and keep sealed records (one per technical id, newest version);
        a receipt per record says accepted or the check that failed. From registrations only."""
        _caller_must_be("registrations")
        return pb.ReceiveRecordsResponse(receipts=await self.receiver.receive_records(list(request.records)))

    async def GetConfirmations(
        self, request: pb.GetConfirmationsRequest, context: ServicerContext
    ) -> pb.GetConfirmationsResponse:
        """Which deliveries arrived whole (both halves of the version, joined). From
        registrations only."""
        _caller_must_be("registrations")
        return pb.GetConfirmationsResponse(
            confirmations=await self.receiver.confirmations(list(request.deliveries))
        )
