"""Whatever bytes arrive, the reader either reads records or refuses the file with a named
rule (one the user gets a message for, in every language); it never raises anything else.
Files written by a CSV writer with any line ending, quoting and encoding read back as
written."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdhub.uploads.domain.batches import Batches
from hdhub.uploads.domain.cells import FieldInfo
from hdhub.uploads.domain.csvfile import CsvFile, FileRefused
from hdhub.uploads.domain.messages import MESSAGES

FIELDS = {
    name: FieldInfo(name, kind, personal)
    for name, kind, personal in [
        ("IDC_PAT", "text", True),
        ("DT_PAT_DOB", "date", True),
        ("DT_HOSPZ", "datetime", False),
        ("MS_WEIGHT", "decimal", False),
        ("MS_HEIGHT", "integer", False),
        ("CD_SEX", "select_one", False),
        ("CD_RIZIV_TREAT_PHYS", "text", False),
        ("TX_COMMENT", "text", False),
        ("TM_START", "time", False),
    ]
}
LANGUAGES = ("en", "fr", "nl", "de")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    return iter([data[i : i + size] for i in range(0, len(data), size)])


def read_all(data: bytes, chunk: int) -> int | str:
    """The number of records read (cells checked as the worker does), or the rule the
    file was refused with."""
    csvfile = CsvFile(chunked(data, chunk), max_line_bytes=4096, max_columns=50)
    try:
        csvfile.open()
        batches = Batches(csvfile, FIELDS, 7)
        records = 0
        while (batch := batches.next()) is not None:
            records += batch.records
        return records
    except FileRefused as refused:
        rule = refused.finding.rule
        assert rule in MESSAGES and all(MESSAGES[rule].get(lang) for lang in LANGUAGES), rule
        return rule


@FUZZ
@given(data=st.binary(max_size=3000), chunk=st.integers(1, 64))
def test_arbitrary_bytes_are_read_or_refused_with_a_named_rule(data: bytes, chunk: int) -> None:
    read_all(data, chunk)


_PIECES = st.sampled_from(
    [";", ",", '"', "'", "\r", "\n", "\r\n", "\t", "|", " ", "=", "@", "+", "-", "é", "\u2028", "\x85",
     "IDC_PAT", "DT_PAT_DOB", "MS_WEIGHT", "CD_SEX", "TX_COMMENT", "72,5", "01/02/2025", "45678",
     "8.5E+10", "1/2/25", "=cmd|' /C calc'!A0", "\ufeff", "\udcff", "💉"]
)  # fmt: skip
_ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16", "utf-16-le", "mac-roman"])


@FUZZ
@given(
    pieces=st.lists(_PIECES, max_size=200),
    encoding=_ENCODINGS,
    chunk=st.integers(1, 64),
)
def test_csv_like_text_in_any_encoding_is_read_or_refused_with_a_named_rule(
    pieces: list[str], encoding: str, chunk: int
) -> None:
    text = "TX_COMMENT;MS_WEIGHT;DT_PAT_DOB;CD_SEX\r" + "".join(pieces)
    read_all(text.encode(encoding, errors="replace"), chunk)


_CELLS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


@FUZZ
@given(
    rows=st.lists(st.lists(_CELLS, min_size=3, max_size=3), min_size=1, max_size=12),
    terminator=st.sampled_from(["\r", "\n", "\r\n"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    chunk=st.integers(1, 64),
)
def test_what_a_csv_writer_writes_reads_back_as_written(
    rows: list[list[str]], terminator: str, quoting: int, encoding: str, chunk: int
) -> None:
    def line(row: list[str]) -> str:
        # Written with CRLF so that a cell holding either CR or LF is quoted, as
        # spreadsheets do, then ended with the terminator under test.
        out = io.StringIO()
        csv.writer(out, delimiter=";", lineterminator="\r\n", quoting=quoting).writerow(row)
        return out.getvalue().removesuffix("\r\n") + terminator

    text = "".join(line(row) for row in [["TX_COMMENT", "TX_A", "TX_B"], *rows])
    csvfile = CsvFile(chunked(text.encode(encoding), chunk), max_line_bytes=4096, max_columns=50)
    assert csvfile.open() == ["TX_COMMENT", "TX_A", "TX_B"]
    assert [r.values for r in csvfile.records()] == rows


@pytest.mark.parametrize("terminator", [b"\r", b"\n", b"\r\n"])
def test_old_mac_line_endings_are_lines_like_any_other(terminator: bytes) -> None:
    data = terminator.join(
        [b"TX_COMMENT;MS_WEIGHT", b"a;1", b'"two' + terminator + b'lines";2', b"", b"c;3", b""]
    )
    for chunk in (1, 2, 5, len(data)):
        csvfile = CsvFile(chunked(data, chunk))
        assert csvfile.open() == ["TX_COMMENT", "MS_WEIGHT"]
        records = [(r.line, r.values) for r in csvfile.records()]
        lines = "two" + terminator.decode() + "lines"
        assert records == [(2, ["a", "1"]), (3, [lines, "2"]), (6, ["c", "3"])], (terminator, chunk)
        assert csvfile.ends_with_newline


def test_a_utf16_file_is_read_as_utf16() -> None:
    data = "TX_COMMENT;MS_WEIGHT\r\nRenée;72\r\n".encode("utf-16")
    csvfile = CsvFile(chunked(data, 3))
    csvfile.open()
    assert [r.values for r in csvfile.records()] == [["Renée", "72"]]
    assert csvfile.encoding == "utf-16" and csvfile.bom


def test_broken_utf16_is_refused_with_a_reason() -> None:
    csvfile = CsvFile(iter([codecs.BOM_UTF16_LE + "A;B\r\n".encode("utf-16-le") + b"\x00\xdc\x41"]))
    with pytest.raises(FileRefused) as refused:
        csvfile.open()
        list(csvfile.records())
    assert refused.value.finding.rule == "invalid_utf16"
