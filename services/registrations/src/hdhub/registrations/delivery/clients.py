"""The calls delivery makes, each acting as the registrations service for the organisation
and person whose submission it carries: the portal for the organisation's signing key,
pseudonymisation for the identifiers, the central platform for the sealed register
variables and their confirmations. A call that cannot be made leaves its registrations
waiting (Sending) with the reason, never failing the job."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from hdhub.common.central_decision import DecisionVerifier
from hdhub.common.config import CENTRAL, platform
from hdhub.common.errors import Problem
from hdhub.common.grpc import channel, problem_from_rpc_error
from hdhub.common.sealed_record import CentralPublicKey, Signer
from hdhub.common.service_auth import acting_as_service
from hdhub.proto.portal.v1 import certificates_pb2, certificates_pb2_grpc
from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2 as pseudo_pb
from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2_grpc as pseudo_grpc
from hdhub.proto.sim.v1 import central_pb2, central_pb2_grpc
from hdhub.registrations.delivery.outgoing import Outgoing, acting_for, wait
from hdhub.registrations.settings import RegistrationsSettings

log = logging.getLogger("hdhub.registrations.delivery")

#: Why a delivery waits when registrations cannot get its own service token.
IDENTITY_UNAVAILABLE = "service-identity-unavailable"


@dataclass
class Certificates:
    """Organisations' signing keys from the portal, kept ``certificate_cache_seconds``
    (private keys in memory only)."""

    settings: RegistrationsSettings
    cached: dict[str, Signer] = field(default_factory=dict)

    async def signer(self, organisation_id: str, items: Sequence[Outgoing]) -> Signer | None:
        """The organisation's signer; None, with ``items`` waiting, when there is none to have."""
        cached = self.cached.get(organisation_id)
        if cached is not None and time.monotonic() - cached.fetched < self.settings.certificate_cache_seconds:
            return cached
        stub = certificates_pb2_grpc.CertificatesServiceStub(channel("portal"))
        try:
            async with acting_as_service("registrations", acting_for(organisation_id, items)):
                answer = await stub.GetActiveCertificate(
                    certificates_pb2.GetActiveCertificateRequest(organisation_id=organisation_id)
                )
            active = answer.certificate
            signer = Signer.from_der(
                private_key_pkcs8_der=active.authentication.private_key_pkcs8_der,
                certificate_der=active.authentication.certificate_der,
                certificate_id=active.certificate_id,
                fetched=time.monotonic(),
            )
        except grpc.aio.AioRpcError as exc:
            wait(items, _certificate_missing(exc.code()))
            return None
        except Problem:  # our own token could not be had: the issuer is down
            wait(items, IDENTITY_UNAVAILABLE)
            return None
        except ValueError:
            wait(items, "certificate-unusable")
            return None
        self.cached[organisation_id] = signer
        return signer


def _certificate_missing(code: grpc.StatusCode) -> str:
    if code == grpc.StatusCode.NOT_FOUND:
        return "no-published-certificate"
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return "certificate-expired"
    return "certificate-unavailable"


@dataclass
class CentralPlatform:
    """The central platform (HDHUB_GRPC_CENTRAL, else the sim): its public key, the sealed
    records it receives, the deliveries it confirms."""

    settings: RegistrationsSettings
    key: CentralPublicKey | None = None
    verifier: DecisionVerifier | None = None

    async def public_key(self, items: Sequence[Outgoing]) -> CentralPublicKey | None:
        """The key records are sealed for; None, with ``items`` waiting, when unknown."""
        if self.key is not None:
            return self.key
        configured = self.settings.configured_central_key()
        if configured is not None:
            self.key = CentralPublicKey.from_pem(configured)
            return self.key
        if platform().environment == "production":
            # A key fetched over the channel it protects could be swapped by whoever holds
            # that channel: production configures it.
            log.error(
                "the central platform's public key is not configured (HDHUB_REGISTRATIONS_CENTRAL_PUBLIC_KEY)"
            )
            wait(items, "central-key-unset")
            return None
        # Laptops and tests: ask the stand-in receiver.
        stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        try:
            async with acting_as_service("registrations"):
                answer = await stub.GetPublicKey(central_pb2.GetPublicKeyRequest())
        except (grpc.aio.AioRpcError, Problem):
            wait(items, "central-key-unavailable")
            return None
        self.key = CentralPublicKey.from_pem(answer.public_key_pem.encode())
        return self.key

    async def receive(self, sealed: Sequence[tuple[Outgoing, central_pb2.SealedRecord]]) -> None:
        """The sealed halves of those not failed yet; each one refused or not received
        gets its ``failure``."""
        stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        todo = [(o, r) for o, r in sealed if o.failure is None]
        if not todo:
            return
        try:
            async with acting_as_service("registrations"):
                answer = await stub.ReceiveRecords(
                    central_pb2.ReceiveRecordsRequest(records=[r for _, r in todo])
                )
        except (grpc.aio.AioRpcError, Problem):
            for o, _ in todo:
                o.failure = "central-unavailable"
            return
        receipts = {r.technical_id: r for r in answer.receipts}
        for o, _ in todo:
            receipt = receipts.get(o.technical_id)
            if receipt is None or not receipt.accepted:
                o.failure = f"central-rejected:{receipt.rule if receipt else 'no-receipt'}"
                if receipt is not None and receipt.rule == "key_id":
                    self.key = None  # the central key changed: fetch or read it again

    async def confirmed(self, outgoing: Sequence[Outgoing]) -> set[tuple[str, int]]:
        """(technical id, version) of the deliveries that arrived whole; none when the
        central platform cannot be asked."""
        stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        refs = [central_pb2.DeliveryRef(technical_id=o.technical_id, version=o.version) for o in outgoing]
        try:
            async with acting_as_service("registrations"):
                answer = await stub.GetConfirmations(central_pb2.GetConfirmationsRequest(deliveries=refs))
        except (grpc.aio.AioRpcError, Problem) as exc:
            log.info(
                "confirmations unavailable", extra={"error_type": type(exc).__name__, "count": len(refs)}
            )
            return set()
        return {(c.technical_id, c.version) for c in answer.confirmations if c.confirmed}

    async def decision_verifier(self) -> DecisionVerifier | None:
        """The key the central platform signs decisions with; None when unknown (production
        without it configured, or the stand-in unreachable)."""
        if self.verifier is not None:
            return self.verifier
        configured = self.settings.configured_signing_key()
        if configured is not None:
            try:
                self.verifier = DecisionVerifier.from_pem(configured)
            except ValueError:
                log.error(
                    "the central platform's signing key is unusable (HDHUB_REGISTRATIONS_CENTRAL_SIGNING_KEY)"
                )
                return None
            return self.verifier
        if platform().environment == "production":
            log.error(
                "the central platform's signing key is not configured (HDHUB_REGISTRATIONS_CENTRAL_SIGNING_KEY)"
            )
            return None
        stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        try:
            async with acting_as_service("registrations"):
                answer = await stub.GetPublicKey(central_pb2.GetPublicKeyRequest())
            self.verifier = DecisionVerifier.from_pem(answer.signing_public_key_pem.encode())
        except (grpc.aio.AioRpcError, Problem, ValueError):
            return None
        return self.verifier

    async def decisions(self, after: int, limit: int) -> list[central_pb2.Decision] | None:
        """The central platform's decisions after the cursor; None when it cannot be asked."""
        stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        try:
            async with acting_as_service("registrations"):
                answer = await stub.GetDecisions(
                    central_pb2.GetDecisionsRequest(after_sequence=after, limit=limit)
                )
        except (grpc.aio.AioRpcError, Problem) as exc:
            log.info("decisions unavailable", extra={"error_type": type(exc).__name__})
            return None
        return list(answer.decisions)

    async def acknowledge(self, outcomes: Sequence[central_pb2.DecisionOutcome]) -> bool:
        """Tell the central platform what became of decisions; False when it cannot be told."""
        stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        try:
            async with acting_as_service("registrations"):
                await stub.AcknowledgeDecisions(central_pb2.AcknowledgeDecisionsRequest(outcomes=outcomes))
        except (grpc.aio.AioRpcError, Problem) as exc:
            log.info("decision outcomes not acknowledged", extra={"error_type": type(exc).__name__})
            return False
        return True


async def pseudonymise(items: Sequence[Outgoing]) -> None:
    """Hand the identifiers (split before) to pseudonymisation, which forwards the
    pseudonyms to the central platform; one call per project."""
    by_project: dict[str, list[Outgoing]] = defaultdict(list)
    for o in items:
        by_project[o.project_code].append(o)
    stub = pseudo_grpc.PseudonymisationServiceStub(channel("pseudonymisation"))
    for project, group in by_project.items():
        request = pseudo_pb.PseudonymiseAndForwardRequest(
            organisation_id=group[0].organisation_id, project_code=project
        )
        for n, o in enumerate(group):
            identifier = o.identifier
            assert identifier is not None
            request.ssins.append(identifier.ssin)
            if identifier.pseudocode is not None:
                request.pseudocodes.append(pseudo_pb.PseudocodePatient(index=n, inputs=identifier.pseudocode))
        request.technical_ids.extend(o.technical_id for o in group)
        request.versions.extend(o.version for o in group)
        try:
            async with acting_as_service("registrations", acting_for(request.organisation_id, group)):
                answer = await stub.PseudonymiseAndForward(request)
        except grpc.aio.AioRpcError as exc:
            problem = problem_from_rpc_error(exc)
            if problem.slug == "central-unavailable":
                # Pseudonymisation took the identifiers; the central side did not.
                for o in group:
                    o.failure = "central-unavailable"
            elif problem.status >= 500:
                wait(group, "pseudonymisation-unavailable")
            else:  # refused the call (a bug, or identities misconfigured): say which
                wait(group, f"pseudonymisation-refused:{problem.slug}")
            continue
        except Problem:
            wait(group, IDENTITY_UNAVAILABLE)
            continue
        for refused in answer.refused:
            o = group[refused.index]
            o.refused, o.failure = True, f"identifier-refused:{refused.rule}"
