"""Sealed files (proto ``hdhub.sim.v1.SealedFileHeader`` / ``SealedFileChunk``): a VCF or
HIV sequence file streamed to the central platform, encrypted for it and signed by the
organisation, as sealed records are (:mod:`hdhub.common.sealed_record`).

A record is sealed whole; a file is too large for that, so each transfer attempt is a
stream construction: the header carries a fresh AES-256 data key wrapped for the central
platform's RSA key (RSA-OAEP SHA-256) and the organisation's signature over the file's
identity, its size and its plaintext SHA-256; every chunk is AES-256-GCM under the data
key, its nonce its offset, its additional data the signed header's digest, the offset and
a last-chunk flag. So a chunk cannot be moved, replayed from another attempt or the end
dropped without failing to decrypt, and the signed digest, checked once the whole file is
in, proves the central side holds what the organisation sent, across resumed attempts.

One signature and one RSA wrap per attempt, not per chunk: a 1 GiB file is 1,024 AES-GCM
calls. The bytes that are authenticated have one definition for the sender (intake) and
every receiver (the sim, the central platform).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hdhub.common.sealed_record import CentralPublicKey, Signer

H = TypeVar("H")

SIGNED_PREFIX = b"hdhub-sealed-file-v1\x00"
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def header_bytes(h: Any) -> bytes:
    """The header's identifying fields, prefixed and each NUL-terminated."""
    fields = (
        h.file_id,
        h.organisation_id,
        h.project_code,
        h.registry,
        h.filename,
        ",".join(h.technical_ids),
        str(h.size),
        h.sha256,
        str(h.offset),
        h.key_id,
    )
    return SIGNED_PREFIX + b"".join(f.encode() + b"\x00" for f in fields)


def signed_bytes(h: Any) -> bytes:
    """What the organisation signs: the header, then SHA-256 of the wrapped data key."""
    return header_bytes(h) + hashlib.sha256(h.wrapped_key).digest()


def _nonce(offset: int) -> bytes:
    return offset.to_bytes(8, "big") + b"\x00\x00\x00\x00"


def chunk_aad(header_digest: bytes, offset: int, last: bool) -> bytes:
    return header_digest + offset.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


@dataclass
class FileSealer:
    """The sender's side of one attempt: the sealed header, then :meth:`chunk` per piece."""

    header: Any
    _aead: AESGCM
    _digest: bytes

    def chunk(self, offset: int, plain: bytes, last: bool) -> bytes:
        """The ciphertext of ``plain`` starting at ``offset`` (a plaintext offset)."""
        return self._aead.encrypt(_nonce(offset), plain, chunk_aad(self._digest, offset, last))


def seal_header(*, header: H, central: CentralPublicKey, signer: Signer) -> tuple[H, FileSealer]:
    """``header`` (a ``SealedFileHeader`` with the file's fields and ``offset``) completed
    with a fresh data key wrapped for the central platform and the organisation's
    signature; and the sealer for this attempt's chunks."""
    h: Any = type(header)()
    h.CopyFrom(header)
    h.key_id = central.key_id
    data_key = AESGCM.generate_key(bit_length=256)
    h.wrapped_key = central.public.encrypt(data_key, OAEP)
    signed = signed_bytes(h)
    h.signer_certificate_der = signer.certificate_der
    h.signature = signer.sign(signed)
    return h, FileSealer(h, AESGCM(data_key), hashlib.sha256(signed).digest())


class FileRejected(Exception):
    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


@dataclass
class FileOpener:
    """The receiver's side of one attempt, once the header's signature checked out."""

    _aead: AESGCM
    _digest: bytes

    def chunk(self, offset: int, ciphertext: bytes, last: bool) -> bytes:
        """The plaintext of a chunk; :class:`FileRejected` (``decryption``) when it was
        altered, moved, or belongs to another attempt."""
        try:
            return self._aead.decrypt(_nonce(offset), ciphertext, chunk_aad(self._digest, offset, last))
        except InvalidTag:
            raise FileRejected("decryption") from None


def open_header(h: Any, *, private_key: rsa.RSAPrivateKey, key_id: str, verify: Any) -> FileOpener:
    """Check ``h``'s key id and signature (``verify(certificate_der, signature, data)``
    raises :class:`FileRejected` when the signature is bad) and unwrap its data key."""
    if h.key_id != key_id:
        raise FileRejected("key_id")
    signed = signed_bytes(h)
    verify(h.signer_certificate_der, h.signature, signed)
    try:
        data_key = private_key.decrypt(h.wrapped_key, OAEP)
    except ValueError:
        raise FileRejected("decryption") from None
    if len(data_key) != 32:
        raise FileRejected("decryption")
    return FileOpener(AESGCM(data_key), hashlib.sha256(signed).digest())


__all__ = [
    "SIGNED_PREFIX",
    "FileOpener",
    "FileRejected",
    "FileSealer",
    "chunk_aad",
    "header_bytes",
    "open_header",
    "seal_header",
    "signed_bytes",
]
