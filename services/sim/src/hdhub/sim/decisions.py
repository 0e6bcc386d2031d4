"""The stand-in central platform's decisions: the operator (or a test) decides on a
delivered registration through /sim/decisions; the decision is signed with the sim's
signing key and kept, in order, until registrations pulls it (``GetDecisions``) and
acknowledges what it did with it (``AcknowledgeDecisions``). The receiver's mode holds
here too: ``refuse`` answers UNAVAILABLE, as the central platform being down."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, or_, select

from hdhub.common.central_decision import key_id_of, sign
from hdhub.common.db import Database, new_id
from hdhub.common.errors import Problem, not_found
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.sim.receiver import Mode, Receiver
from hdhub.sim.store import CentralDecision, CentralRecord

#: The statuses a decision carries, as the REST switch names them.
STATUSES = {
    "corrections_needed": pb.DECISION_STATUS_CORRECTIONS_NEEDED,
    "approved": pb.DECISION_STATUS_APPROVED,
    "follow_up_needed": pb.DECISION_STATUS_FOLLOW_UP_NEEDED,
    "error": pb.DECISION_STATUS_ERROR,
}
STATUS_OF = {v: k for k, v in STATUSES.items()}
MAX_PULL = 500


class SigningKey:
    """The sim's EC P-256 signing key, generated into its data folder on first start."""

    def __init__(self, path: Path) -> None:
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path} holds no EC key")
            self.private = loaded
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = self.private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
        public = self.private.public_key()
        self.key_id = key_id_of(public)
        self.public_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def as_message(row: CentralDecision) -> pb.Decision:
    return pb.Decision(
        decision_id=row.decision_id,
        sequence=row.sequence,
        technical_id=row.technical_id,
        version=row.version,
        organisation_id=row.organisation_id,
        status=STATUSES[row.status],
        comment=row.comment,
        fields=list(row.fields),
        decided_at=row.decided_at,
        signing_key_id=row.signing_key_id,
        signature=row.signature,
    )


class Decisions:
    def __init__(self, db: Database, key: SigningKey, receiver: Receiver) -> None:
        self.db, self.key, self.receiver = db, key, receiver

    def _up(self) -> None:
        if self.receiver.behaviour.mode is Mode.REFUSE:
            raise Problem(503, "receiver-refuses", "The central platform is unavailable")

    async def decide(
        self, *, registration_code: str, status: str, comment: str, fields: list[str]
    ) -> CentralDecision:
        """A signed decision on the newest version received of a registration (by its
        registration code); 404 when nothing was received under that code."""
        async with self.db.system_session() as session:
            record = (
                await session.execute(
                    select(CentralRecord).where(CentralRecord.registration_code == registration_code)
                )
            ).scalar_one_or_none()
            if record is None:
                raise not_found("Delivered registration")
            decided_at = self.receiver.clock.now().isoformat().replace("+00:00", "Z")
            message = pb.Decision(
                decision_id=new_id(),
                technical_id=record.technical_id,
                version=record.version,
                organisation_id=record.organisation_id,
                status=STATUSES[status],
                comment=comment,
                fields=fields,
                decided_at=decided_at,
                signing_key_id=self.key.key_id,
            )
            row = CentralDecision(
                decision_id=message.decision_id,
                technical_id=record.technical_id,
                version=record.version,
                organisation_id=record.organisation_id,
                registration_code=registration_code,
                status=status,
                comment=comment,
                fields=fields,
                decided_at=decided_at,
                signing_key_id=self.key.key_id,
                signature=sign(self.key.private, message, pb.DecisionStatus.Name(message.status)),
            )
            session.add(row)
            await session.flush()
            return row

    async def after(self, sequence: int, limit: int) -> list[pb.Decision]:
        """The decisions after ``sequence``, oldest first."""
        self._up()
        async with self.db.system_session() as session:
            rows = (
                await session.execute(
                    select(CentralDecision)
                    .where(CentralDecision.sequence > sequence)
                    .order_by(CentralDecision.sequence)
                    .limit(min(limit or MAX_PULL, MAX_PULL))
                )
            ).scalars()
            return [as_message(r) for r in rows]

    async def acknowledge(self, outcomes: list[pb.DecisionOutcome]) -> int:
        """Record each outcome once (a repeated acknowledgement keeps the first)."""
        self._up()
        now = self.receiver.clock.now()
        count = 0
        async with self.db.system_session() as session:
            for o in outcomes:
                row = (
                    await session.execute(
                        select(CentralDecision).where(CentralDecision.decision_id == o.decision_id)
                    )
                ).scalar_one_or_none()
                if row is None:
                    continue
                count += 1
                if row.outcome is None:
                    row.outcome = "applied" if o.applied else "refused"
                    row.reason = None if o.applied else (o.reason or "unknown")[:120]
                    row.acknowledged_at = now
        return count

    async def page(
        self, *, registration_code: str | None, limit: int, offset: int
    ) -> tuple[list[CentralDecision], int]:
        async with self.db.system_session() as session:
            query = select(CentralDecision)
            if registration_code:
                query = query.where(
                    or_(
                        CentralDecision.registration_code == registration_code,
                        CentralDecision.technical_id == registration_code,
                    )
                )
            total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = await session.execute(
                query.order_by(CentralDecision.sequence.desc()).limit(limit).offset(offset)
            )
            return list(rows.scalars()), int(total)


__all__ = ["STATUSES", "Decisions", "SigningKey"]
