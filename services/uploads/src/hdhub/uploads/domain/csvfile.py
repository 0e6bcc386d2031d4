"""Reading CSV files as they really arrive, in constant memory: bytes are split into
physical lines (LF, CRLF or a lone CR; never more than ``max_line_bytes`` held), each
line decoded on its own (UTF-8, with or without BOM; cp1252 / Latin-1 recognised and
reported; a file with a UTF-16 BOM is read as UTF-16), the separator
taken from the header (`;` by default, `,` detected), and records parsed by the csv
module so quoted fields may hold separators and newlines. Every record carries the
physical line it starts on, which is what the reports show the user.

Pure code, no I/O: the worker feeds it an iterator of byte chunks. Whatever the bytes,
reading either yields records or raises :class:`FileRefused` naming the rule broken;
nothing else escapes (tests/unit/test_reader_fuzz.py).
"""

from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: Optional columns of the v1/v2 CSV format that are not DCD fields.
OPTIONAL_COLUMNS = frozenset({"TX_AUTHOR_GR", "TX_AUTHOR", "TX_COAUTHOR", "STATUS"})


@dataclass(frozen=True, slots=True)
class Finding:
    """Something about the file or one cell, reported to the user. ``params`` fill the
    message template of ``rule`` in the user's language (see messages.py)."""

    rule: str
    severity: str  # "error" or "warning"
    line: int = 0
    record: int = 0
    column: str = ""
    value: str = ""
    params: dict[str, Any] = field(default_factory=dict)


class FileRefused(Exception):
    """The file cannot be read on: binary, line too long, too many columns, malformed."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.rule)
        self.finding = finding


@dataclass(slots=True)
class Record:
    line: int  # physical line (1-based) of the record's first character
    number: int  # record number, 1 = the first record after the header
    values: list[str]


def physical_lines(chunks: Iterator[bytes], max_line_bytes: int) -> Iterator[bytes]:
    """Byte lines with their terminators: LF, CRLF, or CR alone (old Excel for Mac), mixed
    freely; refuses a line longer than ``max_line_bytes``. Two ``find`` calls per line
    keep this at C speed (a regular expression is about three times slower)."""
    pending = bytearray()
    line_no = 0
    for chunk in chunks:
        if b"\x00" in chunk:
            before = bytes(pending) + chunk[: chunk.index(b"\x00")]
            ends = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n")
            raise FileRefused(Finding("binary", "error", line=line_no + 1 + ends))
        pending.extend(chunk)
        start = 0
        while True:
            nl = pending.find(b"\n", start)
            cr = pending.find(b"\r", start, nl if nl >= 0 else len(pending))
            if cr >= 0 and cr + 1 != nl:  # a CR not followed by LF ends a line of its own
                if cr + 1 == len(pending):
                    break  # perhaps the first half of a CRLF: wait for the next chunk
                end = cr
            elif nl < 0:
                break
            else:
                end = nl
            line_no += 1
            if end + 1 - start > max_line_bytes:
                raise FileRefused(
                    Finding("line_too_long", "error", line=line_no, params={"max": max_line_bytes})
                )
            yield bytes(pending[start : end + 1])
            start = end + 1
        del pending[:start]
        if len(pending) > max_line_bytes:
            raise FileRefused(
                Finding("line_too_long", "error", line=line_no + 1, params={"max": max_line_bytes})
            )
    if pending:
        yield bytes(pending)


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def utf16_as_utf8(chunks: Iterator[bytes]) -> tuple[bool, Iterator[bytes]]:
    """(True, the text as UTF-8) for a file that starts with a UTF-16 byte order mark
    (Excel's "Unicode text"), else (False, the bytes unchanged)."""
    chunks = iter(chunks)  # what follows the head is read once, from where it stopped
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= 2:
            break
    rest = itertools.chain([head], chunks)
    if not head.startswith(_UTF16_BOMS):
        return False, rest

    def transcoded() -> Iterator[bytes]:
        decoder = codecs.getincrementaldecoder("utf-16")()
        try:
            for chunk in rest:
                yield decoder.decode(chunk).encode("utf-8")
            yield decoder.decode(b"", final=True).encode("utf-8")
        except UnicodeError:
            raise FileRefused(Finding("invalid_utf16", "error")) from None

    return True, transcoded()


def _separator_counts(text: str) -> dict[str, int]:
    counts = {";": 0, ",": 0, "\t": 0, "|": 0}
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    return counts


class CsvFile:
    """One CSV file being read: ``header`` and file-level ``findings`` once the header is
    read (:meth:`open`), then :meth:`records` streams the rest."""

    def __init__(
        self, chunks: Iterator[bytes], *, max_line_bytes: int = 1024 * 1024, max_columns: int = 2000
    ) -> None:
        self._chunks = chunks
        self.max_line_bytes = max_line_bytes
        self.max_columns = max_columns
        self.encoding = "utf-8"
        self.bom = False
        self.delimiter = ";"
        self.header: list[str] = []
        self.findings: list[Finding] = []
        self.ends_with_newline = True
        self._line_no = 0
        self._fallback_lines = 0
        self._first_fallback = 0

    # -- decoding ------------------------------------------------------------------
    def _decode(self, raw: bytes) -> str:
        self._line_no += 1
        self.ends_with_newline = raw.endswith((b"\n", b"\r"))
        if self._line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            self.bom = True
            raw = raw[3:]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self._fallback_lines += 1
            if not self._first_fallback:
                self._first_fallback = self._line_no
                self.encoding = "cp1252"
            try:
                return raw.decode("cp1252")
            except UnicodeDecodeError:  # bytes cp1252 leaves undefined: Latin-1 maps all
                return raw.decode("latin-1")

    def _text_lines(self) -> Iterator[str]:
        utf16, chunks = utf16_as_utf8(self._chunks)
        if utf16:
            self.encoding, self.bom = "utf-16", True
        for raw in physical_lines(chunks, self.max_line_bytes):
            yield self._decode(raw)

    # -- header --------------------------------------------------------------------
    def open(self) -> list[str]:
        """Read the header line; file-level findings go to :attr:`findings`."""
        self._text = self._text_lines()
        first = next(self._text, None)
        while first is not None and not first.strip():
            first = next(self._text, None)
        if first is None:
            raise FileRefused(Finding("empty_file", "error"))
        counts = _separator_counts(first)
        if counts[";"]:
            self.delimiter = ";"
        elif counts[","]:
            self.delimiter = ","
            self.findings.append(Finding("comma_separator", "warning", line=self._line_no))
        elif counts["\t"] or counts["|"]:
            found = "tab" if counts["\t"] else "|"
            raise FileRefused(
                Finding("wrong_separator", "error", line=self._line_no, params={"found": found})
            )
        try:
            header = next(csv.reader([first], delimiter=self.delimiter), [])
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            raise FileRefused(
                Finding("malformed_csv", "error", line=self._line_no, params={"detail": str(exc)})
            ) from None
        self.header = [h.strip() for h in header]
        if len(self.header) > self.max_columns:
            raise FileRefused(
                Finding(
                    "too_many_columns",
                    "error",
                    line=self._line_no,
                    params={"count": len(self.header), "max": self.max_columns},
                )
            )
        seen: set[str] = set()
        for name in self.header:
            if name in seen:
                self.findings.append(Finding("duplicate_column", "error", line=self._line_no, column=name))
            seen.add(name)
        self._header_line = self._line_no
        return self.header

    # -- records -------------------------------------------------------------------
    def records(self) -> Iterator[Record]:
        """The records after the header; blank lines are skipped."""
        reader = csv.reader(self._text, delimiter=self.delimiter, strict=False)
        consumed = self._header_line
        number = 0
        try:
            for values in reader:
                start = consumed + 1
                consumed = self._header_line + reader.line_num
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue
                if not number and self._is_template_hints(values):
                    self.findings.append(Finding("template_hints_skipped", "warning", line=start))
                    continue
                number += 1
                yield Record(start, number, values)
        except csv.Error as exc:
            raise FileRefused(
                Finding("malformed_csv", "error", line=consumed + 1, params={"detail": str(exc)})
            ) from None
        if self._fallback_lines:
            self.findings.append(
                Finding(
                    "encoding_cp1252",
                    "warning",
                    line=self._first_fallback,
                    params={"lines": self._fallback_lines},
                )
            )

    def _is_template_hints(self, values: list[str]) -> bool:
        """The line of hints that the DCD's CSV template puts under its header
        (``# text (required);dd/mm/yyyy;...``): a comment for people, not a record."""
        return values[0].startswith("# ") and len(values) == len(self.header)
