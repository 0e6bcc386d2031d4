"""The portal's internal edge (hdhub.portal.v1): the active certificate of an
organisation, for the services that sign or decrypt, and no one else."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from hdhub.common.errors import forbidden, organisation_required
from hdhub.common.grpc import ServicerContext, require_principal
from hdhub.portal.domain.p12 import KeyEntry, Purpose
from hdhub.proto.portal.v1 import certificates_pb2 as pb
from hdhub.proto.portal.v1 import certificates_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from cryptography import x509

    from hdhub.portal.runtime import PortalService

log = logging.getLogger("hdhub.portal.grpc")

PURPOSES = {
    Purpose.AUTHENTICATION: pb.KEY_PURPOSE_AUTHENTICATION,
    Purpose.ENCRYPTION: pb.KEY_PURPOSE_ENCRYPTION,
}


def key_pair(entry: KeyEntry, chain: list[x509.Certificate]) -> pb.KeyPair:
    c = entry.certificate
    return pb.KeyPair(
        purpose=PURPOSES[entry.purpose],
        private_key_pkcs8_der=entry.private_key_der(),
        certificate_der=entry.certificate_der(),
        chain_der=[x.public_bytes(serialization.Encoding.DER) for x in chain],
        subject=c.subject.rfc4514_string(),
        serial_number=f"{c.serial_number:x}",
        not_before=c.not_valid_before_utc.isoformat(),
        not_after=c.not_valid_after_utc.isoformat(),
        sha256_fingerprint=entry.fingerprint(),
    )


class CertificatesServicer(pb_grpc.CertificatesServiceServicer):
    def __init__(self, service: PortalService) -> None:
        self.service = service

    async def GetActiveCertificate(
        self, request: pb.GetActiveCertificateRequest, context: ServicerContext
    ) -> pb.GetActiveCertificateResponse:
        """The organisation's published certificate with both key pairs. Only a service
        identity holding a certificate-reader realm role may ask (PERMISSION_DENIED
        otherwise, UNAUTHENTICATED without a token); NOT_FOUND when none is published,
        FAILED_PRECONDITION when the published one has expired."""
        principal = require_principal()
        readers = set(self.service.settings.certificate_reader_roles)
        if not principal.realm_roles & readers:
            raise forbidden("Only the services that sign or decrypt may read certificates.")
        if not request.organisation_id:
            raise organisation_required()
        active = await self.service.certificates.active(request.organisation_id)
        c, keystore = active.certificate, active.keystore
        log.info(
            "active certificate handed out",
            extra={"organisation_id": c.organisation_id, "version": c.version, "caller": principal.username},
        )
        return pb.GetActiveCertificateResponse(
            certificate=pb.ActiveCertificate(
                organisation_id=c.organisation_id,
                certificate_id=c.id,
                version=c.version,
                published_at=c.published_at.isoformat() if c.published_at else "",
                authentication=key_pair(keystore.authentication, keystore.chain),
                encryption=key_pair(keystore.encryption, keystore.chain),
            )
        )
