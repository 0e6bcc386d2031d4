"""Decisions of the central platform (proto ``hdhub.sim.v1.Decision``): the bytes that are
signed, once for the signer (the central platform, the sim in tests) and the verifier
(registrations), so the two sides of the return channel cannot drift apart.

Every part is length-prefixed, so a comment holding any byte cannot make two different
decisions sign alike.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

SIGNED_PREFIX = b"hdhub-central-decision-v1"


def _part(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">I", len(data)) + data


def signed_bytes(d: Any, status_name: str) -> bytes:
    """What the central platform signs of decision ``d`` (a ``Decision``), ``status_name``
    being its status' enum name (``DECISION_STATUS_APPROVED``)."""
    parts = [
        d.decision_id,
        d.technical_id,
        str(d.version),
        d.organisation_id,
        status_name,
        d.comment,
        str(len(d.fields)),
        *d.fields,
        d.decided_at,
        d.signing_key_id,
    ]
    return _part(SIGNED_PREFIX.decode()) + b"".join(_part(p) for p in parts)


def key_id_of(public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """SHA-256 of the DER public key, lowercase hex."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class DecisionVerifier:
    """The central platform's signing key, as registrations checks decisions with it."""

    public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    key_id: str

    @classmethod
    def from_pem(cls, pem: bytes) -> DecisionVerifier:
        """A verifier from a PEM public key; ValueError when it is neither EC nor RSA."""
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError("the central platform's signing key must be an EC or RSA public key")
        return cls(key, key_id_of(key))

    def verify(self, d: Any, status_name: str) -> bool:
        """True when ``d`` was signed by this key (and names it)."""
        if d.signing_key_id != self.key_id:
            return False
        data = signed_bytes(d, status_name)
        try:
            if isinstance(self.public, ec.EllipticCurvePublicKey):
                self.public.verify(d.signature, data, ec.ECDSA(hashes.SHA256()))
            else:
                self.public.verify(
                    d.signature,
                    data,
                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
                    hashes.SHA256(),
                )
        except InvalidSignature:
            return False
        return True


def sign(private: ec.EllipticCurvePrivateKey, d: Any, status_name: str) -> bytes:
    """The central platform's signature of decision ``d`` (its ``signing_key_id`` set)."""
    return private.sign(signed_bytes(d, status_name), ec.ECDSA(hashes.SHA256()))


__all__ = ["SIGNED_PREFIX", "DecisionVerifier", "key_id_of", "sign", "signed_bytes"]
