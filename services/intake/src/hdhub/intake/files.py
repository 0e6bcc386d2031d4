"""Received files, from the first byte to the daily load.

A transfer (SFTP or HTTP) streams into the object store through :class:`Transfer`: the
bytes go to the store as they arrive (multipart on S3, a temporary file on a folder
store; neither becomes a visible object before it is complete) while the content checks
read them on the way and the SHA-256 is computed. Nothing holds the file whole. A
transfer that is cut, too large or empty is aborted: no object, and the row says why.

A complete SFTP file waits as RECEIVED until the client moves it to ``Finished``
(HD4DP's rule); an HTTP upload is delivered when its request completes. Delivery applies
the name rules and gives ACCEPTED or REJECTED; an accepted file gets a link job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Row

from hdhub.common.db import Database, after_commit, new_id, utcnow
from hdhub.common.errors import FieldProblem, Problem, invalid
from hdhub.common.jobs import JobQueue
from hdhub.common.logging import SSIN_MASK
from hdhub.common.objectstore import CHUNK, ObjectNotFound, ObjectStore
from hdhub.common.paging import count
from hdhub.common.ssin import mask_ssins
from hdhub.common.wakeup import Wakeup
from hdhub.intake import metrics
from hdhub.intake.domain import checks
from hdhub.intake.domain.names import REGISTRIES, Registry, check_name, final_name
from hdhub.intake.settings import IntakeSettings
from hdhub.intake.store import (
    ABORTED,
    ACCEPTED,
    ACKNOWLEDGED,
    LINKED,
    LOADED,
    RECEIVED,
    RECEIVING,
    REJECTED,
    SENT,
    FileLink,
    FileRecord,
    IntakeFile,
    Job,
)

log = logging.getLogger("hdhub.intake.files")

#: Progress is written to the row at most this often (bytes, and seconds), for the upload
#: page and REST.
PROGRESS_EVERY = 8 * 1024 * 1024
PROGRESS_SECONDS = 1.0
LINK_JOB = "link"
#: The states of files that count (checked, then linked and on their way).
COUNTING = (ACCEPTED, LINKED, SENT, ACKNOWLEDGED, LOADED)
SEND_JOB = "send-file"


#: How a refusal is answered over HTTP and gRPC: status and the field it concerns.
REFUSALS = {
    "unknown-registry": (404, "registry"),
    "file-name": (422, "filename"),
    "too-large": (413, "body"),
    "empty-file": (422, "body"),
}


class TransferRefused(Exception):
    """A transfer the sender must be told about: ``rule`` is stable, ``message`` plain."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule, self.message = rule, message

    def problem(self) -> Problem:
        """The refusal as the web upload answers it (``file-<rule>``)."""
        if self.rule == "connection-lost":
            return Problem(
                400, "file-connection-lost", "The upload was cut", "Nothing was stored; send the file again."
            )
        status, field = REFUSALS.get(self.rule, (422, "body"))
        if status == 422:
            return invalid(
                [FieldProblem(field, self.rule, self.message)],
                title="The file is refused",
                slug=f"file-{self.rule}",
            )
        return Problem(status, f"file-{self.rule}", "The file is refused", self.message)


class ConnectionCut(Exception):
    """The sender went away before the whole file arrived (raised by a body's iterator)."""


CUT = "the request ended before the whole file arrived; nothing was stored"


def drop_key(organisation_id: str, registry: str, file_id: str) -> str:
    return f"intake/drop/{organisation_id}/{registry}/{file_id}"


class Transfer:
    """One file on its way into the object store. Writes must come in order from offset
    0 (SFTP clients send them so; resuming a cut transfer is not supported: send again)."""

    def __init__(self, files: Files, row: IntakeFile, registry: Registry) -> None:
        self.files, self.row, self.registry = files, row, registry
        self.size = 0
        self.checker = checks.checker_for(registry.kind, final_name(row.filename))
        self._pending = bytearray()
        self._reported, self._reported_at = 0, 0.0
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=4)
        self._put = asyncio.create_task(
            files.objects.put(
                row.object_key,
                self._body(),
                content_type="text/csv" if registry.kind == "sequences" else "text/plain",
                metadata={
                    "organisation": row.organisation_id,
                    "registry": registry.folder,
                    "file-id": row.id,
                },
            )
        )
        self.finished = False

    @property
    def id(self) -> str:
        return self.row.id

    async def _body(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def _send(self, item: bytes | BaseException | None) -> None:
        """Hand a chunk to the store, waiting while it is behind (back-pressure reaches
        the client through the SSH window or the HTTP body), surfacing its failure."""
        if self._put.done():
            self._storage_failed()
        if not self._queue.full():  # the store keeps up: no task, no wait (once per MiB)
            self._queue.put_nowait(item)
            return
        sending = asyncio.ensure_future(self._queue.put(item))
        done, _ = await asyncio.wait({sending, self._put}, return_when=asyncio.FIRST_COMPLETED)
        if sending not in done:
            sending.cancel()
            self._storage_failed()

    def _storage_failed(self) -> NoReturn:
        """The store's upload ended early: logged for operators, told plainly to the sender
        (the store's own error text is no business of an SFTP client)."""
        error = None if self._put.cancelled() else self._put.exception()
        log.error(
            "object store did not take the file",
            extra={
                "organisation_id": self.row.organisation_id,
                "file_id": self.row.id,
                "error": type(error).__name__,
            },
        )
        raise TransferRefused("storage", "the object store did not take the file; nothing was stored")

    async def write(self, offset: int, data: bytes) -> None:
        if self.finished:
            raise TransferRefused("closed", "the file is closed")
        if offset != self.size:
            raise TransferRefused(
                "out-of-order",
                "writes must follow each other from the start (resuming is not supported: send the file again)",
            )
        if self.size + len(data) > self.files.settings.max_file_bytes:
            await self.abort(
                "too-large",
                f"the file is larger than the limit of {self.files.settings.max_file_bytes} bytes",
            )
            raise TransferRefused(
                "too-large",
                f"the file is larger than the limit of {self.files.settings.max_file_bytes} bytes",
            )
        self.size += len(data)
        self.checker.feed(data)
        self._pending += data
        # Whole CHUNKs, whatever the client's write size (OpenSSH's is 255 KiB): the store
        # seals such pieces as they are, with no copy of its own.
        while len(self._pending) >= CHUNK:
            with memoryview(self._pending) as view:
                chunk = bytes(view[:CHUNK])
            del self._pending[:CHUNK]
            await self._send(chunk)
        if self.size - self._reported >= PROGRESS_EVERY:
            # SFTP handles one request at a time: the UPDATE stalls the stream while it
            # runs, so a fast transfer writes its progress once a second, not per 8 MiB.
            now = time.monotonic()
            if now - self._reported_at >= PROGRESS_SECONDS:
                self._reported, self._reported_at = self.size, now
                await self.files.progress(self.row, self.size)

    async def commit(self, *, deliver_as: str | None = None) -> IntakeFile:
        """The file is complete (SFTP close, end of the HTTP body): store it for good.
        With ``deliver_as`` (HTTP) it is delivered at once under that name."""
        if self.finished:
            return self.row
        if self.size == 0:
            await self.abort("empty-file", "zero-byte files are refused: nothing was stored")
            raise TransferRefused("empty-file", "zero-byte files are refused: nothing was stored")
        try:
            if self._pending:
                await self._send(bytes(self._pending))
                self._pending.clear()
            await self._send(None)
            stored = await self._put
        except TransferRefused:
            await self.abort("storage", "the object store did not take the file; nothing was stored")
            raise
        except Exception as exc:
            await self.abort("storage", "the object store did not take the file; nothing was stored")
            log.error(
                "object store did not complete the file",
                extra={"file_id": self.row.id, "error": type(exc).__name__},
            )
            raise TransferRefused(
                "storage", "the object store did not take the file; nothing was stored"
            ) from None
        except BaseException:
            await self.abort("storage", "the object store did not take the file; nothing was stored")
            raise
        self.finished = True
        verdict = self.checker.finish()
        return await self.files.received(
            self.row, stored.size, stored.sha256 or "", verdict, deliver_as=deliver_as
        )

    async def abort(self, rule: str, reason: str) -> None:
        """Drop the transfer: the store discards what it had (no object appears)."""
        if self.finished:
            return
        self.finished = True
        if not self._put.done():
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(TransferRefused(rule, reason))
            if self._queue.full():  # the store is stuck: stop it the hard way
                self._put.cancel()
        with contextlib.suppress(BaseException):
            await self._put
        # A put that had already completed (abort after the last byte) is removed again.
        with contextlib.suppress(Exception):
            if self._put.done() and not self._put.cancelled() and self._put.exception() is None:
                await self.files.objects.delete(self.row.object_key)
        await self.files.aborted(self.row, rule, reason, self.size)


@dataclass(frozen=True)
class Listing:
    files: list[IntakeFile]
    links: dict[str, list[FileLink]]
    records: dict[str, tuple[int, int]]  # file id -> (recordnames, linked recordnames)
    total: int  # files matching the filters, on every page


class Files:
    """Intake's files: transfers, delivery, linking (see ``linking``), the daily load."""

    def __init__(self, db: Database, objects: ObjectStore, settings: IntakeSettings) -> None:
        self.db, self.objects, self.settings = db, objects, settings
        self.jobs = JobQueue(db, Job, service="intake")
        #: The keys and signers for sending files to the central platform (``central``).
        self.central_sender: Any = None
        from hdhub.common.config import platform

        self.wake = Wakeup("intake", platform().redis_url)

    # --- transfers -----------------------------------------------------------------------

    async def receive(
        self,
        *,
        organisation_id: str,
        registry: str,
        filename: str,
        source: str,
        sender: str,
        body: AsyncIterator[bytes],
    ) -> IntakeFile:
        """A file sent in one go (the web upload, over HTTP or gRPC): streamed into the
        store as SFTP files are, and delivered under ``filename`` once ``body`` ends. A
        refusal is a :class:`TransferRefused` (the file is listed with its rule); ``body``
        raising :class:`ConnectionCut` or being cancelled leaves nothing stored."""
        transfer = await self.begin(
            organisation_id=organisation_id,
            registry=registry,
            filename=filename,
            source=source,
            sender=sender,
        )
        try:
            async for chunk in body:
                if chunk:
                    await transfer.write(transfer.size, chunk)
            return await transfer.commit(deliver_as=filename)
        except TransferRefused:
            raise
        except (ConnectionCut, asyncio.CancelledError) as cut:
            await transfer.abort("connection-lost", CUT)
            if isinstance(cut, asyncio.CancelledError):
                raise
            raise TransferRefused("connection-lost", CUT) from None
        except BaseException:
            await transfer.abort("storage", "the file could not be stored; nothing was kept")
            raise

    async def begin(
        self, *, organisation_id: str, registry: str, filename: str, source: str, sender: str
    ) -> Transfer:
        reg = REGISTRIES.get(registry)
        if reg is None:
            raise TransferRefused("unknown-registry", f"{registry} is no registry folder (NGS, HIV_SEQUENCE)")
        try:
            # Over SFTP a temporary name (WinSCP's) is held to the name it will take.
            check_name(reg, final_name(filename) if source == "sftp" else filename)
        except ValueError as exc:
            # Kept as an aborted file: OpenSSH's sftp prints only "Failure", so the files
            # listing is where the sender reads why.
            await self.refused_name(
                organisation_id=organisation_id,
                registry=reg.folder,
                filename=filename,
                source=source,
                sender=sender,
                reason=str(exc),
            )
            raise TransferRefused("file-name", str(exc)) from None
        file_id = new_id()
        row = IntakeFile(
            id=file_id,
            organisation_id=organisation_id,
            registry_folder=reg.folder,
            filename=filename,
            source=source,
            sender=sender,
            state=RECEIVING,
            object_key=drop_key(organisation_id, reg.folder, file_id),
        )
        async with self.db.session([organisation_id]) as session:
            session.add(row)
        log.info(
            "transfer started",
            extra={
                "organisation_id": organisation_id,
                "file_id": file_id,
                "registry": reg.folder,
                "source": source,
            },
        )
        return Transfer(self, row, reg)

    async def refused_name(
        self, *, organisation_id: str, registry: str, filename: str, source: str, sender: str, reason: str
    ) -> None:
        """Record a transfer refused for its name (nothing stored): an aborted file whose
        name shows control characters as ``?``, an SSIN in it as ``[redacted-ssin]`` (the
        file-name rule refuses names carrying one: the listing must not keep it either),
        and keeps at most 255 characters."""
        shown = mask_ssins("".join(c if c.isprintable() else "?" for c in filename), SSIN_MASK)[:255]
        file_id = new_id()
        async with self.db.session([organisation_id]) as session:
            session.add(
                IntakeFile(
                    id=file_id,
                    organisation_id=organisation_id,
                    registry_folder=registry,
                    filename=shown,
                    source=source,
                    sender=sender,
                    state=ABORTED,
                    rule="file-name",
                    reason=reason,
                    object_key=drop_key(organisation_id, registry, file_id),
                )
            )
        metrics.TRANSFERS.labels(source, "file-name").inc()

    async def progress(self, row: IntakeFile, size: int) -> None:
        async with self.db.session([row.organisation_id]) as session:
            await session.execute(
                update(IntakeFile)
                .where(IntakeFile.id == row.id)
                .values(bytes_received=size, updated_at=utcnow())
            )

    async def aborted(self, row: IntakeFile, rule: str, reason: str, size: int) -> None:
        async with self.db.session([row.organisation_id]) as session:
            await session.execute(
                update(IntakeFile)
                .where(IntakeFile.id == row.id)
                .values(state=ABORTED, rule=rule, reason=reason, bytes_received=size, updated_at=utcnow())
            )
        row.state, row.rule, row.reason = ABORTED, rule, reason
        metrics.TRANSFERS.labels(row.source, rule).inc()
        log.info(
            "transfer aborted",
            extra={"organisation_id": row.organisation_id, "file_id": row.id, "rule": rule},
        )

    async def received(
        self, row: IntakeFile, size: int, sha256: str, verdict: checks.Verdict, *, deliver_as: str | None
    ) -> IntakeFile:
        now = utcnow()
        metrics.BYTES_RECEIVED.labels(row.source).inc(size)
        metrics.TRANSFERS.labels(row.source, "received").inc()
        async with self.db.session([row.organisation_id]) as session:
            f = await session.get(IntakeFile, row.id)
            assert f is not None
            f.size, f.bytes_received, f.sha256, f.received_at, f.updated_at = size, size, sha256, now, now
            f.content_ok, f.rule, f.reason = verdict.accepted, verdict.rule, verdict.message
            f.filename_value, f.record_count = verdict.filename_value, len(verdict.recordnames)
            f.state = RECEIVED
            for name in verdict.recordnames:
                session.add(FileRecord(organisation_id=f.organisation_id, file_id=f.id, recordname=name))
            # The same name sent again before Finished replaces the earlier copy.
            replaced = await self._replace_waiting(session, f, f.filename)
            if deliver_as is not None:
                self._deliver(session, f, deliver_as)
        for key in replaced:
            with contextlib.suppress(Exception):
                await self.objects.delete(key)
        log.info(
            "file received",
            extra={
                "organisation_id": f.organisation_id,
                "file_id": f.id,
                "size": size,
                "content_ok": verdict.accepted,
            },
        )
        return f

    async def mark(self, f: IntakeFile, **values: Any) -> None:
        """Set columns of a file's row (its way to the central platform)."""
        async with self.db.system_session() as session:
            await session.execute(
                update(IntakeFile).where(IntakeFile.id == f.id).values(**values, updated_at=utcnow())
            )

    # --- the SFTP folder view and delivery --------------------------------------------------

    async def waiting(self, organisation_id: str, registry: str) -> Sequence[IntakeFile]:
        """Files complete in a registry folder and not yet moved to Finished."""
        async with self.db.session([organisation_id]) as session:
            rows = await session.execute(
                select(IntakeFile)
                .where(IntakeFile.registry_folder == registry, IntakeFile.state == RECEIVED)
                .order_by(IntakeFile.filename)
            )
            return list(rows.scalars())

    async def waiting_file(self, organisation_id: str, registry: str, filename: str) -> IntakeFile | None:
        async with self.db.session([organisation_id]) as session:
            rows = await session.execute(
                select(IntakeFile)
                .where(
                    IntakeFile.registry_folder == registry,
                    IntakeFile.filename == filename,
                    IntakeFile.state == RECEIVED,
                )
                .order_by(IntakeFile.received_at.desc())
                .limit(1)
            )
            return rows.scalars().first()

    async def rename_waiting(self, organisation_id: str, file_id: str, name: str) -> IntakeFile:
        """A file waiting in its folder takes its final ``name`` there (WinSCP's rename of
        ``<name>.filepart``); a file already waiting under that name is replaced, as when
        the same name is sent again."""
        async with self.db.session([organisation_id]) as session:
            f = await session.get(IntakeFile, file_id)
            if f is None or f.state != RECEIVED:
                raise TransferRefused("not-waiting", "the file is no longer waiting in the folder")
            replaced = await self._replace_waiting(session, f, name)
            f.filename, f.updated_at = name, utcnow()
        for key in replaced:
            with contextlib.suppress(Exception):
                await self.objects.delete(key)
        return f

    async def withdraw(self, organisation_id: str, file_id: str) -> None:
        """Remove a file not yet moved to Finished (the sender changed its mind)."""
        async with self.db.session([organisation_id]) as session:
            f = await session.get(IntakeFile, file_id)
            if f is None or f.state != RECEIVED:
                return
            key = f.object_key
            await self._drop_rows(session, [f.id])
        with contextlib.suppress(Exception):
            await self.objects.delete(key)

    async def deliver(self, organisation_id: str, file_id: str, name: str) -> IntakeFile:
        """The sender moved the file to Finished (under ``name``): it counts from now on."""
        async with self.db.session([organisation_id]) as session:
            f = await session.get(IntakeFile, file_id)
            if f is None or f.state != RECEIVED:
                raise TransferRefused("not-waiting", "the file is no longer waiting to be moved to Finished")
            self._deliver(session, f, name)
        return f

    def _deliver(self, session: Any, f: IntakeFile, name: str) -> None:
        reg = REGISTRIES[f.registry_folder]
        f.filename, f.delivered_at, f.updated_at = name, utcnow(), utcnow()
        problem = None
        if f.content_ok:
            try:
                check_name(reg, name)
            except ValueError as exc:
                problem = checks.Rejected("file-name", str(exc))
            problem = problem or checks.delivery_problem(reg.kind, name, f.filename_value)
        if not f.content_ok or problem is not None:
            f.state = REJECTED
            if problem is not None:
                f.rule, f.reason = problem.rule, problem.message
        else:
            # (A move refused earlier for its name said why in ``reason``: no longer so.)
            f.state, f.unmatched, f.reason = ACCEPTED, True, ""
            self.jobs.enqueue(
                session, LINK_JOB, organisation_id=f.organisation_id, subject_id=f.id, actor=f.sender
            )
            after_commit(session, self.wake.notify)
        log.info(
            "file delivered",
            extra={"organisation_id": f.organisation_id, "file_id": f.id, "state": f.state, "rule": f.rule},
        )

    # --- reading for REST and gRPC ------------------------------------------------------------

    async def listing(
        self,
        organisation_id: str,
        *,
        state: str | None = None,
        registry: str | None = None,
        unmatched: bool | None = None,
        registration_id: str | None = None,
        file_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
        folders: Sequence[str] | None = None,
    ) -> Listing:
        """A page of an organisation's files, newest first, with their links and records;
        ``folders``: only the registry folders the caller is granted (None: every one)."""
        async with self.db.session([organisation_id]) as session:
            q = select(IntakeFile)
            if folders is not None:
                q = q.where(IntakeFile.registry_folder.in_(list(folders)))
            if state:
                q = q.where(IntakeFile.state == state)
            if registry:
                q = q.where(IntakeFile.registry_folder == registry)
            if unmatched is not None:
                q = q.where(IntakeFile.unmatched.is_(unmatched), IntakeFile.state.in_(COUNTING))
            if file_id:
                q = q.where(IntakeFile.id == file_id)
            if registration_id:
                q = q.where(
                    IntakeFile.id.in_(
                        select(FileLink.file_id).where(FileLink.registration_id == registration_id)
                    )
                )
            total = await count(session, q)
            q = q.order_by(IntakeFile.started_at.desc(), IntakeFile.id).limit(limit).offset(offset)
            files = list((await session.execute(q)).scalars())
            ids = [f.id for f in files]
            links: dict[str, list[FileLink]] = {}
            records: dict[str, tuple[int, int]] = {}
            if ids:
                for link in (
                    await session.execute(
                        select(FileLink).where(FileLink.file_id.in_(ids)).order_by(FileLink.id)
                    )
                ).scalars():
                    links.setdefault(link.file_id, []).append(link)
                for r in (
                    await session.execute(select(FileRecord).where(FileRecord.file_id.in_(ids)))
                ).scalars():
                    named, linked = records.get(r.file_id, (0, 0))
                    records[r.file_id] = (named + 1, linked + (r.registration_id is not None))
            return Listing(files, links, records, total)

    # --- housekeeping and the daily load -----------------------------------------------------

    async def abort_stale(self, now: datetime | None = None) -> int:
        """Transfers whose process died mid-way (no progress for a long time): aborted.
        Their store upload died with the process, so no object exists."""
        cutoff = (now or utcnow()) - timedelta(seconds=self.settings.stale_transfer_seconds)
        async with self.db.system_session() as session:
            result = await session.execute(
                update(IntakeFile)
                .where(IntakeFile.state == RECEIVING, IntakeFile.updated_at < cutoff)
                .values(
                    state=ABORTED,
                    rule="connection-lost",
                    reason="the transfer stopped midway; nothing was stored",
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def purge_refused(self, now: datetime | None = None, limit: int = 500) -> int:
        """Refused files' bytes are deleted once ``refused_retention_days`` have passed
        (rejected when delivered, or waiting in the SFTP folder with a failed content
        check); their rows stay, with the rule and reason. Idempotent, so two workers (or
        a run taken over after a crash) delete an object twice at worst and mark it once."""
        now = now or utcnow()
        cutoff = now - timedelta(days=self.settings.refused_retention_days)
        async with self.db.system_session() as session:
            due = (
                await session.execute(
                    select(IntakeFile.id, IntakeFile.object_key)
                    .where(
                        IntakeFile.content_purged_at.is_(None),
                        or_(
                            (IntakeFile.state == REJECTED) & (IntakeFile.updated_at < cutoff),
                            (IntakeFile.state == RECEIVED)
                            & IntakeFile.content_ok.is_(False)
                            & (IntakeFile.updated_at < cutoff),
                        ),
                    )
                    .limit(limit)
                )
            ).all()
        purged = await self.purge_contents(due, now)
        if purged:
            log.info("refused files purged", extra={"count": purged})
        return purged

    async def purge_contents(self, due: Sequence[Row[tuple[str, str]]], now: datetime) -> int:
        """Delete the objects of ``due`` (id, object key) and mark each row purged, once:
        how many rows were marked (an object already gone counts as deleted)."""
        purged = 0
        for file_id, key in due:
            with contextlib.suppress(ObjectNotFound):
                await self.objects.delete(key)
            async with self.db.system_session() as session:
                result = await session.execute(
                    update(IntakeFile)
                    .where(IntakeFile.id == file_id, IntakeFile.content_purged_at.is_(None))
                    .values(content_purged_at=now)
                )
                purged += int(getattr(result, "rowcount", 0) or 0)
        return purged

    async def _replace_waiting(self, session: Any, f: IntakeFile, name: str) -> list[str]:
        """Drop the other files waiting in ``f``'s folder under ``name``; their object keys,
        to delete once the session committed."""
        earlier = (
            (
                await session.execute(
                    select(IntakeFile).where(
                        IntakeFile.registry_folder == f.registry_folder,
                        IntakeFile.filename == name,
                        IntakeFile.state == RECEIVED,
                        IntakeFile.id != f.id,
                    )
                )
            )
            .scalars()
            .all()
        )
        await self._drop_rows(session, [e.id for e in earlier])
        return [e.object_key for e in earlier]

    @staticmethod
    async def _drop_rows(session: Any, file_ids: list[str]) -> None:
        # Explicitly: SQLite does not enforce the foreign keys' ON DELETE CASCADE.
        if file_ids:
            await session.execute(delete(FileRecord).where(FileRecord.file_id.in_(file_ids)))
            await session.execute(delete(FileLink).where(FileLink.file_id.in_(file_ids)))
            await session.execute(delete(IntakeFile).where(IntakeFile.id.in_(file_ids)))
