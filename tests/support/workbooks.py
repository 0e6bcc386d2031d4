"""DCD workbooks of a registry of the tests' own (HDBP0901 CONSOLE), in three versions: the
console imports them, compares them and publishes them (tests/operator, the browser tests)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from openpyxl import Workbook

PROJECT, DCD = "HDBP0901", "CONSOLE_DCD"
HD = {
    "project_code": PROJECT,
    "project_abbreviation": "CONSOLE",
    "project_title::en": "Console test registry",
    "dcd_code": DCD,
    "dcd_number": 901,
    "dcd_title::en": "Console test form",
    "business_key": "TX_KEY",
}
_KEY = {"type": "text", "name": "TX_KEY", "label::en": "Case number", "required": "yes"}
_SIDE = {"type": "select_one side", "name": "CD_SIDE", "label::en": "Side"}
_SIZE = {"type": "integer", "name": "NR_SIZE", "label::en": "Size (mm)"}
_SIDES = [
    {"list_name": "side", "name": "L", "label::en": "Left"},
    {"list_name": "side", "name": "R", "label::en": "Right"},
]


def build_workbook(
    survey: Sequence[Mapping[str, Any]],
    choices: Sequence[Mapping[str, Any]],
    *,
    settings: Mapping[str, Any],
    hd: Mapping[str, Any],
) -> bytes:
    """An xlsx with the four DCD sheets, each row's keys its header (docs/dcd-format.md)."""
    workbook = Workbook()
    workbook.remove(workbook.active)
    sheets: dict[str, Sequence[Mapping[str, Any]]] = {
        "survey": survey,
        "choices": choices,
        "settings": [settings],
        "hd": [{"key": k, "value": v} for k, v in hd.items()],
    }
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        headers = list(dict.fromkeys(key for row in rows for key in row))
        sheet.append(headers)
        for row in rows:
            sheet.append([row.get(h) for h in headers])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _settings(version: str) -> dict[str, Any]:
    return {"form_title": "Console test form", "form_id": DCD, "version": version, "default_language": "en"}


def console_workbook(version: str) -> bytes:
    """1.x.0: a case number, a side, a size; 1.1.0 adds an optional remark, a side "both" and
    relabels the size; 2.0.0 drops the size and asks a required check date."""
    major, minor = (int(p) for p in version.split(".")[:2])
    survey: list[dict[str, Any]] = [_KEY, _SIDE]
    sides = list(_SIDES)
    if major == 1:
        survey.append({**_SIZE, "label::en": "Size in millimetres"} if minor >= 1 else _SIZE)
    if (major, minor) >= (1, 1):
        survey.append({"type": "text", "name": "TX_REMARK", "label::en": "Remark"})
        sides.append({"list_name": "side", "name": "B", "label::en": "Both"})
    if major >= 2:
        survey.append({"type": "date", "name": "DT_CHECK", "label::en": "Check date", "required": "yes"})
    return build_workbook(survey, sides, settings=_settings(version), hd=HD)


def broken_workbook() -> bytes:
    """Two problems: a type the survey does not know (row 3) and a constraint that does not
    read (row 4)."""
    survey = [
        _KEY,
        {"type": "colour", "name": "TX_COLOUR", "label::en": "Colour"},
        {"type": "integer", "name": "NR_X", "label::en": "X", "constraint": ". >"},
    ]
    return build_workbook(survey, _SIDES, settings=_settings("3.0.0"), hd=HD)
