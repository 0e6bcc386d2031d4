"""The drop folder of HD4DP v2: CSV files placed in an organisation's folder are uploaded
as if through the Upload Center, then archived, with per-row results written beside them.

Layout, per organisation (a local folder on embedded defaults, an object-store prefix
otherwise; both through :class:`~hdhub.common.objectstore.ObjectStore`)::

    <org>/HD_DCD_submcsv_HDBP0012_ANGIO_HOSP_1.0.0_20261122.csv   dropped here
    <org>/ARCHIVE/<name>                                          once taken in
    <org>/RESULTS/<stem>_RESULTS.csv                              Success/Error per row
    <org>/ERROR/<name> and <stem>_ERROR.txt                       technical failures

Each dropped file becomes one durable job whose id is derived from the file's key, size
and time, so replicas scanning the same folder enqueue it once, and a worker that dies
half-way is replaced by another that picks up where it stood: every step (upload with an
idempotency key, move, results written under a fixed name) can be done twice safely.

The upload runs as the uploads service itself with the organisation's Upload Center
settings for the registry, and appears in the organisation's upload list like any other.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import grpc
from sqlalchemy.exc import IntegrityError

from hdhub.common.auth import ActingFor
from hdhub.common.config import platform
from hdhub.common.db import utcnow
from hdhub.common.errors import Problem
from hdhub.common.filenames import BadFileName, checked_file_name
from hdhub.common.jobs import PARKED
from hdhub.common.objectstore import (
    BadObjectKey,
    FolderStore,
    ObjectNotFound,
    ObjectStore,
    StoredObject,
    check_key,
    open_store,
)
from hdhub.common.service_auth import acting_as_service
from hdhub.common.telemetry import job_span, quiet, worker_context
from hdhub.uploads import registrations as regs
from hdhub.uploads.reports import finding_rows, render, stream_report
from hdhub.uploads.service import Uploads
from hdhub.uploads.store import Job, Upload

log = logging.getLogger("hdhub.uploads.dropfolder")

FILE = "dropfolder.file"
#: The actor of a drop-folder file: the organisation's own folder, written by its systems
#: on the host (the folder is the organisation's channel; no person is known).
DROPFOLDER_ACTOR = "dropfolder"
ARCHIVE, RESULTS, ERROR = "ARCHIVE", "RESULTS", "ERROR"
RESULT_COLUMNS = (
    "line",
    "result",
    "record",
    "outcome",
    "registration_id",
    "business_key",
    "column",
    "rule",
    "message",
)
#: HD_DCD_submcsv_HDBPnnnn_ABBREV_version_date.csv (date yyyymmdd, optionally HHMM[SS]).
NAME = re.compile(
    r"^HD_DCD_submcsv_(?P<project>HDBP\d{4})_(?P<dcd>[A-Za-z0-9][A-Za-z0-9_-]*?)"
    r"_(?P<version>\d+(?:\.\d+){0,2})_(?P<date>\d{8})(?:[_T-]?\d{4}(?:\d{2})?)?\.csv$",
    re.IGNORECASE,
)
_JOB_NAMESPACE = uuid.UUID("5f7d1f6c-0b8e-4c57-9a55-3d2f3c6a9e01")


class TechnicalFailure(Exception):
    """The file cannot be taken in at all (its name, its registry): it goes to ERROR."""


@dataclass(frozen=True)
class DropName:
    project_code: str
    dcd_code: str
    version: str
    day: date


def parse_name(name: str, lang: str = "en") -> DropName:
    """What the name says, after the file-name rule every route applies
    (hdhub.common.filenames: no control characters, device names, SSINs...)."""
    try:
        checked_file_name(name)
    except BadFileName as refusal:
        raise TechnicalFailure(refusal.message(lang)) from None
    match = NAME.fullmatch(name)
    if match is None:
        raise TechnicalFailure(
            f"The file name {name!r} does not follow HD_DCD_submcsv_HDBPnnnn_ABBREV_version_date.csv "
            "(for example HD_DCD_submcsv_HDBP0012_ANGIO_HOSP_1.0.0_20261122.csv)."
        )
    raw = match["date"]
    try:
        day = date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        raise TechnicalFailure(f"The date {raw} in the file name is not a date (yyyymmdd).") from None
    return DropName(match["project"].upper(), match["dcd"].upper(), match["version"], day)


def drop_area(uploads: Uploads) -> tuple[ObjectStore, str]:
    """The store holding the drop folders and the key prefix under which they live."""
    settings = uploads.settings
    if settings.dropfolder_url:
        return open_store(settings.dropfolder_url), ""
    if platform().object_store_url:
        return uploads.plain_store, "dropfolder/"
    root = Path(platform().data_dir) / "dropfolder"
    return FolderStore(root), ""


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".csv") else name


class DropFolder:
    """Scans the organisations' folders and carries each dropped file through its job."""

    def __init__(self, uploads: Uploads, store: ObjectStore | None = None, prefix: str | None = None) -> None:
        self.uploads = uploads
        self.settings = uploads.settings
        if store is None:
            store, default_prefix = drop_area(uploads)
            prefix = default_prefix if prefix is None else prefix
        self.store, self.prefix = store, prefix or ""
        self._scanned_at = 0.0

    # --- scanning -----------------------------------------------------------------
    def _split(self, key: str) -> tuple[str, str] | None:
        """(organisation, file name) for a file lying directly in an organisation's folder."""
        rest = key[len(self.prefix) :]
        parts = rest.split("/")
        if len(parts) != 2 or not parts[0] or not parts[1] or parts[1].startswith("."):
            return None
        return parts[0], parts[1]

    async def scan(self) -> int:
        """Enqueue a job for every settled file found; one job per file whatever the
        number of replicas scanning (the job id is derived from key, size and time)."""
        settle = timedelta(seconds=self.settings.dropfolder_settle_seconds)
        now = utcnow()
        found: list[tuple[StoredObject, str, str]] = []
        async for obj in self.store.list(self.prefix):
            where = self._split(obj.key)
            if where is None:
                continue
            try:
                check_key(obj.key)
            except BadObjectKey:  # a control character: the store cannot even move it
                await self._unaddressable(obj, *where)
                continue
            if obj.modified is not None and now - obj.modified < settle:
                continue  # still being written, perhaps
            found.append((obj, *where))
        enqueued = 0
        for obj, org, name in found:
            stamp = obj.modified.isoformat() if obj.modified else ""
            job_id = str(uuid.uuid5(_JOB_NAMESPACE, f"{obj.key}|{obj.size}|{stamp}"))
            try:
                async with self.uploads.db.system_session() as session:
                    if await session.get(Job, job_id) is not None:
                        continue
                    self.uploads.jobs.enqueue(
                        session,
                        FILE,
                        job_id=job_id,
                        organisation_id=org,
                        actor=DROPFOLDER_ACTOR,
                        payload={"key": obj.key, "name": name, "size": obj.size, "modified": stamp},
                    )
                enqueued += 1
                log.info("drop-folder file queued", extra={"organisation_id": org, "job_id": job_id})
            except IntegrityError:  # another replica queued it first
                continue
        return enqueued

    # --- one file -----------------------------------------------------------------
    async def process(self, *, worker: str | None = None) -> int:
        """Claim and advance due drop-folder jobs; the number claimed."""
        jobs = await self.uploads.jobs.claim([FILE], limit=5, worker=worker)
        for job in jobs:
            try:
                with job_span(job):
                    assert job.organisation_id is not None
                    acting = self.uploads.jobs.acting_for(job) or ActingFor(
                        job.organisation_id, DROPFOLDER_ACTOR
                    )
                    async with acting_as_service("uploads", acting):
                        finished = await self._advance(job)
                async with self.uploads.db.system_session() as session:
                    if finished:
                        await self.uploads.jobs.finish(session, job.id)
                    else:  # the upload is still running: look again shortly
                        await self.uploads.jobs.defer(
                            session,
                            job.id,
                            utcnow() + timedelta(seconds=self.settings.dropfolder_check_seconds),
                        )
            except Exception as exc:
                log.exception("drop-folder job failed", extra={"job_id": job.id})
                if await self.uploads.jobs.fail(job.id, type(exc).__name__) == PARKED:
                    await self._to_error(job, "The file could not be processed after several attempts.")
        return len(jobs)

    async def _advance(self, job: Job) -> bool:
        """One pass over a file's job; True when nothing is left to do for it."""
        org, name, key = job.organisation_id, job.payload["name"], job.payload["key"]
        assert org is not None
        upload = await self.uploads.find_by_idempotency_key(org, self._idempotency_key(job))
        if upload is None:
            try:
                upload = await self._take_in(job, org, name, key)
            except TechnicalFailure as exc:
                await self._to_error(job, str(exc))
                return True
            if upload is None:  # the file is gone (taken in earlier, or removed by the sender)
                return True
        await self._archive(org, name, key)
        if upload.status in ("done", "failed"):
            await self._write_results(upload, name)
            if upload.status == "failed":
                await self._write_error(org, name, upload.error or "The upload failed.")
            log.info("drop-folder file done", extra={"organisation_id": org, "upload_id": upload.id})
            return True
        return False

    def _idempotency_key(self, job: Job) -> str:
        return f"dropfolder:{job.id}"

    async def _take_in(self, job: Job, org: str, name: str, key: str) -> Upload | None:
        parsed = parse_name(name, self.settings.dropfolder_language)
        if await self.store.stat(key) is None:
            return None
        try:
            dcd = await regs.dcd_summary(parsed.dcd_code, None)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise TechnicalFailure(f"No registry form {parsed.dcd_code} is known here.") from None
            raise
        if dcd.project_code.upper() != parsed.project_code:
            raise TechnicalFailure(
                f"{parsed.dcd_code} belongs to {dcd.project_code}, not {parsed.project_code} as the file name says."
            )
        if not _same_version(parsed.version, dcd.version):
            raise TechnicalFailure(
                f"The file is for version {parsed.version} of {parsed.dcd_code}; the current version is {dcd.version}."
            )
        options = await self.uploads.get_settings(org, dcd.project_code)
        options.update({"dry_run": False, "kind": "registrations", "source": "dropfolder"})
        try:
            return await self.uploads.create(
                organisation_id=org,
                filename=name,
                body=self.store.stream(key),
                project_code=dcd.project_code,
                dcd_code=dcd.dcd_code,
                dcd_version=dcd.version,
                options=options,
                language=self.settings.dropfolder_language,
                uploaded_by=DROPFOLDER_ACTOR,
                idempotency_key=self._idempotency_key(job),
            )
        except ObjectNotFound:
            return None
        except Problem as problem:  # e.g. too large: that is the sender's to fix
            raise TechnicalFailure(problem.detail or problem.title) from None

    async def _archive(self, org: str, name: str, key: str) -> None:
        target = f"{self.prefix}{org}/{ARCHIVE}/{name}"
        if await self.store.stat(key) is None:
            return  # moved on an earlier pass
        if await self.store.stat(target) is not None:  # the same name dropped again later
            target = f"{self.prefix}{org}/{ARCHIVE}/{_stem(name)}_{utcnow():%Y%m%d%H%M%S}.csv"
        try:
            await self.store.move(key, target)
        except ObjectNotFound:
            pass

    async def _write_results(self, upload: Upload, name: str) -> None:
        """RESULTS/<stem>_RESULTS.csv: one Success line per stored row and one Error (or
        Warning) line per finding, in the user's line order within each part."""
        key = f"{self.prefix}{upload.organisation_id}/{RESULTS}/{_stem(name)}_RESULTS.csv"
        await self.store.put(key, results_csv(self.uploads, upload), content_type="text/csv")

    async def _write_error(self, org: str, name: str, reason: str) -> None:
        key = f"{self.prefix}{org}/{ERROR}/{_stem(name)}_ERROR.txt"
        await self.store.put(key, (reason.rstrip() + "\n").encode("utf-8"), content_type="text/plain")

    async def _unaddressable(self, obj: StoredObject, org: str, name: str) -> None:
        """A file whose name holds a control character stays where it is (no key can name
        it to move it); ERROR gets one note saying why, under a name derived from it."""
        stem = "unreadable-name-" + hashlib.sha256(obj.key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        note = f"{self.prefix}{org}/{ERROR}/{stem}_ERROR.txt"
        if await self.store.stat(note) is not None:
            return
        try:
            checked_file_name(name)
            reason = "The file name cannot be read."
        except BadFileName as refusal:
            reason = refusal.message(self.settings.dropfolder_language)
        log.warning("drop-folder file with an unusable name left in place", extra={"organisation_id": org})
        await self._write_error(
            org,
            f"{stem}.csv",
            f"{reason}\nThe file stays in the folder: rename it (or remove it) to have it read.",
        )

    async def _to_error(self, job: Job, reason: str) -> None:
        org, name, key = job.organisation_id, job.payload["name"], job.payload["key"]
        assert org is not None
        log.warning("drop-folder file refused", extra={"organisation_id": org, "job_id": job.id})
        try:
            await self.store.move(key, f"{self.prefix}{org}/{ERROR}/{name}")
        except ObjectNotFound:
            pass
        await self._write_error(org, name, reason)


def _same_version(asked: str, current: str) -> bool:
    """``1`` matches 1.x.y, ``1.2`` matches 1.2.y, ``1.2.3`` only itself."""
    a, c = asked.split("."), current.split(".")
    return c[: len(a)] == a or [p.lstrip("0") or "0" for p in c[: len(a)]] == [
        p.lstrip("0") or "0" for p in a
    ]


def _complete_records(text: str) -> tuple[list[str], str]:
    """The whole CSV records at the start of ``text`` (our reports end each with CRLF; a
    CRLF inside quotes, in a cell written as typed, does not end one), and the rest."""
    records: list[str] = []
    start = pos = 0
    while (end := text.find("\r\n", pos)) >= 0:
        pos = end + 2
        if text.count('"', start, end) % 2 == 0:
            records.append(text[start:end])
            start = pos
    return records, text[start:]


async def _report_rows(uploads: Uploads, upload: Upload, kind: str) -> AsyncIterator[list[str]]:
    """The rows of one of the upload's reports (without its header)."""
    notes = [f for f in upload.findings if f["severity"] != "info"]
    head = finding_rows(notes, upload.language) if kind == "errors" else []
    decoder = codecs.getincrementaldecoder("utf-8-sig")()  # a chunk may end mid-character
    pending = ""
    first = True
    async for chunk in stream_report(uploads.store, upload.organisation_id, upload.id, kind, head):
        records, pending = _complete_records(pending + decoder.decode(chunk))
        for row in csv.reader(records, delimiter=";"):
            if first:
                first = False
                continue
            if row:
                yield row
    pending += decoder.decode(b"", final=True)
    if pending.strip():
        for row in csv.reader([pending], delimiter=";"):
            yield row


async def results_csv(uploads: Uploads, upload: Upload) -> AsyncIterator[bytes]:
    """Success lines (line, record, registration, business key), then Error and Warning
    lines (line, record, column, rule, message); every cell neutralised on the way out
    (``render``, hdhub.common.spreadsheet.safe_cell), like the reports it is taken from."""
    yield render([RESULT_COLUMNS])
    batch: list[tuple[str, ...]] = []
    async for row in _report_rows(uploads, upload, "success"):
        line, record, outcome, registration_id, business_key, _status = (row + [""] * 6)[:6]
        result = "Success" if outcome != "rejected" else "Error"
        batch.append((line, result, record, outcome, registration_id, business_key, "", "", ""))
        if len(batch) >= 1000:
            yield render(batch)
            batch = []
    async for row in _report_rows(uploads, upload, "errors"):
        line, record, column, _value, rule, severity, message = (row + [""] * 7)[:7]
        result = "Warning" if severity == "warning" else "Error"
        batch.append((line, result, record, "", "", "", column, rule, message))
        if len(batch) >= 1000:
            yield render(batch)
            batch = []
    if batch:
        yield render(batch)


async def run(drop: DropFolder, stop: asyncio.Event) -> None:
    """Scan every ``dropfolder_poll_seconds`` and advance due jobs every tick; a failing
    pass is logged and retried, never fatal."""
    settings = drop.settings
    last_scan = 0.0
    while not stop.is_set():
        try:
            # Scans and claims are not traced (a trace per tick otherwise); each file's
            # job is, from its own span (job_span).
            with worker_context("uploads"), quiet():
                if time.monotonic() - last_scan >= settings.dropfolder_poll_seconds:
                    last_scan = time.monotonic()
                    await drop.scan()
                while await drop.process():
                    pass
        except Exception:
            log.exception("drop-folder pass failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.dropfolder_tick_seconds)
        except TimeoutError:
            pass


__all__ = ["DropFolder", "DropName", "TechnicalFailure", "drop_area", "parse_name", "results_csv", "run"]
