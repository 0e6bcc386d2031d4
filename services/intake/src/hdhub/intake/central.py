"""Linked files go to the central platform with their registrations (the ``send-file`` job).

Intake sends, not registrations' delivery worker: intake owns the bytes and the master
key that opens them at rest, so the file streams once, object store → seal → gRPC, and
never through another service (docs/delivery.md argues it). A file waits until every
registration it is linked to has been delivered (Submitted or later): the central side
then holds the record the file joins, by technical id.

One attempt: ask the central side how much it holds (``GetFileOffset``), seal a header
for that offset (a fresh data key, the organisation's signature over the file's identity,
size and SHA-256: :mod:`hdhub.common.sealed_file`), stream the object from the store in
``send_chunk_bytes`` pieces from that offset, each sealed, the last flagged. The answer
acknowledges the file (the central side checked the whole file's SHA-256) or says how far
it got; a cut (UNAVAILABLE mid-stream) is resumed by the next attempt from the offset
the central side reports. Acknowledged, the object leaves the drop area for
``intake/sent/`` and is kept ``sent_retention_days``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc
from sqlalchemy import func, select, update

from hdhub.common.auth import ActingFor
from hdhub.common.config import CENTRAL, platform
from hdhub.common.db import utcnow
from hdhub.common.errors import Problem
from hdhub.common.grpc import channel
from hdhub.common.objectstore import ObjectNotFound, exact_pieces
from hdhub.common.sealed_file import FileSealer, seal_header
from hdhub.common.sealed_record import CentralPublicKey, Signer
from hdhub.common.service_auth import acting_as_service
from hdhub.intake import metrics
from hdhub.intake.domain.names import REGISTRIES
from hdhub.intake.files import Files
from hdhub.intake.store import ACKNOWLEDGED, LINKED, SENT, FileLink, IntakeFile
from hdhub.proto.portal.v1 import certificates_pb2, certificates_pb2_grpc
from hdhub.proto.registrations.v1 import registrations_pb2 as reg_pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as reg_grpc
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.proto.sim.v1 import central_pb2_grpc as pb_grpc

log = logging.getLogger("hdhub.intake.central")

T = TypeVar("T")
#: Sealed chunks prepared ahead of the one gRPC is sending.
READ_AHEAD = 2
#: Registration statuses at which the central platform holds the record.
DELIVERED = frozenset({"submitted", "corrections_needed", "approved", "follow_up_needed"})


def sent_key(f: IntakeFile) -> str:
    return f"intake/sent/{f.organisation_id}/{f.registry_folder}/{f.id}-{f.filename}"


class Waiting(Exception):
    """The file cannot be sent now: ``reason`` says why (kept on its row)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Outcome:
    acknowledged: bool
    offset: int
    problem: str = ""


class CentralSender:
    """Keys and channels for sending files: the central public key (configured, or the
    sim's outside production) and each organisation's signer (portal), cached."""

    def __init__(self, files: Files) -> None:
        self.files = files
        self.key: CentralPublicKey | None = None
        self.signers: dict[str, Signer] = {}

    async def central_key(self) -> CentralPublicKey:
        if self.key is not None:
            return self.key
        configured = self.files.settings.configured_central_key()
        if configured is not None:
            self.key = CentralPublicKey.from_pem(configured)
            return self.key
        if platform().environment == "production":
            log.error("the central platform's public key is not configured (HDHUB_INTAKE_CENTRAL_PUBLIC_KEY)")
            raise Waiting("central-key-unset")
        stub = pb_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        try:
            async with acting_as_service("intake"):
                answer = await stub.GetPublicKey(pb.GetPublicKeyRequest())
        except (grpc.aio.AioRpcError, Problem):
            raise Waiting("central-key-unavailable") from None
        self.key = CentralPublicKey.from_pem(answer.public_key_pem.encode())
        return self.key

    async def signer(self, f: IntakeFile) -> Signer:
        cached = self.signers.get(f.organisation_id)
        if cached is not None and time.monotonic() - cached.fetched < 300:
            return cached
        stub = certificates_pb2_grpc.CertificatesServiceStub(channel("portal"))
        try:
            async with acting_as_service("intake", ActingFor(f.organisation_id, f.sender)):
                answer = await stub.GetActiveCertificate(
                    certificates_pb2.GetActiveCertificateRequest(organisation_id=f.organisation_id)
                )
            active = answer.certificate
            signer = Signer.from_der(
                private_key_pkcs8_der=active.authentication.private_key_pkcs8_der,
                certificate_der=active.authentication.certificate_der,
                certificate_id=active.certificate_id,
                fetched=time.monotonic(),
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise Waiting(
                "no-published-certificate"
                if code == grpc.StatusCode.NOT_FOUND
                else "certificate-expired"
                if code == grpc.StatusCode.FAILED_PRECONDITION
                else "certificate-unavailable"
            ) from None
        except Problem:
            raise Waiting("service-identity-unavailable") from None
        except ValueError:
            raise Waiting("certificate-unusable") from None
        self.signers[f.organisation_id] = signer
        return signer

    async def technical_ids(self, f: IntakeFile, registration_ids: list[str]) -> list[str]:
        """The technical ids of the file's registrations, once every one is delivered."""
        stub = reg_grpc.RegistrationsServiceStub(channel("registrations"))
        out: list[str] = []
        try:
            async with acting_as_service("intake", ActingFor(f.organisation_id, f.sender)):
                for rid in registration_ids:
                    answer = await stub.GetRegistration(reg_pb.GetRegistrationRequest(id=rid))
                    r = answer.registration
                    if r.status not in DELIVERED or not r.technical_id:
                        raise Waiting("registration-not-delivered")
                    out.append(r.technical_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise Waiting("registration-gone") from None
            log.warning(
                "registrations not asked",
                extra={"code": exc.code().name, "detail": (exc.details() or "")[:200]},
            )
            raise Waiting("registrations-unavailable") from None
        except Problem:
            raise Waiting("service-identity-unavailable") from None
        return sorted(set(out))

    async def attempt(self, f: IntakeFile, technical_ids: list[str]) -> Outcome:
        """One transfer attempt from the offset the central side holds."""
        stub = pb_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        central, signer = await self.central_key(), await self.signer(f)
        try:
            # For the file's organisation and sender: whoever delivered it started this work.
            async with acting_as_service("intake", ActingFor(f.organisation_id, f.sender)):
                held = await stub.GetFileOffset(
                    pb.GetFileOffsetRequest(file_id=f.id, organisation_id=f.organisation_id)
                )
                if held.acknowledged:
                    return Outcome(
                        held.sha256 == f.sha256, held.offset, "" if held.sha256 == f.sha256 else "digest"
                    )
                reg = REGISTRIES[f.registry_folder]
                header, sealer = seal_header(
                    header=pb.SealedFileHeader(
                        file_id=f.id,
                        organisation_id=f.organisation_id,
                        project_code=reg.project_code,
                        registry=f.registry_folder,
                        filename=f.filename,
                        technical_ids=technical_ids,
                        size=f.size or 0,
                        sha256=f.sha256 or "",
                        offset=held.offset,
                    ),
                    central=central,
                    signer=signer,
                )
                answer = await stub.ReceiveFile(
                    self._messages(f, header, sealer, held.offset),
                    timeout=self.files.settings.send_timeout_seconds,
                )
        except (grpc.aio.AioRpcError, Problem) as exc:
            code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else exc.slug
            log.info("file transfer interrupted", extra={"file_id": f.id, "code": code})
            return Outcome(False, await self._offset_after_cut(f), "central-unavailable")
        if answer.acknowledged and answer.sha256 == f.sha256:
            return Outcome(True, answer.offset)
        if answer.rule == "key_id":
            self.key = None
        return Outcome(False, answer.offset, f"central-rejected:{answer.rule or 'no-receipt'}")

    async def _offset_after_cut(self, f: IntakeFile) -> int:
        stub = pb_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        try:
            async with acting_as_service("intake", ActingFor(f.organisation_id, f.sender)):
                held = await stub.GetFileOffset(
                    pb.GetFileOffsetRequest(file_id=f.id, organisation_id=f.organisation_id)
                )
        except (grpc.aio.AioRpcError, Problem):
            return f.central_offset
        return int(held.offset)

    async def _messages(
        self, f: IntakeFile, header: pb.SealedFileHeader, sealer: FileSealer, offset: int
    ) -> AsyncIterator[pb.ReceiveFileRequest]:
        """The header, then the object's sealed chunks from ``offset``, read ahead: the
        next chunks are read, decrypted and sealed while gRPC sends the one before (in the
        event loop: AES-GCM alone costs less than a hop to a worker thread).
        Memory: :data:`READ_AHEAD` chunks and the store's segment."""
        yield pb.ReceiveFileRequest(header=header)
        async for message, plain_size in read_ahead(self._chunks(f, sealer, offset), READ_AHEAD):
            yield message
            metrics.BYTES_SENT.inc(plain_size)
        # The last byte is out: the file is sent, its acknowledgement still to come.
        await self.files.mark(f, state=SENT, sent_at=utcnow())

    async def _chunks(
        self, f: IntakeFile, sealer: FileSealer, offset: int
    ) -> AsyncIterator[tuple[pb.ReceiveFileRequest, int]]:
        """The object's bytes from ``offset`` in sealed ``send_chunk_bytes`` chunks, the
        last flagged; each with its plaintext's size."""

        async def from_offset() -> AsyncIterator[bytes]:
            skip = offset
            async for piece in self.files.objects.stream(f.object_key):
                if skip:
                    if len(piece) <= skip:
                        skip -= len(piece)
                        continue
                    piece, skip = piece[skip:], 0
                yield piece

        at = offset
        async for chunk, last in exact_pieces(from_offset(), self.files.settings.send_chunk_bytes):
            ciphertext = sealer.chunk(at, chunk, last)
            # Filled in place: a SealedFileChunk built apart is copied again into the request
            # (several ms per MiB with upb, against tens of microseconds).
            message = pb.ReceiveFileRequest()
            message.chunk.SetInParent()
            message.chunk.offset, message.chunk.ciphertext, message.chunk.last = at, ciphertext, last
            yield message, len(chunk)
            at += len(chunk)


async def read_ahead(source: AsyncIterator[T], depth: int) -> AsyncIterator[T]:
    """``source``'s items, produced by a task of their own up to ``depth`` ahead of the
    consumer; its failure is raised here, and closing this generator cancels it."""
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            async for item in source:
                await queue.put((True, item))
        except Exception as exc:
            await queue.put((False, exc))
        else:
            await queue.put((False, None))

    task = asyncio.create_task(produce())
    try:
        while True:
            ok, item = await queue.get()
            if not ok:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def send(files: Files, sender: CentralSender, file_id: str, now: datetime | None = None) -> str:
    """One attempt at sending a linked (or sent, unacknowledged) file; the state it is in
    afterwards. Raises :class:`Waiting` when it cannot go now (the job is deferred)."""
    async with files.db.system_session() as session:
        f = await session.get(IntakeFile, file_id)
        if f is None or f.state not in (LINKED, SENT):
            return f.state if f is not None else ""
        registration_ids = sorted(
            set(
                (
                    await session.execute(select(FileLink.registration_id).where(FileLink.file_id == file_id))
                ).scalars()
            )
        )
        session.expunge(f)
    try:
        technical_ids = await sender.technical_ids(f, registration_ids)
        await files.mark(f, send_attempts=f.send_attempts + 1)
        outcome = await sender.attempt(f, technical_ids)
    except Waiting as waiting:
        await files.mark(f, send_problem=waiting.reason)
        metrics.SEND_ATTEMPTS.labels(waiting.reason).inc()
        raise
    if not outcome.acknowledged:
        # Sent stays only when the central side holds every byte (its acknowledgement is
        # what is missing); a cut sends the file back to linked, resumed from the offset.
        whole = outcome.offset >= (f.size or 0)
        await files.mark(
            f,
            central_offset=outcome.offset,
            send_problem=outcome.problem,
            state=SENT if whole else LINKED,
            sent_at=IntakeFile.sent_at if whole else None,
        )
        metrics.SEND_ATTEMPTS.labels(outcome.problem.split(":")[0]).inc()
        log.info(
            "file not acknowledged",
            extra={"organisation_id": f.organisation_id, "file_id": f.id, "problem": outcome.problem},
        )
        raise Waiting(outcome.problem)
    metrics.SEND_ATTEMPTS.labels("acknowledged").inc()
    await acknowledged(files, f, outcome.offset, now)
    return ACKNOWLEDGED


async def acknowledged(files: Files, f: IntakeFile, offset: int, now: datetime | None = None) -> None:
    """The central platform holds the file: it leaves the drop area (the seed's daily load
    "deletes it from the drop area"), kept under ``intake/sent/`` for the retention."""
    target = sent_key(f)
    try:
        await files.objects.move(f.object_key, target)
    except ObjectNotFound:
        if await files.objects.stat(target) is None:
            raise
    when = now or utcnow()
    async with files.db.system_session() as session:
        await session.execute(
            update(IntakeFile)
            .where(IntakeFile.id == f.id)
            .values(
                state=ACKNOWLEDGED,
                object_key=target,
                acknowledged_at=when,
                sent_at=func.coalesce(IntakeFile.sent_at, when),
                central_offset=offset,
                send_problem="",
                updated_at=when,
            )
        )
    log.info("file acknowledged", extra={"organisation_id": f.organisation_id, "file_id": f.id})


async def purge_sent(files: Files, now: datetime | None = None, limit: int = 500) -> int:
    """Acknowledged files' objects are deleted ``sent_retention_days`` after the
    acknowledgement; the rows stay (digest, dates) with ``content_purged_at``."""
    now = now or utcnow()
    cutoff = now - timedelta(days=files.settings.sent_retention_days)
    async with files.db.system_session() as session:
        due = (
            await session.execute(
                select(IntakeFile.id, IntakeFile.object_key)
                .where(
                    IntakeFile.state == ACKNOWLEDGED,
                    IntakeFile.content_purged_at.is_(None),
                    IntakeFile.acknowledged_at < cutoff,
                )
                .limit(limit)
            )
        ).all()
    purged = await files.purge_contents(due, now)
    if purged:
        log.info("sent files purged", extra={"count": purged})
    return purged
