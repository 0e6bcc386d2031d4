"""Large files written and read through a window of the page cache (hdhub.common.writebehind)."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys
from pathlib import Path

import pytest

from hdhub.common import writebehind
from hdhub.common.objectstore import FolderStore
from hdhub.common.writebehind import WriteBehind, read_behind

# Windows of whole large folios (the page cache keeps up to 2 MiB per folio): a drop of less
# leaves a folio that straddles its edge.
WINDOW = 4 * 1024 * 1024
PAGE = mmap.PAGESIZE
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range and mincore are Linux's")


def cached(path: Path) -> list[bool]:
    """Per window of ``path``: is any of its pages in the page cache (mincore)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    size = path.stat().st_size
    pages = -(-size // PAGE)
    vec = (ctypes.c_ubyte * pages)()
    # A private map (copy on write) lends a buffer; untouched, its pages are the file's.
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        anchor = ctypes.c_char.from_buffer(mm)
        try:
            assert libc.mincore(ctypes.addressof(anchor), size, vec) == 0, ctypes.get_errno()
        finally:
            del anchor
    per_window = WINDOW // PAGE
    return [any(v & 1 for v in vec[i : i + per_window]) for i in range(0, pages, per_window)]


def blob(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(256)) * (n // 256) + b"x" * (n % 256)


def test_writes_every_byte_in_order_across_windows(tmp_path: Path) -> None:
    data = blob(5 * WINDOW + 12345)
    path = tmp_path / "f"
    with WriteBehind(path.open("wb"), window=WINDOW) as out:
        for at in range(0, len(data), 300_001):  # pieces that straddle every window edge
            assert out.write(data[at : at + 300_001]) == len(data[at : at + 300_001])
    assert path.read_bytes() == data


def test_appends_from_the_end_of_an_existing_file(tmp_path: Path) -> None:
    """A resumed transfer opens its file for appending at an offset no window divides."""
    path = tmp_path / "f"
    head, tail = blob(WINDOW + 777), blob(4 * WINDOW, seed=7)
    path.write_bytes(head)
    with WriteBehind(path.open("ab"), window=WINDOW) as out:
        out.write(tail[: WINDOW // 3])
        out.flush()
        out.write(tail[WINDOW // 3 :])
    assert path.read_bytes() == head + tail


@linux_only
def test_a_large_file_leaves_the_page_cache_behind_it(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with WriteBehind(path.open("wb"), window=WINDOW) as out:
        for _ in range(8):
            out.write(blob(WINDOW))
    windows = cached(path)
    assert len(windows) == 8
    # All but the last windows were written out and dropped; the last two may stay.
    assert not any(windows[:6]), windows


@linux_only
def test_a_small_file_stays_in_the_page_cache(tmp_path: Path) -> None:
    """Uploads of a few megabytes are read again at once (the CSV's steps): left cached."""
    path = tmp_path / "f"
    with WriteBehind(path.open("wb"), window=WINDOW) as out:
        out.write(blob(WINDOW // 2))
    assert cached(path) == [True]


@linux_only
def test_reading_back_drops_what_is_two_windows_behind(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = blob(6 * WINDOW)
    with path.open("wb") as f:
        f.write(data)
        os.fsync(f.fileno())  # on disk, as an object written a while ago: clean pages
    with path.open("rb") as f:
        got = b"".join(read_behind(f, 256 * 1024, window=WINDOW))
    assert got == data
    windows = cached(path)
    assert not any(windows[:3]), windows
    assert all(windows[4:]), windows


def test_without_sync_file_range_writes_go_through_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writebehind, "_SYNC_FILE_RANGE", None)
    data = blob(3 * WINDOW + 5)
    path = tmp_path / "f"
    with WriteBehind(path.open("wb"), window=WINDOW) as out:
        out.write(data)
    assert path.read_bytes() == data


async def test_the_folder_store_round_trips_a_large_object(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "objects")
    data = blob(3 * writebehind.WINDOW + 99)

    async def body():  # type: ignore[no-untyped-def]
        for at in range(0, len(data), 1 << 20):
            yield data[at : at + (1 << 20)]

    stored = await store.put("k/big", body())
    assert stored.size == len(data)
    assert b"".join([c async for c in store.stream("k/big")]) == data


def test_a_file_system_refusing_the_hints_still_gets_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(writebehind.os, "posix_fadvise", refuse)
    data = blob(5 * WINDOW + 1)
    path = tmp_path / "f"
    with WriteBehind(path.open("wb"), window=WINDOW) as out:
        out.write(data)
    with path.open("rb") as f:
        assert b"".join(read_behind(f, 1 << 20, window=WINDOW)) == data
