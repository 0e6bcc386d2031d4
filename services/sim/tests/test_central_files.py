"""Sealed files (hdhub.common.sealed_file, as intake sends them) against the stand-in's
checks: what opens, and what a moved, replayed, cut-short or re-signed stream fails on."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hdhub.common.sealed_file import FileRejected, open_header, seal_header
from hdhub.common.sealed_record import CentralPublicKey
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.sim.files import verify_signature
from hdhub.sim.receiver import CentralKey
from services.sim.tests.test_receiver import signer
from tests.support.stack import Stack

DATA = bytes(range(256)) * 40  # 10 KiB
CHUNK = 4096


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> CentralKey:
    return CentralKey(Path(tmp_path_factory.mktemp("sim")) / "key.pem", 2048)


def header(data: bytes = DATA, offset: int = 0, sha256: str | None = None) -> pb.SealedFileHeader:
    return pb.SealedFileHeader(
        file_id="f-1",
        organisation_id="lab-demo",
        project_code="HDBP0257",
        registry="NGS",
        filename="NGS_1.vcf",
        technical_ids=["t-1"],
        size=len(data),
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        offset=offset,
    )


def sealed(
    central: CentralKey, h: pb.SealedFileHeader, data: bytes = DATA
) -> tuple[pb.SealedFileHeader, list[pb.SealedFileChunk]]:
    public = CentralPublicKey.from_pem(central.public_pem.encode())
    h, sealer = seal_header(header=h, central=public, signer=signer(ec.generate_private_key(ec.SECP256R1())))
    chunks = []
    for at in range(h.offset, len(data), CHUNK):
        last = at + CHUNK >= len(data)
        chunks.append(
            pb.SealedFileChunk(
                offset=at, ciphertext=sealer.chunk(at, data[at : at + CHUNK], last=last), last=last
            )
        )
    return h, chunks


def opened(central: CentralKey, h: pb.SealedFileHeader) -> object:
    return open_header(
        h,
        private_key=central.private,
        key_id=central.key_id,
        verify=lambda cert, sig, data: verify_signature(cert, sig, data),
    )


def test_a_sealed_file_opens_chunk_by_chunk_to_the_signed_digest(central: CentralKey) -> None:
    h, chunks = sealed(central, header())
    opener = opened(central, h)
    plain = b"".join(opener.chunk(c.offset, c.ciphertext, last=c.last) for c in chunks)  # type: ignore[attr-defined]
    assert plain == DATA and hashlib.sha256(plain).hexdigest() == h.sha256
    assert DATA[:64] not in b"".join(c.ciphertext for c in chunks)


def test_a_chunk_moved_cut_short_or_from_another_attempt_fails_to_open(central: CentralKey) -> None:
    h, chunks = sealed(central, header())
    opener = opened(central, h)
    with pytest.raises(FileRejected, match="decryption"):  # moved
        opener.chunk(chunks[1].offset, chunks[0].ciphertext, last=False)  # type: ignore[attr-defined]
    with pytest.raises(FileRejected, match="decryption"):  # the last chunk passed off as not last
        opener.chunk(chunks[-1].offset, chunks[-1].ciphertext, last=False)  # type: ignore[attr-defined]
    with pytest.raises(FileRejected, match="decryption"):  # a middle chunk passed off as the end
        opener.chunk(chunks[0].offset, chunks[0].ciphertext, last=True)  # type: ignore[attr-defined]
    _, others = sealed(central, header())
    with pytest.raises(FileRejected, match="decryption"):  # another attempt's key
        opener.chunk(others[0].offset, others[0].ciphertext, last=False)  # type: ignore[attr-defined]


def test_a_header_changed_after_signing_or_for_another_key_is_refused(central: CentralKey) -> None:
    h, _ = sealed(central, header())
    changed = pb.SealedFileHeader()
    changed.CopyFrom(h)
    changed.technical_ids[0] = "t-2"
    with pytest.raises(FileRejected, match="signature"):
        opened(central, changed)
    changed.CopyFrom(h)
    changed.key_id = "0" * 64
    with pytest.raises(FileRejected, match="key_id"):
        opened(central, changed)


async def _stream(
    h: pb.SealedFileHeader, chunks: list[pb.SealedFileChunk]
) -> AsyncIterator[pb.ReceiveFileRequest]:
    yield pb.ReceiveFileRequest(header=h)
    for c in chunks:
        yield pb.ReceiveFileRequest(chunk=c)


async def test_the_receiver_refuses_a_file_whose_digest_is_not_the_signed_one(stack: Stack) -> None:
    files = stack.service("sim").central_files
    key = files.key
    h = header(sha256="0" * 64)
    h.file_id = f"digest-{id(h)}"
    h, chunks = sealed(key, h)
    answer = await files.receive(_stream(h, chunks))
    assert (answer.acknowledged, answer.rule, answer.offset) == (False, "digest", 0)
    assert not files.path(h.file_id).exists()  # what was held is dropped: start again


async def test_the_receiver_acknowledges_a_whole_file_and_refuses_a_wrong_offset(stack: Stack) -> None:
    files = stack.service("sim").central_files
    h = header()
    h.file_id = f"whole-{id(h)}"
    ahead = pb.SealedFileHeader()
    ahead.CopyFrom(h)
    ahead.offset = CHUNK
    early, early_chunks = sealed(files.key, ahead)
    refused = await files.receive(_stream(early, early_chunks))
    assert (refused.acknowledged, refused.rule, refused.offset) == (False, "offset", 0)
    h, chunks = sealed(files.key, h)
    answer = await files.receive(_stream(h, chunks))
    assert answer.acknowledged and answer.sha256 == hashlib.sha256(DATA).hexdigest()
    assert files.path(h.file_id).read_bytes() == DATA


async def test_a_write_that_fails_leaves_the_file_whole_up_to_it_and_the_next_attempt_resumes(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are written by a thread of the transfer's own, a few behind: once one write
    fails (a full disk), none after it is written, so the held file has no hole."""
    from hdhub.common import writebehind

    files = stack.service("sim").central_files
    h = header()
    h.file_id = f"disk-full-{id(h)}"
    h, chunks = sealed(files.key, h)
    real, calls = writebehind.WriteBehind.write, []

    def write(self: writebehind.WriteBehind, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(writebehind.WriteBehind, "write", write)
    with pytest.raises(OSError, match="No space"):
        await files.receive(_stream(h, chunks))
    assert files.path(h.file_id).read_bytes() == DATA[:CHUNK]  # the first chunk, nothing after
    assert len(calls) == 2  # the chunks after the failed one were not written
    monkeypatch.setattr(writebehind.WriteBehind, "write", real)
    resumed = pb.SealedFileHeader()
    resumed.CopyFrom(header())
    resumed.file_id, resumed.offset = h.file_id, CHUNK
    resumed, rest = sealed(files.key, resumed)
    answer = await files.receive(_stream(resumed, rest))
    assert answer.acknowledged and files.path(h.file_id).read_bytes() == DATA
