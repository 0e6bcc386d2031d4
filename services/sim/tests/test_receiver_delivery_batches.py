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
from hdhub.common.sealed_record import CentralPublicKey, seal
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.sim.receiver import CentralKey, Receiver
from hdhub.sim.runtime import MIGRATIONS
from hdhub.sim.store import CentralPseudonym, CentralRecord

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
    public = CentralPublicKey.from_pem(receiver.key.public_pem.encode())
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


async def test_a_newer_version_replaces_the_stored_one_and_an_older_only_counts(receiver: Receiver) -> None:
    await receiver.receive_records([record(receiver, "t-1", 2, 1), record(receiver, "t-2", 5, 2)])
    receipts = await receiver.receive_records(
        [record(receiver, "t-1", 3, 31), record(receiver, "t-2", 4, 42), record(receiver, "t-1", 3, 32)]
    )
    assert all(r.accepted for r in receipts)
    kept = await stored(receiver)
    # t-1: version 3 as it first arrived (the same version again is a resend), 3 receipts.
    assert (kept["t-1"].version, kept["t-1"].variables, kept["t-1"].receipts) == (3, {"MS_LVEF": 31}, 3)
    assert kept["t-1"].registration_code == "201.26.000031.00"
    # t-2: the older version 4 only counts.
    assert (kept["t-2"].version, kept["t-2"].variables, kept["t-2"].receipts) == (5, {"MS_LVEF": 2}, 2)


async def test_pseudonym_halves_keep_the_newest_version_and_count_every_arrival(receiver: Receiver) -> None:
    def batch(*halves: tuple[str, int, int]) -> pb.ReceivePseudonymsRequest:
        return pb.ReceivePseudonymsRequest(
            organisation_id="az-demo",
            project_code="HDBP0012",
            key_version=1,
            technical_ids=[t for t, _, _ in halves],
            versions=[v for _, v, _ in halves],
            pseudonyms=b"".join(bytes([b]) * 32 for _, _, b in halves),
            kinds=[pb.PSEUDONYM_KIND_SSIN] * len(halves),
        )

    assert await receiver.receive_pseudonyms(batch(("t-1", 2, 1), ("t-2", 2, 2), ("t-1", 3, 3))) == 3
    assert await receiver.receive_pseudonyms(batch(("t-1", 3, 4), ("t-2", 4, 5), ("t-3", 1, 6))) == 3
    async with receiver.db.system_session() as session:
        halves = {p.technical_id: p for p in (await session.execute(select(CentralPseudonym))).scalars()}
    assert {t: (p.version, p.pseudonym[:2], p.receipts) for t, p in halves.items()} == {
        "t-1": (3, "03", 3),
        "t-2": (4, "05", 2),
        "t-3": (1, "06", 1),
    }
    assert halves["t-1"].kind == "ssin" and halves["t-1"].organisation_id == "az-demo"
