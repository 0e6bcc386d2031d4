"""The Upload Center's domain operations: settings per organisation and registry, taking
in a file (streamed into the object store), and reading uploads back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hdhub.common.config import platform
from hdhub.common.db import Database, after_commit, new_id, utcnow
from hdhub.common.errors import Problem, not_found
from hdhub.common.jobs import JobQueue
from hdhub.common.objectstore import ObjectStore, open_store
from hdhub.common.wakeup import Wakeup
from hdhub.uploads.settings import UploadsSettings
from hdhub.uploads.store import Job, Upload, UploadSettings

log = logging.getLogger("hdhub.uploads")

PROCESS = "upload.process"
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
        self.jobs = JobQueue(self.db, Job, lease=timedelta(seconds=self.settings.lease_seconds), service="uploads")
        self.wake = Wakeup("hdhub:uploads:process", platform().redis_url)
        self._store: ObjectStore | None = None

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store()
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
                        session, PROCESS, organisation_id=organisation_id, subject_id=upload_id, actor=uploaded_by
                    )
                    after_commit(session, self.wake.notify)
        except IntegrityError:  # the same Idempotency-Key raced us: keep the first
            await self.store.delete(key)
            existing = await self.find_by_idempotency_key(organisation_id, idempotency_key or "")
            if existing is None:
                raise
            return existing
        return upload

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
