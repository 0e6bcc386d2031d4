"""The central receiver's file intake (stand-in): VCF and HIV sequence files streamed with
their registrations (proto ``ReceiveFile``).

Each attempt's header is verified (the organisation's signature, the central key id)
before a byte is kept; chunks are decrypted and appended in order to a file in the sim's
data folder, so a cut attempt keeps what arrived and the next one resumes at that
offset (``GetFileOffset``). When the last chunk is in, the whole file's SHA-256 is
computed from disk and compared with the signed one: equal, the file is acknowledged;
different, what was held is dropped and the sender starts again from 0.

``cut_after_bytes`` (set by the operator or a test) ends the next attempt with UNAVAILABLE
once the file's held bytes reach it, as a network cut would; it fires once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import func, select

from hdhub.common.clock import SYSTEM_CLOCK, Clock
from hdhub.common.db import Database
from hdhub.common.errors import Problem
from hdhub.common.sealed_file import FileOpener, FileRejected, open_header
from hdhub.common.writebehind import WriteBehind
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.sim.receiver import Mode, Receiver, Rejected, _signer_of
from hdhub.sim.store import CentralFile

log = logging.getLogger("hdhub.sim.files")

#: Held bytes are written to the row at most this often, in bytes and seconds (the file
#: on disk is the truth; the row is what an operator sees).
OFFSET_EVERY = 8 * 1024 * 1024
OFFSET_SECONDS = 1.0
#: Chunks decrypted and waiting for the writer thread, at most (1 MiB each as intake sends).
WRITES_AHEAD = 2
#: AES-GCM's tag: a chunk's ciphertext is its plaintext and this many bytes.
TAG_BYTES = 16


def verify_signature(certificate_der: bytes, signature: bytes, data: bytes) -> str:
    """The signer's subject when ``signature`` over ``data`` is the certificate key's."""
    try:
        public, subject = _signer_of(certificate_der)
    except Rejected as exc:
        raise FileRejected(exc.rule) from None
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(
                signature,
                data,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
                hashes.SHA256(),
            )
        else:
            raise FileRejected("signature_algorithm")
    except InvalidSignature:
        raise FileRejected("signature") from None
    return str(subject)


def _write_and_hash(plain: bytes, out: Any, running: Any, failed: list[BaseException]) -> int:
    """A chunk's plaintext appended to ``out`` and ``running`` (a digest, or None): its
    length. After a write failed (``failed``), no later chunk is written: the file stays
    whole up to what was written, for the next attempt to resume from."""
    if failed:
        raise failed[0]
    try:
        out.write(plain)
    except BaseException as exc:
        failed.append(exc)
        raise
    if running is not None:
        running.update(plain)
    return len(plain)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


class CentralFiles:
    def __init__(
        self, db: Database, receiver: Receiver, folder: Path, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.db, self.receiver, self.key, self.folder, self.clock = db, receiver, receiver.key, folder, clock
        #: Cut the next attempt once the file's held bytes reach this (None: never).
        self.cut_after_bytes: int | None = None
        # One attempt per file at a time (the sim is one process): a second is told "busy".
        self._busy: set[str] = set()

    @property
    def refusing(self) -> bool:
        """The receiver's ``refuse`` mode covers files too."""
        return self.receiver.behaviour.mode is Mode.REFUSE

    def path(self, file_id: str) -> Path:
        if not file_id or "/" in file_id or file_id.startswith("."):
            raise Problem(400, "file-id", "The file id is not a valid id")
        return self.folder / file_id

    def held(self, file_id: str) -> int:
        p = self.path(file_id)
        return p.stat().st_size if p.exists() else 0

    async def offset(self, file_id: str, organisation_id: str) -> pb.GetFileOffsetResponse:
        if self.refusing:
            raise Problem(503, "receiver-refuses", "The central receiver refuses deliveries")
        async with self.db.system_session() as session:
            row = await session.get(CentralFile, file_id)
        if row is None or row.organisation_id != organisation_id:
            return pb.GetFileOffsetResponse(offset=0)
        if row.acknowledged_at is not None:
            return pb.GetFileOffsetResponse(offset=row.size, acknowledged=True, sha256=row.sha256)
        return pb.GetFileOffsetResponse(offset=self.held(file_id))

    async def receive(
        self, messages: AsyncIterator[pb.ReceiveFileRequest], check_acting_for: Any = None
    ) -> pb.ReceiveFileResponse:
        """One attempt: the header, then chunks from its offset. ``check_acting_for``
        (principal, organisation) refuses a caller not acting for the header's organisation."""
        if self.refusing:
            raise Problem(503, "receiver-refuses", "The central receiver refuses deliveries")
        first = await anext(aiter(messages), None)
        if first is None or first.WhichOneof("part") != "header":
            raise Problem(400, "header-required", "The first message is the file's header")
        h = first.header
        if check_acting_for is not None:
            from hdhub.common.auth import current_principal

            check_acting_for(current_principal.get(), h.organisation_id or "-")
        answer = pb.ReceiveFileResponse(file_id=h.file_id)
        subject = ""

        def verify(cert: bytes, signature: bytes, data: bytes) -> None:
            nonlocal subject
            subject = verify_signature(cert, signature, data)

        try:
            opener = open_header(h, private_key=self.key.private, key_id=self.key.key_id, verify=verify)
        except FileRejected as exc:
            log.warning("sealed file rejected", extra={"file_id": h.file_id, "rule": exc.rule})
            answer.rule = exc.rule
            return answer
        if h.file_id in self._busy:
            answer.rule = "busy"
            return answer
        self._busy.add(h.file_id)
        try:
            return await self._attempt(h, subject, opener, messages, answer)
        finally:
            self._busy.discard(h.file_id)

    async def _attempt(
        self,
        h: Any,
        subject: str,
        opener: FileOpener,
        messages: AsyncIterator[pb.ReceiveFileRequest],
        answer: pb.ReceiveFileResponse,
    ) -> pb.ReceiveFileResponse:
        path = self.path(h.file_id)
        row = await self._row(h, subject)
        if row.acknowledged_at is not None:
            if row.sha256 == h.sha256:
                answer.acknowledged, answer.offset, answer.sha256 = True, row.size, row.sha256
            else:
                answer.rule = "already-acknowledged"
            return answer
        held = self.held(h.file_id)
        if h.offset != held:
            answer.offset, answer.rule = held, "offset"
            return answer
        return await self._append(h, opener, messages, path, answer)

    async def _row(self, h: Any, subject: str) -> CentralFile:
        """The file's row, made on its first attempt; a changed file (another digest or
        size under the same id) starts over."""
        now = self.clock.now()
        async with self.db.system_session() as session:
            row = await session.get(CentralFile, h.file_id, with_for_update=True)
            if row is not None and row.organisation_id != h.organisation_id:
                raise Problem(403, "file-other-organisation", "That file id belongs to another organisation")
            if (
                row is not None
                and (row.sha256, row.size) != (h.sha256, h.size)
                and row.acknowledged_at is None
            ):
                self.path(h.file_id).unlink(missing_ok=True)
                await session.delete(row)
                await session.flush()
                row = None
            if row is None:
                row = CentralFile(
                    file_id=h.file_id,
                    organisation_id=h.organisation_id,
                    project_code=h.project_code,
                    registry_folder=h.registry,
                    filename=h.filename,
                    technical_ids=list(h.technical_ids),
                    size=h.size,
                    sha256=h.sha256,
                    offset=0,
                    attempts=0,
                    signer_subject=subject[:500],
                    updated_at=now,
                )
                session.add(row)
            row.attempts += 1
            row.updated_at = now
            await session.flush()
            session.expunge(row)
        return row

    async def _append(
        self,
        h: Any,
        opener: FileOpener,
        messages: AsyncIterator[pb.ReceiveFileRequest],
        path: Path,
        answer: pb.ReceiveFileResponse,
    ) -> pb.ReceiveFileResponse:
        self.folder.mkdir(parents=True, exist_ok=True)
        at, noted, last = h.offset, h.offset, False
        noted_at = time.monotonic()
        # From 0 the digest is kept as the bytes arrive; a resumed file is read back at the end.
        running = hashlib.sha256() if h.offset == 0 else None
        # Each chunk is decrypted as it arrives, then written and hashed by a thread of this
        # transfer's own, in order, up to WRITES_AHEAD chunks behind: the next chunk is
        # received and decrypted while the one before goes to disk (AES-GCM, the writes
        # and SHA-256 release the GIL). ``at``: the bytes written; ``received``: decrypted.
        loop = asyncio.get_running_loop()
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-central-file")
        # The copy is written once and kept: to disk as it comes, not into the page cache.
        out = await loop.run_in_executor(writer, lambda: WriteBehind(path.open("ab")))
        writes: deque[asyncio.Future[int]] = deque()
        failed: list[BaseException] = []
        received = at

        async def written(behind: int) -> None:
            nonlocal at
            while len(writes) > behind:
                at += await writes.popleft()

        async def noted_to_here() -> None:
            await written(0)
            await loop.run_in_executor(writer, out.flush)
            await self._note(h.file_id, at)

        try:
            async for message in messages:
                chunk = message.chunk
                if message.WhichOneof("part") != "chunk" or last or chunk.offset != received:
                    answer.rule = "offset"
                    break
                # Read once: each read of a bytes field is a copy of it.
                ciphertext = chunk.ciphertext
                if received + len(ciphertext) - TAG_BYTES > h.size:
                    answer.rule = "size"
                    break
                try:
                    plain = opener.chunk(chunk.offset, ciphertext, chunk.last)
                except FileRejected as exc:
                    answer.rule = exc.rule
                    break
                received += len(plain)
                last = chunk.last
                writes.append(loop.run_in_executor(writer, _write_and_hash, plain, out, running, failed))
                await written(WRITES_AHEAD)
                if received - noted >= OFFSET_EVERY and time.monotonic() - noted_at >= OFFSET_SECONDS:
                    await noted_to_here()
                    noted, noted_at = at, time.monotonic()
                cut = self.cut_after_bytes
                if cut is not None and received >= cut and not last:
                    self.cut_after_bytes = None
                    await noted_to_here()
                    log.info("file transfer cut (switch)", extra={"file_id": h.file_id, "offset": at})
                    raise Problem(503, "transfer-cut", "The central receiver cut the transfer")
            await written(0)
        finally:
            # Whatever ends the attempt, what was decrypted is written before the file closes.
            for pending in writes:
                with contextlib.suppress(Exception):
                    at += await asyncio.shield(pending)
            writes.clear()
            await loop.run_in_executor(writer, out.close)
            writer.shutdown(wait=False)
        answer.offset = at
        await self._note(h.file_id, at)
        if answer.rule or not last:
            answer.rule = answer.rule or "incomplete"
            return answer
        if at != h.size:
            answer.rule = "size"
            return answer
        digest = running.hexdigest() if running is not None else await asyncio.to_thread(_sha256_of, path)
        if digest != h.sha256:
            path.unlink(missing_ok=True)  # not what was signed: start again
            await self._note(h.file_id, 0)
            answer.offset, answer.rule = 0, "digest"
            return answer
        async with self.db.system_session() as session:
            stored = await session.get(CentralFile, h.file_id)
            assert stored is not None
            stored.acknowledged_at = stored.updated_at = self.clock.now()
            stored.offset = at
        answer.acknowledged, answer.sha256 = True, digest
        log.info("file acknowledged", extra={"file_id": h.file_id, "size": at})
        return answer

    async def _note(self, file_id: str, offset: int) -> None:
        async with self.db.system_session() as session:
            stored = await session.get(CentralFile, file_id)
            if stored is not None:
                stored.offset, stored.updated_at = offset, self.clock.now()

    async def get(self, file_id: str) -> CentralFile | None:
        async with self.db.system_session() as session:
            return await session.get(CentralFile, file_id)

    async def counts(self) -> dict[str, int]:
        async with self.db.system_session() as session:
            total = (await session.execute(select(func.count()).select_from(CentralFile))).scalar_one()
            acknowledged = (
                await session.execute(
                    select(func.count())
                    .select_from(CentralFile)
                    .where(CentralFile.acknowledged_at.is_not(None))
                )
            ).scalar_one()
        return {"files": int(total), "files_acknowledged": int(acknowledged)}
