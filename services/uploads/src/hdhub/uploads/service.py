"""The Upload Center's domain operations: settings per organisation and registry, taking
in a file (streamed into the object store), and reading uploads back.

The methods taking a :class:`~hdhub.common.auth.Principal` are the one way in for callers
(the REST routes and the gRPC servicer alike): they apply the rules of who may read,
upload and change settings for which organisation, so both edges refuse the same callers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from hdhub.common.auth import Action, Principal, scope_allows
from hdhub.common.config import platform
from hdhub.common.db import Database, after_commit, new_id, registry_condition, utcnow
from hdhub.common.errors import Problem, forbidden, not_found
from hdhub.common.jobs import JobQueue
from hdhub.common.objectstore import ObjectNotFound, ObjectStore, SealedStore, open_store
from hdhub.common.wakeup import Wakeup
from hdhub.uploads import registrations as regs
from hdhub.uploads.reports import finding_rows, stream_report
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
#: An upload in one of these states changes no more.
FINISHED = ("done", "failed", "linked")
#: How often a watched upload is read again.
WATCH_EVERY = 0.5


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class NewUpload:
    """What a caller asks for with a file: the REST route's query, the gRPC header."""

    dcd_code: str
    #: The caller's only organisation when None.
    organisation_id: str | None = None
    #: The newest when None.
    version: str | None = None
    #: This upload's own settings (``validation``, ``conflict_master``, ``ignore_duplicates``,
    #: ``autosubmit``); those left None come from the organisation's settings for the registry.
    overrides: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    kind: Literal["registrations", "sequences"] = "registrations"
    linked_upload_id: str | None = None
    language: str = "en"
    idempotency_key: str | None = None


@dataclass(frozen=True)
class IncomingFile:
    """A file on its way in: its bytes as they arrive, and its name as kept (a multipart
    body names its file only once its part begins, so the name is asked for late)."""

    body: AsyncIterator[bytes]
    filename: Callable[[], str]


@dataclass(frozen=True)
class RegistrySettings:
    """An organisation's settings for a registry, and who last set them (none: the defaults)."""

    values: dict[str, Any]
    updated_by: str = ""
    updated_at: datetime | None = None


def acting_organisation(principal: Principal, organisation_id: str | None, action: Action) -> str:
    """The organisation named, or the caller's only one; 403 when the caller may not act for it."""
    if organisation_id is None:
        mine = principal.organisations_for(action)
        if not mine:
            raise forbidden()
        if len(mine) != 1:
            raise Problem(
                400,
                "organisation-required",
                "Name the organisation",
                "Pass organisation_id: you act for several or none.",
            )
        return mine[0]
    if not principal.can(action, organisation_id):
        raise forbidden()
    return organisation_id


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
        return (await self._settings(organisation_id, project_code)).values

    async def _settings(self, organisation_id: str, project_code: str) -> RegistrySettings:
        async with self.db.session([organisation_id]) as session:
            row = (
                await session.execute(
                    select(UploadSettings).where(UploadSettings.project_code == project_code)
                )
            ).scalar_one_or_none()
        return registry_settings(row)

    async def put_settings(
        self, organisation_id: str, project_code: str, values: dict[str, Any], by: str
    ) -> RegistrySettings:
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
        return registry_settings(row)

    async def settings_for(
        self, principal: Principal, organisation_id: str, project_code: str
    ) -> RegistrySettings:
        """A registry's settings for whoever may read the organisation's registrations; the
        organisation is "not found" for anyone else."""
        if not principal.can(Action.REGISTRATION_READ, organisation_id):
            raise not_found("Organisation")
        principal.require_registry(Action.REGISTRATION_READ, organisation_id, project_code)
        return await self._settings(organisation_id, project_code)

    async def change_settings(
        self, principal: Principal, organisation_id: str, project_code: str, values: dict[str, Any]
    ) -> RegistrySettings:
        """Set a registry's settings: those who may upload for the organisation may (403 for
        its readers; "not found" for anyone else)."""
        if not principal.can(Action.REGISTRATION_READ, organisation_id):
            raise not_found("Organisation")
        if not principal.can(Action.REGISTRATION_WRITE, organisation_id):
            raise forbidden()
        principal.require_registry(Action.REGISTRATION_WRITE, organisation_id, project_code)
        return await self.put_settings(organisation_id, project_code, values, principal.username)

    # --- taking a file in ---------------------------------------------------------
    async def receive(
        self, principal: Principal, new: NewUpload, open_file: Callable[[], IncomingFile]
    ) -> tuple[Upload, bool]:
        """A caller's file, stored and queued under the settings in force, once the caller
        may upload for the organisation; ``open_file`` is called only then. The upload, and
        whether it is the one an earlier request with the same idempotency key made (then
        nothing is read)."""
        org = acting_organisation(principal, new.organisation_id, Action.REGISTRATION_WRITE)
        if new.idempotency_key is not None:
            existing = await self.find_by_idempotency_key(org, new.idempotency_key)
            if existing is not None:
                # A key is the client's word: it replays an upload of the registries granted only.
                principal.require_registry(Action.REGISTRATION_WRITE, org, existing.project_code)
                return existing, True
        dcd = await regs.dcd_summary(new.dcd_code, new.version)
        principal.require_registry(Action.REGISTRATION_WRITE, org, dcd.project_code)
        options = await self.get_settings(org, dcd.project_code)
        options.update({k: v for k, v in new.overrides.items() if v is not None})
        options["dry_run"] = new.dry_run
        options["kind"] = new.kind
        if new.linked_upload_id is not None:
            writable = principal.scope_for(Action.REGISTRATION_WRITE).narrowed(org)
            options["linked_upload_id"] = (await self._linkable(writable, new.linked_upload_id)).id
        incoming = open_file()
        upload = await self.create(
            organisation_id=org,
            filename=incoming.filename(),
            body=incoming.body,
            project_code=dcd.project_code,
            dcd_code=dcd.dcd_code,
            dcd_version=dcd.version,
            options=options,
            language=new.language,
            uploaded_by=principal.username,
            idempotency_key=new.idempotency_key,
            filename_of=incoming.filename,
        )
        return upload, False

    async def _linkable(self, organisations: list[str], upload_id: str) -> Upload:
        """A held sequences upload of the organisation (of a registry granted to the caller:
        ``organisations`` is its Scope there), whose file is still there."""
        linked = await self.get(organisations, upload_id)
        if linked.source_purged_at is not None:
            raise Problem(
                410,
                "upload-source-purged",
                "That upload's file is gone",
                "Its retention ran out and the file was deleted; upload the sequence file again.",
            )
        if linked.options.get("kind") != "sequences" or linked.status != "held":
            raise Problem(
                409, "not-linkable", "That upload cannot be linked", "Link a held sequences upload, once."
            )
        return linked

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
    async def readable(self, principal: Principal, upload_id: str) -> Upload:
        """An upload of an organisation whose registrations the caller may read; "not
        found" otherwise, whether or not it exists elsewhere."""
        return await self.get(principal.scope_for(Action.REGISTRATION_READ), upload_id)

    async def listing(
        self, principal: Principal, organisation_id: str | None, *, limit: int, offset: int
    ) -> tuple[list[Upload], int]:
        """The uploads of the caller's organisations (or of the one named: 403 when the
        caller may not read its registrations), newest first, and how many there are."""
        organisations = principal.scope_for(Action.REGISTRATION_READ)
        if organisation_id is not None:
            if organisation_id not in organisations:
                raise forbidden()
            organisations = organisations.narrowed(organisation_id)
        return await self.list(organisations, limit=limit, offset=offset)

    async def watch(self, principal: Principal, upload_id: str) -> AsyncIterator[Upload]:
        """The upload now and at each change of its status, steps or counts, until it is
        finished. Raises "not found" here, before anything is streamed."""
        organisations = principal.scope_for(Action.REGISTRATION_READ)
        await self.get(organisations, upload_id)
        return self._changes(organisations, upload_id)

    async def _changes(self, organisations: list[str], upload_id: str) -> AsyncIterator[Upload]:
        last = None
        while True:
            upload = await self.get(organisations, upload_id)
            snapshot = json.dumps([upload.status, upload.steps, upload.counts], sort_keys=True)
            if snapshot != last:
                last = snapshot
                yield upload
            if upload.status in FINISHED:
                return
            await asyncio.sleep(WATCH_EVERY)

    def report(self, upload: Upload, kind: str) -> tuple[str, AsyncIterator[bytes]]:
        """An upload's error or success report: its file name and its bytes as one CSV, the
        file's own findings (but notes of severity info) first, then the parts written per
        batch. The caller has read the upload (:meth:`readable`)."""
        notes = [f for f in upload.findings if f["severity"] != "info"]  # info stays in the upload's view
        head = finding_rows(notes, upload.language) if kind == "errors" else []
        stem = upload.filename.rsplit(".", 1)[0][:80] or "upload"
        return f"{stem}-{kind}.csv", stream_report(self.store, upload.organisation_id, upload.id, kind, head)

    async def get(self, organisations: list[str], upload_id: str) -> Upload:
        async with self.db.session(organisations) as session:
            upload = await session.get(Upload, upload_id)
            if upload is None or not scope_allows(organisations, upload.organisation_id, upload.project_code):
                raise not_found("Upload")
            return upload

    async def list(self, organisations: list[str], *, limit: int, offset: int) -> tuple[list[Upload], int]:
        async with self.db.session(organisations) as session:
            query = select(Upload)
            granted = registry_condition(organisations, Upload.organisation_id, Upload.project_code)
            query = query if granted is None else query.where(granted)
            total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            items = (
                await session.execute(
                    query.order_by(Upload.created_at.desc(), Upload.id).limit(limit).offset(offset)
                )
            ).scalars()
            return list(items), int(total)


def registry_settings(row: UploadSettings | None) -> RegistrySettings:
    if row is None:
        return RegistrySettings(dict(DEFAULT_SETTINGS))
    return RegistrySettings({k: getattr(row, k) for k in DEFAULT_SETTINGS}, row.updated_by, row.updated_at)


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
