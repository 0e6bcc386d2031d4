"""Workbooks for the conformance tests: DCDs written from Python rows, and pyxform's own
example forms given what the healthdata format adds (the hd sheet, a semver version)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from openpyxl import Workbook, load_workbook

Rows = Sequence[Mapping[str, object]]

HD: Mapping[str, object] = {
    "project_code": "HDBP0999",
    "project_abbreviation": "XLSFORM",
    "dcd_code": "XLSFORM",
    "dcd_number": 1,
}


def workbook(
    survey: Rows,
    choices: Rows = (),
    *,
    settings: Mapping[str, object] | None = None,
    business_key: str | None = None,
    sheet_names: Mapping[str, str] | None = None,
) -> bytes:
    """A DCD workbook; the business key defaults to the first field's name."""
    key = business_key or next(
        str(r.get("name", r.get("NAME")))
        for r in survey
        if not str(r.get("type", "")).startswith(("begin", "end"))
    )
    sheets: dict[str, Rows] = {
        "survey": survey,
        "choices": choices or [{"list_name": "unused", "name": "x", "label": "X"}],
        "settings": [dict(settings or {"form_title": "XLSForm", "form_id": "XLSFORM", "version": "1.0.0"})],
        "hd": [{"key": k, "value": v} for k, v in {**HD, "business_key": key}.items()],
    }
    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet((sheet_names or {}).get(name, name))
        headers = list(dict.fromkeys(k for row in rows for k in row))
        sheet.append(headers)
        for row in rows:
            sheet.append([row.get(h) for h in headers])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


_XLS = bytes.fromhex("d0cf11e0a1b11ae1")


def hd_ready(data: bytes) -> bytes:
    """A pyxform workbook with what the healthdata format adds and pyxform does not know:
    the hd sheet (the registry's identity, the first field as business key) and a semver
    version in settings. Everything pyxform wrote stays as it is; an .xls stays an .xls."""
    if data.startswith(_XLS):
        return data
    book = load_workbook(io.BytesIO(data))
    sheets = {name.lower(): book[name] for name in book.sheetnames}
    settings = sheets.get("settings") or book.create_sheet("settings")
    column = sum(1 for cell in settings[1] if cell.value is not None) + 1
    settings.cell(1, column, "version")
    settings.cell(2, column, "1.0.0")
    survey = sheets.get("survey")
    first = "none"
    if survey is not None:
        headers = [str(c.value or "").lower() for c in survey[1]]
        if "type" in headers and "name" in headers:
            for row in survey.iter_rows(min_row=2, values_only=True):
                kind, name = row[headers.index("type")], row[headers.index("name")]
                if kind and name and not str(kind).lower().startswith(("begin", "end", "note")):
                    first = str(name)
                    break
    hd = book.create_sheet("hd")
    hd.append(["key", "value"])
    for key, value in {**HD, "business_key": first}.items():
        hd.append([key, value])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
