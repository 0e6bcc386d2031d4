"""Object storage: the folder and S3 (a real moto server) behave the same, stream, record
the SHA-256, and never show a partial object."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hdhub.common.objectstore import BadObjectKey, ObjectNotFound, ObjectStore, open_store


@pytest.fixture(params=["folder", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "folder":
        url = f"file://{tmp_path / 'objects'}"
    else:
        url = request.getfixturevalue("s3_url").replace("/hdhub-test?", f"/b-{os.urandom(4).hex()}?")
    s = open_store(url)
    yield s
    await s.close()


async def chunks(total: int, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield os.urandom(n)
        sent += n


async def test_put_stream_stat_and_delete(store: ObjectStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    stored = await store.put("org-a/upload/1.csv", data, content_type="text/csv", metadata={"uploader": "x"})
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert await store.read("org-a/upload/1.csv") == data
    st = await store.stat("org-a/upload/1.csv")
    assert st is not None and st.size == len(data) and st.sha256 == stored.sha256
    assert st.metadata.get("uploader") == "x"
    assert [o.key async for o in store.list("org-a/")] == ["org-a/upload/1.csv"]
    await store.delete("org-a/upload/1.csv")
    assert await store.stat("org-a/upload/1.csv") is None
    with pytest.raises(ObjectNotFound):
        await store.read("org-a/upload/1.csv")


async def test_large_streams_go_multipart_with_their_digest(store: ObjectStore) -> None:
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        async for c in chunks(40 * 1024 * 1024):
            digest.update(c)
            yield c

    stored = await store.put("big.bin", body())
    assert stored.size == 40 * 1024 * 1024 and stored.sha256 == digest.hexdigest()
    again = hashlib.sha256()
    async for c in store.stream("big.bin"):
        again.update(c)
    assert again.hexdigest() == digest.hexdigest()


async def test_a_cut_upload_leaves_no_object(store: ObjectStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * (6 * 1024 * 1024)
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await store.put("cut.bin", broken())
    assert await store.stat("cut.bin") is None
    assert [o.key async for o in store.list("")] == []


async def test_move_keeps_content(store: ObjectStore) -> None:
    await store.put("drop/a.csv", b"a;b\n1;2\n")
    moved = await store.move("drop/a.csv", "drop/ARCHIVE/a.csv")
    assert moved.size == 8
    assert await store.stat("drop/a.csv") is None
    assert await store.read("drop/ARCHIVE/a.csv") == b"a;b\n1;2\n"


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a//b", "a/./b", "tab\there", "dir/"])
async def test_keys_that_could_escape_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(BadObjectKey):
        await store.put(key, b"x")
