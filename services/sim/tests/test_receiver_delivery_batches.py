"""The receiver keeps a batch of sealed records in a few statements: one record per
technical id (newest version), a resend only counts a receipt, a rejected record does not
stop the others, and the receipts come in the order of the request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from hdhub.common.db import Database
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.registrations.delivery import CentralKey as PublicCentralKey
from hdhub.registrations.delivery import seal
from hdhub.sim.receiver import CentralKey, Receiver
from hdhub.sim.runtime import MIGRATIONS
from hdhub.sim.store import CentralRecord

from .test_receiver import signer


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'sim.db'}", migrations=MIGRATIONS)
    await db.migrate()
    try:
        yield Receiver(db, CentralKey(tmp_path / "key.pem", 2048))
    finally:
        await db.dispose()


def record(receiver: Receiver, technical_id: str, version: int, value: int) -> pb.SealedRecord:
    header = pb.SealedRecord(
        technical_id=technical_id,
        version=version,
        organisation_id="az-demo",
        project_code="HDBP0012",
        dcd_code="ANGIO_HOSP",
        dcd_version="1.0.0",
        registration_code=f"201.26.{value:06d}.00",
    )
    public = PublicCentralKey.from_pem(receiver.key.public_pem.encode())
    return seal(
        header=header,
        variables={"MS_LVEF": value},
        central=public,
        signer=signer(ec.generate_private_key(ec.SECP256R1())),
    )


async def stored(receiver: Receiver) -> dict[str, CentralRecord]:
    async with receiver.db.system_session() as session:
        return {r.technical_id: r for r in (await session.execute(select(CentralRecord))).scalars()}


async def test_a_batch_keeps_one_record_per_technical_id_with_receipts_in_order(receiver: Receiver) -> None:
    tampered = record(receiver, "t-3", 2, 3)
    tampered.version = 3  # signed as version 2
    batch = [
        record(receiver, "t-1", 2, 1),
        record(receiver, "t-2", 2, 2),
        tampered,
        record(receiver, "t-1", 3, 11),  # a newer version of t-1 in the same batch
        record(receiver, "t-2", 1, 99),  # an older one of t-2: counted, not kept
    ]
    receipts = await receiver.receive_records(batch)
    assert [(r.technical_id, r.accepted, r.rule) for r in receipts] == [
        ("t-1", True, ""),
        ("t-2", True, ""),
        ("t-3", False, "signature"),
        ("t-1", True, ""),
        ("t-2", True, ""),
    ]
    kept = await stored(receiver)
    assert set(kept) == {"t-1", "t-2"}
    assert (kept["t-1"].version, kept["t-1"].variables, kept["t-1"].receipts) == (3, {"MS_LVEF": 11}, 2)
    assert (kept["t-2"].version, kept["t-2"].variables, kept["t-2"].receipts) == (2, {"MS_LVEF": 2}, 2)

    # A resend of the whole batch (a worker that died after sending): no second record.
    await receiver.receive_records([record(receiver, "t-1", 3, 11), record(receiver, "t-2", 2, 2)])
    kept = await stored(receiver)
    assert len(kept) == 2
    assert (kept["t-1"].version, kept["t-1"].receipts) == (3, 3)
    assert (kept["t-2"].version, kept["t-2"].receipts) == (2, 3)
