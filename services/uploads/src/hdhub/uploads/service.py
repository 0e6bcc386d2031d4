"""The Upload Center's domain operations: settings per organisation and registry, taking
in a file (streamed into the object store), and reading uploads back."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from hdhub.common.config import platform
from hdhub.common.db import Database, after_commit, new_id, utcnow
from hdhub.common.errors import Problem, not_found
from hdhub.common.jobs import JobQueue
from hdhub.common.objectstore import ObjectNotFound, ObjectStore, SealedStore, open_store
from hdhub.common.wakeup import Wakeup
from hdhub.uploads.settings import UploadsSettings
from hdhub.uploads.store import Job, Upload, UploadSettings

log = logging.getLogger("hdhub.uploads")

PROCESS = "upload.process"
#: Deleting processed sources: ``subject_id`` an upload (a dry run, at once) or a sweep slot.
PURGE_SOURCES = "upload.purge-sources"
#: How often (seconds) a worker makes sure the sweep of this period is queued.
SWEEP_EVERY = 600.0
STEPS = ("select_file", "validity_check", "upload", "finalize")
Validation = Literal["none", "save_on_validations", "validate_all"]
DEFAULT_SETTINGS: dict[str, Any] = {
    "conflict_mode": "business_key",
    "conflict_master": "new",
    "ignore_duplicates": True,
    "autosubmit": False,
    "validation": "none",
}


class TooLarge(Exception):
    pass


@dataclass
class Uploads:
    db: Database
    settings: UploadsSettings

    #: Called after each batch is written (tests use it to stand in for a dying worker).
    after_batch: Callable[[str, str, int], None] | None = None

    def __post_init__(self) -> None:
        self.jobs = JobQueue(
            self.db, Job, lease=timedelta(seconds=self.settings.lease_seconds), service="uploads"
        )
        self.wake = Wakeup("hdhub:uploads:process", platform().redis_url)
        self._plain: ObjectStore | None = None
        self._store: ObjectStore | None = None
        self._next_sweep = 0.0

    @property
    def plain_store(self) -> ObjectStore:
        """The platform's store as it is (the drop folders, which hospitals read and write)."""
        if self._plain is None:
            self._plain = open_store()
        return self._plain

    @property
    def store(self) -> ObjectStore:
        """Where the service keeps sources and reports: encrypted at rest (``SealedStore``)."""
        if self._store is None:
            self._store = SealedStore(self.plain_store, self.settings.envelope(), purpose="uploads")
        return self._store

    # --- settings ---------------------------------------------------------------
    async def get_settings(self, organisation_id: str, project_code: str) -> dict[str, Any]:
        async with self.db.session([organisation_id]) as session:
            row = (
                await session.execute(
                    select(UploadSettings).where(UploadSettings.project_code == project_code)
                )
            ).scalar_one_or_none()
        return settings_dict(row)

    async def put_settings(
        self, organisation_id: str, project_code: str, values: dict[str, Any], by: str
    ) -> dict[str, Any]:
        async with self.db.session([organisation_id]) as session:
            row = (
                await session.execute(
                    select(UploadSettings).where(UploadSettings.project_code == project_code)
                )
            ).scalar_one_or_none()
            if row is None:
                row = UploadSettings(id=new_id(), organisation_id=organisation_id, project_code=project_code)
                session.add(row)
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at, row.updated_by = utcnow(), by
        return settings_dict(row)

    # --- taking a file in ---------------------------------------------------------
    async def find_by_idempotency_key(self, organisation_id: str, key: str) -> Upload | None:
        async with self.db.session([organisation_id]) as session:
            return (
                await session.execute(select(Upload).where(Upload.idempotency_key == key))
            ).scalar_one_or_none()

    async def create(
        self,
        *,
        organisation_id: str,
        filename: str,
        body: AsyncIterator[bytes],
        project_code: str,
        dcd_code: str,
        dcd_version: str,
        options: dict[str, Any],
        language: str,
        uploaded_by: str,
        idempotency_key: str | None,
        filename_of: Callable[[], str] | None = None,
    ) -> Upload:
        """Stream ``body`` into the object store (refused past the size limit, leaving no
        object), then record the upload and its job in one transaction."""
        upload_id = new_id()
        key = f"uploads/{organisation_id}/{upload_id}/source.csv"
        limit = self.settings.max_upload_bytes

        async def limited() -> AsyncIterator[bytes]:
            seen = 0
            async for chunk in body:
                seen += len(chunk)
                if seen > limit:
                    raise TooLarge()
                yield chunk

        try:
            stored = await self.store.put(key, limited(), content_type="text/csv")
        except TooLarge:
            raise Problem(
                413, "upload-too-large", "The file is too large", f"At most {limit} bytes per file."
            ) from None
        if filename_of is not None:  # a multipart body names its file only once read
            filename = filename_of()
        now = utcnow()
        upload = Upload(
            id=upload_id,
            organisation_id=organisation_id,
            idempotency_key=idempotency_key,
            filename=filename[:255],
            object_key=key,
            size=stored.size,
            sha256=stored.sha256 or "",
            project_code=project_code,
            dcd_code=dcd_code,
            dcd_version=dcd_version,
            options={**options, "batch_rows": self.settings.batch_rows},
            language=language,
            uploaded_by=uploaded_by,
            status="queued",
            steps={
                "select_file": "success",
                "validity_check": "pending",
                "upload": "pending",
                "finalize": "pending",
            },
            counts=empty_counts(),
            findings=[],
            file_info={},
            phase="validating" if options["validation"] == "validate_all" else "storing",
            batches_done=0,
            created_at=now,
            updated_at=now,
        )
        held = options.get("kind") == "sequences"
        if held:  # a linked file waits for the upload that links it; it has no job of its own
            upload.status, upload.steps = "held", {**upload.steps, "validity_check": "pending"}
        try:
            async with self.db.session([organisation_id]) as session:
                session.add(upload)
                if not held:
                    self.jobs.enqueue(
                        session,
                        PROCESS,
                        organisation_id=organisation_id,
                        subject_id=upload_id,
                        actor=uploaded_by,
                    )
                    after_commit(session, self.wake.notify)
        except IntegrityError:  # the same Idempotency-Key raced us: keep the first
            await self.store.delete(key)
            existing = await self.find_by_idempotency_key(organisation_id, idempotency_key or "")
            if existing is None:
                raise
            return existing
        return upload

    # --- retention ----------------------------------------------------------------
    async def schedule_sweep(self, now: datetime | None = None) -> bool:
        """Queue this hour's sweep of sources past their retention, once between all
        workers (the job id is the hour); checked every :data:`SWEEP_EVERY` seconds."""
        if time.monotonic() < self._next_sweep:
            return False
        self._next_sweep = time.monotonic() + SWEEP_EVERY
        slot = (now or utcnow()).strftime("sweep-%Y%m%d%H")
        try:
            async with self.db.system_session() as session:
                if await session.get(Job, slot) is not None:
                    return False
                self.jobs.enqueue(session, PURGE_SOURCES, subject_id=slot, job_id=slot)
        except IntegrityError:  # another worker queued it first
            return False
        return True

    async def purge_sources(self, *, upload_id: str | None = None, now: datetime | None = None) -> int:
        """Delete processed sources from the object store, and note it on their uploads:
        ``upload_id``'s at once (a dry run), else every upload finished (done, failed,
        linked) or held longer than the retention ago. Idempotent: two workers purging
        the same upload both delete the object and one of them marks it."""
        now = now or utcnow()
        cutoff = now - timedelta(days=self.settings.source_retention_days)
        q = select(Upload.id, Upload.object_key).where(Upload.source_purged_at.is_(None))
        if upload_id is not None:
            q = q.where(Upload.id == upload_id, Upload.status.in_(("done", "failed", "linked")))
        else:
            q = q.where(
                or_(
                    Upload.status.in_(("done", "failed", "linked")) & (Upload.finished_at < cutoff),
                    (Upload.status == "held") & (Upload.created_at < cutoff),
                )
            ).limit(500)
        async with self.db.system_session() as session:
            due = list((await session.execute(q)).all())
        purged = 0
        for up_id, key in due:
            with contextlib.suppress(ObjectNotFound):
                await self.store.delete(key)
            async with self.db.system_session() as session:
                result = await session.execute(
                    update(Upload)
                    .where(Upload.id == up_id, Upload.source_purged_at.is_(None))
                    .values(source_purged_at=now)
                )
                purged += int(getattr(result, "rowcount", 0) or 0)
        if purged:
            log.info("upload sources purged", extra={"count": purged, "upload_id": upload_id or ""})
        return purged

    # --- reading ----------------------------------------------------------------
    async def get(self, organisations: list[str], upload_id: str) -> Upload:
        async with self.db.session(organisations) as session:
            upload = await session.get(Upload, upload_id)
            if upload is None or upload.organisation_id not in organisations:
                raise not_found("Upload")
            return upload

    async def list(self, organisations: list[str], *, limit: int, offset: int) -> tuple[list[Upload], int]:
        async with self.db.session(organisations) as session:
            total = (await session.execute(select(func.count()).select_from(Upload))).scalar_one()
            items = (
                await session.execute(
                    select(Upload).order_by(Upload.created_at.desc(), Upload.id).limit(limit).offset(offset)
                )
            ).scalars()
            return list(items), int(total)


def settings_dict(row: UploadSettings | None) -> dict[str, Any]:
    if row is None:
        return dict(DEFAULT_SETTINGS)
    return {k: getattr(row, k) for k in DEFAULT_SETTINGS}


def empty_counts() -> dict[str, int]:
    return {
        "rows_read": 0,
        "rows_checked": 0,
        "created": 0,
        "updated": 0,
        "ignored_duplicate": 0,
        "kept_stored": 0,
        "rejected": 0,
        "rows_with_errors": 0,
        "errors": 0,
        "warnings": 0,
    }
