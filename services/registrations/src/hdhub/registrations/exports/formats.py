"""What an export holds, per format: pure code, no I/O.

- **CSV** is the Upload Center's format exactly (the DCD's CSV template: the columns a
  person fills in, repeats flattened, then ``STATUS``), so an export uploaded again
  changes nothing: dates ``dd/mm/yyyy``, multi-selects joined by ``|``, ``STATUS``
  ``draft`` or ``submit``. Every cell goes through
  :func:`hdhub.common.spreadsheet.export_cell` (formulas neutralised, reversibly). On
  PostgreSQL the same cells are computed by SQL (:func:`csv_select_sql`) and streamed by
  ``COPY ... TO``; :func:`csv_row` is the Python twin, kept equal by a test.
- **XLSX and Parquet** are for analysts: registration columns (id, code, status, dates)
  then every stored field, computed ones included, typed (dates as dates, numbers as
  numbers, multi-selects as lists in Parquet, ``|``-joined in XLSX).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hdhub.common.spreadsheet import export_cell
from hdhub.registrations.engine.csv_template import STATUS_COLUMN, template_fields
from hdhub.registrations.engine.dcd import DcdDefinition, FieldType

FORMATS = ("csv", "xlsx", "parquet")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}
#: Stored statuses whose CSV row says ``submit`` (uploaded again: a duplicate, left as is).
SUBMITTED = frozenset({"sending", "submitted", "approved"})
#: The registration's own columns in XLSX and Parquet, before the fields.
META_COLUMNS = (
    "registration_id",
    "registration_code",
    "business_key",
    "status",
    "dcd_version",
    "created_at",
    "updated_at",
    "submitted_at",
)


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # the flat technical name (``DT_CABG_1``)
    key: str  # where the value is in the stored values: the same name
    type: FieldType


def csv_columns(definition: DcdDefinition) -> list[Column]:
    """The CSV template's columns (without ``STATUS``), in its order."""
    return [Column(name, name, f.type) for f in template_fields(definition) for name in f.flat_names]


def csv_header(definition: DcdDefinition) -> list[str]:
    names = [c.name for c in csv_columns(definition)]
    return names if STATUS_COLUMN in names else [*names, STATUS_COLUMN]


def analyst_columns(definition: DcdDefinition) -> list[Column]:
    """Every stored field (inputs and calculations), flattened, in the DCD's order."""
    return [
        Column(name, name, f.type)
        for f in definition.fields
        if f.type is not FieldType.NOTE
        for name in f.flat_names
    ]


def row_status(status: str) -> str:
    return "submit" if status in SUBMITTED else "draft"


# --------------------------------------------------------------------------- CSV cells
#
# Each column has a plan, known from the DCD: how its stored value is shown, and whether
# it can hold text a spreadsheet would run. Stored values are canonical (the engine's):
# dates, times, numbers are never formula-like (a negative number is a plain number), so
# only free text and codes of a list holding a formula-like code go through
# ``export_cell``. The SQL twin follows the same plan, cheaply: no regular expression but
# the neutralising one, no sub-select for multiple choices whose codes need no escaping.

#: Codes that print the same inside a JSON array's text (no quote, comma, backslash, space).
_SIMPLE_CODE = re.compile(r"[A-Za-z0-9_.:/-]+")


@dataclass(frozen=True, slots=True)
class CsvPlan:
    column: Column
    neutralise: bool
    simple_codes: bool


def _date(value: Any) -> str:
    t = _plain(value)
    if len(t) == 10 and t[4] == "-" and t[7] == "-":
        return f"{t[8:10]}/{t[5:7]}/{t[0:4]}"
    return t


def _datetime(value: Any) -> str:
    t = _plain(value)
    if len(t) == 19 and t[4] == "-" and t[7] == "-" and t[10] == "T":
        shown = f"{t[8:10]}/{t[5:7]}/{t[0:4]} {t[11:16]}"
        return shown if t[16:19] == ":00" else shown + t[16:19]
    return t


def _multiple(value: Any) -> str:
    return "|".join(_plain(v) for v in value) if isinstance(value, list) else _plain(value)


def _plain(value: Any) -> str:
    # As PostgreSQL's ->> shows a JSON scalar.
    if value is True or value is False:
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


_CSV_TEXT: Mapping[FieldType, Callable[[Any], str]] = {
    FieldType.DATE: _date,
    FieldType.DATETIME: _datetime,
    FieldType.SELECT_MULTIPLE: _multiple,
}
_NEVER_FORMULA = frozenset(
    {FieldType.INTEGER, FieldType.DECIMAL, FieldType.DATE, FieldType.DATETIME, FieldType.TIME}
)


def csv_plan(definition: DcdDefinition) -> list[CsvPlan]:
    """Per CSV column: neutralise it or not, and whether its codes need no escaping."""
    by_flat_name = {name: f for f in definition.fields for name in f.flat_names}
    plans = []
    for column in csv_columns(definition):
        f = by_flat_name[column.name]
        codes: tuple[str, ...] = ()
        if f.list_name and f.type in (FieldType.SELECT_ONE, FieldType.SELECT_MULTIPLE):
            codes = definition.codelist(f.list_name).codes
        if column.type in _NEVER_FORMULA:
            neutralise = False
        elif codes:
            neutralise = any(export_cell(c) != c for c in codes)
        else:
            neutralise = True
        simple = bool(codes) and all(_SIMPLE_CODE.fullmatch(c) for c in codes)
        plans.append(CsvPlan(column, neutralise, simple))
    return plans


def csv_row_writer(definition: DcdDefinition) -> Callable[[Mapping[str, Any], str], list[str]]:
    """A function giving one registration's CSV cells (its stored values and status)."""
    plan = [(p.column.key, _CSV_TEXT.get(p.column.type, _plain), p.neutralise) for p in csv_plan(definition)]
    with_status = STATUS_COLUMN not in {c.name for c in csv_columns(definition)}

    def row(values: Mapping[str, Any], status: str) -> list[str]:
        cells = []
        for key, show, neutralise in plan:
            value = values.get(key)
            if value is None:
                cells.append("")
            else:
                cells.append(export_cell(show(value)) if neutralise else show(value))
        if with_status:
            cells.append(row_status(status))
        return cells

    return row


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: ``export_cell`` in SQL, over an expression ``{x}`` (repeated: a cheap ``->>``).
_SQL_EXPORT_CELL = (
    r"CASE WHEN ltrim({x}, '''') ~ '^[=+@\t\r\n\uff1d\uff0b\uff0d\uff20-]' "
    r"AND ltrim({x}, '''') !~ '^[+-]?[0-9]+([.,][0-9]+)?$' THEN '''' || {x} ELSE {x} END"
)


def _sql_date(v: str) -> str:
    return f"substr({v}, 9, 2) || '/' || substr({v}, 6, 2) || '/' || substr({v}, 1, 4)"


def _sql_cell(plan: CsvPlan) -> str:
    """The SQL twin of the Python cell of a column, over ``r."values"`` (JSONB)."""
    column = plan.column
    key = _sql_literal(column.key)
    v = f'(r."values" ->> {key})'
    dashes = f"substr({v}, 5, 1) = '-' AND substr({v}, 8, 1) = '-'"
    if column.type is FieldType.DATE:
        expr = f"CASE WHEN length({v}) = 10 AND {dashes} THEN {_sql_date(v)} ELSE {v} END"
    elif column.type is FieldType.DATETIME:
        seconds = f"CASE WHEN substr({v}, 17, 3) = ':00' THEN '' ELSE substr({v}, 17, 3) END"
        expr = (
            f"CASE WHEN length({v}) = 19 AND {dashes} AND substr({v}, 11, 1) = 'T' "
            f"THEN {_sql_date(v)} || ' ' || substr({v}, 12, 5) || {seconds} ELSE {v} END"
        )
    elif column.type is FieldType.SELECT_MULTIPLE:
        j = f'(r."values" -> {key})'
        joined = (
            f"""btrim(replace({j}::text, '", "', '|'), '[]"')"""
            if plan.simple_codes
            else f"(SELECT string_agg(e, '|' ORDER BY o) FROM jsonb_array_elements_text({j}) "
            "WITH ORDINALITY AS t(e, o))"
        )
        expr = f"CASE jsonb_typeof({j}) WHEN 'array' THEN {joined} ELSE {v} END"
    else:
        expr = v
    if plan.neutralise:
        expr = _SQL_EXPORT_CELL.format(x=f"({expr})")
    return f"NULLIF({expr}, '')"


def csv_select_sql(definition: DcdDefinition, where: str) -> str:
    """A SELECT giving the CSV's rows (cells as text, NULL for empty) for ``COPY ... TO``;
    ``where`` filters ``registrations r`` (already quoted literals)."""
    cells = [_sql_cell(p) for p in csv_plan(definition)]
    if STATUS_COLUMN not in {c.name for c in csv_columns(definition)}:
        statuses = ", ".join(_sql_literal(s) for s in sorted(SUBMITTED))
        cells.append(f"CASE WHEN r.status IN ({statuses}) THEN 'submit' ELSE 'draft' END")
    return f"SELECT {', '.join(cells)} FROM registrations r WHERE {where} ORDER BY r.created_at, r.id"


# --------------------------------------------------------------------------- typed cells


def _to_date(value: Any) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        return None


def _to_datetime(value: Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _to_time(value: Any) -> datetime.time | None:
    try:
        return datetime.time.fromisoformat(str(value))
    except ValueError:
        return None


def _to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _to_text(value: Any) -> str:
    return _plain(value)


#: How a stored value becomes a typed cell (None: not readable as that type).
TYPED: Mapping[FieldType, Callable[[Any], Any]] = {
    FieldType.INTEGER: _to_int,
    FieldType.DECIMAL: _to_float,
    FieldType.DATE: _to_date,
    FieldType.DATETIME: _to_datetime,
    FieldType.TIME: _to_time,
    FieldType.SELECT_MULTIPLE: _to_list,
}


def typed(column: Column, value: Any) -> Any:
    if value is None:
        return None
    convert: Callable[[Any], Any] = TYPED.get(column.type, _to_text)
    return convert(value)


def meta_cells(row: Any) -> list[Any]:
    """The registration's own columns (META_COLUMNS) of a row of the registrations table."""
    return [
        row.id,
        row.registration_code,
        row.business_key,
        row.status,
        row.dcd_version,
        row.created_at,
        row.updated_at,
        row.submitted_at,
    ]


def header_for(fmt: str, definition: DcdDefinition) -> Sequence[str]:
    if fmt == "csv":
        return csv_header(definition)
    return [*META_COLUMNS, *(c.name for c in analyst_columns(definition))]


def analyst_select_sql(definition: DcdDefinition, where: str) -> str:
    """A SELECT giving the analysts' columns as PostgreSQL text that Arrow's CSV reader
    parses into the Parquet schema's types (the SQL twin of :func:`typed`): numbers and
    ISO dates as stored, times with seconds, timestamps in UTC with a ``Z``,
    multiple choices joined by ``|`` (split again into lists)."""
    stamp = "to_char(r.{c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    cells = [
        "r.id",
        "r.registration_code",
        "r.business_key",
        "r.status",
        "r.dcd_version",
        *(stamp.format(c=c) for c in ("created_at", "updated_at", "submitted_at")),
    ]
    plans = {p.column.name: p for p in csv_plan(definition)}
    for column in analyst_columns(definition):
        key = _sql_literal(column.key)
        v = f'(r."values" ->> {key})'
        if column.type is FieldType.TIME:
            cells.append(f"CASE WHEN length({v}) = 5 THEN {v} || ':00' ELSE {v} END")
        elif column.type is FieldType.SELECT_MULTIPLE:
            j = f'(r."values" -> {key})'
            plan = plans.get(column.name)
            joined = (
                f"""btrim(replace({j}::text, '", "', '|'), '[]"')"""
                if plan is not None and plan.simple_codes
                else f"(SELECT string_agg(e, '|' ORDER BY o) FROM jsonb_array_elements_text({j}) "
                "WITH ORDINALITY AS t(e, o))"
            )
            cells.append(f"CASE jsonb_typeof({j}) WHEN 'array' THEN {joined} ELSE {v} END")
        else:
            cells.append(v)
    return f"SELECT {', '.join(cells)} FROM registrations r WHERE {where} ORDER BY r.created_at, r.id"
