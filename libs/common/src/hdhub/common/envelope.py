"""Envelope encryption at rest (AES-256-GCM): each object gets its own random data key,
which is stored only wrapped by the master key. The object store holds ciphertext, the
database holds the wrapped data key; neither alone reveals anything, and a master-key
rotation rewraps 32-byte keys instead of re-encrypting objects.

Every ciphertext is bound to its purpose by associated data (organisation and
certificate id), so an object or a wrapped key copied onto another row fails to decrypt.

Two shapes share the keys: :meth:`Envelope.seal` for a small object whose wrapped key the
caller's row keeps (the portal's p12s), and :func:`seal_stream` / :func:`open_stream` for
objects of any size that carry their wrapped key in their own header (files kept by the
uploads and intake services, through ``objectstore.SealedStore``). A stream is cut into
segments sealed one by one, each bound to its number and to whether it is the last, so a
segment moved, dropped or cut off fails to open (the STREAM construction of Hoang,
Reyhanitabar, Rogaway and Vizár, as in Tink's streaming AEAD).

Master keys come from settings (:class:`MasterKeySettings`): 32 bytes, base64, the
current one first; retired ones still open what they wrapped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import struct
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, model_validator

from hdhub.common.config import PLACEHOLDER

MAGIC = b"HDE1"  # format marker and version of an encrypted object
T = TypeVar("T")
STREAM_MAGIC = b"HDS1"  # format marker and version of an encrypted stream
NONCE_BYTES = 12
#: Plaintext bytes per sealed segment of a stream (what is held in memory at a time).
SEGMENT = 1024 * 1024


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

    def new_data_key(self, aad: bytes) -> tuple[bytes, bytes, str]:
        """A fresh data key, the same wrapped by the current master key, and that key's id."""
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, _seal(self._current, data_key, aad + b"|key"), key_id(self._current)

    def unwrap(self, wrapped_key: bytes, master_key_id: str, aad: bytes) -> bytes:
        """The data key ``wrapped_key`` holds; :class:`EnvelopeError` when it does not open."""
        master = self._keys.get(master_key_id)
        if master is None:
            raise EnvelopeError(f"master key {master_key_id} is not configured")
        return _open(master, wrapped_key, aad + b"|key")


# --- streams ------------------------------------------------------------------------------
# HDS1 | master key id (16 ASCII) | wrapped key length (2) | wrapped key | segments, where a
# segment is its length (4) | nonce | ciphertext and tag, bound to (number, last or not).


def _segment_aad(aad: bytes, number: int, last: bool) -> bytes:
    return aad + b"|segment" + struct.pack(">QB", number, last)


#: Work on at least this many bytes that includes SHA-256 (sealing a stream with its
#: digest, the sim's decrypt-write-hash) goes to a worker thread: hashing and AES-GCM
#: release the GIL on big buffers, so the event loop keeps receiving meanwhile. AES-GCM
#: alone (about 0.3 ms per MiB) stays in the loop: a thread hop costs about as much.
OFFLOAD_BYTES = 256 * 1024


async def offload(fn: Callable[..., T], *args: Any, size: int) -> T:
    """``fn(*args)`` in a worker thread when it handles ``size`` >= :data:`OFFLOAD_BYTES`
    bytes, else inline."""
    if size >= OFFLOAD_BYTES:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


async def seal_stream(
    envelope: Envelope, body: AsyncIterable[bytes], *, aad: bytes, digest: Any = None
) -> AsyncIterator[bytes]:
    """``body`` encrypted as it streams, one segment of :data:`SEGMENT` bytes at a time.
    ``digest`` (a hashlib object), when given, is updated with the plaintext, in the same
    worker-thread step that seals each segment."""
    data_key, wrapped, master_id = envelope.new_data_key(aad)
    aead = AESGCM(data_key)
    yield STREAM_MAGIC + master_id.encode("ascii") + struct.pack(">H", len(wrapped)) + wrapped

    def segment(plain: bytes, number: int, last: bool) -> bytes:
        if digest is not None:
            digest.update(plain)
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, plain, _segment_aad(aad, number, last))
        return b"".join((struct.pack(">I", NONCE_BYTES + len(sealed)), nonce, sealed))

    # Whole segments (a piece of the body that is one passes without a copy), the last one
    # marked so: a full segment goes out only once more data follows.
    from hdhub.common.objectstore import exact_pieces

    number = 0
    async for plain, last in exact_pieces(body, SEGMENT):
        yield await offload(segment, plain, number, last, size=len(plain))
        number += 1


class _Reader:
    """Exact reads from a chunked stream, copying each byte at most once: the pieces are
    kept as they came, and a read that is one whole piece is that piece."""

    def __init__(self, body: AsyncIterable[bytes], first: bytes = b"") -> None:
        self._it = aiter(body)
        self._parts: deque[memoryview] = deque()
        self._held = 0
        self._push(first)

    def _push(self, chunk: bytes) -> None:
        if chunk:
            self._parts.append(memoryview(chunk))
            self._held += len(chunk)

    async def _more(self) -> bool:
        try:
            self._push(await anext(self._it))
        except StopAsyncIteration:
            return False
        return True

    async def fill(self, n: int) -> bytes:
        """Up to ``n`` bytes from the front, left in place (fewer only at the end)."""
        while self._held < n and await self._more():
            pass
        return b"".join(self._parts)[:n]

    async def rest(self) -> AsyncIterator[bytes]:
        while self._parts:
            yield self._parts.popleft().tobytes()
        self._held = 0
        async for chunk in self._it:
            yield chunk

    async def take(self, n: int) -> bytes | None:
        """``n`` bytes, or None at a clean end (nothing left); a short read is an error."""
        while self._held < n:
            if not await self._more():
                if self._held:
                    raise EnvelopeError("the encrypted stream is cut short")
                return None
        first = self._parts[0]
        if len(first) == n and isinstance(first.obj, bytes) and len(first.obj) == n:
            self._parts.popleft()
            self._held -= n
            return first.obj
        out, left = [], n
        while left:
            part = self._parts.popleft()
            if len(part) > left:
                self._parts.appendleft(part[left:])
                part = part[:left]
            out.append(part)
            left -= len(part)
        self._held -= n
        return b"".join(out)


async def open_stream(
    envelope: Envelope, body: AsyncIterable[bytes], *, aad: bytes, plaintext_ok: bool = False
) -> AsyncIterator[bytes]:
    """The plaintext of a sealed stream, segment by segment. With ``plaintext_ok`` a body
    that is no sealed stream (an object stored before encryption was on) comes back as it is."""
    reader = _Reader(body)
    if await reader.fill(len(STREAM_MAGIC)) != STREAM_MAGIC:
        if not plaintext_ok:
            raise EnvelopeError("not an encrypted stream")
        async for chunk in reader.rest():
            yield chunk
        return
    head = await reader.take(len(STREAM_MAGIC) + 18)
    if head is None:
        raise EnvelopeError("the encrypted stream is cut short")
    wrapped = await reader.take(struct.unpack(">H", head[-2:])[0])
    if wrapped is None:
        raise EnvelopeError("the encrypted stream is cut short")
    master_id = head[len(STREAM_MAGIC) : len(STREAM_MAGIC) + 16].decode("ascii", "replace")
    aead = AESGCM(envelope.unwrap(wrapped, master_id, aad))

    def open_segment(sealed: bytes, number: int) -> tuple[bytes, bool]:
        nonce, text = sealed[:NONCE_BYTES], memoryview(sealed)[NONCE_BYTES:]
        try:
            return aead.decrypt(nonce, text, _segment_aad(aad, number, False)), False
        except InvalidTag:
            try:
                return aead.decrypt(nonce, text, _segment_aad(aad, number, True)), True
            except InvalidTag as exc:
                raise EnvelopeError("ciphertext does not decrypt") from exc

    number = 0
    while True:
        size = await reader.take(4)
        if size is None:
            raise EnvelopeError("the encrypted stream is cut short")
        sealed = await reader.take(struct.unpack(">I", size)[0])
        if sealed is None:
            raise EnvelopeError("the encrypted stream is cut short")
        # In the loop: AES-GCM alone (no digest) costs less than a hop to a worker thread.
        plain, last = open_segment(sealed, number)
        if plain:
            yield plain
        if last:
            if await reader.take(1) is not None:
                raise EnvelopeError("data after the last segment")
            return
        number += 1


# --- settings -----------------------------------------------------------------------------


class MasterKeySettings(BaseModel):
    """A service's master key settings (mixed into its settings class, so under its
    prefix: ``HDHUB_UPLOADS_MASTER_KEY``, ``..._MASTER_KEY_FILE``, ``..._RETIRED_MASTER_KEYS``).
    Production refuses the placeholder; laptops and tests derive a key from the secret key."""

    #: The current master key: 32 bytes, base64 (or ``master_key_file``, a mounted Secret).
    master_key: str = PLACEHOLDER
    master_key_file: Path | None = None
    #: Earlier master keys (base64), still accepted to unwrap what they wrapped.
    retired_master_keys: list[str] = []
    #: Outside production without a key, the key is SHA-256(label + secret key).
    dev_master_key_label: ClassVar[bytes] = b""

    @model_validator(mode="after")
    def _master_key_in_production(self) -> MasterKeySettings:
        from hdhub.common.config import ServiceSettings, is_placeholder, platform

        if isinstance(self, ServiceSettings):
            return self  # named there, with every other setting the service lacks
        if (
            platform().environment == "production"
            and is_placeholder(self.master_key)
            and not self.master_key_file
        ):
            raise ValueError(
                f"{self._variable('MASTER_KEY')} is unset or a placeholder; set it "
                f"(or {self._variable('MASTER_KEY_FILE')}) from a Secret"
            )
        return self

    def master_keys(self) -> list[bytes]:
        """The current master key first, then the retired ones."""
        from hdhub.common.config import is_placeholder

        name = type(self).__name__
        secret_key = getattr(self, "secret_key", None)
        if self.master_key_file is not None:
            current = decode_master_key(self.master_key_file.read_text().strip(), f"{name}.master_key_file")
        elif not is_placeholder(self.master_key):
            current = decode_master_key(self.master_key, f"{name}.master_key")
        elif not is_placeholder(secret_key):
            # Laptops and tests only (refused in production above), and never from a
            # placeholder: `hdhub` generates the secret keys under var/.
            label = self.dev_master_key_label or f"hdhub-master-key:{name}:".encode()
            current = hashlib.sha256(label + str(secret_key).encode()).digest()
        else:
            raise ValueError(f"{self._variable('MASTER_KEY')} is unset; set it from a Secret")
        return [
            current,
            *(decode_master_key(k, f"{name}.retired_master_keys") for k in self.retired_master_keys),
        ]

    def _variable(self, name: str) -> str:
        """The variable a setting is read from (``HDHUB_UPLOADS_MASTER_KEY``)."""
        prefix = getattr(self, "model_config", {}).get("env_prefix", "HDHUB_")
        return f"{prefix}{name}"

    def envelope(self) -> Envelope:
        return Envelope(self.master_keys())


def decode_master_key(text: str, name: str) -> bytes:
    """A base64 master key, checked to be 32 bytes (AES-256)."""
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{name} is not base64") from exc
    if len(key) != 32:
        raise ValueError(f"{name} must be 32 bytes (AES-256), base64-encoded")
    return key
