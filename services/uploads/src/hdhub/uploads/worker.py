"""Processing an upload: the job claimed with a lease, the file streamed from the object
store and read in a thread (constant memory), batches sent to registrations with
``batch_id = "{upload_id}:{batch_no}"`` (so a batch redone after a takeover is replayed,
never stored twice), progress and the lease renewed after every batch in one transaction.

"Validate all" runs two phases: every batch through ValidateBatch first, then, only if no
row anywhere has an error, every batch through UpsertBatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from sqlalchemy import update

from hdhub.common.auth import ActingFor, current_principal
from hdhub.common.db import after_commit, utcnow
from hdhub.common.jobs import PARKED, RUNNING, worker_name
from hdhub.common.objectstore import ObjectNotFound
from hdhub.common.service_auth import service_principal
from hdhub.common.service_auth import tokens as service_tokens
from hdhub.common.telemetry import job_span
from hdhub.uploads import registrations as regs
from hdhub.uploads.domain.batches import Batch, Batches, check_header
from hdhub.uploads.domain.cells import code_hint, masked
from hdhub.uploads.domain.csvfile import CsvFile, FileRefused, Finding, Record
from hdhub.uploads.domain.linked import SequenceIndex, read_sequences
from hdhub.uploads.domain.messages import message, without_echoes
from hdhub.uploads.metrics import count_rows
from hdhub.uploads.reports import finding_rows, write_part
from hdhub.uploads.service import PROCESS, PURGE_SOURCES, Uploads
from hdhub.uploads.store import Job, Upload

log = logging.getLogger("hdhub.uploads.worker")
T = TypeVar("T")

#: Answers of registrations that no retry will change.
PERMANENT = {
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
}


class LeaseLost(Exception):
    """Another worker took the job over; this one stops without writing more."""


class Abandon(BaseException):  # noqa: N818 - a test's stand-in for a worker process dying
    """Raised by a test hook: leave the job as a crashed worker would (lease held)."""


_END = object()


class SourceClosed(Exception):
    """The run stopped reading this file (finished, failed or lost its lease)."""


class _Source:
    """Bytes pumped from the object store (async) to the reading thread (sync), through a
    small bounded queue: at most a few chunks are in memory."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self.closed = threading.Event()
        #: What reading the object store raised, handed on to the reading thread.
        self.error: Exception | None = None

    async def pump(self, stream: Any) -> None:
        try:
            async for chunk in stream:
                if self.closed.is_set():
                    return  # nobody reads any more
                await self._put(chunk)
            await self._put(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = exc
            await self._put(exc)

    async def _put(self, item: Any) -> None:
        while not self.closed.is_set():
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(0.002)

    def close(self) -> None:
        """Stop pumping, and unblock a reading thread still waiting for a chunk (it ends
        with :class:`SourceClosed`): a thread left waiting would never finish."""
        self.closed.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(SourceClosed())

    def chunks(self) -> Iterator[bytes]:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item


def _guarded(source: _Source, read: Callable[..., T]) -> Callable[..., T]:
    """``read`` (code reading the file, run in the reading thread) with any exception that
    did not come from the object store turned into the file's refusal: a file the reader
    cannot handle ends at once with a reason, instead of being retried for minutes. Only
    the exception's type and place are logged, never its text (it may quote the file)."""

    def run(*args: Any) -> T:
        try:
            return read(*args)
        except (FileRefused, SourceClosed):
            raise
        except Exception as exc:
            if exc is source.error:
                raise
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(
                "the reader failed on a file; refused as unreadable",
                extra={"error": type(exc).__name__, "at": f"{where.filename}:{where.lineno}"},
            )
            raise FileRefused(Finding("unreadable", "error")) from None

    return run


def _read_batch(batches: Batches, encode: bool) -> tuple[Batch | None, bytes | None]:
    """The next batch, and its Arrow encoding when ``encode`` (in the reading thread)."""
    batch = batches.next()
    if batch is None or not encode or not batch.sent:
        return batch, None
    return batch, regs.encode_columns(batch.columns)


def finding_dict(f: Finding, personal: bool = False) -> dict[str, Any]:
    """A finding as stored and reported. About a masked (personal-data) column, its value
    is masked and the parameters that would repeat it are dropped, and ``masked`` tells
    :func:`~hdhub.uploads.reports.finding_rows` to build the message without them."""
    d = asdict(f)
    if personal:
        d["value"] = masked(f.value, True)
        d["params"] = without_echoes(f.params)
        d["masked"] = True
    return d


class UploadRun:
    def __init__(self, uploads: Uploads, job: Any, upload: Upload, worker: str) -> None:
        self.uploads, self.job, self.upload, self.worker = uploads, job, upload, worker
        self.store = uploads.store
        self.options = dict(upload.options)
        self.lang = upload.language
        self.counts: Counter[str] = Counter(upload.counts)
        self.findings: list[dict[str, Any]] = list(upload.findings)
        self.steps = dict(upload.steps)

    # --- the run ------------------------------------------------------------------
    async def run(self) -> None:
        up = self.upload
        self.dcd = await regs.dcd_summary(up.dcd_code, up.dcd_version)
        self.link: SequenceIndex | None = None
        self.linked: Upload | None = None
        self.link_seen: set[str] = set()
        if self.options.get("linked_upload_id"):
            await self._load_link(str(self.options["linked_upload_id"]))
        size = int(self.options.get("batch_rows") or self.uploads.settings.batch_rows)
        initial = "validating" if self.options.get("validation") == "validate_all" else "storing"
        if up.phase == initial and up.batches_done == 0 and not await self._scan():
            # The file cannot be read to its end: refused before anything is stored.
            await self._finish(stored=False)
            return
        if up.phase == "validating":
            errors = await self._pass("validating", size, up.batches_done if up.phase == "validating" else 0)
            if errors or self._file_errors():
                await self._finish(stored=False)
                return
            self.counts["rows_read"] = self.counts["rows_checked"] = 0
            self.link_seen.clear()  # the storing pass meets every recordname once more
            await self._save_progress(phase="storing", batches_done=0)
        await self._pass("storing", size, up.batches_done if up.phase == "storing" else 0)
        await self._finish(stored=not self.options.get("dry_run"))

    async def _load_link(self, linked_id: str) -> None:
        async with self.uploads.db.system_session() as session:
            self.linked = await session.get(Upload, linked_id)
        assert self.linked is not None
        source = _Source()
        pump = asyncio.create_task(source.pump(self.store.stream(self.linked.object_key)))
        settings = self.uploads.settings
        csvfile = CsvFile(
            source.chunks(), max_line_bytes=settings.max_line_bytes, max_columns=settings.max_columns
        )
        try:
            self.link = await asyncio.to_thread(
                _guarded(source, read_sequences), csvfile, self.linked.filename
            )
        except FileRefused as refused:
            f = refused.finding
            self.link = SequenceIndex(self.linked.filename)
            self.link.findings.append(
                Finding(f.rule, f.severity, f.line, f.record, f"{self.linked.filename}:", "", f.params)
            )
        finally:
            source.close()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    def _link_findings(self, referenced: set[str]) -> list[dict[str, Any]]:
        """The sequence file's own findings, and its records no metadata row references."""
        assert self.link is not None and self.linked is not None
        found = [finding_dict(f) for f in self.link.findings]
        for name, line in self.link.records.items():
            if name not in referenced:
                found.append(
                    finding_dict(
                        Finding(
                            "sequence_not_referenced",
                            "error",
                            line,
                            0,
                            f"{self.linked.filename}:recordname",
                            name,
                        )
                    )
                )
        return found

    def _apply_link(self, batch: Batch) -> None:
        """Set aside metadata rows whose sequence is missing, linked twice, or in another file."""
        assert self.link is not None
        recrd = batch.columns.get("TX_ATT_RECRD") or [None] * batch.sent
        att = batch.columns.get("TX_ATT") or [None] * batch.sent
        bad: dict[int, list[Finding]] = {}
        for i in range(batch.sent):
            name = recrd[i] or ""
            line, number = batch.lines[i], batch.numbers[i]
            if att[i] != self.link.filename:
                bad.setdefault(i, []).append(
                    Finding(
                        "linked_file_mismatch",
                        "error",
                        line,
                        number,
                        "TX_ATT",
                        att[i] or "",
                        {"expected": self.link.filename},
                    )
                )
            if name not in self.link.records:
                bad.setdefault(i, []).append(
                    Finding(
                        "linked_record_missing", "error", line, number, "TX_ATT_RECRD", name, {"value": name}
                    )
                )
            elif name in self.link_seen:
                bad.setdefault(i, []).append(
                    Finding(
                        "linked_record_twice", "error", line, number, "TX_ATT_RECRD", name, {"value": name}
                    )
                )
            self.link_seen.add(name)
        if not bad:
            return
        keep = [i for i in range(batch.sent) if i not in bad]
        for i, findings in bad.items():
            batch.set_aside.append((Record(batch.lines[i], batch.numbers[i], []), findings))
        batch.set_aside.sort(key=lambda item: item[0].line)
        batch.columns = {k: [v[i] for i in keep] for k, v in batch.columns.items()}
        batch.lines = [batch.lines[i] for i in keep]
        batch.numbers = [batch.numbers[i] for i in keep]

    async def _scan(self) -> bool:
        """Read the whole file once for its structure (encoding, separator, header, every
        record parsable, no binary or endless line): False when it must be refused."""
        source = _Source()
        pump = asyncio.create_task(source.pump(self.store.stream(self.upload.object_key)))
        settings = self.uploads.settings
        csvfile = CsvFile(
            source.chunks(), max_line_bytes=settings.max_line_bytes, max_columns=settings.max_columns
        )

        referenced: set[str] = set()

        def scan() -> int:
            header = csvfile.open()
            if self.link is None or "TX_ATT_RECRD" not in header:
                return sum(1 for _ in csvfile.records())
            at, n = header.index("TX_ATT_RECRD"), 0
            for r in csvfile.records():
                n += 1
                if at < len(r.values):
                    referenced.add(r.values[at].strip())
            return n

        self.steps["validity_check"] = "running"
        try:
            records = await asyncio.to_thread(_guarded(source, scan))
        except FileRefused as refused:
            self.findings = [finding_dict(refused.finding)]
            return False
        finally:
            source.close()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        self.file_info = {
            "encoding": csvfile.encoding,
            "bom": csvfile.bom,
            "delimiter": csvfile.delimiter,
            "columns": len(csvfile.header),
            "records": records,
        }
        if self.link is not None:
            self.link_errors = self._link_findings(referenced)
            if any(f["severity"] == "error" for f in self.link_errors):
                self.findings = self.link_errors  # validated together: the pair is refused
                return False
        await self._save_progress(phase=self.upload.phase, batches_done=0)
        return True

    def _file_errors(self) -> bool:
        return any(f["severity"] == "error" for f in self.findings)

    async def _pass(self, phase: str, size: int, start_batch: int) -> int:
        """Read the whole file once, sending batches from ``start_batch`` on; the number of
        rows with errors found in this pass."""
        source = _Source()
        pump = asyncio.create_task(source.pump(self.store.stream(self.upload.object_key)))
        settings = self.uploads.settings
        csvfile = CsvFile(
            source.chunks(), max_line_bytes=settings.max_line_bytes, max_columns=settings.max_columns
        )
        rows_with_errors = 0
        self.steps["validity_check"] = "running"
        if phase == "storing":
            self.steps["upload"] = "running"
        try:
            try:
                header = await asyncio.to_thread(_guarded(source, csvfile.open))
                if start_batch == 0:
                    self.findings = [finding_dict(f, self._personal(f.column)) for f in csvfile.findings]
                    self.findings += [
                        finding_dict(f, self._personal(f.column))
                        for f in check_header(header, self.dcd.fields, self.dcd.required, self.dcd.dcd_code)
                    ]
                if self._file_errors():
                    return 1
                batches = await asyncio.to_thread(_guarded(source, Batches), csvfile, self.dcd.fields, size)
                if batches.empty and start_batch == 0:
                    self.findings.append(finding_dict(Finding("header_only", "error", line=1)))
                    return 1
                if start_batch:
                    skipped = await asyncio.to_thread(_guarded(source, batches.skip), start_batch)
                    self.counts["rows_read"] = skipped
                # One batch is read, checked and encoded in a thread while the previous one
                # is with registrations: reading overlaps storing, and at most two batches
                # are in memory (never an unbounded queue).
                # And the next batch goes to registrations while the previous one is
                # being stored (registrations stores it only after that one): at most
                # two calls in flight, answers recorded in file order.
                encode = self.link is None  # linked uploads set rows aside before encoding
                read_batch = _guarded(source, _read_batch)
                ahead = asyncio.ensure_future(asyncio.to_thread(read_batch, batches, encode))
                flight: tuple[Batch, asyncio.Future[Any] | None] | None = None
                try:
                    while True:
                        try:
                            batch, rows = await ahead
                        except Exception:
                            if flight is not None:  # what was sent before is recorded first
                                last, flight = flight, None
                                rows_with_errors += await self._record(phase, *last)
                            raise
                        if batch is None:
                            break
                        ahead = asyncio.ensure_future(asyncio.to_thread(read_batch, batches, encode))
                        after = flight[0] if flight is not None and flight[1] is not None else None
                        call = self._send(phase, batch, rows, after)
                        if flight is not None:
                            previous, flight = flight, (batch, call)
                            rows_with_errors += await self._record(phase, *previous)
                        else:
                            flight = (batch, call)
                    if flight is not None:
                        last, flight = flight, None
                        rows_with_errors += await self._record(phase, *last)
                finally:
                    if flight is not None and flight[1] is not None:
                        # This run stops (lease lost, a failed batch): the call in flight is
                        # cancelled. Had it been stored already, the batch is replayed by
                        # its id when the job is taken up again.
                        flight[1].cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await flight[1]
                    if not ahead.done():
                        source.close()  # the reading thread ends at once
                    with contextlib.suppress(Exception):
                        await ahead
                # findings known only at the end (encoding of later lines)
                for f in csvfile.findings:
                    d = finding_dict(f, self._personal(f.column))
                    if d not in self.findings:
                        self.findings.append(d)
            except FileRefused as refused:
                self.findings.append(finding_dict(refused.finding))
                return 1
        finally:
            source.close()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        return rows_with_errors

    def _send(
        self, phase: str, batch: Batch, encoded: bytes | None, after: Batch | None
    ) -> asyncio.Future[Any] | None:
        """Start the call to registrations for ``batch`` (None when nothing is sent). With
        ``after``, the batch before it, still in flight: registrations validates this one
        at once and stores it only once that one is stored."""
        if self.link is not None:
            self._apply_link(batch)
        if not batch.sent:
            return None
        up = self.upload

        async def call() -> Any:
            rows = (
                encoded
                if encoded is not None
                else await asyncio.to_thread(regs.encode_columns, batch.columns)
            )
            if phase == "validating":
                return await regs.validate_batch(
                    organisation_id=up.organisation_id, dcd=self.dcd, rows=rows, language=self.lang
                )
            return await regs.upsert_batch(
                organisation_id=up.organisation_id,
                dcd=self.dcd,
                rows=rows,
                language=self.lang,
                options=self.options,
                batch_id=f"{up.id}:{batch.number}",
                author=up.uploaded_by,
                after_batch_id=f"{up.id}:{after.number}" if after is not None else "",
            )

        return asyncio.ensure_future(call())

    async def _record(self, phase: str, batch: Batch, call: asyncio.Future[Any] | None) -> int:
        """Wait for a batch's answer; count it, write its report parts, save progress."""
        up = self.upload
        errors: list[tuple[Any, ...]] = []
        success: list[tuple[Any, ...]] = []
        error_rows: set[int] = set()
        warnings = error_lines = 0  # report lines, to agree with the report
        for _record, findings in batch.set_aside:
            found = [finding_dict(f, self._personal(f.column)) for f in findings]
            errors += finding_rows(found, self.lang)
            warnings += sum(f.severity == "warning" for f in findings)
            error_lines += sum(f.severity == "error" for f in findings)
        if call is not None:
            reply = await call
            field_errors, field_warnings = list(reply.errors), list(reply.warnings)
            self.counts["rows_checked"] += batch.sent
            if phase == "storing":
                for r in reply.results:
                    outcome = regs.outcome_name(r.outcome)
                    self.counts[outcome] += 1
                    if outcome != "rejected":
                        i = r.row_index
                        success.append(
                            (
                                batch.lines[i],
                                batch.numbers[i],
                                outcome,
                                r.registration_id,
                                r.business_key,
                                r.status,
                            )
                        )
            for severity, items in (("error", field_errors), ("warning", field_warnings)):
                # After Validate all's first pass, warnings were reported already.
                if (
                    phase == "storing"
                    and severity == "warning"
                    and self.upload.options.get("validation") == "validate_all"
                ):
                    continue
                for e in items:
                    i = e.row_index
                    info = self.dcd.fields.get(e.field)
                    column = batch.columns.get(e.field)
                    value = (column[i] if column is not None else None) or ""
                    msg = e.message
                    if (
                        severity == "error"
                        and e.rule == "choice"
                        and info is not None
                        and code_hint(info, value)
                    ):
                        msg = message("code_leading_zero", self.lang, {"message": e.message})
                    errors.append(
                        (
                            batch.lines[i],
                            batch.numbers[i],
                            e.field,
                            masked(value, bool(info and info.personal_data)),
                            e.rule,
                            severity,
                            msg,
                        )
                    )
                    if severity == "error":
                        error_rows.add(i)
                        error_lines += 1
                    else:
                        warnings += 1
        errors.sort(key=lambda row: int(row[0] or 0))  # by line: set aside and the engine's mixed
        self.counts["rows_read"] += batch.records
        self.counts["rejected"] += len(batch.set_aside)
        self.counts["rows_with_errors"] += len(error_rows) + len(batch.set_aside)
        self.counts["errors"] += error_lines
        self.counts["warnings"] += warnings
        await write_part(self.store, up.organisation_id, up.id, "errors", phase, batch.number, errors)
        if phase == "storing":
            await write_part(self.store, up.organisation_id, up.id, "success", phase, batch.number, success)
        hook = self.uploads.after_batch
        if hook is not None:
            hook(up.id, phase, batch.number)
        await self._save_progress(phase=phase, batches_done=batch.number + 1)
        return len(error_rows) + len(batch.set_aside)

    def _personal(self, column: str) -> bool:
        info = self.dcd.fields.get(column) if column else None
        return bool(info and info.personal_data)

    # --- persistence ----------------------------------------------------------------
    async def _save_progress(self, *, phase: str, batches_done: int) -> None:
        now = utcnow()
        async with self.uploads.db.system_session() as session:
            renewed = await session.execute(
                update(Job)
                .where(Job.id == self.job.id, Job.worker == self.worker, Job.status == RUNNING)
                .values(lease_until=now + timedelta(seconds=self.uploads.settings.lease_seconds))
            )
            if renewed.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost(self.job.id)
            upload = await session.get(Upload, self.upload.id)
            assert upload is not None
            upload.status = "processing"
            upload.phase, upload.batches_done = phase, batches_done
            upload.counts = dict(self.counts)
            upload.findings = list(self.findings)
            upload.steps = dict(self.steps)
            upload.file_info = getattr(self, "file_info", upload.file_info)
            upload.updated_at = now
        self.upload.phase, self.upload.batches_done = phase, batches_done

    async def _finish(self, *, stored: bool) -> None:
        counts = self.counts
        validate_all = self.options.get("validation") == "validate_all"
        # The file's own findings count like the rows' ones: counts agree with the report.
        for severity in ("error", "warning"):
            counts[f"{severity}s"] += sum(f["severity"] == severity for f in self.findings)
        any_error, any_warning = counts["errors"] > 0, counts["warnings"] > 0
        # The seed's steps: the validity check runs the validation of every record (its mark
        # is the worst finding of the file and its rows); the upload stores them (errors when
        # nothing is stored, warnings when some rows were not).
        self.steps["validity_check"] = "errors" if any_error else "warnings" if any_warning else "success"
        refused = self._file_errors() or (validate_all and any_error)
        if refused:
            self.steps["upload"] = "errors"
            counts["rejected"] = counts["rows_read"]
            for k in ("created", "updated", "ignored_duplicate", "kept_stored"):
                counts[k] = 0
        elif counts["rejected"]:
            self.steps["upload"] = "warnings"
        else:
            self.steps["upload"] = "success"
        self.steps["finalize"] = "success"
        now = utcnow()
        async with self.uploads.db.system_session() as session:
            upload = await session.get(Upload, self.upload.id)
            assert upload is not None
            upload.status = "done"
            upload.counts = dict(counts)
            if not self.options.get("dry_run"):
                after_commit(session, lambda: count_rows(counts))
            upload.findings = list(self.findings)
            upload.steps = dict(self.steps)
            upload.file_info = getattr(self, "file_info", upload.file_info)
            # Nothing stored: the file refused, a dry run, or every row rejected or unchanged.
            nothing_stored = refused or not stored or counts["created"] + counts["updated"] == 0
            upload.options = {**upload.options, "nothing_stored": bool(nothing_stored)}
            upload.finished_at = upload.updated_at = now
            if self.options.get("dry_run"):  # a dry run's file goes as soon as it is read
                self.uploads.jobs.enqueue(
                    session, PURGE_SOURCES, organisation_id=upload.organisation_id, subject_id=upload.id
                )
                after_commit(session, self.uploads.wake.notify)
            if self.linked is not None:
                linked = await session.get(Upload, self.linked.id)
                if linked is not None:
                    linked.status = "linked"
                    linked.steps = dict(self.steps)
                    linked.options = {**linked.options, "linked_by": upload.id}
                    linked.finished_at = linked.updated_at = now
            await self.uploads.jobs.finish(session, self.job.id)


async def fail_upload(uploads: Uploads, upload_id: str, detail: str) -> None:
    async with uploads.db.system_session() as session:
        upload = await session.get(Upload, upload_id)
        if upload is None:
            return
        upload.status = "failed"
        upload.error = detail[:2000]
        upload.steps = {**upload.steps, "finalize": "errors"}
        upload.findings = [
            *upload.findings,
            {
                "rule": "technical_failure",
                "severity": "error",
                "line": 0,
                "record": 0,
                "column": "",
                "value": "",
                "params": {"detail": detail[:300]},
            },
        ]
        upload.finished_at = upload.updated_at = utcnow()


async def process_jobs(uploads: Uploads, *, worker: str | None = None) -> int:
    """Claim and run at most one upload job; 1 when one was claimed."""
    worker = worker or f"{worker_name()}:{uuid.uuid4().hex[:8]}"
    await uploads.schedule_sweep()
    jobs = await uploads.jobs.claim([PROCESS, PURGE_SOURCES], limit=1, worker=worker)
    for job in jobs:
        if job.kind == PURGE_SOURCES:
            await purge_job(uploads, job)
            continue
        with job_span(job):  # the whole job, its token and its failure included
            await _process(uploads, job, worker)
    return len(jobs)


async def _process(uploads: Uploads, job: Any, worker: str) -> None:
    async with uploads.db.system_session() as session:
        upload = await session.get(Upload, job.subject_id)
    if upload is None:
        async with uploads.db.system_session() as session:
            await uploads.jobs.finish(session, job.id)
        return
    # The job runs as the uploads service itself (a user's token would expire long
    # before a large file is done), acting for the upload's organisation and uploader:
    # registrations lets it touch that organisation only and records the uploader.
    acting = uploads.jobs.acting_for(job) or ActingFor(upload.organisation_id, upload.uploaded_by)
    reset = current_principal.set(await service_principal("uploads", acting))
    try:
        await UploadRun(uploads, job, upload, worker).run()
    except LeaseLost:
        log.warning("upload job taken over by another worker", extra={"job_id": job.id})
    except Abandon:
        log.warning("upload job abandoned (test)", extra={"job_id": job.id})
    except ObjectNotFound:  # its file (or the linked one) was purged: no retry brings it back
        await fail_upload(uploads, upload.id, "the file is gone (its retention ran out); upload it again")
        async with uploads.db.system_session() as session:
            await uploads.jobs.finish(session, job.id)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in PERMANENT:
            await fail_upload(
                uploads, upload.id, f"registrations answered {exc.code().name}: {exc.details()}"
            )
            async with uploads.db.system_session() as session:
                await uploads.jobs.finish(session, job.id)
        else:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:  # a new token on the next try
                service_tokens("uploads").forget()
            await _retry(uploads, job.id, upload.id, f"registrations answered {exc.code().name}")
    except Exception as exc:
        log.exception("upload job failed", extra={"job_id": job.id})
        await _retry(uploads, job.id, upload.id, type(exc).__name__)
    finally:
        current_principal.reset(reset)


async def purge_job(uploads: Uploads, job: Any) -> None:
    """One upload's source (a dry run), or this hour's sweep of those past their retention."""
    subject = str(job.subject_id or "")
    try:
        await uploads.purge_sources(upload_id=None if subject.startswith("sweep-") else subject)
    except Exception as exc:  # the store is down: the job is tried again later
        await uploads.jobs.fail(job.id, type(exc).__name__)
        return
    async with uploads.db.system_session() as session:
        await uploads.jobs.finish(session, job.id)


async def _retry(uploads: Uploads, job_id: str, upload_id: str, detail: str) -> None:
    if await uploads.jobs.fail(job_id, detail) == PARKED:
        await fail_upload(uploads, upload_id, detail)
