"""XLSX cells made by Arrow's kernels (the PostgreSQL path) are the Python twin's cells.

``sheet_rows_arrow`` turns a batch of ``analyst_select_sql``'s columns (the registration's
dates as timestamps, every field as text) into ``<row>`` lines; ``cell_xml`` is the
reference. Numbers are compared as a reader takes them (a float's text may be written
``1.234567890125e+11`` by one and ``123456789012.5`` by the other: the same double).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdhub.registrations.exports import xlsx

C = xlsx.SheetColumn
COLUMNS = [
    C("free", xlsx.TEXT, "free", neutralise=True, escape=True),
    C("code", xlsx.CODE, "code", neutralise=False, escape=False),
    C("odd_code", xlsx.CODE, "odd_code", neutralise=True, escape=True),
    C("choices", xlsx.MULTIPLE, "choices", neutralise=True, escape=True),
    C("count", xlsx.INTEGER, "count", neutralise=False, escape=False),
    C("size", xlsx.DECIMAL, "size", neutralise=False, escape=False),
    C("day", xlsx.DATE, "day", neutralise=False, escape=False),
    C("moment", xlsx.DATETIME, "moment", neutralise=False, escape=False),
    C("hour", xlsx.TIME, "hour", neutralise=False, escape=False),
    C("created_at", xlsx.STAMP, None, neutralise=False, escape=False),
]

NASTY = [
    "=1+1",
    '=HYPERLINK("http://x.test","click")',
    "+",
    "-",
    "@",
    "@SUM(A1)",
    "\tlead",
    "\rlead",
    "\nlead",
    "\x00nul",
    "a\x01b\x1fc\x0bd",
    "\ufffe",
    "\uff1d1+1",
    "'=1+1",
    "''@x",
    "'ok",
    "-5",
    "+32",
    "-0.25",
    "-72,5",
    "--5",
    "a < b & c > d \"q\" 'a'",
    "]]>",
    "<![CDATA[x]]>",
    "line one\nline two\r\nthree",
    "  spaces kept  ",
    "😀 emoji ünï 中文",
    "x" * 40_000,
    "",
    "|",
    "a|b",
]
SHAPES = {
    "count": ["0", "-12", "007", "+5", "1.0", "12a", "", "99999999999999999999999"],
    "size": ["1", "1.5", "-0.25", "1e5", "2.5E-3", "123456789012.5", "0.1", "1,5", ".5", "1e999", "x"],
    "day": [
        "2024-02-29",
        "2023-02-29",
        "2024-02-30",
        "0000-01-01",
        "0001-01-01",
        "1899-12-30",
        "1850-06-01",
        "9999-12-31",
        "2024-1-1",
        "2024-13-01",
        "2024-01-01T00:00:00",
    ],
    "moment": [
        "2024-01-01T10:00:00",
        "1900-03-01T23:59:59",
        "2024-02-30T10:00:00",
        "0000-01-01T00:00:00",
        "2024-01-01 10:00:00",
        "2024-01-01T24:00:00",
        "2024-01-01T10:00",
    ],
    "hour": ["12:30", "12:30:45", "00:00", "23:59:59", "24:00", "25:00", "1:00", "12:60", "12:30:45.5"],
}
STAMPS = [
    datetime.datetime(2026, 12, 4, 23, 41, 1, 123456, tzinfo=datetime.UTC),
    datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.UTC),
    datetime.datetime(1900, 3, 1, 0, 0, 0, 1, tzinfo=datetime.UTC),
    datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
]


def _number(text: str) -> Any:
    # as openpyxl reads a cell's <v>
    return float(text) if "." in text or "e" in text or "E" in text else int(text)


def _cells(row: str) -> list[str]:
    cells = re.findall(r"<c/>|<c[ >].*?</c>", row.removeprefix("<row>").removesuffix("</row>"))
    return [re.sub(r"<v>([^<]*)</v>", lambda m: f"<v>{_number(m.group(1))!r}</v>", c) for c in cells]


def _both(columns: list[xlsx.SheetColumn], data: list[list[Any]]) -> tuple[list[list[str]], list[list[str]]]:
    """The batch's rows by Arrow and by the Python twin, cell by cell."""
    arrays = [
        pa.array(values, pa.timestamp("us", tz="UTC") if c.kind == xlsx.STAMP else pa.string())
        for c, values in zip(columns, data, strict=True)
    ]
    batch = pa.record_batch(arrays, names=[c.name for c in columns])
    lines = bytes(xlsx.sheet_rows_arrow(columns, batch)).decode().split("\n")
    assert lines[-1] == "" and len(lines) == batch.num_rows + 1
    by_arrow = [_cells(line) for line in lines[:-1]]
    by_python = [
        _cells(
            "<row>" + "".join(xlsx.cell_xml(c, values[i]) for c, values in zip(columns, data, strict=True))
        )
        for i in range(batch.num_rows)
    ]
    return by_arrow, by_python


def _column(column: xlsx.SheetColumn, values: list[Any]) -> list[list[Any]]:
    return [values]


@pytest.mark.parametrize("column", COLUMNS, ids=lambda c: c.name)
def test_arrow_cells_equal_the_python_twins_for_nasty_values(column: xlsx.SheetColumn) -> None:
    if column.kind == xlsx.STAMP:
        values: list[Any] = [*STAMPS, None]
    elif not column.escape:  # a code list's codes, none needing escaping (sheet_columns)
        values = ["a", "B_2", "x.y:z/w-1", "", None]
    else:
        values = [*NASTY, *SHAPES.get(column.name, []), None]
    by_arrow, by_python = _both([column], [values])
    for value, got, want in zip(values, by_arrow, by_python, strict=True):
        assert got == want, repr(value)[:80]


def test_well_formed_batches_are_converted_by_arrow_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a column holding a value Arrow cannot read (a 30 February) goes cell by cell."""
    good = {
        "free": ["=1+1", "a & b", None],
        "code": ["a", "b", ""],
        "odd_code": ["-x", "y", None],
        "choices": ["a|b", "=c", None],
        "count": ["1", "x", None],
        "size": ["1.5", "2", "no"],
        "day": ["2024-02-29", "2024-13-01", None],
        "moment": ["2024-01-01T10:00:00", "bad", None],
        "hour": ["12:30", "25:00", "12:30:45"],
    }
    data = [good[c.name] if c.key else STAMPS[:3] for c in COLUMNS]
    by_arrow, by_python = _both(COLUMNS, data)
    assert by_arrow == by_python

    fallen: list[str] = []
    twin = xlsx.cell_xml

    def counted(column: xlsx.SheetColumn, value: Any) -> str:
        fallen.append(column.name)
        return twin(column, value)

    monkeypatch.setattr(xlsx, "cell_xml", counted)
    batch = pa.record_batch(
        [
            pa.array(v, pa.timestamp("us", tz="UTC") if c.kind == xlsx.STAMP else pa.string())
            for c, v in zip(COLUMNS, data, strict=True)
        ],
        names=[c.name for c in COLUMNS],
    )
    xlsx.sheet_rows_arrow(COLUMNS, batch)
    assert fallen == []
    data[COLUMNS.index(next(c for c in COLUMNS if c.name == "day"))][2] = "2024-02-30"
    batch = pa.record_batch(
        [
            pa.array(v, pa.timestamp("us", tz="UTC") if c.kind == xlsx.STAMP else pa.string())
            for c, v in zip(COLUMNS, data, strict=True)
        ],
        names=[c.name for c in COLUMNS],
    )
    rows = bytes(xlsx.sheet_rows_arrow(COLUMNS, batch)).decode()
    assert set(fallen) == {"day"} and len(fallen) == 3
    assert rows.count("<row>") == 3


_text = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(NASTY)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.none() | _text,
            st.none() | _text | st.sampled_from(SHAPES["count"]) | st.integers(-(10**6), 10**6).map(str),
            st.none()
            | _text
            | st.sampled_from(SHAPES["size"])
            | st.floats(allow_nan=False, allow_infinity=False).map(repr),
            st.none() | _text | st.sampled_from(SHAPES["day"]) | st.dates().map(str),
            st.none()
            | _text
            | st.sampled_from(SHAPES["moment"])
            | st.datetimes().map(lambda d: d.isoformat(timespec="seconds")),
            st.none()
            | _text
            | st.sampled_from(SHAPES["hour"])
            | st.times().map(lambda t: t.isoformat(timespec="seconds")),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_arrow_cells_equal_the_python_twins_for_any_text(rows: list[tuple[Any, ...]]) -> None:
    columns = [COLUMNS[0], COLUMNS[4], COLUMNS[5], COLUMNS[6], COLUMNS[7], COLUMNS[8]]
    data = [list(values) for values in zip(*rows, strict=True)]
    by_arrow, by_python = _both(columns, data)
    assert by_arrow == by_python
