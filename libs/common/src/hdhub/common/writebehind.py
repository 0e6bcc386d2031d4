"""Large files written once and seldom read back (a VCF in the object store, the central
side's copy) go to disk as they are written, and are read back, without filling the page
cache.

A 1 GiB file written plainly takes 1 GiB of page cache, evicting what the database and
the services read every second, and makes the kernel find that much fresh memory: on a
virtual machine whose host takes back the guest's free pages, 2.4-2.9 s of system CPU per
GiB against 0.3 s when the same pages are used over again (bench/README.md, issue 22).
So every :data:`WINDOW` bytes written are handed to the disk (``sync_file_range``, which
starts the writeback and returns), and the window before, once on disk, is dropped from
the cache (``POSIX_FADV_DONTNEED``): the file keeps two windows of the cache at most, the
same pages over and over. The technique PostgreSQL's ``*_flush_after`` settings use.
Reading such a file back (:func:`read_behind`) likewise drops each window read but the
last two.

Nothing here is a durability promise (``fsync`` still is); where ``sync_file_range`` is
missing (not Linux) writes go through plainly.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterator
from typing import BinaryIO

#: Bytes handed to the disk at a time; two of them at most stay in the page cache.
WINDOW = 32 * 1024 * 1024
_WRITE, _WAIT_BEFORE, _WAIT_AFTER = 2, 1, 4  # SYNC_FILE_RANGE_*


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not hasattr(os, "posix_fadvise"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_SYNC_FILE_RANGE = _sync_file_range()


def _drop(fd: int, start: int, length: int) -> None:
    """A range's pages out of the cache: a hint, which a file system may refuse (a pipe,
    some network file systems) without it being any error of the file's."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)


class WriteBehind:
    """Writes to ``file`` (binary, from its current end), each :data:`WINDOW` sent to the
    disk and the one before dropped from the page cache. Closes ``file`` with itself."""

    def __init__(self, file: BinaryIO, window: int = WINDOW) -> None:
        self.file, self.window = file, window
        self.fd = file.fileno()
        file.seek(0, os.SEEK_END)
        # Windows start at multiples of the window (page-aligned) at or after the start.
        self._next = -(-file.tell() // window) * window
        self._end = file.tell()
        self._handed: int | None = None

    def write(self, data: bytes | memoryview) -> int:
        written = self.file.write(data)
        self._end += written
        if _SYNC_FILE_RANGE is not None and self._end - self._next >= self.window:
            self.file.flush()
            while self._end - self._next >= self.window:
                self._hand(self._next)
                self._next += self.window
        return written

    def _hand(self, start: int) -> None:
        sync = _SYNC_FILE_RANGE
        assert sync is not None
        sync(self.fd, start, self.window, _WRITE)
        before = self._handed
        if before is not None:
            # The previous window is on its way: wait for it, then let its pages go.
            sync(self.fd, before, self.window, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
            _drop(self.fd, before, self.window)
        self._handed = start

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_behind(file: BinaryIO, size: int, window: int = WINDOW) -> Iterator[bytes]:
    """``file``'s bytes from its current position, in reads of ``size``; each window is
    dropped from the page cache once the reading is two windows past it."""
    fd, at = file.fileno(), file.tell()
    dropped = at // window * window
    drop = hasattr(os, "posix_fadvise")
    while chunk := file.read(size):
        at += len(chunk)
        yield chunk
        while drop and at - dropped >= 3 * window:
            _drop(fd, dropped, window)
            dropped += window
