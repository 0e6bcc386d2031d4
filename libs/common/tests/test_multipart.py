"""Multipart bodies read part by part as they arrive: fields whole, files in chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hdhub.common.errors import Problem
from hdhub.common.multipart import MultipartStream, multipart_boundary

BOUNDARY = b"----hdhub-test-boundary"


def body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        out += b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n"
        if filename is not None:
            out += b"Content-Type: text/csv\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


async def trickle(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    """The body as a slow network hands it over: a few bytes at a time."""
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def test_fields_and_files_come_in_the_bodys_order_files_in_chunks() -> None:
    big = b"ABCDEFGHIJ" * 2000
    raw = body(("csrf_token", None, b"t0k"), ("sequences", "seq.csv", big), ("file", "meta.csv", b"x;y\r\n"))
    seen: list[tuple[str, str | None, bytes, int]] = []
    async for part in MultipartStream(trickle(raw, 1000), BOUNDARY):
        chunks = [c async for c in part.chunks()]
        seen.append((part.name, part.filename, b"".join(chunks), len(chunks)))
    assert [(n, f, d) for n, f, d, _ in seen] == [
        ("csrf_token", None, b"t0k"),
        ("sequences", "seq.csv", big),
        ("file", "meta.csv", b"x;y\r\n"),
    ]
    assert seen[1][3] > 10  # handed on as it arrived, not gathered


async def test_a_part_left_unread_is_skipped() -> None:
    raw = body(("a", None, b"1"), ("skipped", "f.csv", b"z" * 5000), ("b", None, b"2"))
    fields = {}
    async for part in MultipartStream(trickle(raw), BOUNDARY):
        if part.filename is None:
            fields[part.name] = await part.text()
    assert fields == {"a": "1", "b": "2"}


async def test_a_body_that_is_not_multipart_is_a_400_with_the_hint() -> None:
    with pytest.raises(Problem) as refused:
        async for _ in MultipartStream(trickle(b"this is not multipart\r\n"), b"xyz", hint="Send a file."):
            pass
    assert (refused.value.status, refused.value.slug, refused.value.detail) == (
        400,
        "bad-multipart",
        "Send a file.",
    )


async def test_a_field_past_the_limit_is_refused() -> None:
    raw = body(("note", None, b"n" * 100))
    with pytest.raises(Problem) as refused:
        async for part in MultipartStream(trickle(raw), BOUNDARY):
            await part.text(limit=10)
    assert refused.value.status == 413


def test_the_boundary_is_read_from_the_content_type() -> None:
    assert multipart_boundary("multipart/form-data; boundary=abc") == b"abc"
    assert multipart_boundary("text/csv") is None
    with pytest.raises(Problem):
        multipart_boundary("multipart/form-data")
