"""Reading CSV files as they arrive: encodings, separators, quoted newlines, line numbers,
spreadsheet damage, and constant memory on a generated stream."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest

from hdhub.uploads.domain.batches import Batches
from hdhub.uploads.domain.cells import FieldInfo, inspect_cell
from hdhub.uploads.domain.csvfile import CsvFile, FileRefused

FIELDS = {
    "IDC_PAT": FieldInfo("IDC_PAT", "text", True),
    "DT_HOSPZ": FieldInfo("DT_HOSPZ", "date"),
    "CD_X": FieldInfo("CD_X", "select_one"),
    "TX_COMMENT": FieldInfo("TX_COMMENT", "text"),
    "MS_WEIGHT": FieldInfo("MS_WEIGHT", "decimal"),
}


def read(data: bytes, chunk: int = 7) -> tuple[CsvFile, list[tuple[int, list[str]]]]:
    f = CsvFile(
        iter([data[i : i + chunk] for i in range(0, len(data), chunk)]), max_line_bytes=1000, max_columns=50
    )
    f.open()
    return f, [(r.line, r.values) for r in f.records()]


def test_bom_and_utf8_and_semicolon() -> None:
    f, records = read("\ufeffIDC_PAT;CD_X\r\n85040216932;é\r\n".encode())
    assert f.bom and f.encoding == "utf-8" and f.header == ["IDC_PAT", "CD_X"]
    assert records == [(2, ["85040216932", "é"])]


def test_cp1252_is_detected_and_reported() -> None:
    f, records = read("IDC_PAT;CD_X\r\n1;Renée\r\n2;ok\r\n".encode("cp1252"))
    assert f.encoding == "cp1252" and records[0][1] == ["1", "Renée"]
    assert [(x.rule, x.line, x.params) for x in f.findings] == [("encoding_cp1252", 2, {"lines": 1})]


def test_comma_is_detected() -> None:
    f, records = read(b"IDC_PAT,CD_X\n1,a\n")
    assert f.delimiter == "," and records == [(2, ["1", "a"])] and f.findings[0].rule == "comma_separator"


def test_the_templates_line_of_hints_is_skipped_and_said() -> None:
    f, records = read(b"IDC_PAT;CD_X\r\n# text (required);a code of list x\r\n1;a\r\n# 2;b\r\n")
    # Only the line right under the header with a cell per column is the template's; a
    # later value starting with # is a value.
    assert records == [(3, ["1", "a"]), (4, ["# 2", "b"])]
    assert [(x.rule, x.line) for x in f.findings] == [("template_hints_skipped", 2)]


def test_a_first_record_starting_with_a_hash_but_short_is_a_record() -> None:
    f, records = read(b"IDC_PAT;CD_X\n# 1\n")
    assert records == [(2, ["# 1"])] and not f.findings


def test_quoted_newlines_keep_the_physical_line_of_each_record() -> None:
    _, records = read(b'IDC_PAT;CD_X\n1;"two\nlines;"\n\n2;b\n')
    assert records == [(2, ["1", "two\nlines;"]), (5, ["2", "b"])]


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", "empty_file"),
        (b"\x00\x01binary", "binary"),
        (b"A\tB\n1\t2\n", "wrong_separator"),
        (b"x" * 5000, "line_too_long"),
        (";".join(["C"] * 60).encode() + b"\n", "too_many_columns"),
    ],
)
def test_unreadable_files_are_refused_with_a_reason(data: bytes, rule: str) -> None:
    with pytest.raises(FileRefused) as refused:
        read(data)
    assert refused.value.finding.rule == rule


def test_truncated_last_record() -> None:
    csvfile = CsvFile(
        iter([b"IDC_PAT;DT_HOSPZ;CD_X\n1;01/01/2024;a\n2;01/0"]), max_line_bytes=1000, max_columns=50
    )
    csvfile.open()
    batch = Batches(csvfile, FIELDS, 10).next()
    assert batch is not None and batch.sent == 1
    ((record, findings),) = batch.set_aside
    assert record.line == 3 and findings[0].rule == "truncated"


def test_decimal_commas_are_read_with_a_point_and_noted_once_per_column() -> None:
    fields = {"MS_WEIGHT": FieldInfo("MS_WEIGHT", "decimal"), "TX_NOTE": FieldInfo("TX_NOTE", "text")}
    data = b"MS_WEIGHT;TX_NOTE;STATUS\n72,5;a,b;draft\n80;1,5;\n-0,25;;submit\n1,2,3;;\n"
    csvfile = CsvFile(iter([data]), max_line_bytes=1000, max_columns=50)
    csvfile.open()
    batch = Batches(csvfile, fields, 10).next()
    assert batch is not None
    # Only decimal fields, only a plain decimal comma (1,2,3 is left for the DCD to refuse).
    assert batch.columns["MS_WEIGHT"] == ["72.5", "80", "-0.25", "1,2,3"]
    assert batch.columns["TX_NOTE"] == ["a,b", "1,5", None, None]
    assert batch.columns["STATUS"] == ["draft", None, "submit", None]  # passed on to registrations
    noted = [(f.rule, f.severity, f.column, f.line) for f in csvfile.findings]
    assert noted == [("decimal_comma", "warning", "MS_WEIGHT", 2)]


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("DT_HOSPZ", "45678", "excel_date_serial"),
        ("DT_HOSPZ", "1/02/2025", "excel_date_format"),
        ("DT_HOSPZ", "2025-02-01", "iso_date"),
        ("DT_HOSPZ", "01/02/2025", None),
        ("IDC_PAT", "5040216932", "leading_zero_dropped"),
        ("IDC_PAT", "85.04.02-169.32", None),
        ("IDC_PAT", "8.5E+10", "excel_scientific"),
        ("CD_X", "1/02/2025", "excel_made_date"),
        ("CD_X", "=cmd|' /C calc'!A0", "formula_like"),
        ("CD_X", "@SUM(A1)", "formula_like"),
        ("CD_X", "-5", None),
        ("MS_WEIGHT", "=1+1", "formula_like"),
        ("DT_HOSPZ", "=TODAY()", "formula_like"),
        ("IDC_PAT", "=A1", "formula_like"),
        # Free text holds what was typed: neutralised on output, never refused.
        ("TX_COMMENT", "=see the discharge letter", None),
        ("TX_COMMENT", "@dr. Peeters: check", None),
        ("TX_COMMENT", "-x", None),
    ],
)
def test_spreadsheet_damage_is_named(field: str, value: str, rule: str | None) -> None:
    found = inspect_cell(FIELDS[field], value)
    assert (found.rule if found else None) == rule


def test_free_text_goes_on_as_written_and_other_cells_trimmed() -> None:
    data = b'TX_COMMENT;MS_WEIGHT;CD_X\n"  =2+2 stays ";  72,5 ; a \n"\tindented";80;b\n   ;1;c\n'
    csvfile = CsvFile(iter([data]), max_line_bytes=1000, max_columns=50)
    csvfile.open()
    batch = Batches(csvfile, FIELDS, 10).next()
    assert batch is not None and not batch.set_aside
    assert batch.columns == {
        "TX_COMMENT": ["  =2+2 stays ", "\tindented", None],  # only spaces is empty
        "MS_WEIGHT": ["72.5", "80", "1"],
        "CD_X": ["a", "b", "c"],
    }


def test_memory_stays_flat_on_a_long_generated_stream() -> None:
    def stream(rows: int) -> Iterator[bytes]:
        yield b"IDC_PAT;DT_HOSPZ;CD_X\n"
        line = b"85040216932;01/02/2025;a\n"
        for _ in range(rows // 1000):
            yield line * 1000

    def peak(rows: int) -> int:
        tracemalloc.start()
        f = CsvFile(stream(rows))
        f.open()
        batches = Batches(f, FIELDS, 200)
        n = 0
        while (b := batches.next()) is not None:
            n += b.records
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert n == rows
        return top

    small, large = peak(1_000), peak(10_000)
    assert large < small * 1.5, (small, large)
