"""Envelope encryption at rest (AES-256-GCM): each object gets its own random data key,
which is stored only wrapped by the master key. The object store holds ciphertext, the
database holds the wrapped data key; neither alone reveals anything, and a master-key
rotation rewraps 32-byte keys instead of re-encrypting objects.

Every ciphertext is bound to its purpose by associated data (organisation and
certificate id), so an object or a wrapped key copied onto another row fails to decrypt.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"HDE1"  # format marker and version of an encrypted object
NONCE_BYTES = 12


class EnvelopeError(RuntimeError):
    """A ciphertext that does not decrypt: wrong key, wrong binding, or tampered."""


def key_id(master_key: bytes) -> str:
    """A short, non-secret name of a master key (which one wrapped a data key)."""
    return hashlib.sha256(b"hdhub-key-id:" + master_key).hexdigest()[:16]


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise EnvelopeError("ciphertext does not decrypt") from exc


@dataclass(frozen=True, slots=True)
class Sealed:
    """What one encryption produced: the object body and what the database keeps."""

    body: bytes
    wrapped_key: bytes
    master_key_id: str
    secret: bytes  # a small companion secret (the p12 password), sealed with the same data key


class Envelope:
    """Seals and opens objects under ``master_keys`` (the first one wraps new data keys)."""

    def __init__(self, master_keys: Sequence[bytes]) -> None:
        if not master_keys or any(len(k) != 32 for k in master_keys):
            raise ValueError("master keys are 32 bytes")
        self._current = master_keys[0]
        self._keys = {key_id(k): k for k in master_keys}

    def seal(self, plaintext: bytes, secret: bytes, *, aad: bytes) -> Sealed:
        data_key = AESGCM.generate_key(bit_length=256)
        return Sealed(
            body=MAGIC + _seal(data_key, plaintext, aad + b"|body"),
            wrapped_key=_seal(self._current, data_key, aad + b"|key"),
            master_key_id=key_id(self._current),
            secret=_seal(data_key, secret, aad + b"|secret"),
        )

    def open(
        self, body: bytes, secret: bytes, *, wrapped_key: bytes, master_key_id: str, aad: bytes
    ) -> tuple[bytes, bytes]:
        """The plaintext and the companion secret."""
        master = self._keys.get(master_key_id)
        if master is None:
            raise EnvelopeError(f"master key {master_key_id} is not configured")
        if not body.startswith(MAGIC):
            raise EnvelopeError("not an encrypted object")
        data_key = _open(master, wrapped_key, aad + b"|key")
        return _open(data_key, body[len(MAGIC) :], aad + b"|body"), _open(data_key, secret, aad + b"|secret")
