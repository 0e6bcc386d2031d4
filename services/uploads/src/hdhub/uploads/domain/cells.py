"""Cells as spreadsheets leave them: the damage Excel does (leading zeros dropped, values
turned into dates or date serials, long numbers into scientific notation) recognised and
named, and formula-like cells refused where the field's type could never hold them (a
free-text field holds what was typed: formulas are neutralised on output, by
hdhub.common.spreadsheet); personal data masked in reports."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from hdhub.uploads.domain.csvfile import Finding

_SCIENTIFIC = re.compile(r"^-?\d+(?:[.,]\d+)?[eE][+-]?\d+$")
_SERIAL = re.compile(r"^\d{5}(?:[.,]\d+)?$")
_LOOSE_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})$")
_STRICT_DATE = re.compile(r"^\d{2}/\d{2}/\d{4}")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_MONTH_NAME = re.compile(
    r"^\d{1,2}[- ](?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mrt|mei|okt|fév|fev|avr|mai|juin|juil|aoû|aou|déc)\w*$",
    re.I,
)
_FORMULA = re.compile(r"^(?:[=@]|[+-][^\d.,\s])")
_DIGITS_SEPARATORS = re.compile(r"^[\d.\- /]+$")
_EXCEL_EPOCH = date(1899, 12, 30)


@dataclass(frozen=True, slots=True)
class FieldInfo:
    name: str
    type: str
    personal_data: bool = False

    @property
    def is_ssin(self) -> bool:
        return self.name.startswith("IDC_")

    @property
    def is_nihdi(self) -> bool:
        return "RIZIV" in self.name or "NIHDI" in self.name

    @property
    def free_text(self) -> bool:
        """A text field that is no identifier: it holds what was typed, as typed."""
        return self.type == "text" and not self.is_ssin and not self.is_nihdi


def inspect_cell(f: FieldInfo, value: str) -> Finding | None:
    """What a spreadsheet visibly did to ``value`` of field ``f``, if anything. A value
    that looks like a formula is refused where the type could never hold it (numbers,
    dates, codes, identifiers); in free text it is data."""
    if not f.free_text and _FORMULA.match(value):
        return Finding("formula_like", "error", column=f.name)
    if f.type == "date" or f.type == "datetime":
        if _SERIAL.match(value) and 20000 <= float(value.replace(",", ".")) <= 80000:
            shown = (_EXCEL_EPOCH + timedelta(days=int(float(value.replace(",", "."))))).strftime("%d/%m/%Y")
            return Finding("excel_date_serial", "error", column=f.name, params={"date": shown})
        if _ISO_DATE.match(value):
            return Finding("iso_date", "error", column=f.name)
        if _LOOSE_DATE.match(value) and not _STRICT_DATE.match(value):
            return Finding("excel_date_format", "error", column=f.name)
        return None
    if _SCIENTIFIC.match(value) and f.type not in ("decimal",):
        return Finding("excel_scientific", "error", column=f.name)
    if (_LOOSE_DATE.match(value) or _MONTH_NAME.match(value)) and f.type not in ("time",):
        return Finding("excel_made_date", "error", column=f.name)
    if f.is_ssin and _DIGITS_SEPARATORS.match(value):
        digits = "".join(c for c in value if c.isdigit())
        if len(digits) in (9, 10):
            return Finding("leading_zero_dropped", "error", column=f.name, params={"expected": 11})
    if f.is_nihdi and value.isdigit() and len(value) in (7, 10):
        return Finding("leading_zero_dropped", "error", column=f.name, params={"expected": len(value) + 1})
    return None


_SUSPECT = re.compile(r"^[=+\-@]|/|\d[eE][+-]?\d|^\d{1,2}[- ][^\W\d_]")
_FORMULA_START = frozenset("=+-@")


def checker_for(f: FieldInfo) -> Callable[[str], Finding | None]:
    """:func:`inspect_cell` for one field behind a cheap test that lets the usual,
    undamaged value through (this runs for every cell of every file)."""
    if f.is_ssin or f.is_nihdi:
        return lambda v: inspect_cell(f, v)
    if f.type in ("date", "datetime"):

        def check_date(v: str) -> Finding | None:
            if len(v) >= 10 and v[2] == "/" and v[5] == "/" and v[0] not in _FORMULA_START:
                return None
            return inspect_cell(f, v)

        return check_date
    suspect = _SUSPECT.search

    def check(v: str) -> Finding | None:
        return inspect_cell(f, v) if suspect(v) else None

    return check


def code_hint(f: FieldInfo, value: str) -> Finding | None:
    """A numeric code the DCD does not know may have lost its leading zeros."""
    if f.type in ("select_one", "select_multiple") and value.isdigit():
        return Finding("code_leading_zero", "error", column=f.name)
    return None


# --- reports ----------------------------------------------------------------------


def masked(value: str, personal: bool) -> str:
    """Personal data never appears in reports: only its length is hinted."""
    if not personal or not value:
        return value
    return "*" * min(len(value), 11)
