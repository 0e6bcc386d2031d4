"""Certificates of organisations: upload (check, encrypt, store, publish), versions and
their status logs, and the active one for the services that sign or decrypt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.db import Database, new_id, utcnow
from hdhub.common.envelope import Envelope
from hdhub.common.errors import Problem, not_found
from hdhub.common.objectstore import ObjectStore
from hdhub.portal.domain.p12 import Keystore, LogLine, P12Rejected, Rule, Step, inspect_p12
from hdhub.portal.store import Certificate, CertificateEvent

log = logging.getLogger("hdhub.portal.certificates")

TITLES = {
    Rule.TOO_LARGE: "The file is too large for a p12",
    Rule.NOT_P12: "The file is not a p12",
    Rule.WRONG_PASSWORD: "The password does not open the p12",
    Rule.KEY_COUNT: "The p12 must hold exactly two keys",
    Rule.KEY_WITHOUT_CERTIFICATE: "A key of the p12 has no certificate",
    Rule.KEY_PURPOSES: "The p12 must hold an authentication and an encryption key",
    Rule.EXPIRED: "A certificate of the p12 has expired",
    Rule.NOT_YET_VALID: "A certificate of the p12 is not valid yet",
}


def rejection(exc: P12Rejected) -> Problem:
    """The problem answered for a refused upload: its type names the rule, and it carries
    the status log up to the refusal (nothing of a refused upload is stored)."""
    return Problem(
        413 if exc.rule is Rule.TOO_LARGE else 422,
        f"p12-{exc.rule}",
        TITLES[exc.rule],
        exc.message,
        extra={"rule": str(exc.rule), "log": [log_entry(line) for line in exc.log]},
    )


def log_entry(line: LogLine | CertificateEvent) -> dict[str, str]:
    return {"step": str(line.step), "at": line.at.isoformat(), "message": line.message}


def _aad(organisation_id: str, certificate_id: str) -> bytes:
    return f"hdhub-portal-certificate:{organisation_id}:{certificate_id}".encode()


@dataclass(frozen=True, slots=True)
class Active:
    certificate: Certificate
    keystore: Keystore


class Certificates:
    def __init__(self, db: Database, objects: ObjectStore, envelope: Envelope, *, max_p12_bytes: int) -> None:
        self.db, self.objects, self.envelope = db, objects, envelope
        self.max_p12_bytes = max_p12_bytes

    async def upload(
        self,
        session: AsyncSession,
        *,
        organisation_id: str,
        data: bytes,
        password: str,
        filename: str,
        actor: str,
    ) -> Certificate:
        """Check a p12, store it encrypted, and publish it in place of the published one,
        in ``session`` (scoped to the organisation). Raises a problem naming the broken
        rule, storing nothing, when the file is refused."""
        now = utcnow()
        try:
            keystore = await asyncio.to_thread(
                inspect_p12, data, password, now=now, max_bytes=self.max_p12_bytes
            )
        except P12Rejected as exc:
            log.info("p12 refused", extra={"organisation_id": organisation_id, "rule": str(exc.rule)})
            raise rejection(exc) from None
        certificate_id = new_id()
        sealed = self.envelope.seal(data, password.encode(), aad=_aad(organisation_id, certificate_id))
        object_key = f"certificates/{organisation_id}/{certificate_id}.p12.enc"
        stored = await self.objects.put(object_key, sealed.body, metadata={"organisation": organisation_id})
        try:
            return await self._publish(
                session,
                Certificate(
                    id=certificate_id,
                    organisation_id=organisation_id,
                    filename=filename[:255],
                    uploaded_by=actor,
                    uploaded_at=now,
                    authentication_subject=keystore.authentication.certificate.subject.rfc4514_string(),
                    authentication_serial=f"{keystore.authentication.certificate.serial_number:x}",
                    encryption_subject=keystore.encryption.certificate.subject.rfc4514_string(),
                    encryption_serial=f"{keystore.encryption.certificate.serial_number:x}",
                    not_before=max(
                        keystore.authentication.certificate.not_valid_before_utc,
                        keystore.encryption.certificate.not_valid_before_utc,
                    ),
                    not_after=keystore.not_after,
                    object_key=object_key,
                    object_sha256=stored.sha256 or "",
                    wrapped_key=sealed.wrapped_key,
                    master_key_id=sealed.master_key_id,
                    sealed_password=sealed.secret,
                ),
                [
                    *keystore.log,
                    LogLine(
                        Step.STORED,
                        utcnow(),
                        f"Stored encrypted (AES-256-GCM, master key {sealed.master_key_id}).",
                    ),
                ],
                actor=actor,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.objects.delete(object_key)
            raise

    async def _publish(
        self, session: AsyncSession, new: Certificate, lines: list[LogLine], *, actor: str
    ) -> Certificate:
        org = new.organisation_id
        query = select(Certificate).where(Certificate.organisation_id == org, Certificate.published.is_(True))
        if self.db.is_postgres:
            query = query.with_for_update()
        previous = (await session.execute(query)).scalar_one_or_none()
        last = (
            await session.execute(
                select(func.max(Certificate.version)).where(Certificate.organisation_id == org)
            )
        ).scalar()
        now = utcnow()
        new.version = (last or 0) + 1
        try:
            if previous is not None:
                previous.published, previous.unpublished_at = False, now
                session.add(
                    CertificateEvent(
                        organisation_id=org,
                        certificate_id=previous.id,
                        step=Step.UNPUBLISHED,
                        at=now,
                        message=f"Version {new.version} is published instead.",
                        actor=actor,
                    )
                )
                await session.flush()  # before the new row: one published version at any time
            new.published, new.published_at = True, now
            session.add(new)
            await session.flush()
        except IntegrityError:
            raise Problem(
                409,
                "certificate-upload-conflict",
                "Another certificate was uploaded at the same time",
                "Look at the versions and upload again if yours should be the published one.",
            ) from None
        message = f"Version {new.version} is published" + (
            f"; version {previous.version} is unpublished." if previous else "."
        )
        for line in [*lines, LogLine(Step.PUBLISHED, now, message)]:
            session.add(
                CertificateEvent(
                    organisation_id=org,
                    certificate_id=new.id,
                    step=line.step,
                    at=line.at,
                    message=line.message,
                    actor=actor,
                )
            )
        await session.flush()
        log.info("certificate published", extra={"organisation_id": org, "version": new.version})
        return new

    @staticmethod
    async def versions(
        session: AsyncSession, organisation_id: str
    ) -> list[tuple[Certificate, CertificateEvent | None]]:
        """Every version of the organisation, newest first, with its latest status line."""
        rows = (
            (
                await session.execute(
                    select(Certificate)
                    .where(Certificate.organisation_id == organisation_id)
                    .order_by(Certificate.version.desc())
                )
            )
            .scalars()
            .all()
        )
        latest = await Certificates._latest_events(session, [c.id for c in rows])
        return [(c, latest.get(c.id)) for c in rows]

    @staticmethod
    async def _latest_events(session: AsyncSession, ids: list[str]) -> dict[str, CertificateEvent]:
        if not ids:
            return {}
        events = (
            await session.execute(
                select(CertificateEvent)
                .where(CertificateEvent.certificate_id.in_(ids))
                .order_by(CertificateEvent.id)
            )
        ).scalars()
        return {e.certificate_id: e for e in events}

    @staticmethod
    async def version(
        session: AsyncSession, organisation_id: str, version: int
    ) -> tuple[Certificate, CertificateEvent | None]:
        found = (
            await session.execute(
                select(Certificate).where(
                    Certificate.organisation_id == organisation_id, Certificate.version == version
                )
            )
        ).scalar_one_or_none()
        if found is None:
            raise not_found("Certificate version")
        return found, (await Certificates._latest_events(session, [found.id])).get(found.id)

    @staticmethod
    async def published(
        session: AsyncSession, organisation_id: str
    ) -> tuple[Certificate, CertificateEvent | None]:
        found = (
            await session.execute(
                select(Certificate).where(
                    Certificate.organisation_id == organisation_id, Certificate.published.is_(True)
                )
            )
        ).scalar_one_or_none()
        if found is None:
            raise Problem(404, "no-published-certificate", "The organisation has no published certificate")
        return found, (await Certificates._latest_events(session, [found.id])).get(found.id)

    @staticmethod
    async def status_log(session: AsyncSession, certificate: Certificate) -> list[CertificateEvent]:
        return list(
            (
                await session.execute(
                    select(CertificateEvent)
                    .where(CertificateEvent.certificate_id == certificate.id)
                    .order_by(CertificateEvent.id)
                )
            ).scalars()
        )

    async def active(self, organisation_id: str, *, now: datetime | None = None) -> Active:
        """The published certificate opened: both key pairs, for a signer or decrypter."""
        async with self.db.session([organisation_id]) as session:
            certificate, _ = await self.published(session, organisation_id)
        now = now or utcnow()
        if certificate.not_after <= now:
            raise Problem(
                412,
                "published-certificate-expired",
                "The published certificate has expired",
                f"Version {certificate.version} expired on {certificate.not_after:%Y-%m-%d}; a Certificate Editor must upload a new one.",
            )
        body = await self.objects.read(certificate.object_key)
        data, password = self.envelope.open(
            body,
            certificate.sealed_password,
            wrapped_key=certificate.wrapped_key,
            master_key_id=certificate.master_key_id,
            aad=_aad(organisation_id, certificate.id),
        )
        keystore = await asyncio.to_thread(inspect_p12, data, password.decode(), now=now, max_bytes=len(data))
        return Active(certificate, keystore)
