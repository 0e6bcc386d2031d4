"""The validation engine: canonical values, every rule, messages, and no personal data in them."""

from __future__ import annotations

import datetime
import importlib.util
import json
import re
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.engine.validation import CompiledDcd, FieldError, Validation, compile_dcd
from hdhub.registrations.engine.xlsform import read_workbook

TODAY = datetime.date(2024, 6, 1)
MakeCompiled = Callable[..., CompiledDcd]

SURVEY: list[dict[str, object]] = [
    {"type": "begin_group", "name": "patient", "label::en": "Patient"},
    {
        "type": "text",
        "name": "IDC_PAT",
        "label::en": "SSIN",
        "hd::format": "ssin",
        "hd::personal_data": "yes",
    },
    {
        "type": "text",
        "name": "TX_NAME",
        "label::en": "Name",
        "relevant": "${IDC_PAT} = ''",
        "required": "yes",
        "hd::personal_data": "yes",
    },
    {
        "type": "date",
        "name": "DT_PAT_DOB",
        "required": "yes",
        "required_message::en": "Give the date of birth.",
        "required_message::fr": "Donnez la date de naissance.",
        "constraint": ". <= today()",
        "constraint_message::en": "The date of birth cannot be in the future.",
        "constraint_message::nl": "De geboortedatum kan niet in de toekomst liggen.",
        "hd::personal_data": "yes",
    },
    {"type": "select_one sex", "name": "CD_SEX", "required": "yes"},
    {"type": "end_group"},
    {"type": "decimal", "name": "MS_WEIGHT", "hd::number_format": "3.1", "constraint": ". > 0"},
    {"type": "integer", "name": "MS_HEIGHT", "hd::number_format": "3.0"},
    {
        "type": "decimal",
        "name": "MS_BMI",
        "read_only": "yes",
        "hd::number_format": "2.1",
        "calculation": "if(${MS_WEIGHT} != '' and ${MS_HEIGHT} != '', ${MS_WEIGHT} div ((${MS_HEIGHT} div 100) * (${MS_HEIGHT} div 100)), '')",
    },
    {"type": "date", "name": "DT_ADM", "required": "yes", "constraint": ". >= ${DT_PAT_DOB}"},
    {"type": "time", "name": "TM_ADM"},
    {"type": "datetime", "name": "DT_DISCHARGE"},
    {"type": "select_multiple risk", "name": "CD_RISK"},
    {"type": "begin_group", "name": "smoking", "relevant": "selected(${CD_RISK}, 'smoker')"},
    {"type": "integer", "name": "NB_CIG", "required": "yes"},
    {"type": "end_group"},
    {"type": "select_one region", "name": "CD_REGION"},
    {"type": "select_one hospital", "name": "CD_HOSP", "choice_filter": "region = ${CD_REGION}"},
    {"type": "integer", "name": "NB_PCI", "constraint": ". >= 0 and . <= 3"},
    {"type": "begin_repeat", "name": "pci", "repeat_count": "${NB_PCI}", "hd::repeat_max": 3},
    {"type": "date", "name": "DT_PCI", "required": "yes", "constraint": ". >= ${DT_ADM}"},
    {"type": "select_one stent", "name": "CD_STENT"},
    {"type": "end_repeat"},
    {"type": "begin_repeat", "name": "remarks", "hd::repeat_max": 2},
    {"type": "text", "name": "TX_REMARK", "required": "yes"},
    {"type": "select_one yes_no", "name": "CD_URGENT", "required": "yes"},
    {"type": "end_repeat"},
    {"type": "calculate", "name": "MS_AGE", "calculation": "int((${DT_ADM} - ${DT_PAT_DOB}) div 365.25)"},
    {"type": "select_one yes_no", "name": "CD_CABG", "default": "no"},
    {"type": "date", "name": "DT_REG", "default": "today()"},
    {"type": "text", "name": "TX_CODE", "constraint": "regex(., ${TX_PATTERN})"},
    {"type": "text", "name": "TX_PATTERN"},
    {"type": "note", "name": "NOTE_END", "label::en": "Thank you"},
]
CHOICES: list[dict[str, object]] = [
    {"list_name": "sex", "name": "M", "label::en": "Male"},
    {"list_name": "sex", "name": "F", "label::en": "Female"},
    {"list_name": "risk", "name": "diabetes", "label::en": "Diabetes"},
    {"list_name": "risk", "name": "smoker", "label::en": "Smoker"},
    {"list_name": "risk", "name": "hypertension", "label::en": "Hypertension"},
    {"list_name": "region", "name": "BXL", "label::en": "Brussels"},
    {"list_name": "region", "name": "VL", "label::en": "Flanders"},
    {"list_name": "hospital", "name": "H1", "label::en": "Saint-Luc", "region": "BXL"},
    {"list_name": "hospital", "name": "H2", "label::en": "UZ Leuven", "region": "VL"},
    {"list_name": "stent", "name": "DES", "label::en": "Drug-eluting"},
    {"list_name": "stent", "name": "BMS", "label::en": "Bare metal"},
    {"list_name": "yes_no", "name": "yes", "label::en": "Yes"},
    {"list_name": "yes_no", "name": "no", "label::en": "No"},
]
HD = {
    "project_code": "HDBP0012",
    "project_abbreviation": "ANGIO",
    "dcd_code": "TEST_VALIDATION",
    "dcd_number": 7,
    "business_key": "IDC_PAT,DT_ADM",
}
SSIN = "85040216932"

VALID_CSV: dict[str, object] = {
    "IDC_PAT": "85.04.02-169.32",
    "TX_NAME": "",
    "DT_PAT_DOB": "02/04/1985",
    "CD_SEX": "M",
    "MS_WEIGHT": "80.5",
    "MS_HEIGHT": "180",
    "DT_ADM": "15/05/2024",
    "TM_ADM": "7:05",
    "DT_DISCHARGE": "20/05/2024 14:30",
    "CD_RISK": "smoker|diabetes",
    "NB_CIG": "10",
    "CD_REGION": "BXL",
    "CD_HOSP": "H1",
    "NB_PCI": "2",
    "DT_PCI_1": "15/05/2024",
    "CD_STENT_1": "DES",
    "DT_PCI_2": "16/05/2024",
    "CD_STENT_2": "BMS",
    "DT_PCI_3": "",
    "CD_STENT_3": "",
    "TX_REMARK_1": "first",
    "CD_URGENT_1": "no",
    "TX_REMARK_2": "",
    "CD_URGENT_2": "",
    "TX_CODE": "AB12",
    "TX_PATTERN": "^[A-Z]{2}[0-9]+$",
}
EXPECTED_VALUES: dict[str, object] = {
    "IDC_PAT": SSIN,
    "DT_PAT_DOB": "1985-04-02",
    "CD_SEX": "M",
    "MS_WEIGHT": "80.5",
    "MS_HEIGHT": 180,
    "MS_BMI": "24.8",
    "DT_ADM": "2024-05-15",
    "TM_ADM": "07:05",
    "DT_DISCHARGE": "2024-05-20T14:30:00",
    "CD_RISK": ["diabetes", "smoker"],
    "NB_CIG": 10,
    "CD_REGION": "BXL",
    "CD_HOSP": "H1",
    "NB_PCI": 2,
    "DT_PCI_1": "2024-05-15",
    "CD_STENT_1": "DES",
    "DT_PCI_2": "2024-05-16",
    "CD_STENT_2": "BMS",
    "TX_REMARK_1": "first",
    "CD_URGENT_1": "no",
    "MS_AGE": 39,
    "CD_CABG": "no",
    "DT_REG": "2024-06-01",
    "TX_CODE": "AB12",
    "TX_PATTERN": "^[A-Z]{2}[0-9]+$",
}


@pytest.fixture(scope="module")
def definition() -> DcdDefinition:
    from .conftest import build_workbook  # noqa: PLC0415 - the module fixture cannot take make_dcd

    return read_workbook(build_workbook(SURVEY, CHOICES, hd=HD))


@pytest.fixture(scope="module")
def dcd(definition: DcdDefinition) -> CompiledDcd:
    return compile_dcd(definition)


def check(dcd: CompiledDcd, changes: dict[str, object], *, lang: str = "en") -> Validation:
    return dcd.validate({**VALID_CSV, **changes}, lang=lang, today=TODAY)


def rules(result: Validation) -> list[tuple[str, str]]:
    return sorted((e.field, e.rule) for e in result.errors)


# --------------------------------------------------------------------------- canonical values


def test_valid_csv_record_gives_canonical_values(dcd: CompiledDcd) -> None:
    result = dcd.validate(VALID_CSV, today=TODAY)
    assert result.errors == []
    assert result.warnings == []
    assert result.ok
    assert result.values == EXPECTED_VALUES
    json.dumps(result.values)


def test_canonical_values_validate_to_themselves(dcd: CompiledDcd) -> None:
    again = dcd.validate(EXPECTED_VALUES, today=TODAY)
    assert again.errors == []
    assert again.values == EXPECTED_VALUES


def test_json_numbers_and_dates_are_accepted(dcd: CompiledDcd) -> None:
    result = check(
        dcd,
        {
            "MS_WEIGHT": 80.5,
            "MS_HEIGHT": 180.0,
            "NB_PCI": 2,
            "DT_ADM": datetime.date(2024, 5, 15),
            "CD_RISK": ["smoker", "diabetes", "smoker"],
            "MS_BMI": "ignored: computed",
        },
    )
    assert result.errors == []
    assert result.values == EXPECTED_VALUES


def test_decimal_keeps_its_scale(dcd: CompiledDcd) -> None:
    assert check(dcd, {"MS_WEIGHT": "80.0"}).values["MS_WEIGHT"] == "80.0"
    assert check(dcd, {"MS_WEIGHT": Decimal("080.5")}).values["MS_WEIGHT"] == "80.5"
    assert check(dcd, {"MS_WEIGHT": ".5", "MS_HEIGHT": ""}).values["MS_WEIGHT"] == "0.5"


def test_empty_string_and_none_are_missing(dcd: CompiledDcd) -> None:
    result = check(dcd, {"MS_WEIGHT": "", "MS_HEIGHT": None, "TM_ADM": "  "})
    assert result.errors == []
    assert "MS_WEIGHT" not in result.values
    assert "MS_HEIGHT" not in result.values
    assert "MS_BMI" not in result.values  # its calculation gave ''
    assert "TM_ADM" not in result.values


# --------------------------------------------------------------------------- types


def test_31_february_is_rejected_as_a_date(dcd: CompiledDcd) -> None:
    result = check(dcd, {"DT_DISCHARGE": "", "DT_PCI_1": "31/02/2024"})
    assert rules(result) == [("DT_PCI_1", "type")]
    assert "DT_PCI_1" not in result.values


@pytest.mark.parametrize("text", ["2024-05-15", "15/05/2024", "15/5/2024"])
def test_dates_in_csv_or_iso_form_are_accepted(dcd: CompiledDcd, text: str) -> None:
    assert check(dcd, {"DT_ADM": text}).values["DT_ADM"] == "2024-05-15"


@pytest.mark.parametrize("text", ["2024/05/15", "15-05-2024", "15/05/24", "15.05.2024", "2024-5-15", "today"])
def test_other_date_forms_are_rejected(dcd: CompiledDcd, text: str) -> None:
    assert ("DT_ADM", "type") in rules(check(dcd, {"DT_ADM": text}))


@pytest.mark.parametrize(
    ("text", "canonical"), [("07:05", "07:05"), ("7:05", "07:05"), ("23:59", "23:59"), ("00:00:00", "00:00")]
)
def test_times_are_24_hour_hh_mm(dcd: CompiledDcd, text: str, canonical: str) -> None:
    assert check(dcd, {"TM_ADM": text}).values["TM_ADM"] == canonical


@pytest.mark.parametrize("text", ["24:00", "12:60", "7h05", "7:5", "12:30:15", "noon"])
def test_impossible_times_are_rejected(dcd: CompiledDcd, text: str) -> None:
    assert rules(check(dcd, {"TM_ADM": text})) == [("TM_ADM", "type")]


@pytest.mark.parametrize(
    "text", ["20/05/2024 14:30", "2024-05-20T14:30:00", "2024-05-20 14:30", "20/05/2024 14:30:00"]
)
def test_datetimes_in_csv_or_iso_form_are_accepted(dcd: CompiledDcd, text: str) -> None:
    assert check(dcd, {"DT_DISCHARGE": text}).values["DT_DISCHARGE"] == "2024-05-20T14:30:00"


def test_impossible_datetime_is_rejected(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"DT_DISCHARGE": "30/02/2024 14:30"})) == [("DT_DISCHARGE", "type")]
    assert rules(check(dcd, {"DT_DISCHARGE": "2024-05-20T14:30:00+02:00"})) == [("DT_DISCHARGE", "type")]


@pytest.mark.parametrize(
    "value",
    [
        "12.5",
        "1e2",
        "abc",
        "١٢",
        True,
        [1],
        "99999999999999999999",
        2**63,
        -(2**63) - 1,
        "-9223372036854775809",
    ],
)
def test_integer_refuses_anything_but_whole_numbers(dcd: CompiledDcd, value: object) -> None:
    """Whole numbers a 64-bit integer holds: beyond that no database column or Parquet
    export can store them (SQLite's JSON made 10**20 into 1e+20)."""
    assert rules(check(dcd, {"NB_CIG": value})) == [("NB_CIG", "type")]


@pytest.mark.parametrize("value", ["9223372036854775807", 2**63 - 1, -(2**63), "000000000000000000000012"])
def test_integer_takes_every_64_bit_whole_number(dcd: CompiledDcd, value: object) -> None:
    assert check(dcd, {"NB_CIG": value}).values["NB_CIG"] == int(value)  # type: ignore[call-overload]


@pytest.mark.parametrize("value", ["80,5", "8O.5", "1e2", ".", "-", "NaN", float("inf"), False])
def test_decimal_refuses_commas_and_other_text(dcd: CompiledDcd, value: object) -> None:
    assert ("MS_WEIGHT", "type") in rules(check(dcd, {"MS_WEIGHT": value}))


def test_number_format_limits_digits_before_and_after_the_point(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"MS_WEIGHT": "1000.5"})) == [("MS_WEIGHT", "number_format")]
    assert rules(check(dcd, {"MS_WEIGHT": "80.55"})) == [("MS_WEIGHT", "number_format")]
    assert rules(check(dcd, {"MS_WEIGHT": "0080.5"})) == []  # leading zeros do not count
    result = check(dcd, {"MS_HEIGHT": "1800"})
    assert rules(result) == [("MS_HEIGHT", "number_format")]
    assert result.errors[0].message == "Enter at most 3 digits."


def test_number_format_message_is_translated(dcd: CompiledDcd) -> None:
    result = check(dcd, {"MS_WEIGHT": "1000.5"}, lang="fr")
    assert (
        result.errors[0].message == "Saisissez au plus 3 chiffres avant et 1 chiffres après le point décimal."
    )


def test_unknown_code_is_a_choice_error_naming_the_list_not_the_value(dcd: CompiledDcd) -> None:
    result = check(dcd, {"CD_SEX": "X"})
    assert rules(result) == [("CD_SEX", "choice")]
    assert result.errors[0].message == "This code is not in the code list sex."


def test_multi_select_unknown_code_is_a_choice_error(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"CD_RISK": "smoker|gout"})) == [("CD_RISK", "choice")]


def test_multi_select_values_are_sorted_in_list_order_without_duplicates(dcd: CompiledDcd) -> None:
    values = check(dcd, {"CD_RISK": "hypertension| smoker |diabetes|smoker|"}).values
    assert values["CD_RISK"] == ["diabetes", "smoker", "hypertension"]


def test_ssin_is_checked_with_mod_97(dcd: CompiledDcd) -> None:
    result = check(dcd, {"IDC_PAT": "85040216933"})
    assert rules(result) == [("IDC_PAT", "ssin")]


def test_ssin_of_the_wrong_length_is_an_ssin_error(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"IDC_PAT": "8504021693"})) == [("IDC_PAT", "ssin")]


@pytest.mark.parametrize(
    ("ssin", "lang", "message"),
    [
        (
            "85040216933",
            "en",
            "The check number (last 2 digits) of this national register number (SSIN) is wrong",
        ),
        ("85/04/02-169.32", "fr", "Un numéro de registre national (NISS) ne contient que des chiffres"),
        ("85023116921", "nl", "De geboortedatum in dit rijksregisternummer (INSZ) bestaat niet."),
        ("85040200007", "de", "Die laufende Nummer dieser Nationalregisternummer (INSZ) wird nie vergeben"),
        ("85150216951", "en", "The month part of this national register number (SSIN) is impossible"),
        ("30050101270", "en", "The birth date in this national register number (SSIN) lies in the future."),
    ],
    ids=["check", "separator", "31-february", "sequence-000", "month-15", "born-2030"],
)
def test_each_broken_ssin_rule_has_its_own_message_in_the_users_language(
    dcd: CompiledDcd, ssin: str, lang: str, message: str
) -> None:
    result = check(dcd, {"IDC_PAT": ssin}, lang=lang)
    assert rules(result) == [("IDC_PAT", "ssin")]
    assert result.errors[0].message.startswith(message)
    assert ssin not in result.errors[0].message and ssin[:6] not in result.errors[0].message


def test_odd_input_types_are_type_errors_not_crashes(dcd: CompiledDcd) -> None:
    result = check(dcd, {"TX_CODE": {"a": 1}, "DT_ADM": 20240515, "CD_SEX": object()})
    assert {(f, r) for f, r in rules(result)} >= {("TX_CODE", "type"), ("DT_ADM", "type"), ("CD_SEX", "type")}


def test_json_booleans_are_true_and_false_codes(make_compiled: MakeCompiled) -> None:
    dcd = make_compiled(
        [{"type": "select_one bool", "name": "CD_FLAG"}],
        [{"list_name": "bool", "name": "true"}, {"list_name": "bool", "name": "false"}],
    )
    assert dcd.validate({"CD_FLAG": False}).values == {"CD_FLAG": "false"}
    assert dcd.validate({"CD_FLAG": "true"}).values == {"CD_FLAG": "true"}


# --------------------------------------------------------------------------- required and messages


def test_missing_required_field_uses_the_dcd_message(dcd: CompiledDcd) -> None:
    result = check(dcd, {"DT_PAT_DOB": ""}, lang="fr")
    assert result.errors == [
        FieldError("DT_PAT_DOB", "patient/DT_PAT_DOB", "required", "Donnez la date de naissance.")
    ]


def test_dcd_message_falls_back_to_the_default_language(dcd: CompiledDcd) -> None:
    assert check(dcd, {"DT_PAT_DOB": ""}, lang="nl").errors[0].message == "Give the date of birth."


@pytest.mark.parametrize(
    ("lang", "message"),
    [
        ("en", "This field is required."),
        ("fr", "Ce champ est obligatoire."),
        ("nl", "Dit veld is verplicht."),
        ("de", "Dieses Feld ist ein Pflichtfeld."),
        ("pt", "This field is required."),
    ],
)
def test_our_messages_are_translated(dcd: CompiledDcd, lang: str, message: str) -> None:
    result = check(dcd, {"CD_SEX": ""}, lang=lang)
    assert result.errors == [FieldError("CD_SEX", "patient/CD_SEX", "required", message)]


def test_constraint_uses_the_dcd_message(dcd: CompiledDcd) -> None:
    result = check(
        dcd,
        {
            "DT_PAT_DOB": "02/06/2024",
            "DT_ADM": "02/06/2024",
            "DT_PCI_1": "02/06/2024",
            "DT_PCI_2": "02/06/2024",
        },
        lang="nl",
    )
    assert result.errors == [
        FieldError(
            "DT_PAT_DOB",
            "patient/DT_PAT_DOB",
            "constraint",
            "De geboortedatum kan niet in de toekomst liggen.",
        )
    ]


def test_constraint_without_a_message_uses_ours(dcd: CompiledDcd) -> None:
    result = check(dcd, {"MS_WEIGHT": "0"}, lang="de")
    assert result.errors == [
        FieldError(
            "MS_WEIGHT", "MS_WEIGHT", "constraint", "Der Wert erfüllt die Bedingung dieses Feldes nicht."
        )
    ]


def test_constraint_compares_dates_across_fields(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"DT_PCI_2": "14/05/2024"})) == [("DT_PCI_2", "constraint")]


# --------------------------------------------------------------------------- relevance


def test_field_that_does_not_apply_is_not_required(dcd: CompiledDcd) -> None:
    assert "TX_NAME" not in check(dcd, {}).values  # an SSIN is given: no name asked


def test_field_that_applies_is_required(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"IDC_PAT": ""})) == [("TX_NAME", "required")]
    assert check(dcd, {"IDC_PAT": "", "TX_NAME": "Janssens"}).ok


def test_value_of_a_field_that_does_not_apply_is_dropped_with_a_warning(dcd: CompiledDcd) -> None:
    result = check(dcd, {"TX_NAME": "Janssens"})
    assert result.ok
    assert "TX_NAME" not in result.values
    assert [(w.field, w.rule) for w in result.warnings] == [("TX_NAME", "not_relevant")]
    assert "Janssens" not in result.warnings[0].message


def test_group_relevance_applies_to_its_fields(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"NB_CIG": ""})) == [("NB_CIG", "required")]
    not_smoking = check(dcd, {"CD_RISK": "diabetes", "NB_CIG": "10"})
    assert not_smoking.ok
    assert "NB_CIG" not in not_smoking.values
    assert [(w.field, w.path, w.rule) for w in not_smoking.warnings] == [
        ("NB_CIG", "smoking/NB_CIG", "not_relevant")
    ]


def test_choice_filter_limits_codes_by_other_answers(dcd: CompiledDcd) -> None:
    result = check(dcd, {"CD_HOSP": "H2"})
    assert rules(result) == [("CD_HOSP", "choice_filter")]
    assert check(dcd, {"CD_REGION": "VL", "CD_HOSP": "H2"}).ok


# --------------------------------------------------------------------------- repeats


def test_repeat_instances_beyond_the_count_must_be_empty(dcd: CompiledDcd) -> None:
    result = check(dcd, {"NB_PCI": "1"})
    assert rules(result) == [("CD_STENT_2", "repeat_count"), ("DT_PCI_2", "repeat_count")]
    assert {e.path for e in result.errors} == {"pci[2]/DT_PCI", "pci[2]/CD_STENT"}
    assert "DT_PCI_2" not in result.values
    assert result.errors[0].message == "Only 1 occurrence(s) are expected here: this one must stay empty."


def test_repeat_instances_up_to_the_count_follow_their_rules(dcd: CompiledDcd) -> None:
    result = check(dcd, {"NB_PCI": "3"})
    assert result.errors == [FieldError("DT_PCI_3", "pci[3]/DT_PCI", "required", "This field is required.")]


def test_inside_a_repeat_references_mean_the_same_instance(make_compiled: MakeCompiled) -> None:
    dcd = make_compiled(
        [
            {"type": "text", "name": "ID"},
            {"type": "begin_repeat", "name": "r", "hd::repeat_max": 2},
            {"type": "integer", "name": "LOW"},
            {"type": "integer", "name": "HIGH", "constraint": ". >= ${LOW}"},
            {"type": "end_repeat"},
        ]
    )
    result = dcd.validate({"ID": "x", "LOW_1": "1", "HIGH_1": "2", "LOW_2": "5", "HIGH_2": "3"})
    assert [(e.field, e.path, e.rule) for e in result.errors] == [("HIGH_2", "r[2]/HIGH", "constraint")]


def test_repeat_without_a_count_checks_only_instances_with_values(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"TX_REMARK_2": "second"})) == [("CD_URGENT_2", "required")]
    assert rules(check(dcd, {"TX_REMARK_1": "", "CD_URGENT_1": ""})) == []


# --------------------------------------------------------------------------- computed values


def test_calculations_fill_computed_fields(dcd: CompiledDcd) -> None:
    values = check(dcd, {"MS_WEIGHT": "70", "MS_HEIGHT": "175"}).values
    assert values["MS_BMI"] == "22.9"  # 22.857.. rounded to the field's one decimal
    assert values["MS_AGE"] == 39


def test_computed_fields_ignore_what_the_record_says(dcd: CompiledDcd) -> None:
    result = check(dcd, {"MS_AGE": "12", "MS_BMI": "99.9"})
    assert result.values["MS_AGE"] == 39
    assert result.values["MS_BMI"] == "24.8"


def test_defaults_fill_missing_values(dcd: CompiledDcd) -> None:
    values = check(dcd, {"CD_CABG": "", "DT_REG": ""}).values
    assert values["CD_CABG"] == "no"
    assert values["DT_REG"] == "2024-06-01"  # today()
    assert check(dcd, {"CD_CABG": "yes", "DT_REG": "01/01/2024"}).values["DT_REG"] == "2024-01-01"


# --------------------------------------------------------------------------- unknown fields


def test_unknown_field_is_reported(dcd: CompiledDcd) -> None:
    result = check(dcd, {"DT_PCI_4": "01/01/2024", "NOTE_END": "x", "whatever": ""})
    assert rules(result) == [
        ("DT_PCI_4", "unknown_field"),
        ("NOTE_END", "unknown_field"),
        ("whatever", "unknown_field"),
    ]


def test_upload_metadata_columns_are_skipped(dcd: CompiledDcd) -> None:
    result = check(dcd, {"TX_AUTHOR_GR": "cardio", "TX_AUTHOR": "a", "TX_COAUTHOR": "b", "STATUS": "draft"})
    assert result.ok
    assert "STATUS" not in result.values
    assert result.submit is False


@pytest.mark.parametrize(
    ("raw", "submit"),
    [("draft", False), (" DRAFT ", False), ("submit", True), ("Submitted", True), ("", None)],
)
def test_a_records_own_status_says_draft_or_submit(dcd: CompiledDcd, raw: str, submit: bool | None) -> None:
    one = check(dcd, {"STATUS": raw})
    many, plain = dcd.validate_many([{**VALID_CSV, "STATUS": raw}, VALID_CSV], today=TODAY)
    assert one.ok and one.submit is submit and many.submit is submit and plain.submit is None
    assert "STATUS" not in one.values


def test_a_status_that_is_neither_draft_nor_submit_is_an_error_in_the_users_language(
    dcd: CompiledDcd,
) -> None:
    rows = [{**VALID_CSV, "STATUS": "sent"}, {**VALID_CSV, "STATUS": "draft"}]
    bad, good = dcd.validate_many(rows, lang="fr", today=TODAY)
    assert [(e.field, e.rule) for e in bad.errors] == [("STATUS", "status")] and bad.submit is None
    assert "draft" in bad.errors[0].message and "envoi" in bad.errors[0].message
    assert good.submit is False and good.ok
    assert rules(check(dcd, {"STATUS": 3})) == [("STATUS", "status")]


# --------------------------------------------------------------------------- one error per cause, never a crash


def test_invalid_ssin_does_not_also_ask_for_the_name(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"IDC_PAT": "85040216933"})) == [("IDC_PAT", "ssin")]


def test_invalid_date_is_not_compared_again_by_other_fields(dcd: CompiledDcd) -> None:
    assert rules(check(dcd, {"DT_PAT_DOB": "30/02/1985"})) == [("DT_PAT_DOB", "type")]
    assert rules(check(dcd, {"DT_ADM": "yesterday"})) == [("DT_ADM", "type")]


def test_a_rule_that_cannot_run_is_a_field_error(dcd: CompiledDcd) -> None:
    result = check(dcd, {"TX_PATTERN": "[unclosed"})
    assert [(e.field, e.rule) for e in result.errors] == [("TX_CODE", "constraint")]
    assert "could not be evaluated" in result.errors[0].message


# --------------------------------------------------------------------------- regex() in linear time

BACKTRACKING = "(a+)+$"  # Python's re: 2.5 s at 25 characters, four times that every two more


@pytest.fixture(scope="module")
def backtracking_dcd() -> CompiledDcd:
    from .conftest import build_workbook  # noqa: PLC0415 - the module fixture cannot take make_dcd

    survey = [{"type": "text", "name": "TX_ID", "constraint": f"regex(., '{BACKTRACKING}')"}]
    return compile_dcd(read_workbook(build_workbook(survey, ())))


def test_a_backtracking_regex_validates_a_long_value_in_linear_time(backtracking_dcd: CompiledDcd) -> None:
    value = "a" * 5000 + "!"
    started = time.perf_counter()
    one = backtracking_dcd.validate({"TX_ID": value}, today=TODAY)
    many = backtracking_dcd.validate_many([{"TX_ID": value}] * 3, today=TODAY)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"regex() took {elapsed:.2f} s: it must not backtrack"  # a bound, not a benchmark
    assert rules(one) == [("TX_ID", "constraint")]  # no a at the very end: the same answer as re's
    assert [rules(r) for r in many] == [[("TX_ID", "constraint")]] * 3


@pytest.mark.parametrize("value", ["a", "aaa", "baa", "aaa!", "!", "a a", "aaa\n", "AAA", "ä"])
def test_a_backtracking_regex_answers_ordinary_values_as_before(
    backtracking_dcd: CompiledDcd, value: str
) -> None:
    refused = re.search(BACKTRACKING, value) is None  # what regex() answered with Python's re
    assert rules(backtracking_dcd.validate({"TX_ID": value}, today=TODAY)) == (
        [("TX_ID", "constraint")] if refused else []
    )


def test_a_pattern_from_a_field_that_needs_backtracking_is_a_field_error(dcd: CompiledDcd) -> None:
    result = check(dcd, {"TX_PATTERN": "(a)\\1", "TX_CODE": "aa"})
    assert [(e.field, e.rule) for e in result.errors] == [("TX_CODE", "constraint")]
    assert "could not be evaluated" in result.errors[0].message


RAW_VALUES = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.lists(st.text(max_size=5), max_size=3),
    st.sampled_from(["02/04/1985", "2024-05-15", "12:30", "80.5", "smoker|diabetes", SSIN, "BXL", "H2", "3"]),
)


@given(st.dictionaries(st.sampled_from([*VALID_CSV, "MS_AGE", "NOTE_END", "X"]), RAW_VALUES, max_size=12))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
def test_any_record_validates_without_raising(dcd: CompiledDcd, changes: dict[str, object]) -> None:
    result = check(dcd, changes)
    json.dumps(result.values)
    for error in [*result.errors, *result.warnings]:
        assert error.field and error.path and error.rule and error.message


IDENTIFIERS = st.from_regex(r"[A-Za-z0-9]{6,12}", fullmatch=True)


@given(ssin=IDENTIFIERS, name=IDENTIFIERS, birth=IDENTIFIERS, lang=st.sampled_from(["en", "fr", "nl", "de"]))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
def test_personal_data_never_appears_in_messages(
    dcd: CompiledDcd, ssin: str, name: str, birth: str, lang: str
) -> None:
    result = check(dcd, {"IDC_PAT": ssin, "TX_NAME": name, "DT_PAT_DOB": birth}, lang=lang)
    reported = json.dumps([e.to_json() for e in [*result.errors, *result.warnings]])
    for value in (ssin, name, birth):
        assert value not in reported


# --------------------------------------------------------------------------- batches and caching


def test_validate_many_gives_the_same_as_one_by_one(dcd: CompiledDcd) -> None:
    rows = [VALID_CSV, {**VALID_CSV, "CD_SEX": "X"}, {**VALID_CSV, "IDC_PAT": "", "TX_NAME": "Peeters"}]
    assert dcd.validate_many(rows, lang="nl", today=TODAY) == [
        dcd.validate(r, lang="nl", today=TODAY) for r in rows
    ]


def test_compiled_form_is_cached_per_content(definition: DcdDefinition) -> None:
    from .conftest import build_workbook  # noqa: PLC0415

    assert compile_dcd(definition) is compile_dcd(definition)
    assert compile_dcd(read_workbook(build_workbook(SURVEY, CHOICES, hd=HD))) is compile_dcd(definition)


# --------------------------------------------------------------------------- shipped workbooks

SAMPLES_PATH = Path(__file__).resolve().parents[2] / "dcds" / "samples.py"


def _samples() -> ModuleType | None:
    if not SAMPLES_PATH.exists():
        return None
    spec = importlib.util.spec_from_file_location("hdhub_dcd_samples_for_engine", SAMPLES_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


samples = _samples()


@pytest.mark.skipif(samples is None, reason="no sample records shipped")
@pytest.mark.parametrize("code", sorted(samples.VALID) if samples else [])
def test_valid_sample_of_every_shipped_workbook_passes(code: str) -> None:
    assert samples is not None
    compiled = compile_dcd(read_workbook(samples.workbook_path(code)))
    result = compiled.validate(samples.VALID[code], today=datetime.date(2026, 6, 1))
    assert [e.to_json() for e in result.errors] == []
    assert result.values


@pytest.mark.skipif(samples is None, reason="no sample records shipped")
@pytest.mark.parametrize(
    "sample", samples.INVALID if samples else [], ids=lambda s: f"{s['dcd']}: {s['why']}"
)
def test_invalid_samples_of_shipped_workbooks_are_rejected(sample: dict[str, Any]) -> None:
    compiled = compile_dcd(read_workbook(samples.workbook_path(sample["dcd"])))  # type: ignore[union-attr]
    result = compiled.validate(sample["record"], today=datetime.date(2026, 6, 1))
    assert result.errors
    # Every error reported is one the sample expects (the engine reports one error per cause).
    assert {(e.field, e.rule) for e in result.errors} <= {tuple(x) for x in sample["errors"]}


@given(
    st.lists(
        st.dictionaries(st.sampled_from(sorted(VALID_CSV)), RAW_VALUES, max_size=8), min_size=1, max_size=6
    )
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
def test_batches_give_the_same_results_as_single_records(
    dcd: CompiledDcd, changes: list[dict[str, object]]
) -> None:
    same_keys = [{**VALID_CSV, **c} for c in changes]  # every row has every key: the column path
    assert dcd.validate_many(same_keys, today=TODAY) == [dcd.validate(r, today=TODAY) for r in same_keys]
    mixed = [{**VALID_CSV, **c, **({"X": "1"} if i % 2 else {})} for i, c in enumerate(changes)]
    assert dcd.validate_many(mixed, today=TODAY) == [dcd.validate(r, today=TODAY) for r in mixed]


def test_batch_rows_do_not_share_multi_select_lists(dcd: CompiledDcd) -> None:
    first, second = dcd.validate_many([VALID_CSV, VALID_CSV], today=TODAY)
    assert first.values["CD_RISK"] == second.values["CD_RISK"]
    assert first.values["CD_RISK"] is not second.values["CD_RISK"]


@given(st.from_regex(r"[+-]?[0-9]{0,5}(\.[0-9]{0,3})?", fullmatch=True))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_decimals_keep_their_value_and_scale(dcd: CompiledDcd, text: str) -> None:
    value = check(dcd, {"MS_WEIGHT": text, "MS_HEIGHT": ""})
    digits = text.lstrip("+-")
    whole, _, fraction = digits.partition(".")
    if not whole and not fraction:
        assert ("MS_WEIGHT", "type") in rules(value) or "MS_WEIGHT" not in value.values
        return
    if len(whole.lstrip("0")) > 3 or len(fraction) > 1:
        assert ("MS_WEIGHT", "number_format") in rules(value)
        return
    canonical = value.values.get("MS_WEIGHT")
    if Decimal(digits or "0") == 0 or text.startswith("-"):
        return  # zero fails the constraint . > 0 and negative values too
    assert canonical is not None
    assert Decimal(str(canonical)) == Decimal(text)
    assert len(str(canonical).partition(".")[2]) == len(fraction)


@given(st.from_regex(r"[+-]?[0-9]{1,6}", fullmatch=True))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_integers_count_digits_without_leading_zeros(dcd: CompiledDcd, text: str) -> None:
    result = check(dcd, {"MS_HEIGHT": text, "MS_WEIGHT": ""})
    if len(text.lstrip("+-").lstrip("0")) > 3:
        assert rules(result) == [("MS_HEIGHT", "number_format")]
    else:
        assert result.values["MS_HEIGHT"] == int(text)


def test_large_batches_give_the_same_results_as_single_records(dcd: CompiledDcd) -> None:
    mistakes: list[dict[str, object]] = [
        {},
        {"DT_ADM": "31/02/2024"},
        {"CD_SEX": "X", "MS_WEIGHT": "80,5"},
        {"IDC_PAT": "85040216933"},
        {"NB_PCI": "1"},
        {"CD_RISK": "diabetes"},
        {"TX_PATTERN": "[unclosed"},
    ]
    rows = [{**VALID_CSV, **mistakes[i % len(mistakes)], "MS_HEIGHT": str(150 + i % 60)} for i in range(200)]
    assert dcd.validate_many(rows, lang="fr", today=TODAY) == [
        dcd.validate(r, lang="fr", today=TODAY) for r in rows
    ]


@pytest.mark.skipif(samples is None, reason="no sample records shipped")
@pytest.mark.parametrize("name", ["-", " ... ", "'-.'", "\u2010"])
def test_a_name_of_punctuation_only_is_refused_at_entry_in_the_persons_language(name: str) -> None:
    """Pseudonymisation hashes a patient's names without case, accents, spaces and
    punctuation, and refuses one that leaves nothing: such a name is refused when it is
    entered, not after the submission was accepted (it would be parked on its way out)."""
    assert samples is not None
    compiled = compile_dcd(read_workbook(samples.workbook_path("HIV_SEQUENCE")))
    record = next(
        s["record"] for s in samples.INVALID if s["why"] == "no SSIN and a last name of punctuation only"
    )
    values = {**record, "TX_PAT_LAST_NAME": name}
    result = compiled.validate(values, lang="nl", today=datetime.date(2026, 6, 1))
    assert [(e.field, e.rule, e.message) for e in result.errors] == [
        ("TX_PAT_LAST_NAME", "name", "Een naam moet minstens één letter of cijfer bevatten.")
    ]
    for fine in ("O'Neil-Smith", "Ø", "\u738b", "D.1"):
        result = compiled.validate({**values, "TX_PAT_LAST_NAME": fine}, today=datetime.date(2026, 6, 1))
        assert [e.to_json() for e in result.errors] == [], fine
