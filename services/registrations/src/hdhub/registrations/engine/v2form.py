"""The HD4DP v2 form of a DCD and its values: field types as v2 names them, numeric ids of
code lists and code-list values, and values written as a v2 system writes them.

HD4DP v2 identifies a code list and each of its values by a number from its master data
(``code-list-id``, and the ``id`` of a ``codeListValue`` that S2S submissions send for
CODE fields). hdhub's code lists are named in the DCD workbook instead, so it derives
those numbers: stable across DCD versions and installations, from the list's name (and the
value's code), and documented in docs/hospital-it.md.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from typing import Any

from hdhub.registrations.engine.dcd import Codelist, DcdDefinition, Field, FieldType

#: v2's ``fieldType`` of each DCD type (``CODE`` is v2's own; the others name the value).
FIELD_TYPES: Mapping[FieldType, str] = {
    FieldType.TEXT: "TEXT",
    FieldType.INTEGER: "NUMBER",
    FieldType.DECIMAL: "NUMBER",
    FieldType.DATE: "DATE",
    FieldType.TIME: "TIME",
    FieldType.DATETIME: "DATETIME",
    FieldType.SELECT_ONE: "CODE",
    FieldType.SELECT_MULTIPLE: "CODE",
    FieldType.NOTE: "NOTE",
    FieldType.CALCULATE: "CALCULATED",
}
# Ids are 9-digit numbers: short to type, far from colliding within one list.
_ID_SPACE = 900_000_000


def _number(*parts: str) -> int:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return 100_000_000 + int.from_bytes(digest[:8], "big") % _ID_SPACE


def codelist_id(list_name: str) -> int:
    """The number standing for the code list ``list_name`` (v2's ``code-list-id``)."""
    return _number("codelist", list_name)


def value_id(list_name: str, code: str) -> int:
    """The number standing for ``code`` in ``list_name`` (v2's codeListValue ``id``)."""
    return _number("codelist-value", list_name, code)


def code_of_id(codelist: Codelist, raw: object) -> str | None:
    """The code a value id (number or digits) stands for in ``codelist``; None if none."""
    text = str(raw).strip() if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
    if not text.isdigit() or not text.isascii():
        return None
    wanted = int(text)
    return next((c.name for c in codelist.choices if value_id(codelist.name, c.name) == wanted), None)


def codes_from_ids(definition: DcdDefinition, record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with code-list value ids replaced by their codes; a value that is a code
    already (or neither) is left for validation to judge. A code wins over an id."""
    out = dict(record)
    for name, raw in record.items():
        try:
            f, _ = definition.resolve_flat_name(name)
        except KeyError:
            continue
        if f.list_name is None or f.list_name not in definition.codelists:
            continue
        codelist = definition.codelists[f.list_name]
        if f.type is FieldType.SELECT_ONE:
            out[name] = _code(codelist, raw)
        elif f.type is FieldType.SELECT_MULTIPLE:
            if isinstance(raw, list):
                out[name] = [_code(codelist, p) for p in raw]
            elif isinstance(raw, str) and "|" in raw:
                out[name] = "|".join(str(_code(codelist, p)) for p in raw.split("|"))
            else:
                out[name] = _code(codelist, raw)
    return out


def _code(codelist: Codelist, raw: object) -> object:
    if isinstance(raw, str) and raw.strip() in codelist.codes:
        return raw
    return code_of_id(codelist, raw) or raw


def v2_value(f: Field, value: Any) -> Any:
    """A stored value as a v2 system writes it (CSV and API alike): dates ``dd/mm/yyyy``,
    date-times ``dd/mm/yyyy HH:MM[:SS]``, numbers as JSON numbers, multi-selects as codes
    joined with ``|`` in the code list's order, the rest as stored (times ``HH:MM``, codes).
    A draft may hold what its type cannot (saved with its errors: ``2024-02-30``): as stored."""
    if value is None:
        return None
    try:
        if f.type is FieldType.DATE and isinstance(value, str):
            return datetime.date.fromisoformat(value).strftime("%d/%m/%Y")
        if f.type is FieldType.DATETIME and isinstance(value, str):
            moment = datetime.datetime.fromisoformat(value)
            return moment.strftime("%d/%m/%Y %H:%M" if moment.second == 0 else "%d/%m/%Y %H:%M:%S")
    except ValueError:
        return value
    if f.type in (FieldType.INTEGER, FieldType.DECIMAL) and isinstance(value, str):
        return _json_number(value)
    if f.type is FieldType.SELECT_MULTIPLE and isinstance(value, list):
        return "|".join(value)
    return value


def _json_number(text: str) -> int | float | str:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if "." not in text and number.is_integer() else number


def v2_values(definition: DcdDefinition, values: Mapping[str, Any]) -> dict[str, Any]:
    """A registration's stored values in v2's form, keyed and ordered as stored."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        try:
            f, _ = definition.resolve_flat_name(name)
        except KeyError:
            out[name] = value  # a meta column (TX_AUTHOR...) or a field of another version
            continue
        out[name] = v2_value(f, value)
    return out
