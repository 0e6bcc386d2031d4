"""The NIPPIN columns of a DCD workbook (destination::nippin*, settings nippin_message) and
what of a registration goes to NIPPIN: the bound fields, when the relevance holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.engine.nippin import bound_values, is_reimbursed, makes_message
from hdhub.registrations.engine.xlsform import Problem, WorkbookError

MakeDcd = Callable[..., DcdDefinition]
SETTINGS = {
    "form_title": "Implant",
    "form_id": "TEST_DCD",
    "version": "1.0.0",
    "default_language": "en",
    "source": "t",
}
YES_NO = [
    {"list_name": "yes_no", "name": "yes", "label::en": "Yes"},
    {"list_name": "yes_no", "name": "no", "label::en": "No"},
]


def survey(**extra: Any) -> list[dict[str, object]]:
    return [
        {
            "type": "text",
            "name": "IDC_PAT",
            "hd::format": "ssin",
            "hd::personal_data": "yes",
            "destination::nippin": "yes",
            "destination::nippin_xml_name": "PatientSSIN",
            "destination::nippin_relevant": "${CD_REIMB} = 'yes'",
        },
        {
            "type": "date",
            "name": "DT_IMPLANT",
            "destination::nippin": "yes",
            "destination::nippin_xml_name": "ImplantDate",
        },
        {"type": "text", "name": "CD_DEVICE", "destination::nippin": "yes", **extra},
        {"type": "select_one yes_no", "name": "CD_REIMB"},
    ]


def problems(make_dcd: MakeDcd, rows: list[dict[str, object]], **settings: str) -> list[Problem]:
    with pytest.raises(WorkbookError) as caught:
        make_dcd(rows, YES_NO, settings={**SETTINGS, **settings})
    return caught.value.problems


def test_a_dcd_naming_its_message_is_reimbursed_and_binds_its_fields(make_dcd: MakeDcd) -> None:
    d = make_dcd(survey(), YES_NO, settings={**SETTINGS, "nippin_message": "implant"})
    assert is_reimbursed(d)
    values = {"IDC_PAT": "85073003328", "DT_IMPLANT": "2025-11-20", "CD_DEVICE": "PM-1", "CD_REIMB": "yes"}
    bound = bound_values(d, values)
    assert [(b.xml_name, b.value, b.personal_data) for b in bound] == [
        ("PatientSSIN", "85073003328", True),
        ("ImplantDate", "2025-11-20", False),
        ("CD_DEVICE", "PM-1", False),  # no xml name: its technical name
    ]
    assert makes_message(d, values)
    assert not makes_message(d, {**values, "CD_REIMB": "no"})


def test_bound_fields_without_a_message_make_none(make_dcd: MakeDcd) -> None:
    d = make_dcd(survey(), YES_NO, settings=SETTINGS)
    assert not is_reimbursed(d)
    assert not makes_message(d, {"CD_REIMB": "yes"})


def test_an_xml_name_that_is_no_xml_name_is_refused(make_dcd: MakeDcd) -> None:
    found = problems(make_dcd, survey(**{"destination::nippin_xml_name": "Device Code"}))
    assert [(p.sheet, p.row, p.column, p.message) for p in found] == [
        ("survey", 4, "destination::nippin_xml_name", "'Device Code' is no XML element name")
    ]


def test_nippin_columns_need_the_field_bound(make_dcd: MakeDcd) -> None:
    rows = survey()
    rows[3] = {**rows[3], "destination::nippin_xml_name": "Reimbursed"}
    found = problems(make_dcd, rows)
    assert [(p.row, p.column, p.message) for p in found] == [
        (5, "destination::nippin_xml_name", "destination::nippin_xml_name needs destination::nippin = yes")
    ]


def test_an_unknown_message_is_refused(make_dcd: MakeDcd) -> None:
    found = problems(make_dcd, survey(), nippin_message="hip")
    assert [(p.sheet, p.column, p.message) for p in found] == [
        ("settings", "nippin_message", "unknown NIPPIN message 'hip' (known: implant)")
    ]


def test_a_bound_field_in_a_repeat_of_a_reimbursed_dcd_is_refused(make_dcd: MakeDcd) -> None:
    rows = [
        *survey(),
        {"type": "begin_repeat", "name": "leads", "hd::repeat_max": 2},
        {"type": "text", "name": "TX_LEAD", "destination::nippin": "yes"},
        {"type": "end_repeat"},
    ]
    found = problems(make_dcd, rows, nippin_message="implant")
    assert [(p.column, p.message) for p in found] == [
        ("destination::nippin", "TX_LEAD is in repeat 'leads': one message per registration")
    ]
