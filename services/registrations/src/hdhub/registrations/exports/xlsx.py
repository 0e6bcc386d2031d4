"""XLSX written directly: the sheet's XML streamed into a ZIP, no spreadsheet library.

A generic writer (openpyxl) builds a Python object per cell and zips the sheet from a
temporary file at the end: 25x ``COPY ... TO`` at 20,000 rows. Here, on PostgreSQL, the
rows come from ``COPY ... TO`` as Arrow batches of typed text (the Parquet export's
reading) and :func:`sheet_rows_arrow` makes a batch's ``<row>`` lines with Arrow's
kernels, a column at a time; :func:`row_writer` is its Python twin (SQLite, and the
reference a test holds it to). The lines are deflated into the ZIP as they come
(:class:`SheetZip`): memory does not grow with the rows and nothing touches the disk.

Cells are typed as an analyst expects them (the same as :func:`formats.typed`): numbers
as numbers, dates, times and date-times as Excel serials with a date format, text and
codes as inline strings, multiple choices ``|``-joined. Every text cell a spreadsheet
could run is neutralised by :func:`hdhub.common.spreadsheet.export_cell` (a leading
``'``), in Arrow by the same rule; characters XML cannot hold are dropped, ``& < >``
escaped, line breaks written as character references; a text left empty is an empty
cell.
"""

from __future__ import annotations

import datetime
import math
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hdhub.common.spreadsheet import export_cell
from hdhub.registrations.engine.dcd import DcdDefinition, FieldType
from hdhub.registrations.exports import formats

#: Excel's day 0 (1900 date system, as Excel counts past its 1900 leap-year bug).
EPOCH = datetime.datetime(1899, 12, 30)
#: Cell styles (``xl/styles.xml``'s ``cellXfs``): 0 plain, then the three date formats.
STYLE_DATE, STYLE_DATETIME, STYLE_TIME = 1, 2, 3

# Characters XML 1.0 cannot hold, even as references (tab, line feed and return it can).
_ILLEGAL = "".join(chr(c) for c in (*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))) + "\ufffe\uffff"
_DROP = {ord(c): None for c in _ILLEGAL} | {0: None}
_INT = re.compile(r"-?[0-9]+")
# The shapes a stored date, time and date-time have; anything else ("save on validations"
# keeps values their type cannot hold) is an empty cell, as formats.typed makes it None.
_DATE_RE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME_RE = r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?"
_DATE = re.compile(_DATE_RE)
_TIME = re.compile(_TIME_RE)
_DATETIME = re.compile(f"{_DATE_RE}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")

# Column kinds: how a cell is written.
TEXT, CODE, INTEGER, DECIMAL, DATE, DATETIME, TIME, MULTIPLE, STAMP = (
    "text",
    "code",
    "integer",
    "decimal",
    "date",
    "datetime",
    "time",
    "multiple",
    "stamp",
)
_KIND = {
    FieldType.INTEGER: INTEGER,
    FieldType.DECIMAL: DECIMAL,
    FieldType.DATE: DATE,
    FieldType.DATETIME: DATETIME,
    FieldType.TIME: TIME,
    FieldType.SELECT_MULTIPLE: MULTIPLE,
    FieldType.SELECT_ONE: CODE,
}


@dataclass(frozen=True, slots=True)
class SheetColumn:
    name: str
    kind: str
    key: str | None  # the stored value's key; None for the registration's own columns
    neutralise: bool  # may hold formula-like text
    escape: bool  # may hold & < > or characters XML cannot hold
    simple_codes: bool = False  # multiple choices whose codes need no escaping


def sheet_columns(definition: DcdDefinition) -> list[SheetColumn]:
    """The analysts' columns (formats.header_for('xlsx')) and how each is written."""
    meta = [
        SheetColumn("registration_id", CODE, None, neutralise=False, escape=True),
        SheetColumn("registration_code", CODE, None, neutralise=True, escape=True),
        SheetColumn("business_key", CODE, None, neutralise=True, escape=True),
        SheetColumn("status", CODE, None, neutralise=False, escape=False),
        SheetColumn("dcd_version", CODE, None, neutralise=False, escape=False),
        *(SheetColumn(n, STAMP, None, neutralise=False, escape=False) for n in formats.META_COLUMNS[5:]),
    ]
    assert [c.name for c in meta] == list(formats.META_COLUMNS)
    by_flat_name = {name: f for f in definition.fields for name in f.flat_names}
    out = []
    for column in formats.analyst_columns(definition):
        f = by_flat_name[column.name]
        kind = _KIND.get(column.type, TEXT)
        codes: tuple[str, ...] = ()
        if f.list_name and column.type in (FieldType.SELECT_ONE, FieldType.SELECT_MULTIPLE):
            codes = definition.codelist(f.list_name).codes
        simple = bool(codes) and all(formats._SIMPLE_CODE.fullmatch(c) for c in codes)
        if kind in (INTEGER, DECIMAL, DATE, DATETIME, TIME):
            neutralise = escape = False
        elif codes:
            neutralise = any(export_cell(c) != c for c in codes)
            escape = not simple
        else:
            neutralise = escape = True
        if kind == CODE and not codes:
            kind = TEXT
        out.append(SheetColumn(column.name, kind, column.key, neutralise, escape, simple))
    return meta + out


# --------------------------------------------------------------------------- Python twin


def escape_text(text: str) -> str:
    text = text.translate(_DROP)
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def _serial_text(value: float) -> str:
    # The shortest text giving the float back, no trailing ".0".
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _seconds(moment: datetime.datetime | datetime.time) -> float:
    whole = moment.hour * 3600 + moment.minute * 60 + moment.second
    return float(f"{whole}.{moment.microsecond:06d}")  # the decimal's nearest double


def _string_cell(text: str, column: SheetColumn) -> str:
    if column.neutralise:
        text = export_cell(text)
    if column.escape:
        text = escape_text(text)
    if text == "":  # only characters XML cannot hold
        return "<c/>"
    if column.kind == TEXT:
        return f'<c t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
    return f'<c t="inlineStr"><is><t>{text}</t></is></c>'


def cell_xml(column: SheetColumn, value: Any) -> str:
    """One cell of the sheet (the twin of :func:`_cells_arrow`)."""
    if value is None:
        return "<c/>"
    kind = column.kind
    if kind == STAMP:
        moment = value.astimezone(datetime.UTC).replace(tzinfo=None) if value.tzinfo else value
        days = (moment.date() - EPOCH.date()).days
        return f'<c s="{STYLE_DATETIME}"><v>{_serial_text(days + _seconds(moment) / 86400)}</v></c>'
    text = formats._multiple(value) if kind == MULTIPLE else formats._plain(value)
    if text == "":
        return "<c/>"
    if kind == INTEGER:
        return f"<c><v>{text}</v></c>" if _INT.fullmatch(text) else "<c/>"
    if kind == DECIMAL:
        number = float(text) if _DECIMAL.fullmatch(text) else math.inf
        return f"<c><v>{number!r}</v></c>" if math.isfinite(number) else "<c/>"  # 1e999: no number
    if kind == DATE:
        day = _real_date(text) if _DATE.fullmatch(text) else None
        return f'<c s="{STYLE_DATE}"><v>{(day - EPOCH.date()).days}</v></c>' if day else "<c/>"
    if kind == DATETIME:
        if not _DATETIME.fullmatch(text) or _real_date(text[:10]) is None:
            return "<c/>"
        moment = datetime.datetime.fromisoformat(text)
        days = (moment.date() - EPOCH.date()).days
        return f'<c s="{STYLE_DATETIME}"><v>{_serial_text(days + _seconds(moment) / 86400)}</v></c>'
    if kind == TIME:
        if not _TIME.fullmatch(text):
            return "<c/>"
        return f'<c s="{STYLE_TIME}"><v>{_serial_text(_seconds(datetime.time.fromisoformat(text)) / 86400)}</v></c>'
    return _string_cell(text, column)


def _real_date(text: str) -> datetime.date | None:
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        return None
    return day if day.year > 0 else None


def row_writer(definition: DcdDefinition) -> Callable[[Sequence[Any], Mapping[str, Any]], str]:
    """A function giving a registration's ``<row>`` (its meta cells and stored values)."""
    columns = sheet_columns(definition)
    meta, fields = columns[: len(formats.META_COLUMNS)], columns[len(formats.META_COLUMNS) :]

    def row(meta_cells: Sequence[Any], values: Mapping[str, Any]) -> str:
        cells = [cell_xml(c, v) for c, v in zip(meta, meta_cells, strict=True)]
        cells += [cell_xml(c, values.get(c.key or c.name)) for c in fields]
        return "<row>" + "".join(cells) + "</row>\n"

    return row


def header_row(definition: DcdDefinition) -> str:
    plain = SheetColumn("", CODE, None, neutralise=True, escape=True)
    return (
        "<row>" + "".join(_string_cell(n, plain) for n in formats.header_for("xlsx", definition)) + "</row>\n"
    )


# --------------------------------------------------------------------------- the package


_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
SHEET_START = f'{_HEAD}<worksheet xmlns="{_NS}"><sheetData>\n'
SHEET_END = "</sheetData></worksheet>"


def _static_parts(sheet_name: str) -> list[tuple[str, str]]:
    name = escape_text(sheet_name).replace('"', "&quot;")
    return [
        (
            "[Content_Types].xml",
            f'{_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            "</Types>",
        ),
        (
            "_rels/.rels",
            f'{_HEAD}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>",
        ),
        (
            "xl/workbook.xml",
            f'{_HEAD}<workbook xmlns="{_NS}" xmlns:r="{_REL}">'
            f'<sheets><sheet name="{name}" sheetId="1" r:id="rId1"/></sheets></workbook>',
        ),
        (
            "xl/_rels/workbook.xml.rels",
            f'{_HEAD}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/>'
            "</Relationships>",
        ),
        (
            "xl/styles.xml",
            f'{_HEAD}<styleSheet xmlns="{_NS}">'
            '<numFmts count="3"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
            '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/>'
            '<numFmt numFmtId="166" formatCode="hh:mm:ss"/></numFmts>'
            '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill>'
            '<fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
            '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            '<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
            '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
            '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
            '<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
            "</cellXfs>"
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
            "</styleSheet>",
        ),
    ]


class SheetZip:
    """An XLSX written into ``sink`` (a write-only file, not seekable: the ZIP carries data
    descriptors) as the sheet's rows arrive: :meth:`write` them, then :meth:`close`.
    Deflate level 1: the sheet is repetitive XML and compresses well even so, at several
    times level 6's speed."""

    def __init__(self, sink: Any, sheet_name: str, header: str) -> None:
        self.zip = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        for name, text in _static_parts(sheet_name):
            self.zip.writestr(name, text)
        self.sheet = self.zip.open("xl/worksheets/sheet1.xml", "w", force_zip64=True)
        self.sheet.write((SHEET_START + header).encode())

    def write(self, rows: bytes) -> None:
        self.sheet.write(rows)

    def close(self) -> None:
        self.sheet.write(SHEET_END.encode())
        self.sheet.close()
        self.zip.close()


# --------------------------------------------------------------------------- Arrow twin
#
# On PostgreSQL the rows come as Arrow batches of formats.analyst_select_sql's columns
# (COPY's CSV parsed by Arrow: the registration's dates as timestamps, every field as
# text), and each column of a batch becomes its cells at once by Arrow's kernels, the
# same cells as cell_xml's (a test reads both back equal). A column of a batch holding a
# value Arrow cannot convert (a day like 2024-02-30 past the shape's test) is written by
# cell_xml instead, that column of that batch only.

#: Days from Excel's day 0 to 1970-01-01 (Arrow's day 0).
_UNIX_DAY = (datetime.date(1970, 1, 1) - EPOCH.date()).days
_XML_SPECIAL = "[&<>\\n\\r\\x00" + "".join(f"\\x{{{ord(c):x}}}" for c in _ILLEGAL) + "]"
_XML_ILLEGAL = "[\\x00" + "".join(f"\\x{{{ord(c):x}}}" for c in _ILLEGAL) + "]"
_FORMULA_START = "^'*[=+@\\t\\r\\n\\x00\\x{ff1d}\\x{ff0b}\\x{ff0d}\\x{ff20}-]"
_PLAIN_NUMBER = "^'*[+-]?[0-9]+([.,][0-9]+)?$"
_SHAPE = {
    INTEGER: "^" + _INT.pattern + "$",
    DECIMAL: "^" + _DECIMAL.pattern + "$",
    DATE: "^" + _DATE_RE + "$",
    DATETIME: "^" + _DATETIME.pattern + "$",
    TIME: "^" + _TIME_RE + "$",
}
_OPEN = {
    INTEGER: "<c><v>",
    DECIMAL: "<c><v>",
    DATE: f'<c s="{STYLE_DATE}"><v>',
    DATETIME: f'<c s="{STYLE_DATETIME}"><v>',
    TIME: f'<c s="{STYLE_TIME}"><v>',
    STAMP: f'<c s="{STYLE_DATETIME}"><v>',
    TEXT: '<c t="inlineStr"><is><t xml:space="preserve">',
}
_CLOSE_NUMBER, _CLOSE_STRING, _OPEN_STRING = "</v></c>", "</t></is></c>", '<c t="inlineStr"><is><t>'


def sheet_rows_arrow(columns: Sequence[SheetColumn], batch: Any) -> Any:
    """The ``<row>`` lines of a batch (its columns in ``columns``' order), as one Arrow
    buffer of UTF-8."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = [_cells_arrow(c, batch.column(i)) for i, c in enumerate(columns)]
    rows = pc.binary_join_element_wise(pa.scalar("<row>"), *cells, pa.scalar("</row>\n"), "")
    _, offsets, data = rows.buffers()
    bounds = memoryview(offsets).cast("i")  # the rows' int32 offsets into ``data``
    return data[bounds[rows.offset] : bounds[rows.offset + len(rows)]]


def _cells_arrow(column: SheetColumn, values: Any) -> Any:
    import pyarrow as pa

    try:
        return _typed_cells_arrow(column, values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a value Arrow cannot read as the type
        return pa.array([cell_xml(column, v) for v in values.to_pylist()], pa.string())


def _typed_cells_arrow(column: SheetColumn, values: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.kind
    if kind == STAMP:
        return _wrap(_serial(values, pc.cast(values, pa.int64()), 1_000_000), kind)
    if kind in _SHAPE:
        ok = pc.match_substring_regex(values, _SHAPE[kind])
        if kind in (DATE, DATETIME):  # no year 0 (the calendar has none)
            ok = pc.and_(ok, pc.invert(pc.starts_with(values, "0000")))
        text = pc.if_else(ok, values, pa.scalar(None, pa.string()))
        if kind == DECIMAL:
            number = pc.cast(text, pa.float64())
            number = pc.if_else(pc.is_finite(number), number, pa.scalar(None, pa.float64()))
            shown = pc.cast(number, pa.string())
            # a float as a float (openpyxl and Excel read "2" as an integer)
            whole = pc.invert(pc.match_substring_regex(shown, "[.en]"))
            text = pc.if_else(whole, pc.binary_join_element_wise(shown, ".0", ""), shown)
        elif kind == DATE:
            days = pc.cast(pc.cast(pc.cast(text, pa.date32()), pa.int32()), pa.int64())
            text = pc.cast(pc.add(days, _UNIX_DAY), pa.string())
        elif kind == DATETIME:
            moment = pc.cast(text, pa.timestamp("s"))
            text = _serial(moment, pc.cast(moment, pa.int64()), 1)
        elif kind == TIME:
            short = pc.equal(pc.utf8_length(text), 5)  # "12:30": no seconds
            text = pc.if_else(short, pc.binary_join_element_wise(text, ":00", ""), text)
            h, m, s = (pc.cast(pc.utf8_slice_codeunits(text, a, a + 2), pa.int64()) for a in (0, 3, 6))
            seconds = pc.add(pc.add(pc.multiply(h, 3600), pc.multiply(m, 60)), s)
            text = pc.cast(pc.divide(pc.cast(seconds, pa.float64()), 86400.0), pa.string())
        return _wrap(text, kind)
    text = values
    if column.neutralise:
        formula = pc.and_(
            pc.match_substring_regex(text, _FORMULA_START),
            pc.invert(pc.match_substring_regex(text, _PLAIN_NUMBER)),
        )
        text = pc.if_else(formula, pc.binary_join_element_wise("'", text, ""), text)
    if column.escape and pc.any(pc.match_substring_regex(text, _XML_SPECIAL)).as_py():
        text = pc.replace_substring_regex(text, _XML_ILLEGAL, "")
        for plain, escaped in (
            ("&", "&amp;"),
            ("<", "&lt;"),
            (">", "&gt;"),
            ("\n", "&#10;"),
            ("\r", "&#13;"),
        ):
            text = pc.replace_substring(text, plain, escaped)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return _wrap(text, kind)


def _serial(moment: Any, count: Any, per_second: int) -> Any:
    """Excel serials (as text) of a timestamp column counting ``per_second`` units a second."""
    import pyarrow as pa
    import pyarrow.compute as pc

    days = pc.cast(pc.cast(pc.cast(moment, pa.date32()), pa.int32()), pa.int64())
    within = pc.subtract(count, pc.multiply(days, 86400 * per_second))
    seconds = pc.cast(within, pa.float64())
    if per_second != 1:
        seconds = pc.divide(seconds, float(per_second))  # the decimal's nearest double, as _seconds
    serial = pc.add(pc.cast(pc.add(days, _UNIX_DAY), pa.float64()), pc.divide(seconds, 86400.0))
    return pc.cast(serial, pa.string())


def _wrap(text: Any, kind: str) -> Any:
    import pyarrow.compute as pc

    opening = _OPEN.get(kind, _OPEN_STRING)
    closing = _CLOSE_STRING if opening.startswith('<c t="') else _CLOSE_NUMBER
    return pc.fill_null(pc.binary_join_element_wise(opening, text, closing, ""), "<c/>")
