"""The stand-in central receiver's gRPC edge (hdhub.sim.v1). Each half comes from the one
service allowed to send it: pseudonyms from pseudonymisation, sealed records and
confirmation queries from registrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from hdhub.common.errors import FieldProblem, forbidden, invalid
from hdhub.common.grpc import ServicerContext, check_acting_for, require_principal
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.proto.sim.v1 import central_pb2_grpc as pb_grpc
from hdhub.sim.receiver import Behaviour, Mode, Receiver

if TYPE_CHECKING:
    from hdhub.sim.runtime import SimService


def _caller_must_be(*services: str) -> None:
    if not require_principal().is_service(*services):
        raise forbidden(f"Only the {' or '.join(services)} service may call this.")


class CentralReceiverServicer(pb_grpc.CentralReceiverServiceServicer):
    def __init__(self, service: SimService) -> None:
        self.receiver = service.receiver
        self.files = service.central_files
        self.decisions = service.decisions

    async def GetPublicKey(
        self, request: pb.GetPublicKeyRequest, context: ServicerContext
    ) -> pb.GetPublicKeyResponse:
        """The receiver's public encryption key and its id, for any platform service."""
        _caller_must_be("registrations", "pseudonymisation", "intake")
        key, signing = self.receiver.key, self.decisions.key
        return pb.GetPublicKeyResponse(
            public_key_pem=key.public_pem,
            key_id=key.key_id,
            signing_public_key_pem=signing.public_pem,
            signing_key_id=signing.key_id,
        )

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

    async def GetDecisions(
        self, request: pb.GetDecisionsRequest, context: ServicerContext
    ) -> pb.GetDecisionsResponse:
        """The signed decisions after the caller's cursor, oldest first. From registrations only."""
        _caller_must_be("registrations")
        return pb.GetDecisionsResponse(
            decisions=await self.decisions.after(request.after_sequence, request.limit)
        )

    async def AcknowledgeDecisions(
        self, request: pb.AcknowledgeDecisionsRequest, context: ServicerContext
    ) -> pb.AcknowledgeDecisionsResponse:
        """What registrations did with decisions (applied, or refused and why); the first
        acknowledgement of a decision counts. From registrations only."""
        _caller_must_be("registrations")
        return pb.AcknowledgeDecisionsResponse(
            acknowledged=await self.decisions.acknowledge(list(request.outcomes))
        )

    # --- Files sent with their registrations (intake only) ---------------------------------

    async def GetFileOffset(
        self, request: pb.GetFileOffsetRequest, context: ServicerContext
    ) -> pb.GetFileOffsetResponse:
        """Bytes held of a file of the organisation (where a cut transfer resumes), or that
        it was acknowledged. From intake only, acting for that organisation."""
        _caller_must_be("intake")
        return await self.files.offset(request.file_id, request.organisation_id)

    async def ReceiveFile(
        self, request_iterator: AsyncIterator[pb.ReceiveFileRequest], context: ServicerContext
    ) -> pb.ReceiveFileResponse:
        """A sealed file, header then chunks from the held offset: signature verified,
        chunks decrypted and kept, the whole file's SHA-256 checked against the signed one
        before it is acknowledged. From intake only, acting for the header's organisation."""
        _caller_must_be("intake")
        return await self.files.receive(request_iterator, check_acting_for)


async def _state(receiver: Receiver) -> pb.ReceiverState:
    b = receiver.behaviour
    counts = await receiver.counts()
    return pb.ReceiverState(
        mode=b.mode.value,
        ack_delay_seconds=b.ack_delay_seconds,
        records=counts["records"],
        pseudonym_halves=counts["pseudonym_halves"],
    )


class SimControlServicer(pb_grpc.SimControlServiceServicer):
    """The operator's switches of the stand-in receiver, as ``/sim/receiver`` (REST)."""

    def __init__(self, service: SimService) -> None:
        self.receiver = service.receiver

    async def GetReceiver(self, request: pb.GetReceiverRequest, context: ServicerContext) -> pb.ReceiverState:
        """What the receiver does now and how much it holds; the operator only."""
        if not require_principal().is_operator:
            raise forbidden("Only the operator drives the central platform's stand-in.")
        return await _state(self.receiver)

    async def SetReceiver(self, request: pb.SetReceiverRequest, context: ServicerContext) -> pb.ReceiverState:
        """Accept, refuse or drop, and the confirmation delay; the operator only."""
        if not require_principal().is_operator:
            raise forbidden("Only the operator drives the central platform's stand-in.")
        problems = []
        if request.mode not in {m.value for m in Mode}:
            problems.append(FieldProblem("mode", "choice", "One of: accept, refuse, drop."))
        if not 0 <= request.ack_delay_seconds <= 30 * 24 * 3600:
            problems.append(FieldProblem("ack_delay_seconds", "range", "Between 0 seconds and 30 days."))
        if problems:
            raise invalid(problems)
        self.receiver.behaviour = Behaviour(
            mode=Mode(request.mode), ack_delay_seconds=request.ack_delay_seconds
        )
        return await _state(self.receiver)
