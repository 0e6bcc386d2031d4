"""Sealed records (proto ``hdhub.sim.v1.SealedRecord``): a registration's register
variables, encrypted for the central platform and signed by the organisation.

The bytes that are authenticated have one definition for the sender (registrations) and
every receiver (the sim, the central platform), so the two sides of the contract cannot
drift apart; :func:`seal` is the sender's side.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hdhub.common.db import json_text

R = TypeVar("R")

SIGNED_PREFIX = b"hdhub-sealed-record-v1\x00"


def header_bytes(r: Any) -> bytes:
    """The record's header: a prefix, then each header field NUL-terminated. It is the
    AES-GCM additional data and the start of what is signed."""
    fields = (
        r.technical_id,
        str(r.version),
        r.organisation_id,
        r.project_code,
        r.dcd_code,
        r.dcd_version,
        r.registration_code,
        r.key_id,
    )
    return SIGNED_PREFIX + b"".join(f.encode() + b"\x00" for f in fields)


def signed_bytes(r: Any) -> bytes:
    """What the organisation signs: the header, then SHA-256 of the sealed parts."""
    return header_bytes(r) + hashlib.sha256(r.wrapped_key + r.nonce + r.ciphertext).digest()


@dataclass(frozen=True)
class CentralPublicKey:
    """The central platform's RSA public key, which data keys are wrapped for, and its id
    (SHA-256 of its DER form) that a sealed record names."""

    public: rsa.RSAPublicKey
    key_id: str

    @classmethod
    def from_pem(cls, pem: bytes) -> CentralPublicKey:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("the central platform's key must be an RSA public key")
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(key, hashlib.sha256(der).hexdigest())


@dataclass(frozen=True)
class Signer:
    """An organisation's authentication key and certificate, in memory only; ``fetched``
    (a monotonic time) says how old this copy is."""

    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    certificate_der: bytes
    certificate_id: str
    fetched: float

    @classmethod
    def from_der(
        cls, *, private_key_pkcs8_der: bytes, certificate_der: bytes, certificate_id: str, fetched: float
    ) -> Signer:
        """A signer from a PKCS#8 private key and an X.509 certificate (DER); ValueError
        when either is unusable."""
        key = serialization.load_der_private_key(private_key_pkcs8_der, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError("unsupported authentication key type")
        x509.load_der_x509_certificate(certificate_der)  # well-formed
        return cls(key, certificate_der, certificate_id, fetched)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            return self.private.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.private.sign(
            data,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )


def seal(*, header: R, variables: Mapping[str, Any], central: CentralPublicKey, signer: Signer) -> R:
    """A sealed record: ``header`` (a ``SealedRecord`` carrying the identifying fields, no
    identifiers) completed with ``variables`` encrypted for the central platform
    (AES-256-GCM under a fresh key wrapped for its RSA key) and signed with the
    organisation's key."""
    record: Any = type(header)()
    record.CopyFrom(header)
    record.key_id = central.key_id
    data_key = AESGCM.generate_key(bit_length=256)
    record.nonce = os.urandom(12)
    record.wrapped_key = central.public.encrypt(
        data_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    plain = json_text(variables).encode()  # compact JSON, UTF-8 (orjson; the stdlib past 64-bit ints)
    record.ciphertext = AESGCM(data_key).encrypt(record.nonce, plain, header_bytes(record))
    record.signer_certificate_der = signer.certificate_der
    record.signature = signer.sign(signed_bytes(record))
    return record  # type: ignore[no-any-return]


__all__ = ["SIGNED_PREFIX", "CentralPublicKey", "Signer", "header_bytes", "seal", "signed_bytes"]
