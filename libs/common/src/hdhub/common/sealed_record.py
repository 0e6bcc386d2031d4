"""The bytes of a sealed record (proto ``hdhub.sim.v1.SealedRecord``) that are
authenticated: one definition for the sender (registrations) and every receiver (the sim,
the central platform), so the two sides of the contract cannot drift apart."""

from __future__ import annotations

import hashlib
from typing import Any

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


__all__ = ["SIGNED_PREFIX", "header_bytes", "signed_bytes"]
