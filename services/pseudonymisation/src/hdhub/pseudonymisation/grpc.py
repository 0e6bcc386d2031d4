"""Pseudonymisation's only edge (hdhub.pseudonymisation.v1): identifiers in, pseudonyms out
to the central platform, never back to the caller."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc

from hdhub.common.auth import current_principal
from hdhub.common.config import CENTRAL
from hdhub.common.errors import FieldProblem, Problem, forbidden, organisation_required
from hdhub.common.grpc import ServicerContext, channel, require_principal
from hdhub.common.service_auth import acting_as_service
from hdhub.common.ssin import checked_ssin
from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2 as pb
from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2_grpc as pb_grpc
from hdhub.proto.sim.v1 import central_pb2, central_pb2_grpc
from hdhub.pseudonymisation.domain import (
    SSIN_PREFIX,
    KeyedHash,
    Refused,
    normalise_ssin,
    pseudocode_input,
)
from hdhub.pseudonymisation.settings import CALLER_SERVICE

if TYPE_CHECKING:
    from hdhub.pseudonymisation.runtime import PseudonymisationService

log = logging.getLogger("hdhub.pseudonymisation")


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
        pseudonyms to the central platform; answer how many were forwarded and which were
        refused (rule, never the value). Only the registrations service may call (PERMISSION_DENIED);
        UNAVAILABLE with ``central-unavailable`` when forwarding failed (nothing kept)."""
        principal = require_principal()
        if not principal.is_service(CALLER_SERVICE):
            raise forbidden("Only the registrations service may send identifiers.")
        if not request.organisation_id:
            raise organisation_required()
        if len(request.technical_ids) > self.service.settings.max_batch:
            raise Problem(
                413,
                "batch-too-large",
                "Too many patients in one call",
                f"At most {self.service.settings.max_batch} patients per call.",
            )
        key_version, hasher = self.service.keys.hasher(request.project_code)
        refused, halves = pseudonymise(request, hasher)
        halves.organisation_id, halves.project_code, halves.key_version = (
            request.organisation_id,
            request.project_code,
            key_version,
        )
        if halves.technical_ids:
            await forward(halves)
        log.info(
            "pseudonyms forwarded",
            extra={
                "organisation_id": request.organisation_id,
                "project_code": request.project_code,
                "forwarded": len(halves.technical_ids),
                "refused": len(refused),
                "key_version": key_version,
            },
        )
        return pb.PseudonymiseAndForwardResponse(
            forwarded=len(halves.technical_ids), refused=refused, key_version=key_version
        )


def columns_problem(detail: str) -> Problem:
    return Problem(
        400,
        "columns-differ",
        "The patient columns do not line up",
        detail,
        errors=[FieldProblem(field="patients", rule="columns", message=detail)],
    )


def pseudonymise(
    request: pb.PseudonymiseAndForwardRequest, hasher: KeyedHash
) -> tuple[list[pb.RefusedPatient], central_pb2.ReceivePseudonymsRequest]:
    """The refused patients and the halves to forward (every other patient); nothing of
    it is kept. This loop runs once per patient: it stays small on purpose."""
    ids, versions, ssins = list(request.technical_ids), list(request.versions), list(request.ssins)
    n = len(ids)
    if len(versions) != n or len(ssins) != n:
        raise columns_problem("technical_ids, versions and ssins need one entry per patient.")
    codes: dict[int, pb.PseudocodeInputs] = {}
    for pc in request.pseudocodes:
        if pc.index >= n or ssins[pc.index]:
            raise columns_problem(f"pseudocodes[{len(codes)}] points at no patient without an SSIN.")
        codes[pc.index] = pc.inputs
    refused: list[pb.RefusedPatient] = []
    pseudonyms: list[bytes] = []
    kinds: list[central_pb2.PseudonymKind.ValueType] = []
    kept: list[int] = []
    ssin_kind, code_kind = central_pb2.PSEUDONYM_KIND_SSIN, central_pb2.PSEUDONYM_KIND_PSEUDOCODE
    ssin_hash = hasher.prefixed(SSIN_PREFIX)
    for i, ssin in enumerate(ssins):
        # The common case first, inline: 11 plain digits that pass the SSIN rule. Anything
        # else (separators, pseudocodes, refusals) takes the general path below.
        if len(ssin) == 11 and ids[i] and checked_ssin(ssin) == ssin:
            pseudonyms.append(ssin_hash(ssin.encode()))
            kinds.append(ssin_kind)
            if refused:
                kept.append(i)
            continue
        try:
            if not ids[i]:
                raise Refused("technical_id", "Every patient needs a technical id.")
            if ssin:
                pseudonyms.append(ssin_hash(normalise_ssin(ssin).encode()))
                kinds.append(ssin_kind)
            else:
                c = codes.get(i)
                if c is None:
                    raise Refused("identifier", "Give an SSIN or the pseudocode inputs.")
                message = pseudocode_input(
                    birth_date=c.birth_date, sex=c.sex, last_name=c.last_name, first_name=c.first_name
                )
                pseudonyms.append(hasher(message))
                kinds.append(code_kind)
        except Refused as r:
            refused.append(pb.RefusedPatient(index=i, technical_id=ids[i], rule=r.rule, message=r.message))
            continue
        if refused:
            kept.append(i)
    if refused:  # rare: only then are the id and version columns rebuilt
        first = refused[0].index
        kept = list(range(first)) + kept
        ids, versions = [ids[i] for i in kept], [versions[i] for i in kept]
    halves = central_pb2.ReceivePseudonymsRequest(
        technical_ids=ids, versions=versions, pseudonyms=b"".join(pseudonyms), kinds=kinds
    )
    return refused, halves


async def forward(halves: central_pb2.ReceivePseudonymsRequest) -> None:
    """Hand the pseudonyms to the central platform, as the pseudonymisation service doing
    the work the registrations service asked for (the same organisation and actor)."""
    stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
    caller = current_principal.get()
    try:
        async with acting_as_service("pseudonymisation", caller.acting_for if caller is not None else None):
            await stub.ReceivePseudonyms(halves)
    except grpc.aio.AioRpcError as exc:
        log.warning(
            "forwarding pseudonyms failed",
            extra={"code": exc.code().name, "count": len(halves.technical_ids)},
        )
        raise central_unavailable(exc.code().name) from None


__all__ = ["PseudonymisationServicer", "forward", "pseudonymise"]
