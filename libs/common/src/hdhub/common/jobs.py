"""Durable background jobs: the job row is written in the same transaction as the change
that caused it; workers claim jobs with a lease, so a crashed worker's job is taken over
once the lease runs out, and every job is done by exactly one worker at a time.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``; SQLite (one process on a laptop)
relies on its single writer. Failures back off exponentially; a job that keeps failing
is parked (status ``parked``) where an operator sees it: grouped by organisation, kind
and error type (:func:`parked_job_groups`), then retried (:func:`retry_parked`) or set
aside (:func:`archive_parked`, status ``archived``: never claimed, never purged, listed
apart), each with the operator's reason.

A job carries the organisation and the actor (person or hospital system) of the request
that caused it, so the service doing it later acts for them and no one else
(:meth:`JobQueue.acting_for`, :func:`hdhub.common.service_auth.acting_as_service`).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, Text, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import BindParameter

from hdhub.common.auth import ActingFor
from hdhub.common.db import Database, UTCDateTime, bulk_insert, new_id, new_ids, utcnow
from hdhub.common.errors import FieldProblem, invalid
from hdhub.common.metrics import jobs_claimed, jobs_ended
from hdhub.common.telemetry import enqueue_span, inject_context

log = logging.getLogger("hdhub.jobs")

QUEUED, RUNNING, DONE, PARKED = "queued", "running", "done", "parked"
#: A parked job the operator set aside: never claimed, never purged, not counted as parked.
ARCHIVED = "archived"
#: Where a job's payload keeps its actor (the organisation has a column of its own).
ACTOR_KEY = "actor"
#: How often (seconds) a process's queue deletes finished jobs past their retention.
PURGE_EVERY = 600.0


class JobColumns:
    """Mixin for a service's ``jobs`` table: ``class Job(JobColumns, Base): __tablename__ = "jobs"``."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    organisation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    trace_context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


def _with_actor(payload: dict[str, Any] | None, actor: str | None) -> dict[str, Any]:
    return {**(payload or {}), ACTOR_KEY: actor} if actor else dict(payload or {})


def _own_trace(given: dict[str, str] | None, producer: dict[str, str]) -> dict[str, str]:
    """The trace context a job of a batch stores: ``given`` (its own journey's) when that is
    another trace than the producer span's, else the producer span's (a descendant of it)."""
    if not given:
        return producer
    return producer if _trace_id(given) == _trace_id(producer) else given


def _trace_id(carrier: dict[str, str]) -> str:
    return carrier.get("traceparent", "").partition("-")[2].partition("-")[0]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def default_lease() -> timedelta:
    """``HDHUB_JOB_LEASE_SECONDS`` (60)."""
    from hdhub.common.config import platform

    return timedelta(seconds=platform().job_lease_seconds)


@dataclass
class JobQueue:
    """Enqueue, claim, finish and retry jobs of one service's ``Job`` model.

    ``service`` labels the job metrics (claimed, ended by outcome, duration):
    :mod:`hdhub.common.metrics`."""

    db: Database
    model: type[Any]
    lease: timedelta = field(default_factory=default_lease)
    max_attempts: int = 8
    service: str = "hdhub"
    _next_purge: float = field(default=0.0, init=False, repr=False)
    _claims: dict[tuple[tuple[str, ...], int], Any] = field(default_factory=dict, init=False, repr=False)

    def enqueue(
        self,
        session: AsyncSession,
        kind: str,
        *,
        payload: dict[str, Any] | None = None,
        organisation_id: str | None = None,
        subject_id: str | None = None,
        run_after: datetime | None = None,
        job_id: str | None = None,
        actor: str | None = None,
    ) -> Any:
        """Add a job in the caller's transaction; it runs only if that transaction commits.

        ``organisation_id`` and ``actor`` (the person or hospital system whose request
        caused the job) say whose work it is; the job acts for them (:meth:`acting_for`).

        ``job_id`` makes enqueueing idempotent: a second job with the same id fails the
        insert (IntegrityError) instead of doing the work twice.

        A producer span (``send <kind>``) is recorded, and its trace context stored with
        the job: the span that processes it continues this trace."""
        job_id = job_id or new_id()
        with enqueue_span(kind, job_id=job_id):
            trace = inject_context()
        job = self.model(
            id=job_id,
            kind=kind,
            payload=_with_actor(payload, actor),
            organisation_id=organisation_id,
            subject_id=subject_id,
            run_after=run_after or utcnow(),
            trace_context=trace,
            status=QUEUED,
            attempts=0,
        )
        session.add(job)
        return job

    async def enqueue_many(self, session: AsyncSession, kind: str, items: list[dict[str, Any]]) -> None:
        """Add many jobs in the caller's transaction, in one bulk insert (COPY on PostgreSQL).

        Each item may carry ``payload``, ``organisation_id``, ``actor``, ``subject_id``,
        ``run_after`` and ``trace_context`` (default: the producer span's; a job following
        one of a batch of many traces passes that job's, see
        :func:`hdhub.common.telemetry.job_context`), and ``status`` with ``last_error``
        for a job written parked (default: queued).
        """
        with enqueue_span(kind, count=len(items)):
            trace = inject_context()
        now = utcnow()
        ids = new_ids(len(items))
        rows = [
            {
                "id": job_id,
                "kind": kind,
                "organisation_id": item.get("organisation_id"),
                "subject_id": item.get("subject_id"),
                "payload": _with_actor(item.get("payload"), item.get("actor")),
                "status": item.get("status", QUEUED),
                "attempts": 0,
                "run_after": item.get("run_after") or now,
                "lease_until": None,
                "worker": None,
                "trace_context": _own_trace(item.get("trace_context"), trace),
                "last_error": item.get("last_error"),
                "created_at": now,
                "finished_at": None,
            }
            for job_id, item in zip(ids, items, strict=True)
        ]
        await bulk_insert(session, self.model, rows)

    @staticmethod
    def acting_for(job: Any) -> ActingFor | None:
        """Whose work ``job`` is: its organisation and actor; None for work of no
        organisation (a schedule's run, housekeeping)."""
        actor = (job.payload or {}).get(ACTOR_KEY)
        if not job.organisation_id or not actor:
            return None
        return ActingFor(job.organisation_id, str(actor))

    async def claim(
        self, kinds: list[str], *, limit: int = 10, worker: str | None = None, now: datetime | None = None
    ) -> list[Any]:
        """Take up to ``limit`` due jobs (or jobs whose lease ran out) for this worker, in one
        statement: ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``
        on PostgreSQL (concurrent workers never take the same job); SQLite has one writer."""
        await self._housekeeping()
        now = now or utcnow()
        statement = self._claim_statement(tuple(kinds), limit)
        params = {"claim_now": now, "claim_lease": now + self.lease, "claim_worker": worker or worker_name()}
        async with self.db.system_session() as session:
            rows = (await session.execute(statement, params)).mappings().all()
        # Plain instances (the session is gone, as with the detached ones before).
        claimed = [self.model(**row) for row in rows]
        jobs_claimed(self.service, claimed)
        return claimed

    def _claim_statement(self, kinds: tuple[str, ...], limit: int) -> Any:
        """The claim's statement for these kinds and limit, built once with its moment,
        lease and worker as bind parameters, on the table (Core: the ORM copies a statement
        at each execution, and SQLAlchemy walks a new statement whole for its cache key).
        Built afresh at every poll, an idle platform spent most of its CPU there (workers
        poll every half second)."""
        statement = self._claims.get((kinds, limit))
        if statement is not None:
            return statement
        Job = self.model.__table__.c
        now: BindParameter[datetime] = bindparam("claim_now")
        due = or_(
            (Job.status == QUEUED) & (Job.run_after <= now),
            (Job.status == RUNNING) & (Job.lease_until < now),
        )
        candidates = select(Job.id).where(Job.kind.in_(kinds), due).order_by(Job.run_after).limit(limit)
        if self.db.is_postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        statement = (
            update(self.model.__table__)
            .where(Job.id.in_(candidates.scalar_subquery()), due)
            .values(
                status=RUNNING,
                lease_until=bindparam("claim_lease"),
                worker=bindparam("claim_worker"),
                attempts=Job.attempts + 1,
            )
            .returning(*self.model.__table__.c)
        )
        self._claims[(kinds, limit)] = statement
        return statement

    @staticmethod
    def ended(job_ids: list[str], outcome: str) -> None:
        """Count the end of claimed jobs' attempts changed without this queue (set-based
        updates of a service's own): ``done``, ``failed``, ``parked`` or ``deferred``."""
        jobs_ended(job_ids, outcome)

    async def finish(self, session: AsyncSession, job_id: str) -> None:
        """Mark a job done, in the transaction that applied its effect."""
        Job = self.model
        await session.execute(
            update(Job).where(Job.id == job_id).values(status=DONE, finished_at=utcnow(), lease_until=None)
        )
        jobs_ended([job_id], DONE)

    async def finish_many(self, session: AsyncSession, job_ids: list[str]) -> None:
        """Mark jobs done in one statement, in the transaction that applied their effects."""
        Job = self.model
        await session.execute(
            update(Job)
            .where(self.db.among(Job.id, job_ids))
            .values(status=DONE, finished_at=utcnow(), lease_until=None)
            .execution_options(synchronize_session=False)
        )
        jobs_ended(job_ids, DONE)

    async def purge(self, *, older_than: timedelta, now: datetime | None = None, limit: int = 5000) -> int:
        """Delete jobs that finished more than ``older_than`` ago, at most ``limit`` per call;
        the number deleted. Parked jobs stay for the operator to look at."""
        Job = self.model
        cutoff = (now or utcnow()) - older_than
        old = select(Job.id).where(Job.status == DONE, Job.finished_at < cutoff).limit(limit)
        async with self.db.system_session() as session:
            result = await session.execute(
                delete(Job)
                .where(Job.id.in_(old.scalar_subquery()))
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def _housekeeping(self) -> None:
        """Every ``PURGE_EVERY`` seconds, from whichever worker claims next: finished jobs
        past the installation's retention are deleted, so the table the workers claim from
        holds what is pending and recent, not every job there ever was."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY
        from hdhub.common.config import platform

        days = platform().jobs_retention_days
        try:
            purged = await self.purge(older_than=timedelta(days=days))
        except Exception:  # noqa: BLE001 - housekeeping never stops the work itself
            log.warning("finished jobs not purged", exc_info=True)
            return
        if purged:
            log.info("finished jobs purged", extra={"count": purged, "retention_days": days})

    async def defer(self, session: AsyncSession, job_id: str, until: datetime) -> None:
        """Give a claimed job back, to be claimed again at ``until``: it is waiting on
        something else, not failing, so the attempt does not count."""
        Job = self.model
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=QUEUED, lease_until=None, worker=None, run_after=until, attempts=Job.attempts - 1)
        )
        jobs_ended([job_id], "deferred")

    async def parked_groups(
        self, *, organisation_id: str | None, archived: bool = False
    ) -> list[ParkedJobGroup]:
        """This queue's table's parked (or archived) jobs, grouped: :func:`parked_job_groups`."""
        return await parked_job_groups(
            self.db, self.model, organisation_id=organisation_id, archived=archived
        )

    async def retry_parked(self, *, organisation_id: str, reason: str, **options: Any) -> int:
        """Queue parked jobs again (attempts 0, due now): :func:`retry_parked`."""
        return await retry_parked(
            self.db, self.model, organisation_id=organisation_id, reason=reason, **options
        )

    async def archive_parked(self, *, organisation_id: str, reason: str, **options: Any) -> int:
        """Set parked jobs aside (status ``archived``): :func:`archive_parked`."""
        return await archive_parked(
            self.db, self.model, organisation_id=organisation_id, reason=reason, **options
        )

    async def fail(self, job_id: str, error: str, *, now: datetime | None = None) -> str:
        """Record a failure: retry with exponential back-off, or park after ``max_attempts``."""
        now = now or utcnow()
        Job = self.model
        async with self.db.system_session() as session:
            job = await session.get(Job, job_id)
            if job is None:
                return DONE
            if job.attempts >= self.max_attempts:
                job.status, job.lease_until, job.last_error = PARKED, None, error[:2000]
                log.warning(
                    "job parked", extra={"job_id": job_id, "kind": job.kind, "attempts": job.attempts}
                )
            else:
                delay = min(2**job.attempts, 3600)
                job.status, job.lease_until = QUEUED, None
                job.run_after, job.last_error = now + timedelta(seconds=delay), error[:2000]
            outcome = str(job.status)
        jobs_ended([job_id], PARKED if outcome == PARKED else "failed")
        return outcome


# --- parked jobs, for the operator ---------------------------------------------------------

#: An exception's class name or a failure code: anything else is reported as ``other``.
_ERROR_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")
#: What an operator's reason must be: something a colleague reading the audit understands.
REASON_MIN, REASON_MAX = 3, 500


def error_type(last_error: str | None) -> str:
    """The type of a job's last error (what precedes the first ``:`` when it is a name),
    never its free text, which may carry anything."""
    head = (last_error or "").split(":", 1)[0].strip()
    return head if _ERROR_TYPE.fullmatch(head) else "other"


def check_reason(reason: str) -> str:
    """The operator's reason, stripped: 3 to 500 characters, else INVALID_ARGUMENT naming ``reason``."""
    reason = (reason or "").strip()
    if not REASON_MIN <= len(reason) <= REASON_MAX:
        raise invalid(
            [FieldProblem("reason", "length", f"Say why in {REASON_MIN} to {REASON_MAX} characters.")]
        )
    if not plain_text(reason):
        raise invalid([FieldProblem("reason", "characters", PLAIN_TEXT_MESSAGE)])
    return reason


#: Why a reason or a name was refused for its characters.
PLAIN_TEXT_MESSAGE = "Write it without control or text-direction characters."


def plain_text(text: str) -> bool:
    """``text`` holds no control character but a line break or tab, and no format character
    (a right-to-left override makes an audit line read otherwise than it was written)."""
    return all(c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf") for c in text)


@dataclass
class ParkedJobGroup:
    """Parked (or archived) jobs of one organisation, kind and error type: counts only."""

    organisation_id: str
    kind: str
    error_type: str
    jobs: int
    max_attempts: int
    oldest_at: datetime | None


async def parked_job_groups(
    db: Database, model: type[Any], *, organisation_id: str | None, archived: bool = False
) -> list[ParkedJobGroup]:
    """The parked jobs of ``model``'s table (or the archived ones), of one organisation or
    every one, grouped by organisation, kind and error type: no payload, no subject, no
    free text of an error."""
    Job = model
    query = (
        select(
            Job.organisation_id,
            Job.kind,
            Job.last_error,
            func.count(),
            func.max(Job.attempts),
            func.min(Job.created_at),
        )
        .where(Job.status == (ARCHIVED if archived else PARKED))
        .group_by(Job.organisation_id, Job.kind, Job.last_error)
    )
    if organisation_id:
        query = query.where(Job.organisation_id == organisation_id)
    groups: dict[tuple[str, str, str], ParkedJobGroup] = {}
    async with db.system_session() as session:
        for org, kind, last_error, n, attempts, oldest in await session.execute(query):
            key = (org or "", kind, error_type(last_error))
            g = groups.setdefault(key, ParkedJobGroup(*key, 0, 0, None))
            g.jobs += int(n)
            g.max_attempts = max(g.max_attempts, int(attempts or 0))
            if oldest is not None and (g.oldest_at is None or oldest < g.oldest_at):
                g.oldest_at = oldest
    return [groups[k] for k in sorted(groups)]


def _check_kind(kind: str | None, refused_kinds: Mapping[str, str]) -> None:
    if kind and kind in refused_kinds:
        raise invalid([FieldProblem("kind", "handled_elsewhere", refused_kinds[kind])])


async def _move_parked(
    db: Database,
    model: type[Any],
    *,
    organisation_id: str,
    kind: str | None,
    error_type_: str | None,
    from_status: str,
    refused_kinds: Mapping[str, str],
    values: dict[str, Any],
) -> int:
    """Move the jobs of one organisation in ``from_status`` (optionally of one kind and one
    error type; never of a kind in ``refused_kinds``) with ``values``: how many moved. The
    update checks the status again, so a job that changed meanwhile is left alone."""
    Job = model
    where = [Job.organisation_id == organisation_id, Job.status == from_status]
    if kind:
        where.append(Job.kind == kind)
    elif refused_kinds:
        where.append(Job.kind.not_in(list(refused_kinds)))
    async with db.system_session() as session:
        found = (await session.execute(select(Job.id, Job.last_error).where(*where))).all()
        ids = [i for i, last_error in found if not error_type_ or error_type(last_error) == error_type_]
        if not ids:
            return 0
        result = await session.execute(
            update(Job)
            .where(db.among(Job.id, ids), Job.status == from_status)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


async def retry_parked(
    db: Database,
    model: type[Any],
    *,
    organisation_id: str,
    reason: str,
    kind: str | None = None,
    error_type: str | None = None,
    archived: bool = False,
    refused_kinds: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> int:
    """Queue again the parked jobs of ``organisation_id`` (or its archived ones), optionally
    of one ``kind`` and one ``error_type`` (a group the console shows): attempts from 0, due
    now, no lease. ``refused_kinds`` (kind: why) are jobs another action retries: naming
    one is refused (INVALID_ARGUMENT on ``kind``), and retrying every kind leaves them out.
    The operator's ``reason`` (3..500 characters) is required. How many were retried."""
    check_reason(reason)
    refused = refused_kinds or {}
    _check_kind(kind, refused)
    return await _move_parked(
        db,
        model,
        organisation_id=organisation_id,
        kind=kind,
        error_type_=error_type,
        from_status=ARCHIVED if archived else PARKED,
        refused_kinds=refused,
        values={
            "status": QUEUED,
            "attempts": 0,
            "run_after": now or utcnow(),
            "lease_until": None,
            "worker": None,
            "finished_at": None,
        },
    )


async def archive_parked(
    db: Database,
    model: type[Any],
    *,
    organisation_id: str,
    reason: str,
    kind: str | None = None,
    error_type: str | None = None,
    refused_kinds: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> int:
    """Set aside the parked jobs of ``organisation_id`` (optionally of one ``kind`` and one
    ``error_type``): status ``archived``, never claimed nor purged, out of the parked list
    and count, listed as archived and retried from there if need be (``finished_at`` says
    when they were archived). ``refused_kinds`` and ``reason`` as for :func:`retry_parked`.
    How many were archived."""
    check_reason(reason)
    refused = refused_kinds or {}
    _check_kind(kind, refused)
    return await _move_parked(
        db,
        model,
        organisation_id=organisation_id,
        kind=kind,
        error_type_=error_type,
        from_status=PARKED,
        refused_kinds=refused,
        values={"status": ARCHIVED, "lease_until": None, "worker": None, "finished_at": now or utcnow()},
    )
