"""The central receiver stand-in: checks the organisation's signature, decrypts with its own
key, keeps one record per technical id and joins it with the pseudonymised half, and
confirms arrival once both halves of a version are there.

It can be told to misbehave, as the real network sometimes does: ``refuse`` (every call
answers UNAVAILABLE, as if the receiver were down), ``drop`` (calls succeed but nothing is
kept, so no confirmation ever comes) and an acknowledgement delay (a joined delivery is
confirmed only ``ack_delay_seconds`` after it became whole). The mode lives in this
process: the sim runs as one replica, on laptops and in tests only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import bindparam, insert, select, update

from hdhub.common.clock import SYSTEM_CLOCK, Clock
from hdhub.common.db import Database
from hdhub.common.errors import Problem
from hdhub.common.sealed_record import header_bytes, signed_bytes
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.sim.store import CentralPseudonym, CentralRecord

log = logging.getLogger("hdhub.sim")


class Mode(StrEnum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    DROP = "drop"


@dataclass
class Behaviour:
    mode: Mode = Mode.ACCEPT
    ack_delay_seconds: float = 0.0


class CentralKey:
    """The receiver's RSA key pair, generated into its data folder on first start."""

    def __init__(self, path: Path, bits: int) -> None:
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} holds no RSA key")
            self.private = loaded
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = self.private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = hashlib.sha256(der).hexdigest()
        self.public_pem = (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


class Rejected(Exception):
    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


@functools.lru_cache(maxsize=256)
def _signer_of(certificate_der: bytes) -> tuple[Any, str]:
    """The public key and subject of a signer's certificate. Every record of an
    organisation carries the same certificate, so it is parsed once, not per record (the
    signature is still checked on every record)."""
    try:
        cert = x509.load_der_x509_certificate(certificate_der)
    except ValueError:
        raise Rejected("signer_certificate") from None
    return cert.public_key(), cert.subject.rfc4514_string()


def verify_and_open(record: pb.SealedRecord, key: CentralKey) -> tuple[dict[str, Any], str]:
    """The variables of a sealed record and the signer's subject; raises :class:`Rejected`
    naming the check that failed."""
    if record.key_id != key.key_id:
        raise Rejected("key_id")
    header, signed = header_bytes(record), signed_bytes(record)
    public, subject = _signer_of(record.signer_certificate_der)
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(record.signature, signed, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(
                record.signature,
                signed,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
                hashes.SHA256(),
            )
        else:
            raise Rejected("signature_algorithm")
    except InvalidSignature:
        raise Rejected("signature") from None
    try:
        data_key = key.private.decrypt(
            record.wrapped_key,
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        plain = AESGCM(data_key).decrypt(record.nonce, record.ciphertext, header)
        variables = json.loads(plain)
    except (ValueError, InvalidTag):
        raise Rejected("decryption") from None
    if not isinstance(variables, dict):
        raise Rejected("decryption")
    return variables, subject


class Receiver:
    def __init__(self, db: Database, key: CentralKey, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db, self.key, self.clock = db, key, clock
        self.behaviour = Behaviour()

    def _open_for_business(self) -> bool:
        """False when dropping; raises when refusing."""
        if self.behaviour.mode is Mode.REFUSE:
            raise Problem(503, "receiver-refuses", "The central receiver refuses deliveries")
        return self.behaviour.mode is Mode.ACCEPT

    async def receive_pseudonyms(self, batch: pb.ReceivePseudonymsRequest) -> int:
        ids, versions, kinds = list(batch.technical_ids), list(batch.versions), list(batch.kinds)
        raw = batch.pseudonyms
        if not (len(versions) == len(kinds) == len(ids)) or len(raw) != 32 * len(ids):
            raise Problem(400, "columns-differ", "The pseudonym columns do not line up")
        if not self._open_for_business():
            return len(ids)
        now = self.clock.now()
        kind_names = {pb.PSEUDONYM_KIND_SSIN: "ssin", pb.PSEUDONYM_KIND_PSEUDOCODE: "pseudocode"}
        newest: dict[str, dict[str, Any]] = {}
        for n, (tid, version, kind) in enumerate(zip(ids, versions, kinds, strict=True)):
            if tid in newest and version <= newest[tid]["version"]:
                continue
            newest[tid] = {
                "technical_id": tid,
                "version": version,
                "organisation_id": batch.organisation_id,
                "project_code": batch.project_code,
                "key_version": batch.key_version,
                "kind": kind_names.get(kind, "unknown"),
                "pseudonym": raw[32 * n : 32 * n + 32].hex(),
                "received_at": now,
            }
        await self._keep(CentralPseudonym, ids, newest)
        return len(ids)

    async def receive_records(self, records: list[pb.SealedRecord]) -> list[pb.RecordReceipt]:
        """Verify and open every record, then keep them in a few statements (not a read and
        a write per record). Receipts come in the order of ``records``."""
        if not self._open_for_business():
            return [pb.RecordReceipt(technical_id=r.technical_id, accepted=True) for r in records]
        now = self.clock.now()
        receipts: list[pb.RecordReceipt] = []
        received: list[str] = []
        newest: dict[str, dict[str, Any]] = {}
        for r in records:
            try:
                variables, subject = verify_and_open(r, self.key)
            except Rejected as exc:
                log.warning(
                    "sealed record rejected", extra={"technical_id": r.technical_id, "rule": exc.rule}
                )
                receipts.append(pb.RecordReceipt(technical_id=r.technical_id, accepted=False, rule=exc.rule))
                continue
            receipts.append(pb.RecordReceipt(technical_id=r.technical_id, accepted=True))
            received.append(r.technical_id)
            if r.technical_id in newest and r.version <= newest[r.technical_id]["version"]:
                continue
            newest[r.technical_id] = {
                "technical_id": r.technical_id,
                "version": r.version,
                "organisation_id": r.organisation_id,
                "project_code": r.project_code,
                "dcd_code": r.dcd_code,
                "dcd_version": r.dcd_version,
                "registration_code": r.registration_code,
                "variables": variables,
                "signer_subject": subject[:500],
                "received_at": now,
            }
        if received:
            await self._keep(CentralRecord, received, newest)
        return receipts

    async def _keep(self, model: Any, received: list[str], newest: dict[str, dict[str, Any]]) -> None:
        """Keep one row per technical id: every arrival counts a receipt, the newest version's
        fields win over what is stored (a resend or an older version only counts).
        ``received`` has a technical id per arrival, ``newest`` the fields of each id's
        newest arrival. A read, an insert and an update or two, whatever the batch size."""
        table = model.__table__
        arrivals: dict[str, int] = defaultdict(int)
        for tid in received:
            arrivals[tid] += 1
        ids = list(arrivals)
        async with self.db.system_session() as session:
            found = await session.execute(
                select(table.c.technical_id, table.c.version).where(self.db.among(table.c.technical_id, ids))
            )
            stored: dict[str, int] = dict(found.tuples().all())
            new = [{**newest[tid], "receipts": arrivals[tid]} for tid in ids if tid not in stored]
            if new:
                await session.execute(insert(table), new)
            # A newer version of a stored one: its fields, one UPDATE run for them all.
            replaced = [
                {**{f"new_{c}": v for c, v in newest[tid].items()}, "more": arrivals[tid]}
                for tid in ids
                if tid in stored and newest[tid]["version"] > stored[tid]
            ]
            if replaced:
                fields: dict[str, Any] = {
                    c: bindparam(f"new_{c}") for c in newest[ids[0]] if c != "technical_id"
                }
                await session.execute(
                    update(table)
                    .where(table.c.technical_id == bindparam("new_technical_id"))
                    .values(**fields, receipts=table.c.receipts + bindparam("more")),
                    replaced,
                )
            counted: dict[int, list[str]] = defaultdict(list)  # only a receipt more
            for tid in ids:
                if tid in stored and newest[tid]["version"] <= stored[tid]:
                    counted[arrivals[tid]].append(tid)
            for more, tids in counted.items():
                await session.execute(
                    update(table)
                    .where(self.db.among(table.c.technical_id, tids))
                    .values(receipts=table.c.receipts + more)
                )

    async def confirmations(self, refs: list[pb.DeliveryRef]) -> list[pb.Confirmation]:
        """Confirmed: both halves of this version or a newer one are joined, and the
        acknowledgement delay (if any) has passed since they were."""
        if self.behaviour.mode is Mode.REFUSE:
            raise Problem(503, "receiver-refuses", "The central receiver refuses deliveries")
        ids = [r.technical_id for r in refs]
        delay = timedelta(seconds=self.behaviour.ack_delay_seconds)
        now = self.clock.now()
        async with self.db.system_session() as session:
            records = {
                r.technical_id: r
                for r in (
                    await session.execute(select(CentralRecord).where(CentralRecord.technical_id.in_(ids)))
                ).scalars()
            }
            halves = {
                p.technical_id: p
                for p in (
                    await session.execute(
                        select(CentralPseudonym).where(CentralPseudonym.technical_id.in_(ids))
                    )
                ).scalars()
            }
        out = []
        for ref in refs:
            rec, half = records.get(ref.technical_id), halves.get(ref.technical_id)
            joined = (
                rec is not None
                and half is not None
                and rec.version >= ref.version
                and half.version >= ref.version
            )
            confirmed = joined and max(rec.received_at, half.received_at) + delay <= now  # type: ignore[union-attr]
            out.append(
                pb.Confirmation(technical_id=ref.technical_id, version=ref.version, confirmed=bool(confirmed))
            )
        return out

    async def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        async with self.db.system_session() as session:
            records = (await session.execute(select(func.count()).select_from(CentralRecord))).scalar_one()
            halves = (await session.execute(select(func.count()).select_from(CentralPseudonym))).scalar_one()
        return {"records": int(records), "pseudonym_halves": int(halves)}
