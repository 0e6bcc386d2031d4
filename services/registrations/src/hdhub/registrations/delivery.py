"""Delivery to the central platform: the split flow of HD4DP v2, status confirmation and
resends (docs/delivery.md).

A submitted registration (Sending) is delivered in two halves under one technical id:

1. the patient identifiers go to pseudonymisation, which forwards the pseudonyms to the
   central platform itself (they never come back here);
2. the register variables (every field bound for healthdata that is not personal data)
   go straight to the central platform, AES-256-GCM under a fresh key wrapped for the
   central platform's RSA key, signed with the organisation's authentication key.

Once pseudonymisation has taken its half the registration is Submitted with confirmation
Pending: hdhub has done its part, and arrival is what the confirmation tracks. The
central side is asked which deliveries arrived whole; without a confirmation within 48
hours the delivery is NOK and is resent automatically until 10 days after its first
send, then parked where the organisation and the operator see it. Until pseudonymisation
takes the identifiers (no published certificate, pseudonymisation unreachable) the
registration stays Sending with the reason on its delivery.

Every step is a job of the registrations job queue (leases, SKIP LOCKED): ``deliver``
(enqueued with the submission) and ``confirm`` (enqueued after a send). A worker that
dies mid-delivery leaves its lease to run out; the next worker sends both halves again,
and the central side keeps one record per technical id and version. Time comes from an
injectable clock, so tests run through ten days in seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update

from hdhub.common.auth import ActingFor
from hdhub.common.clock import SYSTEM_CLOCK, Clock
from hdhub.common.config import platform
from hdhub.common.db import bulk_insert, json_text, new_id
from hdhub.common.errors import Problem
from hdhub.common.grpc import channel, problem_from_rpc_error, register_idempotent
from hdhub.common.jobs import QUEUED, JobQueue
from hdhub.common.sealed_record import header_bytes, signed_bytes
from hdhub.common.service_auth import acting_as_service
from hdhub.common.telemetry import job_context, jobs_span
from hdhub.proto.portal.v1 import certificates_pb2, certificates_pb2_grpc
from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2 as pseudo_pb
from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2_grpc as pseudo_grpc
from hdhub.proto.sim.v1 import central_pb2, central_pb2_grpc
from hdhub.registrations.domain.business_key import PSEUDOCODE_FIELDS, SSIN_FORMAT
from hdhub.registrations.domain.lifecycle import Confirmation, Status
from hdhub.registrations.store import Delivery as DeliveryRow
from hdhub.registrations.store import Job, Registration, worker_history

if TYPE_CHECKING:
    from hdhub.registrations.service import Registrations
    from hdhub.registrations.settings import RegistrationsSettings

log = logging.getLogger("hdhub.registrations.delivery")

DELIVER = "deliver"
CONFIRM = "confirm"
#: The central platform's gRPC target: HDHUB_GRPC_CENTRAL, else the sim (hdhub.common.config).
CENTRAL = "central"
#: How many batches of ``delivery_batch`` jobs one worker claims and works on side by side.
CONCURRENT_BATCHES = 4
#: Why a delivery waits when registrations cannot get its own service token.
IDENTITY_UNAVAILABLE = "service-identity-unavailable"

register_idempotent("hdhub.portal.v1.CertificatesService", ["GetActiveCertificate"])


class State(StrEnum):
    SENDING = "sending"  # still with hdhub: waiting for a certificate or pseudonymisation
    PENDING = "pending"  # sent, no confirmation yet (within 48 h)
    OK = "ok"  # the central platform confirmed arrival
    NOK = "nok"  # no confirmation within 48 h: being resent
    PARKED = "parked"  # no confirmation 10 days after the first send, or refused for good


# --- sealing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CentralKey:
    public: rsa.RSAPublicKey
    key_id: str

    @classmethod
    def from_pem(cls, pem: bytes) -> CentralKey:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("the central platform's key must be an RSA public key")
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(key, hashlib.sha256(der).hexdigest())


@dataclass(frozen=True)
class Signer:
    """The organisation's authentication key and certificate (from the portal), in memory."""

    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    certificate_der: bytes
    certificate_id: str
    fetched: float

    @classmethod
    def from_certificate(cls, active: certificates_pb2.ActiveCertificate) -> Signer:
        key = serialization.load_der_private_key(active.authentication.private_key_pkcs8_der, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError("unsupported authentication key type")
        x509.load_der_x509_certificate(active.authentication.certificate_der)  # well-formed
        return cls(key, active.authentication.certificate_der, active.certificate_id, time.monotonic())

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            return self.private.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.private.sign(
            data,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )


def seal(
    *, header: central_pb2.SealedRecord, variables: Mapping[str, Any], central: CentralKey, signer: Signer
) -> central_pb2.SealedRecord:
    """Encrypt the variables for the central platform and sign the whole with the
    organisation's key; ``header`` carries the identifying fields (no identifiers)."""
    record = central_pb2.SealedRecord()
    record.CopyFrom(header)
    record.key_id = central.key_id
    data_key = AESGCM.generate_key(bit_length=256)
    record.nonce = os.urandom(12)
    record.wrapped_key = central.public.encrypt(
        data_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    plain = json_text(variables).encode()  # compact JSON, UTF-8 (orjson; the stdlib past 64-bit ints)
    record.ciphertext = AESGCM(data_key).encrypt(record.nonce, plain, header_bytes(record))
    record.signer_certificate_der = signer.certificate_der
    record.signature = signer.sign(signed_bytes(record))
    return record


# --- the split --------------------------------------------------------------------------


@dataclass
class Outgoing:
    """One registration version on its way, and what happened to it in this attempt."""

    job: Any
    registration_id: str
    organisation_id: str
    project_code: str
    dcd_code: str
    dcd_version: str
    registration_code: str
    version: int
    values: dict[str, Any]
    technical_id: str = ""
    #: None: both halves went out. Else a slug: why not.
    failure: str | None = None
    #: True when the registration stays with hdhub (Sending): pseudonymisation did not take it.
    waiting: bool = False
    #: True when refused for good (an identifier pseudonymisation cannot use).
    refused: bool = False
    #: The split of ``values`` (worked out once per attempt, see :meth:`Delivery._split`).
    identifier: Identifier | None = None
    variables: dict[str, Any] | None = None

    @property
    def actor(self) -> str:
        """Who submitted it (the delivery job's actor); jobs queued before jobs carried one
        name the delivery itself."""
        acting = JobQueue.acting_for(self.job)
        return acting.actor if acting is not None else DELIVERY_ACTOR


#: The actor of deliveries queued before jobs carried theirs.
DELIVERY_ACTOR = "delivery"


def _acting_for(organisation_id: str, items: Sequence[Outgoing]) -> ActingFor:
    """A delivery call for one organisation's registrations, in the name of who submitted
    them (the first of them: a batch of one organisation's submissions goes out at once)."""
    return ActingFor(organisation_id, items[0].actor if items else DELIVERY_ACTOR)


@dataclass(frozen=True)
class Identifier:
    """What pseudonymisation gets of a patient: the SSIN, else the pseudocode inputs."""

    ssin: str = ""
    pseudocode: pseudo_pb.PseudocodeInputs | None = None


@dataclass(frozen=True)
class Splitter:
    """Which fields of a DCD version are the identifier and which go to the central
    platform, worked out once per version (not per registration)."""

    personal: frozenset[str]
    not_for_hd: frozenset[str]
    ssin_fields: tuple[str, ...]

    @classmethod
    def of(cls, definition: Any) -> Splitter:
        return cls(
            frozenset(f.technical_name for f in definition.fields if f.personal_data),
            frozenset(f.technical_name for f in definition.fields if not f.destination_hd),
            tuple(f.technical_name for f in definition.fields if f.format == SSIN_FORMAT and f.personal_data),
        )

    def __call__(self, values: Mapping[str, Any]) -> tuple[Identifier, dict[str, Any]]:
        ssin = next((str(values[n]) for n in self.ssin_fields if values.get(n)), "")
        identifier = Identifier(ssin=ssin)
        if not ssin and any(values.get(n) for n in PSEUDOCODE_FIELDS.values()):
            inputs = pseudo_pb.PseudocodeInputs(
                **{k: str(values.get(n) or "") for k, n in PSEUDOCODE_FIELDS.items()}
            )
            identifier = Identifier(pseudocode=inputs)
        out = self.personal | self.not_for_hd

        def excluded(name: str) -> bool:
            return name in out or (name[-1:].isdigit() and name.rsplit("_", 1)[0] in out)

        return identifier, {k: v for k, v in values.items() if not excluded(k)}


def split(definition: Any, values: Mapping[str, Any]) -> tuple[Identifier, dict[str, Any]]:
    """The patient's identifier and the register variables (fields bound for healthdata
    that are not personal data) of a registration's values."""
    return Splitter.of(definition)(values)


def _delay(settings: RegistrationsSettings, checks: int) -> timedelta:
    first = settings.confirmation_first_check_seconds
    return timedelta(seconds=min(settings.confirmation_poll_minutes * 60, first * 2 ** min(checks, 30)))


@dataclass
class Delivery:
    """The delivery worker of the registrations service (see the module docstring)."""

    registrations: Registrations
    settings: RegistrationsSettings
    clock: Clock = SYSTEM_CLOCK
    _signers: dict[str, Signer] = field(default_factory=dict)
    _central: CentralKey | None = None
    _splitters: dict[tuple[str, str], Splitter] = field(default_factory=dict)

    @property
    def db(self) -> Any:
        return self.registrations.db

    @property
    def jobs(self) -> Any:
        return self.registrations.jobs

    # --- the worker step ------------------------------------------------------------

    async def process_jobs(self, *, limit: int | None = None, worker: str | None = None) -> int:
        """Claim due ``deliver`` and ``confirm`` jobs and do them; the number claimed.

        Up to ``CONCURRENT_BATCHES`` batches of ``limit`` (``delivery_batch``) jobs are
        claimed at once and worked on side by side, each in transactions of its own: while
        one waits on the database or a gRPC answer, another seals or sends. All jobs of one
        registration stay in one batch."""
        now = self.clock.now()
        size = limit or self.settings.delivery_batch
        jobs = await self.jobs.claim(
            [DELIVER, CONFIRM], limit=size * CONCURRENT_BATCHES, worker=worker, now=now
        )
        if not jobs:
            return 0
        # Every batch runs to its end even when another fails; then the first failure is
        # raised (each batch handles its own jobs' failures, so this is the database gone).
        results = await asyncio.gather(
            *(self._step(batch, now) for batch in _batches(jobs, size)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(jobs)

    async def _step(self, jobs: Sequence[Any], now: datetime) -> None:
        for kind, step in ((DELIVER, self._deliver), (CONFIRM, self._confirm)):
            batch = [j for j in jobs if j.kind == kind]
            if not batch:
                continue
            try:
                # One span per batch: it continues the submit's trace when the batch comes
                # from one, else links to each (telemetry.jobs_span).
                with jobs_span(batch, kind):
                    await step(batch, now)
            except Exception as exc:  # a bug or a database failure: retried with back-off, then parked
                log.warning(
                    "delivery step failed",
                    extra={"kind": kind, "count": len(batch), "error_type": type(exc).__name__},
                )
                for job in batch:
                    await self.jobs.fail(job.id, type(exc).__name__, now=now)

    # --- deliver: Sending -> Submitted (Pending) ----------------------------------------

    async def _deliver(self, jobs: Sequence[Any], now: datetime) -> None:
        outgoing, superseded = await self._load(jobs, want_status=Status.SENDING)
        if superseded:
            async with self.db.system_session() as session:
                await self.jobs.finish_many(session, [j.id for j in superseded])
        if not outgoing:
            return
        await self._send(outgoing)
        await self._record_deliveries(outgoing, now)

    async def _load(
        self, jobs: Sequence[Any], *, want_status: Status, with_values: bool = True
    ) -> tuple[list[Outgoing], list[Any]]:
        """The registrations of the jobs still at the version and status the job is for,
        with their delivery rows (created here, with a technical id, when missing). Only
        the columns used are read; the values only ``with_values`` (see :meth:`_values`)."""
        by_id: dict[str, Any] = {}
        created: list[dict[str, Any]] = []
        outgoing: list[Outgoing] = []
        superseded: list[Any] = []
        for job in sorted(jobs, key=lambda j: int((j.payload or {}).get("version", 0))):
            # Two jobs of one registration in a batch (resubmitted quickly): the newest counts.
            if job.subject_id in by_id:
                superseded.append(by_id[job.subject_id])
            by_id[job.subject_id] = job
        async with self.db.system_session() as session:
            columns = [
                Registration.id,
                Registration.organisation_id,
                Registration.status,
                Registration.version,
                Registration.project_code,
                Registration.dcd_code,
                Registration.dcd_version,
                Registration.registration_code,
            ]
            if with_values:
                columns.append(Registration.values)
            regs = {
                r.id: r
                for r in await session.execute(select(*columns).where(self.db.among(Registration.id, by_id)))
            }
            rows = {
                d.registration_id: d
                for d in await session.execute(
                    select(
                        DeliveryRow.registration_id, DeliveryRow.technical_id, DeliveryRow.content_version
                    ).where(self.db.among(DeliveryRow.registration_id, by_id))
                )
            }
            for reg_id, job in by_id.items():
                reg = regs.get(reg_id)
                version = int((job.payload or {}).get("version", 0))
                if (
                    reg is None
                    or reg.status != want_status
                    or (want_status == Status.SENDING and reg.version != version)
                ):
                    superseded.append(job)
                    continue
                row = rows.get(reg_id)
                if row is None:
                    technical_id = new_id()
                    created.append(
                        {
                            "registration_id": reg_id,
                            "organisation_id": reg.organisation_id,
                            "technical_id": technical_id,
                            "content_version": version,
                            "state": State.SENDING.value,
                            "reason": None,
                            "attempts": 0,
                            "updated_at": self.clock.now(),
                        }
                    )
                elif want_status == Status.SUBMITTED and row.content_version != version:
                    superseded.append(job)
                    continue
                else:
                    technical_id = row.technical_id
                outgoing.append(
                    Outgoing(
                        job=job,
                        registration_id=reg_id,
                        organisation_id=reg.organisation_id,
                        project_code=reg.project_code,
                        dcd_code=reg.dcd_code,
                        dcd_version=reg.dcd_version,
                        registration_code=reg.registration_code or "",
                        version=version,
                        values=dict(reg.values) if with_values else {},
                        technical_id=technical_id,
                    )
                )
            # The new delivery rows (with their technical ids) in one insert.
            await bulk_insert(session, DeliveryRow, created)
        return outgoing, superseded

    async def _send(self, outgoing: Sequence[Outgoing]) -> None:
        """Both halves of each registration, grouped by organisation and project; each
        Outgoing ends with ``failure`` None (sent), waiting (stays with hdhub), refused,
        or a failure of the central side."""
        by_org: dict[str, list[Outgoing]] = defaultdict(list)
        for o in outgoing:
            by_org[o.organisation_id].append(o)
        sealed: list[tuple[Outgoing, central_pb2.SealedRecord]] = []
        for org, items in by_org.items():
            signer = await self._signer(org, items)
            if signer is None:
                continue
            central = await self._central_key(items)
            if central is None:
                continue
            for o in items:
                await self._split(o)
            await self._pseudonymise(items)
            for o in items:
                if o.waiting or o.refused:
                    continue
                header = central_pb2.SealedRecord(
                    technical_id=o.technical_id,
                    version=o.version,
                    organisation_id=o.organisation_id,
                    project_code=o.project_code,
                    dcd_code=o.dcd_code,
                    dcd_version=o.dcd_version,
                    registration_code=o.registration_code,
                )
                assert o.variables is not None
                sealed.append((o, seal(header=header, variables=o.variables, central=central, signer=signer)))
        if sealed:
            await self._send_records(sealed)

    async def _split(self, o: Outgoing) -> None:
        """Set the identifier and the register variables of ``o`` (once per attempt)."""
        key = (o.dcd_code, o.dcd_version)
        splitter = self._splitters.get(key)
        if splitter is None:
            entry = await self.registrations.catalogue.get(o.dcd_code, o.dcd_version)
            splitter = self._splitters[key] = Splitter.of(entry.definition)
        o.identifier, o.variables = splitter(o.values)

    async def _signer(self, organisation_id: str, items: Sequence[Outgoing]) -> Signer | None:
        cached = self._signers.get(organisation_id)
        if cached is not None and time.monotonic() - cached.fetched < self.settings.certificate_cache_seconds:
            return cached
        stub = certificates_pb2_grpc.CertificatesServiceStub(channel("portal"))
        try:
            async with acting_as_service("registrations", _acting_for(organisation_id, items)):
                answer = await stub.GetActiveCertificate(
                    certificates_pb2.GetActiveCertificateRequest(organisation_id=organisation_id)
                )
            signer = Signer.from_certificate(answer.certificate)
        except grpc.aio.AioRpcError as exc:
            reason = (
                "no-published-certificate"
                if exc.code() == grpc.StatusCode.NOT_FOUND
                else "certificate-unavailable"
            )
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                reason = "certificate-expired"
            _wait(items, reason)
            return None
        except Problem:  # our own token could not be had: the issuer is down
            _wait(items, IDENTITY_UNAVAILABLE)
            return None
        except ValueError:
            _wait(items, "certificate-unusable")
            return None
        self._signers[organisation_id] = signer
        return signer

    async def _central_key(self, items: Sequence[Outgoing]) -> CentralKey | None:
        if self._central is not None:
            return self._central
        configured = self.settings.configured_central_key()
        if configured is not None:
            self._central = CentralKey.from_pem(configured)
            return self._central
        if platform().environment == "production":
            # A key fetched over the channel it protects could be swapped by whoever holds
            # that channel: production configures it.
            log.error(
                "the central platform's public key is not configured (HDHUB_REGISTRATIONS_CENTRAL_PUBLIC_KEY)"
            )
            _wait(items, "central-key-unset")
            return None
        # Laptops and tests: ask the stand-in receiver.
        stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        try:
            async with acting_as_service("registrations"):
                answer = await stub.GetPublicKey(central_pb2.GetPublicKeyRequest())
        except (grpc.aio.AioRpcError, Problem):
            _wait(items, "central-key-unavailable")
            return None
        self._central = CentralKey.from_pem(answer.public_key_pem.encode())
        return self._central

    async def _pseudonymise(self, items: Sequence[Outgoing]) -> None:
        """Hand the identifiers to pseudonymisation (which forwards the pseudonyms)."""
        by_project: dict[str, list[Outgoing]] = defaultdict(list)
        for o in items:
            by_project[o.project_code].append(o)
        stub = pseudo_grpc.PseudonymisationServiceStub(channel("pseudonymisation"))
        for project, group in by_project.items():
            request = pseudo_pb.PseudonymiseAndForwardRequest(
                organisation_id=group[0].organisation_id, project_code=project
            )
            ssins: list[str] = []
            for n, o in enumerate(group):
                identifier = o.identifier
                assert identifier is not None  # split by _send before
                ssins.append(identifier.ssin)
                if identifier.pseudocode is not None:
                    request.pseudocodes.append(
                        pseudo_pb.PseudocodePatient(index=n, inputs=identifier.pseudocode)
                    )
            request.technical_ids.extend(o.technical_id for o in group)
            request.versions.extend(o.version for o in group)
            request.ssins.extend(ssins)
            try:
                async with acting_as_service("registrations", _acting_for(request.organisation_id, group)):
                    answer = await stub.PseudonymiseAndForward(request)
            except grpc.aio.AioRpcError as exc:
                problem = problem_from_rpc_error(exc)
                if problem.slug == "central-unavailable":
                    # Pseudonymisation took the identifiers; the central side did not.
                    for o in group:
                        o.failure = "central-unavailable"
                elif problem.status >= 500:
                    _wait(group, "pseudonymisation-unavailable")
                else:  # refused the call (a bug, or identities misconfigured): say which
                    _wait(group, f"pseudonymisation-refused:{problem.slug}")
                continue
            except Problem:
                _wait(group, IDENTITY_UNAVAILABLE)
                continue
            for refused in answer.refused:
                o = group[refused.index]
                o.refused, o.failure = True, f"identifier-refused:{refused.rule}"

    async def _send_records(self, sealed: Sequence[tuple[Outgoing, central_pb2.SealedRecord]]) -> None:
        """The sealed halves to the central platform."""
        stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        todo = [(o, r) for o, r in sealed if o.failure is None]
        if not todo:
            return
        try:
            async with acting_as_service("registrations"):
                answer = await stub.ReceiveRecords(
                    central_pb2.ReceiveRecordsRequest(records=[r for _, r in todo])
                )
        except (grpc.aio.AioRpcError, Problem):
            for o, _ in todo:
                o.failure = "central-unavailable"
            return
        receipts = {r.technical_id: r for r in answer.receipts}
        for o, _ in todo:
            receipt = receipts.get(o.technical_id)
            if receipt is None or not receipt.accepted:
                o.failure = f"central-rejected:{receipt.rule if receipt else 'no-receipt'}"
                if receipt is not None and receipt.rule == "key_id":
                    self._central = None  # the central key changed: fetch or read it again

    async def _record_deliveries(self, outgoing: Sequence[Outgoing], now: datetime) -> None:
        """After an attempt: waiting ones stay Sending (job deferred), refused ones are parked,
        the others are Submitted (Pending) with a confirmation check scheduled. Set-based: a
        statement per kind of outcome, not per registration."""
        waiting = [o for o in outgoing if o.waiting]
        refused = [o for o in outgoing if o.refused]
        handed = [o for o in outgoing if not o.waiting and not o.refused]
        async with self.db.system_session() as session:
            await self._lock_rows(session, [o.registration_id for o in outgoing])
            for (version, reason), group in _grouped(waiting, lambda o: (o.version, o.failure)):
                await self._update_rows(
                    session,
                    group,
                    state=State.SENDING,
                    content_version=version,
                    reason=reason,
                    updated_at=now,
                )
            if waiting:
                await self._defer_many(
                    session,
                    [o.job.id for o in waiting],
                    now + timedelta(seconds=self.settings.waiting_retry_seconds),
                )
            for (reason,), group in _grouped(refused, lambda o: (o.failure,)):
                await self._update_rows(
                    session, group, state=State.PARKED, reason=reason, parked_at=now, updated_at=now
                )
                await session.execute(
                    update(Job)
                    .where(self.db.among(Job.id, [o.job.id for o in group]))
                    .values(status="parked", lease_until=None, last_error=reason)
                )
                self.jobs.ended([o.job.id for o in group], "parked")
            if handed:
                current = {
                    r.id: r
                    for r in await session.execute(
                        select(Registration.id, Registration.status, Registration.version)
                        .where(self.db.among(Registration.id, [o.registration_id for o in handed]))
                        .with_for_update()  # the version checked below holds until commit
                    )
                }
                moving: list[Outgoing] = []
                stale: list[Outgoing] = []
                for o in handed:
                    r = current.get(o.registration_id)
                    ok = r is not None and r.status == Status.SENDING and r.version == o.version
                    (moving if ok else stale).append(o)
                if stale:  # resubmitted or reopened while we sent: the newer job delivers
                    await self.jobs.finish_many(session, [o.job.id for o in stale])
                if moving:
                    await self.registrations._deliver(session, [o.job for o in moving])
                confirm_items: list[dict[str, Any]] = []
                for (version, reason), group in _grouped(moving, lambda o: (o.version, o.failure)):
                    sent = reason is None
                    await self._update_rows(
                        session,
                        group,
                        content_version=version,
                        state=State.PENDING,
                        first_sent_at=now,
                        last_attempt_at=now,
                        updated_at=now,
                        confirmed_at=None,
                        parked_at=None,
                        attempts=1 if sent else 0,
                        last_sent_at=now if sent else None,
                        reason=reason,
                    )
                    row = DeliveryRow(
                        state=State.PENDING,
                        reason=reason,
                        first_sent_at=now,
                        last_attempt_at=now,
                        last_sent_at=now if sent else None,
                    )  # what the group's rows now hold, for the first check's time
                    run_after = self._next_check(row, now, 0)
                    confirm_items.extend(
                        {
                            "organisation_id": o.organisation_id,
                            "subject_id": o.registration_id,
                            "payload": {"version": o.version, "checks": 0},
                            "actor": o.actor,
                            "run_after": run_after,
                            # The confirmation stays in its registration's trace.
                            "trace_context": job_context(o.job),
                        }
                        for o in group
                    )
                if confirm_items:
                    await self.jobs.enqueue_many(session, CONFIRM, confirm_items)
        for o in outgoing:
            # Never the technical id next to the registration id: that pair is the link
            # pseudonymisation exists to keep apart (the trace id leads to the rest).
            log.info(
                "delivery attempt",
                extra={
                    "registration_id": o.registration_id,
                    "outcome": "sent" if o.failure is None else o.failure,
                },
            )

    async def _lock_rows(self, session: Any, registration_ids: Sequence[str]) -> None:
        """Lock the delivery rows (before the registrations, as every step does)."""
        await session.execute(
            select(DeliveryRow.registration_id)
            .where(self.db.among(DeliveryRow.registration_id, registration_ids))
            .with_for_update()
        )

    async def _update_rows(self, session: Any, items: Sequence[Outgoing], **values: Any) -> None:
        await session.execute(
            update(DeliveryRow)
            .where(self.db.among(DeliveryRow.registration_id, [o.registration_id for o in items]))
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def _defer_many(
        self, session: Any, job_ids: Sequence[str], until: datetime, payload: dict[str, Any] | None = None
    ) -> None:
        """Give claimed jobs back for later (same time, same payload): waiting is not
        failing, so they never park."""
        values: dict[str, Any] = {
            "status": QUEUED,
            "lease_until": None,
            "worker": None,
            "run_after": until,
            "attempts": 0,
        }
        if payload is not None:
            values["payload"] = payload
        await session.execute(update(Job).where(self.db.among(Job.id, job_ids)).values(**values))
        self.jobs.ended(list(job_ids), "deferred")

    async def _rows(self, session: Any, registration_ids: Iterable[str]) -> dict[str, DeliveryRow]:
        rows = await session.execute(
            select(DeliveryRow)
            .where(self.db.among(DeliveryRow.registration_id, registration_ids))
            .with_for_update()
        )
        return {r.registration_id: r for r in rows.scalars()}

    def _next_check(self, row: DeliveryRow, now: datetime, checks: int) -> datetime:
        """The next confirmation check: soon after a send, then less often, never later than
        the next deadline (48 h -> NOK, 10 days -> parked) nor a due retry."""
        s = self.settings
        nxt = now + _delay(s, checks)
        assert row.first_sent_at is not None
        deadlines = [row.first_sent_at + timedelta(days=s.park_after_days)]
        if row.state == State.PENDING:
            deadlines.append(row.first_sent_at + timedelta(hours=s.confirmation_timeout_hours))
        if row.reason is not None:  # the last attempt did not reach the central platform
            deadlines.append((row.last_attempt_at or now) + timedelta(minutes=s.retry_minutes))
        if row.state == State.NOK:
            deadlines.append(
                (row.last_sent_at or row.last_attempt_at or now) + timedelta(hours=s.resend_interval_hours)
            )
        return max(now, min([nxt, *[d for d in deadlines if d > now]]))

    # --- confirm: Pending -> OK, or NOK and resends, or parked ---------------------------

    async def _confirm(self, jobs: Sequence[Any], now: datetime) -> None:
        outgoing, superseded = await self._load(jobs, want_status=Status.SUBMITTED, with_values=False)
        if superseded:
            async with self.db.system_session() as session:
                await self.jobs.finish_many(session, [j.id for j in superseded])
        if not outgoing:
            return
        confirmed = await self._confirmations(outgoing)
        s = self.settings
        resend: list[Outgoing] = []
        finished: list[str] = []
        # (registration id, confirmation, comment, history action): set together below.
        changes: list[tuple[str, Confirmation, str, str | None]] = []
        async with self.db.system_session() as session:
            rows = await self._rows(session, [o.registration_id for o in outgoing])
            for o in outgoing:
                row = rows[o.registration_id]
                if row.state in (State.OK, State.PARKED):
                    finished.append(o.job.id)
                    continue
                assert row.first_sent_at is not None
                if (o.technical_id, o.version) in confirmed:
                    row.state, row.confirmed_at, row.reason, row.updated_at = State.OK, now, None, now
                    changes.append(
                        (
                            o.registration_id,
                            Confirmation.OK,
                            "Arrival confirmed by the central platform",
                            None,
                        )
                    )
                    finished.append(o.job.id)
                    continue
                if now >= row.first_sent_at + timedelta(days=s.park_after_days):
                    row.state, row.parked_at, row.updated_at = State.PARKED, now, now
                    changes.append(
                        (
                            o.registration_id,
                            Confirmation.NOK,
                            f"No confirmation {s.park_after_days:g} days after the first send: resends stopped (parked)",
                            "delivery_parked",
                        )
                    )
                    finished.append(o.job.id)
                    continue
                turned_nok = False  # resent at once when it turns NOK
                if row.state == State.PENDING and now >= row.first_sent_at + timedelta(
                    hours=s.confirmation_timeout_hours
                ):
                    row.state, row.updated_at, turned_nok = State.NOK, now, True
                    changes.append(
                        (
                            o.registration_id,
                            Confirmation.NOK,
                            f"No confirmation within {s.confirmation_timeout_hours:g} hours: resending",
                            None,
                        )
                    )
                if turned_nok or self._resend_due(row, now):
                    resend.append(o)
            await self._set_confirmations(session, changes)
            if finished:
                await self.jobs.finish_many(session, finished)
        if resend:
            resend = await self._values(resend)
            await self._send(resend)
        resent = {id(o) for o in resend}
        async with self.db.system_session() as session:
            rows = await self._rows(session, [o.registration_id for o in outgoing])
            deferred: dict[tuple[datetime, int, int], list[str]] = defaultdict(list)
            for o in outgoing:
                row = rows[o.registration_id]
                if row.state in (State.OK, State.PARKED):
                    continue
                if id(o) in resent:
                    row.last_attempt_at, row.updated_at = now, now
                    row.reason = o.failure
                    if o.failure is None:
                        row.attempts += 1
                        row.last_sent_at = now
                # A resend that went out starts the clock again: its confirmation is asked for
                # seconds later, not at the long interval the unanswered checks had reached.
                sent_now = id(o) in resent and o.failure is None
                checks = 0 if sent_now else int((o.job.payload or {}).get("checks", 0)) + 1
                deferred[(self._next_check(row, now, checks), o.version, checks)].append(o.job.id)
            for (until, version, checks), job_ids in deferred.items():
                await self._defer_many(
                    session, job_ids, until, payload={"version": version, "checks": checks}
                )
        for o in resend:
            log.info(
                "delivery resent",
                extra={"registration_id": o.registration_id, "outcome": o.failure or "sent"},
            )

    async def _values(self, items: Sequence[Outgoing]) -> list[Outgoing]:
        """Read the values of registrations about to be resent (a confirmation check that
        finds a delivery confirmed, which is most, does not need them); those no longer
        Submitted (reopened meanwhile: a new delivery follows) are left out."""
        async with self.db.system_session() as session:
            found = {
                r.id: r.values
                for r in await session.execute(
                    select(Registration.id, Registration.values).where(
                        self.db.among(Registration.id, [o.registration_id for o in items]),
                        Registration.status == Status.SUBMITTED,
                    )
                )
            }
        for o in items:
            o.values = dict(found.get(o.registration_id) or {})
        return [o for o in items if o.registration_id in found]

    def _resend_due(self, row: DeliveryRow, now: datetime) -> bool:
        s = self.settings
        if row.reason is not None and now >= (row.last_attempt_at or now) + timedelta(
            minutes=s.retry_minutes
        ):
            return True  # the last attempt did not reach the central platform
        if row.state == State.NOK:
            last = row.last_sent_at or row.last_attempt_at
            return last is None or now >= last + timedelta(hours=s.resend_interval_hours)
        return False

    async def _confirmations(self, outgoing: Sequence[Outgoing]) -> set[tuple[str, int]]:
        stub = central_pb2_grpc.CentralReceiverServiceStub(channel(CENTRAL))
        refs = [central_pb2.DeliveryRef(technical_id=o.technical_id, version=o.version) for o in outgoing]
        try:
            async with acting_as_service("registrations"):
                answer = await stub.GetConfirmations(central_pb2.GetConfirmationsRequest(deliveries=refs))
        except (grpc.aio.AioRpcError, Problem) as exc:
            log.info(
                "confirmations unavailable", extra={"error_type": type(exc).__name__, "count": len(refs)}
            )
            return set()
        return {(c.technical_id, c.version) for c in answer.confirmations if c.confirmed}

    async def _set_confirmations(
        self, session: Any, changes: Sequence[tuple[str, Confirmation, str, str | None]]
    ) -> None:
        """Set registrations' status confirmation, each with a history entry saying why (a
        new version, as every change of a registration; parking is recorded too, though
        the confirmation stays NOK). A statement pair per kind of change, not per
        registration; one no longer Submitted is left as it is."""
        groups: dict[tuple[Confirmation, str, str | None], list[str]] = defaultdict(list)
        for registration_id, confirmation, comment, action in changes:
            groups[(confirmation, comment, action)].append(registration_id)
        at = self.clock.now()
        for (confirmation, comment, action), ids in groups.items():
            moved = list(
                (
                    await session.execute(
                        update(Registration)
                        .where(self.db.among(Registration.id, ids), Registration.status == Status.SUBMITTED)
                        .values(
                            status_confirmation=confirmation, version=Registration.version + 1, updated_at=at
                        )
                        .returning(Registration.id)
                        .execution_options(synchronize_session=False)
                    )
                ).scalars()
            )
            if moved:
                await session.execute(
                    worker_history(
                        self.db.among(Registration.id, moved),
                        action=action or f"confirmation_{confirmation.value}",
                        at=at,
                        comment=comment,
                    )
                )

    # --- reads for the REST edge -------------------------------------------------------

    async def of(
        self, organisations: Sequence[str], registration_ids: Sequence[str]
    ) -> dict[str, DeliveryRow]:
        async with self.db.session(organisations) as session:
            rows = await session.execute(
                select(DeliveryRow).where(DeliveryRow.registration_id.in_(list(registration_ids)))
            )
            return {r.registration_id: r for r in rows.scalars()}

    async def listing(
        self, organisations: Sequence[str] | None, *, state: str | None, limit: int, offset: int
    ) -> list[tuple[DeliveryRow, Registration]]:
        """Deliveries (with their registrations) of some organisations, or of all (operator)."""
        sessions = self.db.system_session() if organisations is None else self.db.session(organisations)
        async with sessions as session:
            query = select(DeliveryRow, Registration).join(
                Registration, Registration.id == DeliveryRow.registration_id
            )
            if state:
                query = query.where(DeliveryRow.state == state)
            query = (
                query.order_by(DeliveryRow.updated_at.desc(), DeliveryRow.registration_id)
                .limit(limit)
                .offset(offset)
            )
            return [(d, r) for d, r in (await session.execute(query)).all()]


def _grouped(
    items: Iterable[Outgoing], key: Callable[[Outgoing], tuple[Any, ...]]
) -> list[tuple[tuple[Any, ...], list[Outgoing]]]:
    """``items`` grouped by ``key``, in order of first appearance."""
    groups: dict[tuple[Any, ...], list[Outgoing]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return list(groups.items())


def _batches(jobs: Sequence[Any], size: int) -> list[list[Any]]:
    """``jobs`` in batches of about ``size``, the jobs of one registration in one batch
    (two batches never work on the same registration at the same time)."""
    by_subject: dict[Any, list[Any]] = defaultdict(list)
    for job in jobs:
        by_subject[job.subject_id].append(job)
    batches: list[list[Any]] = [[]]
    for group in by_subject.values():
        if len(batches[-1]) >= size:
            batches.append([])
        batches[-1].extend(group)
    return batches


def _wait(items: Iterable[Outgoing], reason: str) -> None:
    for o in items:
        if not o.refused:
            o.waiting, o.failure = True, reason


__all__ = ["CONFIRM", "DELIVER", "Delivery", "State"]
