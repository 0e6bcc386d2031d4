"""Fixtures for the DCD engine's unit tests: XLSForm workbooks written from Python lists."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from openpyxl import Workbook

from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.engine.validation import CompiledDcd, compile_dcd
from hdhub.registrations.engine.xlsform import read_workbook

Rows = Sequence[Mapping[str, object]]

DEFAULT_SETTINGS: dict[str, object] = {
    "form_title": "Test DCD",
    "form_id": "TEST_DCD",
    "version": "1.0.0",
    "default_language": "en",
    "source": "unit tests",
}


def _sheet(workbook: Workbook, title: str, rows: Rows) -> None:
    sheet = workbook.create_sheet(title)
    headers: list[str] = []
    for row in rows:
        for key in row:
            if key not in headers:
                headers.append(key)
    sheet.append(headers)
    for row in rows:
        sheet.append([row.get(h) for h in headers])


def build_workbook(
    survey: Rows,
    choices: Rows = (),
    *,
    settings: Mapping[str, object] | None = None,
    hd: Mapping[str, object] | None = None,
    sheets: Sequence[str] = ("survey", "choices", "settings", "hd"),
) -> bytes:
    """An xlsx with the four DCD sheets; ``hd`` defaults to a valid identity whose business
    key is the first field of the survey. Leave a sheet out of ``sheets`` to omit it."""
    workbook = Workbook()
    workbook.remove(workbook.active)
    if hd is None:
        first = next(
            (
                str(r.get("name::technical") or r["name"])
                for r in survey
                if not str(r["type"]).startswith(("begin", "end"))
            ),
            "X",
        )
        hd = {
            "project_code": "HDBP0001",
            "project_abbreviation": "TEST",
            "project_title::en": "Test registry",
            "project_title::fr": "Registre de test",
            "dcd_code": "TEST_DCD",
            "dcd_number": 42,
            "dcd_title::en": "Test DCD",
            "business_key": first,
        }
    content: dict[str, Rows] = {
        "survey": survey,
        "choices": choices or [{"list_name": "unused", "name": "x", "label::en": "X"}],
        "settings": [
            dict(settings)
            if settings is not None
            # The form's id is its DCD code (a DCD workbook refuses another).
            else {**DEFAULT_SETTINGS, "form_id": hd.get("dcd_code", DEFAULT_SETTINGS["form_id"])}
        ],
        "hd": [{"key": k, "value": v} for k, v in hd.items()],
    }
    for name in sheets:
        _sheet(workbook, name, content[name])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.fixture
def make_workbook() -> Callable[..., bytes]:
    return build_workbook


@pytest.fixture
def make_dcd() -> Callable[..., DcdDefinition]:
    def make(survey: Rows, choices: Rows = (), **kwargs: Any) -> DcdDefinition:
        return read_workbook(build_workbook(survey, choices, **kwargs))

    return make


@pytest.fixture
def make_compiled() -> Callable[..., CompiledDcd]:
    def make(survey: Rows, choices: Rows = (), **kwargs: Any) -> CompiledDcd:
        return compile_dcd(read_workbook(build_workbook(survey, choices, **kwargs)))

    return make
