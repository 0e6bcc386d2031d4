"""Transfers against both object stores: a real S3-speaking server (moto's, started by
the tests) and the folder store of embedded defaults. A completed transfer is one object
with its SHA-256; an aborted one (cut, too large) leaves no object at all."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hdhub.common.db import Database
from hdhub.common.objectstore import ObjectStore, SealedStore, open_store
from hdhub.intake.files import Files, TransferRefused
from hdhub.intake.runtime import MIGRATIONS
from hdhub.intake.settings import IntakeSettings
from services.intake.tests.support import vcf


@pytest.fixture(params=["folder", "s3"])
async def files(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Files]:
    url = f"file://{tmp_path / 'objects'}" if request.param == "folder" else request.getfixturevalue("s3_url")
    settings = IntakeSettings(max_file_bytes=40 * 1024 * 1024, database_url="sqlite://")
    # As the service runs: received files encrypted at rest.
    store: ObjectStore = SealedStore(open_store(url), settings.envelope(), purpose="intake")
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}", migrations=MIGRATIONS)
    await db.migrate()
    yield Files(db, store, settings)
    await db.dispose()
    await store.close()


async def objects(files: Files, prefix: str) -> list[str]:
    return [o.key async for o in files.objects.list(prefix)]


async def test_a_multipart_transfer_becomes_one_object_with_its_sha256(files: Files) -> None:
    data = vcf(rows=400_000)  # ~20 MB: more than one 16 MiB part on S3
    transfer = await files.begin(
        organisation_id="lab-demo", registry="NGS", filename="big.vcf", source="sftp", sender="t"
    )
    assert await objects(files, transfer.row.object_key) == []
    for start in range(0, len(data), 32 * 1024):
        await transfer.write(start, data[start : start + 32 * 1024])
    assert await files.objects.stat(transfer.row.object_key) is None  # nothing visible before the end
    row = await transfer.commit()
    assert await files.objects.stat(row.object_key) is not None
    assert row.sha256 == hashlib.sha256(data).hexdigest() and row.size == len(data)
    assert await files.objects.read(row.object_key) == data
    at_rest = await files.objects.inner.read(row.object_key)  # type: ignore[attr-defined]
    assert at_rest[:4] == b"HDS1" and data[:64] not in at_rest
    assert row.content_ok and row.state == "received"


async def test_an_aborted_transfer_leaves_no_object(files: Files) -> None:
    transfer = await files.begin(
        organisation_id="lab-demo", registry="NGS", filename="cut.vcf", source="sftp", sender="t"
    )
    data = vcf(rows=100_000)
    for start in range(0, len(data), 64 * 1024):
        await transfer.write(start, data[start : start + 64 * 1024])
    await transfer.abort("connection-lost", "cut")
    assert await objects(files, transfer.row.object_key) == []
    assert transfer.row.state == "aborted"


async def test_a_transfer_passing_the_limit_is_aborted_with_nothing_stored(files: Files) -> None:
    files.settings.max_file_bytes = 100_000
    transfer = await files.begin(
        organisation_id="lab-demo", registry="NGS", filename="big.vcf", source="http", sender="t"
    )
    data = vcf(rows=10_000)
    with pytest.raises(TransferRefused, match="larger than the limit"):
        for start in range(0, len(data), 16 * 1024):
            await transfer.write(start, data[start : start + 16 * 1024])
    assert await objects(files, transfer.row.object_key) == []


async def test_writes_out_of_order_are_refused(files: Files) -> None:
    transfer = await files.begin(
        organisation_id="lab-demo", registry="NGS", filename="x.vcf", source="sftp", sender="t"
    )
    await transfer.write(0, b"##fileformat=VCFv4.2\n")
    with pytest.raises(TransferRefused, match="resuming is not supported"):
        await transfer.write(100, b"more")
    await transfer.abort("out-of-order", "test")
    assert await objects(files, transfer.row.object_key) == []


class BrokenStore:
    """A store whose upload fails after the first chunk (a full disk, S3 refusing)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    async def put(self, key: str, body: AsyncIterator[bytes], **kwargs: object) -> None:
        async for _ in body:
            raise OSError("No space left on device: /var/lib/secret/path")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_store_failing_midway_is_told_plainly_and_nothing_is_kept(files: Files) -> None:
    files.objects = BrokenStore(files.objects)  # type: ignore[assignment]
    transfer = await files.begin(
        organisation_id="lab-demo", registry="NGS", filename="x.vcf", source="sftp", sender="t"
    )
    data = vcf(rows=100_000)
    with pytest.raises(TransferRefused) as refused:
        for start in range(0, len(data), 64 * 1024):
            await transfer.write(start, data[start : start + 64 * 1024])
        await transfer.commit()
    assert refused.value.message == "the object store did not take the file; nothing was stored"
    assert "secret" not in refused.value.message
    await transfer.abort(refused.value.rule, refused.value.message)
    assert transfer.row.state == "aborted" and await objects(files, transfer.row.object_key) == []


async def test_sftp_into_s3_with_a_real_client(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """paramiko -> our SFTP server -> moto's S3: one object with its SHA-256 after the move to
    Finished; a cut connection leaves none (identity's password check is replaced here: it
    is tested against the real identity service in test_sftp)."""
    import asyncio
    import io
    import socket

    import paramiko

    from hdhub.intake import sftp

    async def verify(username: str, password: str, address: str) -> str | None:
        return "lab-demo" if (username, password) == ("s3-login", "s3-password") else None

    monkeypatch.setattr(sftp, "verify_password", verify)
    store = open_store(s3_url)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}", migrations=MIGRATIONS)
    await db.migrate()
    files = Files(db, store, IntakeSettings(database_url="sqlite://"))
    server = await sftp.start_sftp(files, host="127.0.0.1", port=0, key=sftp.host_key(tmp_path / "host_key"))
    data = vcf(rows=20_000)
    try:

        def send() -> None:
            transport = paramiko.Transport(("127.0.0.1", server.get_port()))
            transport.connect(username="s3-login", password="s3-password")
            client = paramiko.SFTPClient.from_transport(transport)
            assert client is not None
            client.putfo(io.BytesIO(data), "/NGS/s3.vcf")
            client.rename("/NGS/s3.vcf", "/NGS/Finished/s3.vcf")
            cut = client.open("/NGS/cut.vcf", "w")
            cut.write(data)
            cut.flush()
            sock = transport.sock
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

        await asyncio.to_thread(send)
        listing = await files.listing("lab-demo", limit=10)
        by_name = {f.filename: f for f in listing.files}
        delivered = by_name["s3.vcf"]
        assert delivered.state == "accepted" and delivered.sha256 == hashlib.sha256(data).hexdigest()
        stored = await store.stat(delivered.object_key)
        assert stored is not None and stored.size == len(data) and stored.sha256 == delivered.sha256

        async def cut_aborted() -> bool:
            rows = {f.filename: f for f in (await files.listing("lab-demo", limit=10)).files}
            return rows["cut.vcf"].state == "aborted"

        from services.intake.tests.support import eventually

        await eventually(cut_aborted)
        cut_row = {f.filename: f for f in (await files.listing("lab-demo", limit=10)).files}["cut.vcf"]
        assert await objects(files, cut_row.object_key) == []
    finally:
        await server.drain(0)
        await db.dispose()
