"""Exports: asked for over REST by a CSV Upload Manager, written by the registrations
worker as a durable job straight into the object store, downloaded through a link that
expires. Every step leaves an entry in the export's audit trail (``ExportEvent``).

Writing streams: rows are read in batches from a server-side cursor (on PostgreSQL
``COPY (SELECT ...) TO STDOUT``: CSV's cells formatted by SQL; for Parquet and XLSX typed
text parsed into Arrow batches), encoded batch by batch and sent to the store as a multipart
upload, sealed (exports hold SSINs). Nothing grows with the number of rows."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import hmac
import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, false, or_, select, update
from sqlalchemy.exc import IntegrityError

from hdhub.common.auth import Action, Principal, registry_not_granted
from hdhub.common.db import Database, after_commit, utcnow
from hdhub.common.errors import FieldProblem, Problem, forbidden, invalid, not_found
from hdhub.common.jobs import JobQueue
from hdhub.common.objectstore import CHUNK, ObjectStore
from hdhub.common.paging import count
from hdhub.common.wakeup import Wakeup
from hdhub.registrations.catalogue.service import Catalogue, CatalogueEntry
from hdhub.registrations.catalogue.versions import VersionState
from hdhub.registrations.exports import formats, xlsx
from hdhub.registrations.records.lifecycle import RegistrationStatus
from hdhub.registrations.store import Export, ExportEvent, Job, Registration

log = logging.getLogger("hdhub.registrations.exports")

EXPORT_JOB = "export"
#: The hourly retention sweep (one job per hour between all workers: its id is the hour).
SWEEP_JOB = "export.sweep"
#: Seconds between checks whether this hour's sweep is queued.
SWEEP_EVERY = 600.0
#: Exports whose files one sweep deletes at most (the next hour takes the rest).
SWEEP_LIMIT = 500
#: Statuses a filter may name (deleted registrations are never exported).
EXPORTABLE = tuple(s.value for s in RegistrationStatus if s is not RegistrationStatus.DELETED)
#: Seconds between progress writes (which also renew the job's lease).
PROGRESS_EVERY = 2.0


@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None

    def check(self) -> None:
        problems = [
            FieldProblem("status", "status", f"not a status one may export: {s[:40]}")
            for s in self.statuses
            if s not in EXPORTABLE
        ]
        for name, start, end in (
            ("created_to", self.created_from, self.created_to),
            ("updated_to", self.updated_from, self.updated_to),
        ):
            if start is not None and end is not None and end < start:
                problems.append(FieldProblem(name, "range", "the end is before the start"))
        if problems:
            raise invalid(problems)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": list(self.statuses)}
        for name in ("created_from", "created_to", "updated_from", "updated_to"):
            moment = getattr(self, name)
            out[name] = moment.isoformat() if moment is not None else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Filters:
        def moment(name: str) -> datetime | None:
            return datetime.fromisoformat(data[name]) if data.get(name) else None

        return cls(
            tuple(data.get("status") or ()),
            moment("created_from"),
            moment("created_to"),
            moment("updated_from"),
            moment("updated_to"),
        )


def rows_query(export: Export, filters: Filters) -> Select[Any]:
    """The registrations an export holds, in a stable order (creation, then id)."""
    r = Registration
    query = select(
        r.id,
        r.registration_code,
        r.business_key,
        r.status,
        r.dcd_version,
        r.created_at,
        r.updated_at,
        r.submitted_at,
        r.values,
    ).where(
        r.organisation_id == export.organisation_id,
        r.dcd_code == export.dcd_code,
        r.dcd_version == export.dcd_version,
        r.status != RegistrationStatus.DELETED.value,
    )
    if filters.statuses:
        query = query.where(r.status.in_(filters.statuses))
    if filters.created_from is not None:
        query = query.where(r.created_at >= filters.created_from)
    if filters.created_to is not None:
        query = query.where(r.created_at < filters.created_to)
    if filters.updated_from is not None:
        query = query.where(r.updated_at >= filters.updated_from)
    if filters.updated_to is not None:
        query = query.where(r.updated_at < filters.updated_to)
    return query.order_by(r.created_at, r.id)


def object_key(export: Export) -> str:
    return f"exports/{export.organisation_id}/{export.id}.{export.format}"


def filename(export: Export) -> str:
    return f"{export.dcd_code}_{export.dcd_version}_{export.created_at:%Y%m%d%H%M%S}.{export.format}"


class Exports:
    """The exports room of the registrations service."""

    def __init__(
        self,
        db: Database,
        catalogue: Catalogue,
        objects: ObjectStore,
        wake: Wakeup,
        *,
        secret: bytes,
        link_minutes: float = 15.0,
        batch_rows: int = 10_000,
        retention_days: float = 7.0,
    ) -> None:
        self.db, self.catalogue, self.objects, self.wake = db, catalogue, objects, wake
        self.jobs = JobQueue(db, Job, service="registrations", lease=timedelta(seconds=60))
        self._key = hashlib.sha256(b"hdhub-export-link:" + secret).digest()
        self.link_minutes, self.batch_rows = link_minutes, batch_rows
        self.retention_days = retention_days
        self._next_sweep = 0.0

    # -- asking, reading ---------------------------------------------------------------

    @staticmethod
    def organisations(principal: Principal) -> list[str]:
        """The organisations whose registrations the caller may export."""
        return principal.organisations_for(Action.EXPORT)

    async def request(
        self,
        principal: Principal,
        *,
        organisation_id: str,
        dcd_code: str,
        version: str | None,
        fmt: str,
        filters: Filters,
    ) -> Export:
        """An export asked for: the row, its audit entry and its job, in one transaction."""
        if not principal.can(Action.EXPORT, organisation_id) or principal.is_service():
            raise forbidden()
        filters.check()
        entry = await self.catalogue.get(dcd_code, version)
        if await self.catalogue.state_of(entry) is VersionState.DRAFT:
            # Nobody registers against a draft: refused as a version that does not exist.
            raise not_found(f"DCD {dcd_code} version {entry.version}")
        granted = principal.registries_in(organisation_id)
        if granted is not None and entry.definition.project_code not in granted:
            # A CSV Upload Manager exports the registries it was granted, no others.
            raise registry_not_granted(entry.definition.project_code)
        async with self.db.session([organisation_id]) as session:
            export = Export(
                organisation_id=organisation_id,
                dcd_code=entry.definition.dcd_code,
                dcd_version=entry.version,
                format=fmt,
                filters=filters.as_json(),
                requested_by=principal.username,
                state="queued",
                rows_total=0,
                rows_done=0,
                size=0,
                object_key="",
                problem="",
                created_at=utcnow(),
            )
            session.add(export)
            await session.flush()
            session.add(
                ExportEvent(
                    organisation_id=organisation_id,
                    export_id=export.id,
                    action="export.requested",
                    actor=principal.username,
                    detail={
                        "dcd": export.dcd_code,
                        "version": export.dcd_version,
                        "format": fmt,
                        **filters.as_json(),
                    },
                )
            )
            self.jobs.enqueue(
                session,
                EXPORT_JOB,
                organisation_id=organisation_id,
                subject_id=export.id,
                actor=principal.username,
            )
            after_commit(session, self.wake.notify)
        log.info("export requested", extra={"export_id": export.id, "format": fmt, "dcd": export.dcd_code})
        return export

    async def listing(
        self, principal: Principal, organisations: list[str], *, limit: int, offset: int
    ) -> tuple[list[Export], int]:
        """Exports of these organisations (among the caller's), newest first: in each, of
        the registries granted to the caller there."""
        organisations = [o for o in organisations if o in self.organisations(principal)]
        granted = {o: await self.catalogue.granted_dcds(principal, o) for o in organisations}
        seen = [
            Export.organisation_id == o
            if dcds is None
            else and_(Export.organisation_id == o, Export.dcd_code.in_(sorted(dcds)))
            for o, dcds in granted.items()
        ]
        async with self.db.session(organisations) as session:
            query = select(Export).where(
                self.db.among(Export.organisation_id, organisations), or_(false(), *seen)
            )
            total = await count(session, query)
            window = query.order_by(Export.created_at.desc(), Export.id).limit(limit).offset(offset)
            return list((await session.execute(window)).scalars()), total

    async def get(self, principal: Principal, export_id: str) -> Export:
        """One export the caller may see: of an organisation it exports for, of a registry
        granted to it there; any other is unknown (404)."""
        organisations = [] if principal.is_service() else self.organisations(principal)
        if not organisations:
            raise not_found("Export")
        async with self.db.session(organisations) as session:
            export = await session.get(Export, export_id)
        if export is None or export.organisation_id not in organisations:
            raise not_found("Export")
        dcds = await self.catalogue.granted_dcds(principal, export.organisation_id)
        if dcds is not None and export.dcd_code not in dcds:
            raise not_found("Export")
        return export

    async def events(self, organisation_id: str, export_id: str) -> list[ExportEvent]:
        async with self.db.session([organisation_id]) as session:
            query = select(ExportEvent).where(ExportEvent.export_id == export_id).order_by(ExportEvent.id)
            return list((await session.execute(query)).scalars())

    async def link(self, export: Export, principal: Principal) -> tuple[str, datetime]:
        """A download token for a ready export, valid ``link_minutes``; audited."""
        expires = int(time.time() + self.link_minutes * 60)
        token = f"{export.id}.{expires}.{self._sign(export.id, expires)}"
        async with self.db.session([export.organisation_id]) as session:
            session.add(
                ExportEvent(
                    organisation_id=export.organisation_id,
                    export_id=export.id,
                    action="export.link_issued",
                    actor=principal.username,
                    detail={"expires": expires},
                )
            )
        return token, datetime.fromtimestamp(expires).astimezone()

    def _sign(self, export_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{export_id}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    async def open_link(self, token: str) -> tuple[Export, AsyncIterator[bytes]]:
        """The export a link names and its file; 404 for a link that is not ours, 410 once
        it has expired. Each download is audited."""
        export_id, _, rest = token.partition(".")
        expires_text, _, signature = rest.partition(".")
        if not (expires_text.isascii() and expires_text.isdigit() and len(expires_text) < 12):
            raise not_found("Export")
        expires = int(expires_text)
        if str(expires) != expires_text:  # only the form the link was issued in ("0123" is not "123")
            raise not_found("Export")
        if not hmac.compare_digest(signature.encode(), self._sign(export_id, expires).encode()):
            raise not_found("Export")
        if time.time() > expires:
            raise Problem(410, "export-link-expired", "The download link has expired", "Ask for a new link.")
        async with self.db.system_session() as session:
            export = await session.get(Export, export_id)
            if export is None or export.state != "ready":
                raise not_found("Export")
            session.add(
                ExportEvent(
                    organisation_id=export.organisation_id,
                    export_id=export.id,
                    action="export.downloaded",
                    actor="link",
                    detail={"expires": expires},
                )
            )
        return export, self.objects.stream(export.object_key)

    # -- writing -----------------------------------------------------------------------

    async def process_jobs(self) -> int:
        """Claim one due export job and write it (or this hour's retention sweep); the
        number claimed."""
        await self.schedule_sweep()
        jobs = await self.jobs.claim([EXPORT_JOB, SWEEP_JOB], limit=1)
        for job in jobs:
            if job.kind == SWEEP_JOB:
                await self._sweep_job(job.id)
                continue
            try:
                await self.produce(str(job.subject_id), job_id=job.id, worker=str(job.worker))
            except _LeaseLost:
                log.warning("export lease lost", extra={"export_id": job.subject_id})
            except Exception as exc:  # retried with back-off, then parked
                log.warning(
                    "export failed", extra={"export_id": job.subject_id, "error_type": type(exc).__name__}
                )
                outcome = await self.jobs.fail(job.id, type(exc).__name__)
                if outcome == "parked":
                    await self._end(str(job.subject_id), "failed", problem=type(exc).__name__)
        return len(jobs)

    async def produce(
        self, export_id: str, *, job_id: str | None = None, worker: str | None = None
    ) -> Export:
        """Write one export into the object store and mark it ready."""
        async with self.db.system_session() as session:
            export = await session.get(Export, export_id)
            if export is None:
                raise not_found("Export")
            if export.state in ("ready", "failed"):
                if job_id is not None:
                    await self.jobs.finish(session, job_id)
                return export
            export.state, export.rows_done = "running", 0
            session.expunge(export)
        entry = await self.catalogue.get(export.dcd_code, export.dcd_version)
        filters = Filters.from_json(export.filters)
        async with self.db.session([export.organisation_id]) as session:
            total = await count(session, rows_query(export, filters))
        progress = _Progress(self, export.id, total, job_id, worker)
        await progress.write(0, force=True)
        body = self._body(export, entry, filters, progress)
        stored = await self.objects.put(
            object_key(export), body, content_type=formats.MEDIA_TYPES[export.format]
        )
        async with self.db.system_session() as session:
            done = await session.get(Export, export.id)
            assert done is not None
            done.state, done.rows_done, done.rows_total = "ready", progress.rows, progress.rows
            done.size, done.object_key, done.ready_at = stored.size, object_key(export), utcnow()
            session.add(
                ExportEvent(
                    organisation_id=export.organisation_id,
                    export_id=export.id,
                    action="export.ready",
                    actor="hdhub",
                    detail={"rows": progress.rows, "size": stored.size},
                )
            )
            if job_id is not None:
                await self.jobs.finish(session, job_id)
        return done

    # -- retention (docs/exports.md, "Retention") ------------------------------------------

    async def schedule_sweep(self, now: datetime | None = None) -> bool:
        """Queue this hour's retention sweep, once between all workers (the job's id is the
        hour); looked at every :data:`SWEEP_EVERY` seconds. True if this call queued it."""
        if time.monotonic() < self._next_sweep:
            return False
        self._next_sweep = time.monotonic() + SWEEP_EVERY
        slot = (now or utcnow()).strftime("export-sweep-%Y%m%d%H")
        try:
            async with self.db.system_session() as session:
                if await session.get(Job, slot) is not None:
                    return False
                self.jobs.enqueue(session, SWEEP_JOB, subject_id=slot, job_id=slot)
        except IntegrityError:  # another worker queued it first
            return False
        return True

    async def _sweep_job(self, job_id: str) -> None:
        try:
            await self.sweep()
        except Exception as exc:  # retried with back-off, then parked for the operator
            log.warning("export sweep failed", extra={"error_type": type(exc).__name__})
            await self.jobs.fail(job_id, type(exc).__name__)
            return
        async with self.db.system_session() as session:
            await self.jobs.finish(session, job_id)

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete the files of exports ready longer than ``retention_days`` ago: the object
        first, then the export is marked ``expired`` (no link is issued for it again, an
        issued one answers 404) with an ``export.expired`` audit entry, in one transaction
        per export. The export's row and its audit trail stay: who exported what, and
        when, outlives the file. Idempotent: deleting a deleted object changes nothing,
        and an export already expired is not taken again. Returns how many expired."""
        cutoff = (now or utcnow()) - timedelta(days=self.retention_days)
        async with self.db.system_session() as session:
            due = (
                await session.execute(
                    select(Export.id, Export.object_key)
                    .where(Export.state == "ready", Export.ready_at < cutoff)
                    .order_by(Export.ready_at)
                    .limit(SWEEP_LIMIT)
                )
            ).all()
        expired = 0
        for export_id, key in due:
            if key:
                await self.objects.delete(key)
            async with self.db.system_session() as session:
                export = await session.get(Export, export_id, with_for_update=True)
                if export is None or export.state != "ready":
                    continue
                export.state, export.object_key = "expired", ""
                session.add(
                    ExportEvent(
                        organisation_id=export.organisation_id,
                        export_id=export.id,
                        action="export.expired",
                        actor="hdhub",
                        detail={"retention_days": self.retention_days, "size": export.size},
                    )
                )
                expired += 1
        if expired:
            log.info("export files deleted after their retention", extra={"count": expired})
        return expired

    async def _end(self, export_id: str, state: str, *, problem: str) -> None:
        async with self.db.system_session() as session:
            export = await session.get(Export, export_id)
            if export is not None:
                export.state, export.problem = state, problem
                session.add(
                    ExportEvent(
                        organisation_id=export.organisation_id,
                        export_id=export.id,
                        action="export.failed",
                        actor="hdhub",
                        detail={"problem": problem},
                    )
                )

    def _body(
        self, export: Export, entry: CatalogueEntry, filters: Filters, progress: _Progress
    ) -> AsyncIterator[bytes]:
        if export.format == "csv":
            if self.db.is_postgres:
                return self._csv_by_copy(export, entry, filters, progress)
            return self._csv_by_rows(export, entry, filters, progress)
        if export.format == "xlsx":
            return self._xlsx(export, entry, filters, progress)
        if self.db.is_postgres:
            return self._parquet_by_copy(export, entry, filters, progress)
        return self._parquet(export, entry, filters, progress)

    async def _batches(self, export: Export, filters: Filters) -> AsyncIterator[list[Any]]:
        """The export's registrations (rows of columns, no ORM objects), ``batch_rows`` at a
        time, from a server-side cursor."""
        async with self.db.session([export.organisation_id]) as session:
            query = rows_query(export, filters).execution_options(yield_per=self.batch_rows)
            result = await session.stream(query)
            async for batch in result.partitions():
                yield list(batch)

    async def _csv_by_rows(
        self, export: Export, entry: CatalogueEntry, filters: Filters, progress: _Progress
    ) -> AsyncIterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=";", lineterminator="\n")
        writer.writerow(formats.csv_header(entry.definition))
        yield "\ufeff".encode() + out.getvalue().encode()
        row = formats.csv_row_writer(entry.definition)
        async for batch in self._batches(export, filters):
            out.seek(0)
            out.truncate()
            writer.writerows(row(r.values, r.status) for r in batch)
            yield out.getvalue().encode()
            await progress.write(progress.rows + len(batch))

    async def _csv_by_copy(
        self, export: Export, entry: CatalogueEntry, filters: Filters, progress: _Progress
    ) -> AsyncIterator[bytes]:
        out = io.StringIO()
        csv.writer(out, delimiter=";", lineterminator="\n").writerow(formats.csv_header(entry.definition))
        yield "\ufeff".encode() + out.getvalue().encode()
        where = _literal_where(export, filters)
        statement = (
            f"COPY ({formats.csv_select_sql(entry.definition, where)}) "
            "TO STDOUT WITH (FORMAT csv, DELIMITER ';', QUOTE '\"')"
        )
        async with self.db.session([export.organisation_id]) as session:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            async with driver.cursor() as cursor:
                async with cursor.copy(statement) as copy:
                    pending: list[bytes] = []
                    size = lines = 0
                    async for data in copy:
                        chunk = bytes(data)
                        pending.append(chunk)
                        size += len(chunk)
                        lines += chunk.count(b"\n")
                        if size >= CHUNK:
                            yield b"".join(pending)
                            pending, size = [], 0
                            await progress.write(min(lines, progress.total))
                    if pending:
                        yield b"".join(pending)
                rows = cursor.rowcount
        await progress.write(rows if rows >= 0 else progress.total, force=True)

    async def _xlsx(
        self,
        export: Export,
        entry: CatalogueEntry,
        filters: Filters,
        progress: _Progress,
        *,
        by_copy: bool | None = None,
    ) -> AsyncIterator[bytes]:
        """XLSX written directly (:mod:`.xlsx`): on PostgreSQL the rows' XML is built by
        Arrow from the batches of :meth:`_copy_batches`, elsewhere by the Python twin;
        deflated into the ZIP in a thread while the next batch is read and built, handed
        to the store as it grows."""
        sink = _Drain()
        book = xlsx.SheetZip(sink, export.dcd_code[:31], xlsx.header_row(entry.definition))
        if self.db.is_postgres if by_copy is None else by_copy:
            import pyarrow as pa

            columns = xlsx.sheet_columns(entry.definition)
            deflating: asyncio.Future[None] | None = None
            try:
                # 1 MiB batches, and Arrow's freed memory handed back after each: its
                # intermediate columns otherwise keep the process's RSS a few hundred MB up
                async for batch in self._copy_batches(export, entry, filters, block=1 << 20):
                    rows = await asyncio.to_thread(xlsx.sheet_rows_arrow, columns, batch)
                    pa.default_memory_pool().release_unused()
                    if deflating is not None:
                        await deflating
                        if sink.size:
                            yield sink.take()
                    deflating = asyncio.ensure_future(asyncio.to_thread(book.write, rows))
                    await progress.write(progress.rows + batch.num_rows)
            finally:
                if deflating is not None:
                    await deflating
            await progress.write(progress.rows, force=True)
        else:
            row = xlsx.row_writer(entry.definition)
            async for batch in self._batches(export, filters):
                text = "".join(row(formats.meta_cells(r), r.values) for r in batch)
                await asyncio.to_thread(book.write, text.encode())
                await progress.write(progress.rows + len(batch))
                if sink.size:
                    yield sink.take()
        await asyncio.to_thread(book.close)
        yield sink.take()

    async def _parquet(
        self, export: Export, entry: CatalogueEntry, filters: Filters, progress: _Progress
    ) -> AsyncIterator[bytes]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = formats.analyst_columns(entry.definition)
        schema = parquet_schema(entry)
        sink = _Drain()
        writer = pq.ParquetWriter(sink, schema, compression="zstd")
        try:
            async for batch in self._batches(export, filters):
                arrays = [[] for _ in schema.names]  # type: list[list[Any]]
                for r in batch:
                    for i, v in enumerate(formats.meta_cells(r)):
                        arrays[i].append(v)
                    offset = len(formats.META_COLUMNS)
                    for j, c in enumerate(columns):
                        arrays[offset + j].append(formats.typed(c, r.values.get(c.key)))
                table = pa.Table.from_arrays(
                    [pa.array(a, type=f.type) for a, f in zip(arrays, schema, strict=True)], schema=schema
                )
                await asyncio.to_thread(writer.write_table, table)
                await progress.write(progress.rows + len(batch))
                if sink.size:
                    yield sink.take()
        finally:
            writer.close()
        yield sink.take()

    async def _parquet_by_copy(
        self, export: Export, entry: CatalogueEntry, filters: Filters, progress: _Progress
    ) -> AsyncIterator[bytes]:
        """Parquet on PostgreSQL: the batches of :meth:`_copy_batches`, each field cast to
        its type per batch. A test keeps it equal to :meth:`_parquet`."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from hdhub.registrations.engine.dcd import FieldType

        schema = parquet_schema(entry)
        lists = {
            c.name for c in formats.analyst_columns(entry.definition) if c.type is FieldType.SELECT_MULTIPLE
        }
        fields = {c.name: c for c in formats.analyst_columns(entry.definition)}
        sink = _Drain()
        writer = pq.ParquetWriter(sink, schema, compression="zstd")
        try:
            async for batch in self._copy_batches(export, entry, filters):
                columns = [
                    pc.split_pattern(batch.column(i), "|")
                    if name in lists
                    else _cast(batch.column(i), schema.field(i).type, fields.get(name))
                    for i, name in enumerate(schema.names)
                ]
                table = pa.Table.from_arrays(columns, schema=schema)
                await asyncio.to_thread(writer.write_table, table)
                await progress.write(progress.rows + batch.num_rows)
                if sink.size:
                    yield sink.take()
        finally:
            writer.close()
        await progress.write(progress.rows, force=True)
        yield sink.take()

    async def _copy_batches(
        self, export: Export, entry: CatalogueEntry, filters: Filters, *, block: int = 4 << 20
    ) -> AsyncIterator[Any]:
        """The analysts' columns (:func:`formats.analyst_select_sql`) as Arrow record
        batches: ``COPY ... TO`` as CSV parsed by Arrow's own CSV reader (in a thread, fed
        through a bounded queue), no Python object per cell. The registration's dates are
        read as timestamps, every field as text: a registration saved with a value its
        type cannot hold (validation "save on validations") would stop Arrow's typed
        reader, so each format converts the fields itself. A batch holds a ``block`` of
        the CSV."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        schema = parquet_schema(entry)
        fields = {c.name for c in formats.analyst_columns(entry.definition)}
        read_types = {f.name: (pa.string() if f.name in fields else f.type) for f in schema}
        statement = (
            f"COPY ({formats.analyst_select_sql(entry.definition, _literal_where(export, filters))}) "
            "TO STDOUT WITH (FORMAT csv)"
        )
        feed = _Feed()

        async def pump() -> None:
            try:
                async with self.db.session([export.organisation_id]) as session:
                    connection = await session.connection()
                    raw = await connection.get_raw_connection()
                    driver: Any = raw.driver_connection
                    async with driver.cursor() as cursor, cursor.copy(statement) as copy:
                        # psycopg gives COPY's output about a row at a time: handed on in
                        # blocks, or the queue (and its waits) would cost a hop per row.
                        pending: list[bytes] = []
                        size = 0
                        async for data in copy:
                            pending.append(bytes(data))
                            size += len(data)
                            if size >= CHUNK:
                                await feed.put(b"".join(pending))
                                pending, size = [], 0
                        if pending:
                            await feed.put(b"".join(pending))
            finally:
                await feed.put(None)

        def open_reader() -> Any:
            try:
                return open_csv()
            except pa.ArrowInvalid:
                if feed.received == 0:  # no registrations: Arrow's reader refuses an empty file
                    return None
                raise

        def open_csv() -> Any:
            return pacsv.open_csv(
                feed,
                read_options=pacsv.ReadOptions(column_names=schema.names, block_size=block),
                # free text may hold line breaks (quoted): without this, a block boundary
                # inside such a value stops the reader
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=read_types, strings_can_be_null=True, quoted_strings_can_be_null=False
                ),
            )

        pumping = asyncio.create_task(pump())
        try:
            reader = await asyncio.to_thread(open_reader)
            while reader is not None:
                batch = await asyncio.to_thread(_next_batch, reader)
                if batch is None:
                    break
                yield batch
            await pumping
        finally:
            if not pumping.done():
                feed.abandon()
                pumping.cancel()


def _cast(values: Any, to: Any, column: formats.Column | None) -> Any:
    """A column of text cast to its type at Arrow's speed; where a value does not read as
    that type, the column of this batch is converted as the row path does (such a value
    becomes empty), so both paths give the same file."""
    import pyarrow as pa

    if column is None or values.type == to:
        return values
    try:
        return values.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([formats.typed(column, v) for v in values.to_pylist()], type=to)


def _next_batch(reader: Any) -> Any:
    """The reader's next batch, None at the end (StopIteration cannot cross a thread's future)."""
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


class _Feed(io.RawIOBase):
    """A blocking file Arrow's reader reads in a thread, fed by the event loop."""

    def __init__(self) -> None:
        import queue

        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self.buffer = bytearray()
        self.done = False
        self.received = 0

    async def put(self, chunk: bytes | None) -> None:
        import queue

        while True:
            try:
                self.queue.put_nowait(chunk)
                return
            except queue.Full:
                if self.done:
                    return
                await asyncio.sleep(0.002)

    def abandon(self) -> None:
        self.done = True

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self.done and (size < 0 or len(self.buffer) < size):
            item = self.queue.get()
            if item is None:
                self.done = True
            else:
                self.buffer.extend(item)
                self.received += len(item)
        size = len(self.buffer) if size < 0 else size
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


def parquet_schema(entry: CatalogueEntry) -> Any:
    import pyarrow as pa

    from hdhub.registrations.engine.dcd import FieldType

    kinds = {
        FieldType.INTEGER: pa.int64(),
        FieldType.DECIMAL: pa.float64(),
        FieldType.DATE: pa.date32(),
        FieldType.DATETIME: pa.timestamp("s"),
        FieldType.TIME: pa.time32("s"),
        FieldType.SELECT_MULTIPLE: pa.list_(pa.string()),
    }
    stamp = pa.timestamp("us", tz="UTC")
    meta = [pa.field(n, stamp if n.endswith("_at") else pa.string()) for n in formats.META_COLUMNS]
    fields = [
        pa.field(c.name, kinds.get(c.type, pa.string())) for c in formats.analyst_columns(entry.definition)
    ]
    return pa.schema(meta + fields)


class _Drain(io.RawIOBase):
    """A write-only file pyarrow writes into; the bytes are taken out after each batch."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.size += len(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts, self.size = [], 0
        return out


class _LeaseLost(Exception):
    """Another worker took the export's job over: this one stops."""


class _Progress:
    """Rows written so far, saved every ``PROGRESS_EVERY`` seconds with the job's lease
    renewed in the same transaction; a lost lease stops the writer."""

    def __init__(self, exports: Exports, export_id: str, total: int, job_id: str | None, worker: str | None):
        self.exports, self.export_id, self.total = exports, export_id, total
        self.job_id, self.worker = job_id, worker
        self.rows = 0
        self._saved = 0.0

    async def write(self, rows: int, *, force: bool = False) -> None:
        self.rows = rows
        now = time.monotonic()
        if not force and now - self._saved < PROGRESS_EVERY:
            return
        self._saved = now
        async with self.exports.db.system_session() as session:
            await session.execute(
                update(Export)
                .where(Export.id == self.export_id)
                .values(rows_done=rows, rows_total=max(self.total, rows))
            )
            if self.job_id is not None:
                renewed = await session.execute(
                    update(Job)
                    .where(Job.id == self.job_id, Job.worker == self.worker)
                    .values(lease_until=utcnow() + self.exports.jobs.lease)
                )
                if not getattr(renewed, "rowcount", 1):
                    raise _LeaseLost(self.export_id)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _literal_where(export: Export, filters: Filters) -> str:
    """``rows_query``'s filter as SQL with literals (COPY takes no parameters)."""
    parts = [
        f"r.organisation_id = {_quote(export.organisation_id)}",
        f"r.dcd_code = {_quote(export.dcd_code)}",
        f"r.dcd_version = {_quote(export.dcd_version)}",
        "r.status <> 'deleted'",
    ]
    if filters.statuses:
        parts.append(f"r.status IN ({', '.join(_quote(s) for s in filters.statuses)})")
    for column, op, moment in (
        ("created_at", ">=", filters.created_from),
        ("created_at", "<", filters.created_to),
        ("updated_at", ">=", filters.updated_from),
        ("updated_at", "<", filters.updated_to),
    ):
        if moment is not None:
            parts.append(f"r.{column} {op} {_quote(moment.isoformat())}::timestamptz")
    return " AND ".join(parts)


__all__ = [
    "EXPORTABLE",
    "EXPORT_JOB",
    "SWEEP_JOB",
    "Exports",
    "Filters",
    "filename",
    "parquet_schema",
    "rows_query",
]
