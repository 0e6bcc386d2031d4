"""Pseudonymisation's only edge (hdhub.pseudonymisation.v1): identifiers in, pseudonyms out
to the central platform, never back to the caller."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc

from hdhub.common.errors import Problem, forbidden
from hdhub.common.grpc import ServicerContext, channel, register_idempotent, require_principal
from hdhub.common.service_auth import acting_as_service
from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2 as pb
from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2_grpc as pb_grpc
from hdhub.proto.sim.v1 import central_pb2, central_pb2_grpc
from hdhub.pseudonymisation.domain import Refused, pseudocode_input, pseudonym, ssin_pseudonym
from hdhub.pseudonymisation.settings import CALLER_SERVICE

if TYPE_CHECKING:
    from hdhub.pseudonymisation.runtime import PseudonymisationService

log = logging.getLogger("hdhub.pseudonymisation")

# The central side keeps one half per technical id and version: sending again is harmless.
register_idempotent("hdhub.pseudonymisation.v1.PseudonymisationService", ["PseudonymiseAndForward"])
register_idempotent("hdhub.sim.v1.CentralReceiverService", ["ReceivePseudonyms"])

CENTRAL = "sim"  # the service name the central receiver answers under (HDHUB_GRPC_SIM)


def central_unavailable(code: str) -> Problem:
    return Problem(
        503,
        "central-unavailable",
        "The central platform cannot be reached",
        f"Forwarding the pseudonyms failed ({code}); nothing was kept, send the batch again.",
    )


class PseudonymisationServicer(pb_grpc.PseudonymisationServiceServicer):
    def __init__(self, service: PseudonymisationService) -> None:
        self.service = service

    async def PseudonymiseAndForward(
        self, request: pb.PseudonymiseAndForwardRequest, context: ServicerContext
    ) -> pb.PseudonymiseAndForwardResponse:
        """Pseudonymise each patient under the project's current domain key and forward the
        pseudonyms to the central platform; answer per patient FORWARDED or REFUSED (rule,
        never the value). Only the registrations service may call (PERMISSION_DENIED);
        UNAVAILABLE with ``central-unavailable`` when forwarding failed (nothing kept)."""
        principal = require_principal()
        if not principal.is_service(CALLER_SERVICE):
            raise forbidden("Only the registrations service may send identifiers.")
        if not request.organisation_id:
            raise Problem(400, "organisation-required", "organisation_id is required")
        if len(request.patients) > self.service.settings.max_batch:
            raise Problem(
                413,
                "batch-too-large",
                "Too many patients in one call",
                f"At most {self.service.settings.max_batch} patients per call.",
            )
        key_version, key = self.service.keys.current(request.project_code)
        outcomes, halves = pseudonymise(request, key, key_version)
        if halves:
            await forward(halves)
        refused = sum(1 for o in outcomes if o.outcome == pb.OUTCOME_REFUSED)
        log.info(
            "pseudonyms forwarded",
            extra={
                "organisation_id": request.organisation_id,
                "project_code": request.project_code,
                "forwarded": len(halves),
                "refused": refused,
                "key_version": key_version,
            },
        )
        return pb.PseudonymiseAndForwardResponse(outcomes=outcomes, key_version=key_version)


def pseudonymise(
    request: pb.PseudonymiseAndForwardRequest, key: bytes, key_version: int
) -> tuple[list[pb.PatientOutcome], list[central_pb2.PseudonymHalf]]:
    """The outcome per patient and the halves to forward; nothing of it is kept."""
    outcomes: list[pb.PatientOutcome] = []
    halves: list[central_pb2.PseudonymHalf] = []
    org, project = request.organisation_id, request.project_code
    forwarded, refused = pb.OUTCOME_FORWARDED, pb.OUTCOME_REFUSED
    Half, Outcome = central_pb2.PseudonymHalf, pb.PatientOutcome
    for p in request.patients:
        tid = p.technical_id
        try:
            if not tid:
                raise Refused("technical_id", "Every patient needs a technical id.")
            which = p.WhichOneof("identifier")
            if which == "ssin":
                value, kind = ssin_pseudonym(key, p.ssin), "ssin"
            elif which == "pseudocode":
                c = p.pseudocode
                message = pseudocode_input(
                    birth_date=c.birth_date, sex=c.sex, last_name=c.last_name, first_name=c.first_name
                )
                value, kind = pseudonym(key, message), "pseudocode"
            else:
                raise Refused("identifier", "Give an SSIN or the pseudocode inputs.")
        except Refused as r:
            outcomes.append(Outcome(technical_id=tid, outcome=refused, rule=r.rule, message=r.message))
            continue
        outcomes.append(Outcome(technical_id=tid, outcome=forwarded))
        halves.append(
            Half(
                technical_id=tid,
                version=p.version,
                organisation_id=org,
                project_code=project,
                key_version=key_version,
                pseudonym=value,
                kind=kind,
            )
        )
    return outcomes, halves


async def forward(halves: list[central_pb2.PseudonymHalf]) -> None:
    """Hand the pseudonyms to the central platform, as the pseudonymisation service."""
    stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
    try:
        async with acting_as_service("pseudonymisation"):
            await stub.ReceivePseudonyms(central_pb2.ReceivePseudonymsRequest(halves=halves))
    except grpc.aio.AioRpcError as exc:
        log.warning("forwarding pseudonyms failed", extra={"code": exc.code().name, "count": len(halves)})
        raise central_unavailable(exc.code().name) from None


__all__ = ["PseudonymisationServicer", "forward", "pseudonymise"]
