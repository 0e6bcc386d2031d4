"""Objects encrypted at rest through the shared object store (``SealedStore``): the same on
the folder store and S3 (a real moto server), streamed in segments, bound to their purpose,
and refused when cut or tampered with."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hdhub.common.envelope import SEGMENT, Envelope, EnvelopeError
from hdhub.common.objectstore import ObjectStore, SealedStore, open_store

KEY, OLD_KEY = os.urandom(32), os.urandom(32)


@pytest.fixture(params=["folder", "s3"])
async def inner(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "folder":
        url = f"file://{tmp_path / 'objects'}"
    else:
        url = request.getfixturevalue("s3_url").replace("/hdhub-test?", f"/b-{os.urandom(4).hex()}?")
    s = open_store(url)
    yield s
    await s.close()


def sealed(inner: ObjectStore, *keys: bytes, purpose: str = "uploads") -> SealedStore:
    return SealedStore(inner, Envelope(list(keys) or [KEY]), purpose=purpose)


async def test_what_is_put_is_ciphertext_at_rest_and_plaintext_when_read(inner: ObjectStore) -> None:
    data = b"TX_PATIENT_ID;NAME\n85.04.02-169.32;Peeters\n" * 100_000  # several segments
    store = sealed(inner)

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 300_000):
            yield data[start : start + 300_000]

    stored = await store.put("uploads/org/1/source.csv", body(), content_type="text/csv")
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    raw = await inner.read("uploads/org/1/source.csv")
    assert b"Peeters" not in raw and b"85.04.02" not in raw and len(raw) > len(data) > 2 * SEGMENT
    assert await store.read("uploads/org/1/source.csv") == data
    assert (await store.stat("uploads/org/1/source.csv")) is not None


async def test_an_empty_object_and_an_exact_segment_round_trip(inner: ObjectStore) -> None:
    store = sealed(inner)
    for n in (0, 1, SEGMENT, SEGMENT + 1):
        data = os.urandom(n)
        await store.put(f"k{n}", data)
        assert await store.read(f"k{n}") == data


async def test_a_cut_or_altered_object_does_not_open(inner: ObjectStore) -> None:
    store = sealed(inner)
    await store.put("k", os.urandom(2 * SEGMENT + 10))
    raw = await inner.read("k")
    for bad in (
        raw[: len(raw) - 42],
        raw[: len(raw) - 20],
        raw[:-1] + bytes([raw[-1] ^ 1]),
        raw[: SEGMENT + 200],
    ):
        await inner.put("k", bad)
        with pytest.raises(EnvelopeError):
            await store.read("k")


async def test_objects_open_only_for_their_purpose_and_with_a_configured_key(inner: ObjectStore) -> None:
    await sealed(inner).put("k", b"secret")
    with pytest.raises(EnvelopeError):
        await sealed(inner, purpose="intake").read("k")
    with pytest.raises(EnvelopeError, match="not configured"):
        await sealed(inner, os.urandom(32)).read("k")


async def test_a_retired_master_key_still_opens_what_it_wrapped(inner: ObjectStore) -> None:
    await sealed(inner, OLD_KEY).put("k", b"kept before the rotation")
    assert await sealed(inner, KEY, OLD_KEY).read("k") == b"kept before the rotation"


async def test_an_object_stored_before_encryption_is_read_as_it_is(inner: ObjectStore) -> None:
    await inner.put("old", b"a;b\n1;2\n")
    assert await sealed(inner).read("old") == b"a;b\n1;2\n"
    await inner.put("tiny", b"ab")
    assert await sealed(inner).read("tiny") == b"ab"
