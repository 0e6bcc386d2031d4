"""The messages aggregate: make a message from a submission (build, validate, seal), move it
between statuses with every move recorded, send it, and record MyCareNet's TACK.

A message is made once per submission (registration id and version): the unique key makes
a repeated hand-over (a retried gRPC call, a job redone after a crash) answer the first
message. A send that dies half-way is redone with the same message id, which the
receiving side uses to drop the duplicate: a crash neither loses nor doubles a message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.config import platform
from hdhub.common.db import Database, after_commit, new_id, utcnow
from hdhub.common.envelope import Envelope
from hdhub.common.errors import FieldProblem, Problem, invalid, not_found
from hdhub.common.jobs import JobQueue
from hdhub.common.tack import Outcome, Tack
from hdhub.common.wakeup import Wakeup
from hdhub.nippin.domain import message as xml_message
from hdhub.nippin.domain import statuses
from hdhub.nippin.domain.statuses import ARCHIVED, ERROR, INVALID, SENT, TO_SEND
from hdhub.nippin.mycarenet import Folder, Rest, Unreachable
from hdhub.nippin.settings import NippinSettings
from hdhub.nippin.store import Job, MessageTransition, NippinMessage

log = logging.getLogger("hdhub.nippin")

SEND_JOB = "send"
NONCE = 12
#: The length of the reason a person gives for archiving a message.
ARCHIVE_REASON_MIN, ARCHIVE_REASON_MAX = 3, 500


@dataclass(frozen=True, slots=True)
class Submission:
    """What registrations hands over: one submission's NIPPIN-bound values."""

    organisation_id: str
    registration_id: str
    registration_version: int
    registration_code: str
    project_code: str
    dcd_code: str
    dcd_version: str
    #: (xml name, value) per bound field, in the DCD's order.
    fields: tuple[tuple[str, str], ...]


def _implant_date(fields: Sequence[tuple[str, str]]) -> date | None:
    value = dict(fields).get(xml_message.IMPLANT_DATE, "")
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


async def message_and_moves(
    session: AsyncSession, message_id: str
) -> tuple[NippinMessage, list[MessageTransition]]:
    """A message (of the session's organisations) and its moves, oldest first; 404 when
    there is none."""
    message = await session.get(NippinMessage, message_id)
    if message is None:
        raise not_found("Message")
    moves = await session.execute(
        select(MessageTransition)
        .where(MessageTransition.message_id == message.id)
        .order_by(MessageTransition.id)
    )
    return message, list(moves.scalars())


class Messages:
    def __init__(self, db: Database, settings: NippinSettings, envelope: Envelope) -> None:
        self.db = db
        self.settings = settings
        self.envelope = envelope
        # Sends wait on MyCareNet with their own back-off (defer), never park.
        self.jobs = JobQueue(
            db,
            Job,
            lease=timedelta(
                seconds=max(platform().job_lease_seconds, settings.mycarenet_timeout_seconds * 2)
            ),
        )
        self.wake = Wakeup("hdhub:nippin:work", platform().redis_url)
        self.rest = Rest(settings.resolved_mycarenet_url(), timeout=settings.mycarenet_timeout_seconds)
        self.folder = Folder(settings.resolved_folder())

    # --- sealing: the XML holds the SSIN ----------------------------------------------

    def _seal(self, message_id: str, xml: bytes) -> tuple[bytes, bytes, str]:
        aad = f"nippin-message:{message_id}".encode()
        data_key, wrapped, key_id = self.envelope.new_data_key(aad)
        nonce = os.urandom(NONCE)
        return nonce + AESGCM(data_key).encrypt(nonce, xml, aad), wrapped, key_id

    def xml_of(self, message: NippinMessage) -> bytes:
        """The message's XML, opened (only to send it or export it; never logged)."""
        if message.xml_sealed is None:
            raise Problem(410, "message-purged", "The message's content was deleted after its retention")
        aad = f"nippin-message:{message.id}".encode()
        data_key = self.envelope.unwrap(message.wrapped_key, message.master_key_id, aad)
        sealed = message.xml_sealed
        return AESGCM(data_key).decrypt(sealed[:NONCE], sealed[NONCE:], aad)

    # --- making a message ---------------------------------------------------------------

    async def submit(self, submission: Submission) -> tuple[NippinMessage, bool]:
        """The message of a submission, made now (validated, TO_SEND or INVALID, its send
        job enqueued in the same transaction) or found (True: made before)."""
        existing = await self.of_submission(submission)
        if existing is not None:
            return existing, True
        try:
            async with self.db.session([submission.organisation_id]) as session:
                message, cause = self._make(submission)
                session.add(message)
                await session.flush()  # the row first: its transitions refer to it
                self._record(session, message, None, message.status, cause)
                if message.status == TO_SEND:
                    self.jobs.enqueue(
                        session,
                        SEND_JOB,
                        organisation_id=message.organisation_id,
                        subject_id=message.id,
                        job_id=message.id,
                    )
                    after_commit(session, self.wake.notify)
        except IntegrityError:  # the same submission handed over concurrently: theirs stands
            existing = await self.of_submission(submission)
            if existing is None:
                raise
            return existing, True
        return message, False

    async def of_submission(self, submission: Submission) -> NippinMessage | None:
        async with self.db.session([submission.organisation_id]) as session:
            return (
                await session.execute(
                    select(NippinMessage).where(
                        NippinMessage.registration_id == submission.registration_id,
                        NippinMessage.registration_version == submission.registration_version,
                    )
                )
            ).scalar_one_or_none()

    def _make(self, s: Submission) -> tuple[NippinMessage, str]:
        """The message of a submission, built, validated and sealed; and the cause of its status."""
        message_id = new_id()
        now = utcnow()
        header = xml_message.Header(message_id, now, s.registration_code, s.dcd_code, s.dcd_version)
        xml = xml_message.build(header, s.fields)
        validation = xml_message.validate(xml)
        sealed, wrapped, key_id = self._seal(message_id, xml)
        message = NippinMessage(
            id=message_id,
            organisation_id=s.organisation_id,
            registration_id=s.registration_id,
            registration_version=s.registration_version,
            registration_code=s.registration_code,
            project_code=s.project_code,
            dcd_code=s.dcd_code,
            dcd_version=s.dcd_version,
            schema_version=xml_message.SCHEMA_VERSION,
            status=TO_SEND if validation.valid else INVALID,
            implant_date=_implant_date(s.fields),
            xml_sealed=sealed,
            wrapped_key=wrapped,
            master_key_id=key_id,
            invalid_reasons=list(validation.reasons),
            interface=self.settings.interface,
            created_at=now,
            updated_at=now,
        )
        cause = "built and valid" if validation.valid else f"XSD validation failed: {validation.reasons[0]}"
        return message, cause

    # --- statuses ----------------------------------------------------------------------

    def _record(
        self,
        session: AsyncSession,
        message: NippinMessage,
        before: str | None,
        target: str,
        cause: str,
        actor: str = "",
    ) -> None:
        statuses.check(before, target)
        message.status = target
        message.updated_at = utcnow()
        session.add(
            MessageTransition(
                organisation_id=message.organisation_id,
                message_id=message.id,
                from_status=before,
                to_status=target,
                cause=cause[:1000],
                actor=actor,
                at=message.updated_at,
            )
        )

    def move(
        self, session: AsyncSession, message: NippinMessage, target: str, cause: str, actor: str = ""
    ) -> None:
        """Move ``message`` to ``target`` (checked, recorded with time and cause)."""
        self._record(session, message, message.status, target, cause, actor)

    async def archive(
        self, *, organisation_id: str, message_id: str, reason: str, actor: str
    ) -> NippinMessage:
        """A person archives a message, saying why: it is never processed again."""
        if not ARCHIVE_REASON_MIN <= len(reason.strip()) <= ARCHIVE_REASON_MAX:
            raise invalid(
                [
                    FieldProblem(
                        "reason",
                        "length",
                        f"Say why in {ARCHIVE_REASON_MIN} to {ARCHIVE_REASON_MAX} characters.",
                    )
                ]
            )
        async with self.db.session([organisation_id]) as session:
            message = await session.get(NippinMessage, message_id, with_for_update=True)
            if message is None:
                raise not_found("Message")
            if message.status not in statuses.ARCHIVABLE:
                raise Problem(
                    409,
                    "message-not-archivable",
                    "The message cannot be archived",
                    f"a {message.status} message cannot be archived",
                )
            self.move(session, message, ARCHIVED, f"archived by a person: {reason}", actor)
            message.last_error = reason
            return message

    # --- sending -----------------------------------------------------------------------

    def backoff(self, failures: int) -> timedelta:
        s = self.settings
        return timedelta(seconds=min(s.retry_first_seconds * 2 ** max(failures - 1, 0), s.retry_max_seconds))

    async def send(self, job: Job, now: datetime | None = None) -> None:
        """One send job: deliver the message if it is still to be sent, record the outcome."""
        message_id = str(job.subject_id)
        async with self.db.system_session() as session:
            message = await session.get(NippinMessage, message_id)
            if message is None or message.status not in statuses.SENDABLE:
                await self.jobs.finish(session, job.id)
                return
            xml = self.xml_of(message)
            interface = message.interface = message.interface or self.settings.interface
        try:
            if interface == "REST":
                tack: Tack | None = await self.rest.send(message_id, xml)
            else:
                await self.folder.deliver(message_id, xml)
                tack = None
        except Unreachable as exc:
            await self._unreachable(job, message_id, str(exc), now)
            return
        async with self.db.system_session() as session:
            message = await session.get(NippinMessage, message_id, with_for_update=True)
            if message is not None and message.status in statuses.SENDABLE:
                message.sends += 1
                message.interface = interface
                if tack is None:
                    message.sent_at = now or utcnow()
                    self.move(session, message, SENT, "written to the MyCareNet folder; waiting for its TACK")
                else:
                    self._answered(session, message, tack, now)
            await self.jobs.finish(session, job.id)
        if tack is not None and tack.outcome is Outcome.ERROR:
            await self._retry_after_refusal(message_id, now)

    async def _unreachable(self, job: Job, message_id: str, cause: str, now: datetime | None) -> None:
        async with self.db.system_session() as session:
            message = await session.get(NippinMessage, message_id, with_for_update=True)
            if message is None or message.status not in statuses.SENDABLE:
                await self.jobs.finish(session, job.id)
                return
            message.sends += 1
            message.last_error = cause
            self.move(session, message, ERROR, cause)
            await self.jobs.defer(session, job.id, (now or utcnow()) + self.backoff(message.sends))
        log.warning("NIPPIN message not delivered", extra={"message_id": message_id, "cause": cause})

    def _answered(
        self, session: AsyncSession, message: NippinMessage, tack: Tack, now: datetime | None
    ) -> None:
        """Record a TACK: success (or warnings) -> SENT; an error -> ERROR, or ARCHIVED
        after ``max_refusals``."""
        at = now or utcnow()
        message.tack_major, message.tack_outcome = tack.major, tack.outcome.value
        message.tack_messages = [m.to_json() for m in tack.messages]
        message.tack_at = at
        if tack.outcome is Outcome.ERROR:
            message.refusals += 1
            message.last_error = tack.reason()
            if message.refusals >= self.settings.max_refusals:
                self.move(session, message, ARCHIVED, f"{tack.reason()}; refused {message.refusals} times")
            else:
                self.move(session, message, ERROR, tack.reason())
            return
        message.last_error = ""
        if message.status != SENT:
            message.sent_at = at
            self.move(session, message, SENT, tack.reason())

    async def _retry_after_refusal(self, message_id: str, now: datetime | None) -> None:
        """A refused message in ERROR is sent again later (a new send job, backed off)."""
        async with self.db.system_session() as session:
            message = await session.get(NippinMessage, message_id)
            if message is None or message.status != ERROR:
                return
            self.jobs.enqueue(
                session,
                SEND_JOB,
                organisation_id=message.organisation_id,
                subject_id=message.id,
                run_after=(now or utcnow()) + self.backoff(message.refusals),
            )

    async def collect_answers(self, now: datetime | None = None) -> int:
        """FILE_SYSTEM: record the TACKs the gateway put back, and send again what waited
        for one longer than ``answer_timeout_seconds``. Returns the answers recorded."""
        now = now or utcnow()
        recorded = 0
        for answer in await self.folder.answers():
            retry = False
            async with self.db.system_session() as session:
                message = await session.get(NippinMessage, answer.message_id, with_for_update=True)
                if message is not None and message.status == SENT and message.tack_at is None:
                    if answer.tack is None:
                        message.last_error = f"the gateway's answer is no TACK: {answer.problem}"
                        self.move(session, message, ERROR, message.last_error)
                        retry = True
                    else:
                        self._answered(session, message, answer.tack, now)
                        retry = message.status == ERROR
                    recorded += 1
            if retry:
                await self._retry_after_refusal(answer.message_id, now)
            Folder.done(answer)
        await self._answer_timeouts(now)
        return recorded

    async def _answer_timeouts(self, now: datetime) -> None:
        cutoff = now - timedelta(seconds=self.settings.answer_timeout_seconds)
        async with self.db.system_session() as session:
            late = list(
                (
                    await session.execute(
                        select(NippinMessage)
                        .where(
                            NippinMessage.status == SENT,
                            NippinMessage.interface == "FILE_SYSTEM",
                            NippinMessage.tack_at.is_(None),
                            NippinMessage.sent_at < cutoff,
                        )
                        .limit(1000)
                        .with_for_update(skip_locked=True)
                    )
                ).scalars()
            )
            for message in late:
                message.last_error = (
                    f"no TACK from the MyCareNet gateway within {self.settings.answer_timeout_seconds:g} s"
                )
                self.move(session, message, ERROR, message.last_error)
                self.jobs.enqueue(
                    session,
                    SEND_JOB,
                    organisation_id=message.organisation_id,
                    subject_id=message.id,
                    run_after=now + self.backoff(message.sends),
                )

    # --- retention ---------------------------------------------------------------------

    async def purge(self, now: datetime | None = None) -> int:
        """Delete the XML (the SSIN) of messages final for longer than the retention; the
        rows, statuses and transitions stay. Returns the number purged."""
        cutoff = (now or utcnow()) - timedelta(days=self.settings.message_retention_days)
        async with self.db.system_session() as session:
            done = list(
                (
                    await session.execute(
                        select(NippinMessage)
                        .where(
                            NippinMessage.xml_sealed.is_not(None),
                            NippinMessage.updated_at < cutoff,
                            (NippinMessage.status.in_([INVALID, ARCHIVED]))
                            | ((NippinMessage.status == SENT) & NippinMessage.tack_at.is_not(None)),
                        )
                        .limit(5000)
                    )
                ).scalars()
            )
            for message in done:
                message.xml_sealed = None
                message.purged_at = now or utcnow()
        return len(done)
