"""Reading DCD workbooks: the model built from the four sheets, and every problem reported."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest

from hdhub.registrations.engine.dcd import DcdDefinition, FieldType, NumberFormat, SemVer
from hdhub.registrations.engine.validation import compile_dcd
from hdhub.registrations.engine.xlsform import DEFAULT_REPEAT_MAX, Problem, WorkbookError, read_workbook

MakeWorkbook = Callable[..., bytes]
MakeDcd = Callable[..., DcdDefinition]

SURVEY: list[dict[str, object]] = [
    {
        "type": "begin_group",
        "name": "patient",
        "label::English (en)": "Patient",
        "label::fr": "Patient",
    },
    {
        "type": "text",
        "name": "ssin",
        "name::technical": "IDC_PAT",
        "label::English (en)": "SSIN",
        "label::fr": "NISS",
        "hint::English (en)": "11 digits",
        "hd::format": "ssin",
        "hd::personal_data": "yes",
        "destination::nippin": "yes",
        "destination::nippin_xml_name": "PatientSSIN",
    },
    {
        "type": "date",
        "name": "DT_PAT_DOB",
        "label::English (en)": "Date of birth",
        "required": "yes",
        "required_message::English (en)": "Give the date of birth.",
        "constraint": ". <= today()",
        "constraint_message::English (en)": "Not in the future.",
        "hd::personal_data": "yes",
    },
    {"type": "select_one sex", "name": "CD_PAT_SEX", "label::English (en)": "Sex", "required": "true()"},
    {"type": "end_group"},
    {
        "type": "decimal",
        "name": "MS_WEIGHT",
        "label::English (en)": "Weight",
        "hd::number_format": "3.1",
        "destination::hd": "no",
    },
    {"type": "begin repeat", "name": "pci", "label::English (en)": "PCI", "hd::repeat_max": 3},
    {"type": "date", "name": "DT_PCI", "label::English (en)": "PCI date", "relevant": "${MS_WEIGHT} > 0"},
    {"type": "select_multiple device", "name": "CD_DEVICE", "choice_filter": "kind = 'stent'"},
    {"type": "end repeat"},
    {"type": "calculate", "name": "MS_AGE", "calculation": "int((today() - ${DT_PAT_DOB}) div 365.25)"},
    {"type": "note", "name": "NOTE_END", "label::English (en)": "Thank you"},
]
CHOICES: list[dict[str, object]] = [
    {"list_name": "sex", "name": "M", "label::English (en)": "Male", "label::fr": "Homme"},
    {"list_name": "sex", "name": "F", "label::English (en)": "Female", "label::fr": "Femme"},
    {"list_name": "device", "name": "DES", "label::English (en)": "Drug-eluting stent", "kind": "stent"},
    {"list_name": "device", "name": "BAL", "label::English (en)": "Balloon", "kind": "balloon"},
]
HD: dict[str, object] = {
    "project_code": "HDBP0012",
    "project_abbreviation": "ANGIO",
    "project_title::en": "Coronary angioplasty",
    "project_title::nl": "Coronaire angioplastie",
    "dcd_code": "ANGIO_TEST",
    "dcd_number": 201,
    "dcd_title::en": "Test",
    "business_key": "IDC_PAT, DT_PAT_DOB",
}


def problems_of(
    make_dcd: MakeDcd, survey: list[dict[str, object]], choices: Any = (), **kwargs: Any
) -> list[Problem]:
    with pytest.raises(WorkbookError) as caught:
        make_dcd(survey, choices, **kwargs)
    return caught.value.problems


def only_problem(
    make_dcd: MakeDcd, survey: list[dict[str, object]], choices: Any = (), **kwargs: Any
) -> Problem:
    problems = problems_of(make_dcd, survey, choices, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


# --------------------------------------------------------------------------- the model


@pytest.fixture
def definition(make_dcd: MakeDcd) -> DcdDefinition:
    return make_dcd(SURVEY, CHOICES, hd=HD)


def test_identity_comes_from_the_hd_and_settings_sheets(definition: DcdDefinition) -> None:
    assert definition.project_code == "HDBP0012"
    assert definition.project_abbreviation == "ANGIO"
    assert definition.project_titles == {"en": "Coronary angioplasty", "nl": "Coronaire angioplastie"}
    assert (definition.dcd_code, definition.dcd_number) == ("ANGIO_TEST", 201)
    assert definition.version == SemVer(1, 0, 0)
    assert definition.default_language == "en"
    assert definition.languages == ("en", "fr")
    assert definition.business_key == ("IDC_PAT", "DT_PAT_DOB")
    assert definition.source == "unit tests"


def test_fields_keep_form_order_and_technical_names(definition: DcdDefinition) -> None:
    assert [f.technical_name for f in definition.fields] == [
        "IDC_PAT",
        "DT_PAT_DOB",
        "CD_PAT_SEX",
        "MS_WEIGHT",
        "DT_PCI",
        "CD_DEVICE",
        "MS_AGE",
        "NOTE_END",
    ]
    ssin = definition.field("IDC_PAT")
    assert ssin.name == "ssin"
    assert ssin.labels == {"en": "SSIN", "fr": "NISS"}
    assert ssin.hints == {"en": "11 digits"}
    assert ssin.format == "ssin"
    assert ssin.personal_data
    assert ssin.destination_nippin and ssin.nippin_xml_name == "PatientSSIN"
    assert ssin.group_path == ("patient",)
    assert ssin.path() == "patient/IDC_PAT"


def test_required_yes_and_true_are_the_same(definition: DcdDefinition) -> None:
    assert definition.field("DT_PAT_DOB").required == "true()"
    assert definition.field("CD_PAT_SEX").always_required
    assert definition.field("IDC_PAT").required is None
    assert definition.field("DT_PAT_DOB").required_messages == {"en": "Give the date of birth."}
    assert definition.field("DT_PAT_DOB").constraint_messages == {"en": "Not in the future."}


def test_number_format_and_destinations(definition: DcdDefinition) -> None:
    weight = definition.field("MS_WEIGHT")
    assert weight.type is FieldType.DECIMAL
    assert weight.number_format == NumberFormat(3, 1)
    assert not weight.destination_hd


def test_repeat_fields_are_flattened(definition: DcdDefinition) -> None:
    pci = definition.field("DT_PCI")
    assert (pci.repeat, pci.repeat_max) == ("pci", 3)
    assert pci.flat_names == ("DT_PCI_1", "DT_PCI_2", "DT_PCI_3")
    assert pci.path(2) == "pci[2]/DT_PCI"
    assert definition.resolve_flat_name("CD_DEVICE_3") == (definition.field("CD_DEVICE"), 3)
    assert definition.repeat("pci").max_instances == 3


def test_flat_field_names_list_every_name_a_record_may_carry(definition: DcdDefinition) -> None:
    assert definition.flat_field_names() == (
        "IDC_PAT",
        "DT_PAT_DOB",
        "CD_PAT_SEX",
        "MS_WEIGHT",
        "DT_PCI_1",
        "DT_PCI_2",
        "DT_PCI_3",
        "CD_DEVICE_1",
        "CD_DEVICE_2",
        "CD_DEVICE_3",
        "MS_AGE",
    )


def test_personal_data_fields(definition: DcdDefinition) -> None:
    assert [f.technical_name for f in definition.fields if f.personal_data] == ["IDC_PAT", "DT_PAT_DOB"]


def test_code_lists_keep_labels_and_extra_columns(definition: DcdDefinition) -> None:
    sex = definition.codelist("sex")
    assert sex.codes == ("M", "F")
    assert sex.choices[1].labels == {"en": "Female", "fr": "Femme"}
    device = definition.codelist("device")
    des = device.choice("DES")
    assert des is not None and des.columns["kind"] == "stent"
    assert definition.field("CD_DEVICE").choice_filter == "kind = 'stent'"


def test_survey_tree_has_groups_and_repeats(definition: DcdDefinition) -> None:
    names = [item.name for item in definition.survey]
    assert names == ["patient", "MS_WEIGHT", "pci", "MS_AGE", "NOTE_END"]
    assert [g.name for g in definition.groups] == ["patient", "pci"]


def test_summaries_are_json(definition: DcdDefinition) -> None:
    summary = json.loads(json.dumps(definition.to_json()))
    assert summary["version"] == "1.0.0"
    field = next(f for f in summary["fields"] if f["technical_name"] == "DT_PCI")
    assert field["repeat"] == {"name": "pci", "max": 3, "flat_names": ["DT_PCI_1", "DT_PCI_2", "DT_PCI_3"]}
    assert field["type"] == "date"
    weight = definition.field("MS_WEIGHT").to_json()
    assert weight["number_format"] == "3.1"
    assert weight["required"] is False
    assert definition.field("DT_PAT_DOB").to_json()["required"] is True
    assert definition.codelist("sex").to_json()["choices"][0] == {
        "code": "M",
        "labels": {"en": "Male", "fr": "Homme"},
        "columns": {"name": "M"},
    }


def test_fingerprint_follows_the_content(make_dcd: MakeDcd, definition: DcdDefinition) -> None:
    again = make_dcd(SURVEY, CHOICES, hd=HD)
    assert again.fingerprint == definition.fingerprint
    changed = make_dcd(
        [*SURVEY[:-1], {"type": "note", "name": "NOTE_END", "label::English (en)": "Bye"}], CHOICES, hd=HD
    )
    assert changed.fingerprint != definition.fingerprint


def test_a_path_and_bytes_read_the_same(make_workbook: MakeWorkbook, tmp_path: pathlib.Path) -> None:
    data = make_workbook(SURVEY, CHOICES, hd=HD)
    file = tmp_path / "dcd.xlsx"
    file.write_bytes(data)
    assert read_workbook(file).fingerprint == read_workbook(data).fingerprint


def test_numbers_typed_into_cells_read_as_text(make_dcd: MakeDcd) -> None:
    definition = make_dcd(
        [{"type": "integer", "name": "N", "default": 5}],
        settings={"version": "2.1.0", "default_language": "French (fr)"},
    )
    assert definition.field("N").default == "5"
    assert definition.default_language == "fr"


def test_semver_orders_numerically() -> None:
    assert SemVer.parse("1.10.0") > SemVer.parse("1.9.3")
    assert sorted([SemVer(2, 0, 0), SemVer(1, 0, 1), SemVer(1, 0, 0)]) == [
        SemVer(1, 0, 0),
        SemVer(1, 0, 1),
        SemVer(2, 0, 0),
    ]
    assert str(SemVer.parse(" 3.2.1 ")) == "3.2.1"
    for bad in ("1.0", "1.0.0.0", "01.0.0", "v1.0.0", "1.a.0"):
        with pytest.raises(ValueError):
            SemVer.parse(bad)


# --------------------------------------------------------------------------- problems


def test_unknown_type_is_reported_with_sheet_row_and_column(make_dcd: MakeDcd) -> None:
    problem = only_problem(make_dcd, [{"type": "text", "name": "A"}, {"type": "geopoint", "name": "B"}])
    assert (problem.sheet, problem.row, problem.column) == ("survey", 3, "type")
    assert "geopoint" in problem.message


def test_duplicate_name_is_reported(make_dcd: MakeDcd) -> None:
    problem = only_problem(make_dcd, [{"type": "text", "name": "A"}, {"type": "integer", "name": "A"}])
    assert (problem.row, problem.column) == (3, "name")
    assert "duplicate name 'A' (first on row 2)" in problem.message


def test_duplicate_technical_name_is_reported(make_dcd: MakeDcd) -> None:
    problem = only_problem(
        make_dcd,
        [
            {"type": "text", "name": "A", "name::technical": "X"},
            {"type": "text", "name": "B", "name::technical": "X"},
        ],
    )
    assert (problem.row, problem.column) == (3, "name::technical")


def test_unparsable_expression_is_reported_with_its_position(make_dcd: MakeDcd) -> None:
    problem = only_problem(make_dcd, [{"type": "integer", "name": "A", "constraint": ". > 1 and (2"}])
    assert (problem.sheet, problem.row, problem.column) == ("survey", 2, "constraint")
    assert "position 12" in problem.message


def test_an_expression_nesting_too_deep_is_reported_where_it_is_not_a_crash(make_dcd: MakeDcd) -> None:
    # 5,000 parentheses in a cell made the import a 500 (RecursionError in the parser).
    deep = "(" * 5000 + ". > 1" + ")" * 5000
    problem = only_problem(make_dcd, [{"type": "integer", "name": "A", "constraint": deep}])
    assert (problem.sheet, problem.row, problem.column) == ("survey", 2, "constraint")
    assert "nests more than" in problem.message


def test_missing_code_list_is_reported(make_dcd: MakeDcd) -> None:
    problem = only_problem(
        make_dcd, [{"type": "text", "name": "A"}, {"type": "select_one nowhere", "name": "B"}]
    )
    assert (problem.row, problem.column) == (3, "type")
    assert "'nowhere'" in problem.message


def test_end_group_closing_a_repeat_is_reported(make_dcd: MakeDcd) -> None:
    problems = problems_of(
        make_dcd,
        [
            {"type": "text", "name": "A"},
            {"type": "begin_repeat", "name": "r", "hd::repeat_max": 2},
            {"type": "text", "name": "B"},
            {"type": "end_group"},
        ],
    )
    assert any(p.row == 5 and "closes begin_repeat 'r'" in p.message for p in problems)
    assert any(p.row == 3 and "never closed" in p.message for p in problems)


def test_end_without_begin_is_reported(make_dcd: MakeDcd) -> None:
    problem = only_problem(make_dcd, [{"type": "text", "name": "A"}, {"type": "end group"}])
    assert problem.row == 3
    assert "without a matching begin_group" in problem.message


@pytest.mark.parametrize("version", ["1.0", "99999999999999999999.0.0", "1.0.1000000000", "01.0.0"])
def test_bad_version_is_reported(make_dcd: MakeDcd, version: str) -> None:
    # A part over 9 digits overflowed the catalogue's integer columns: a 500 in the console.
    problem = only_problem(make_dcd, [{"type": "text", "name": "A"}], settings={"version": version})
    assert (problem.sheet, problem.column) == ("settings", "version")
    assert "at most 9 digits" in problem.message


def test_missing_hd_keys_are_reported(make_dcd: MakeDcd) -> None:
    problems = problems_of(make_dcd, [{"type": "text", "name": "A"}], hd={"project_code": "HDBP0001"})
    missing = {p.message for p in problems if p.sheet == "hd"}
    for key in ("project_abbreviation", "dcd_code", "dcd_number", "business_key"):
        assert f"the hd key {key!r} is missing" in missing


def test_bad_project_code_and_dcd_number_are_reported(make_dcd: MakeDcd) -> None:
    hd = {**HD, "project_code": "HDBP12", "dcd_number": 1234, "business_key": "A"}
    problems = problems_of(make_dcd, [{"type": "text", "name": "A"}], hd=hd)
    assert {p.sheet for p in problems} == {"hd"}
    assert len(problems) == 2


def test_business_key_must_name_fields_outside_repeats(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "text", "name": "A"},
        {"type": "begin_repeat", "name": "r", "hd::repeat_max": 2},
        {"type": "text", "name": "B"},
        {"type": "end_repeat"},
    ]
    problems = problems_of(make_dcd, survey, hd={**HD, "business_key": "A,B,C"})
    messages = " ".join(p.message for p in problems)
    assert "'B' must be a field outside repeats" in messages
    assert "'C' is not a field" in messages


def test_missing_sheets_are_reported(make_dcd: MakeDcd) -> None:
    problems = problems_of(make_dcd, [{"type": "text", "name": "A"}], sheets=("survey", "choices"))
    assert {p.sheet for p in problems} == {"settings", "hd"}


def test_unknown_field_reference_is_reported(make_dcd: MakeDcd) -> None:
    problem = only_problem(make_dcd, [{"type": "integer", "name": "A", "relevant": "${B} = 1"}])
    assert (problem.row, problem.column) == (2, "relevant")
    assert "unknown field ${B}" in problem.message


def test_reference_into_a_repeat_from_outside_is_reported(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "integer", "name": "A", "constraint": ". > ${B}"},
        {"type": "begin_repeat", "name": "r", "hd::repeat_max": 2},
        {"type": "integer", "name": "B"},
        {"type": "end_repeat"},
    ]
    problem = only_problem(make_dcd, survey)
    assert "inside repeat 'r'" in problem.message


def test_repeat_without_a_size_is_flattened_to_the_default_maximum(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "text", "name": "A"},
        {"type": "begin_repeat", "name": "r"},
        {"type": "text", "name": "B"},
        {"type": "end_repeat"},
    ]
    flat = make_dcd(survey).field("B").flat_names
    assert flat == tuple(f"B_{i}" for i in range(1, DEFAULT_REPEAT_MAX + 1))


def test_a_repeat_size_that_is_no_whole_number_is_reported(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "text", "name": "A"},
        {"type": "begin_repeat", "name": "r", "hd::repeat_max": "ten"},
        {"type": "text", "name": "B"},
        {"type": "end_repeat"},
    ]
    problem = only_problem(make_dcd, survey)
    assert (problem.row, problem.column) == (3, "hd::repeat_max")


def test_a_repeat_count_beyond_the_repeat_size_is_reported(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "text", "name": "A"},
        {"type": "begin_repeat", "name": "r", "repeat_count": 5, "hd::repeat_max": 3},
        {"type": "text", "name": "B"},
        {"type": "end_repeat"},
    ]
    problem = only_problem(make_dcd, survey)
    assert (problem.row, problem.column) == (3, "repeat_count")


def test_constant_repeat_count_gives_the_size(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "text", "name": "A"},
        {"type": "begin_repeat", "name": "r", "repeat_count": 2},
        {"type": "text", "name": "B"},
        {"type": "end_repeat"},
    ]
    assert make_dcd(survey).field("B").flat_names == ("B_1", "B_2")


def test_nested_repeats_are_reported(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "text", "name": "A"},
        {"type": "begin_repeat", "name": "r", "hd::repeat_max": 2},
        {"type": "begin_repeat", "name": "s", "hd::repeat_max": 2},
        {"type": "text", "name": "B"},
        {"type": "end_repeat"},
        {"type": "end_repeat"},
    ]
    problem = only_problem(make_dcd, survey)
    assert (problem.row, problem.column) == (4, "type")
    assert "inside repeat 'r'" in problem.message and "instance number" in problem.message


def test_flattened_name_colliding_with_a_field_is_reported(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "text", "name": "B_1"},
        {"type": "begin_repeat", "name": "r", "hd::repeat_max": 2},
        {"type": "text", "name": "B"},
        {"type": "end_repeat"},
    ]
    problem = only_problem(make_dcd, survey)
    assert "'B_1'" in problem.message


def test_circular_calculations_are_reported(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "text", "name": "A"},
        {"type": "calculate", "name": "X", "calculation": "${Y} + 1"},
        {"type": "calculate", "name": "Y", "calculation": "${X} + 1"},
    ]
    problem = only_problem(make_dcd, survey)
    assert "circular dependency between X, Y" in problem.message


def test_relevance_depending_on_itself_through_another_field_is_reported(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "integer", "name": "A", "relevant": "${B} = 1"},
        {"type": "integer", "name": "B", "relevant": "${A} = 1"},
    ]
    assert "circular" in only_problem(make_dcd, survey).message


def test_invalid_literal_default_is_reported(make_dcd: MakeDcd) -> None:
    problem = only_problem(make_dcd, [{"type": "date", "name": "A", "default": "31/02/2024"}])
    assert (problem.row, problem.column) == (2, "default")


def test_choice_filter_must_read_existing_columns(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "text", "name": "A"},
        {"type": "select_one device", "name": "D", "choice_filter": "colour = 'red'"},
    ]
    problem = only_problem(make_dcd, survey, CHOICES)
    assert problem.column == "choice_filter"
    assert "'colour'" in problem.message


def test_bare_name_outside_a_choice_filter_is_reported(make_dcd: MakeDcd) -> None:
    problem = only_problem(
        make_dcd, [{"type": "integer", "name": "A", "relevant": "B = 1"}, {"type": "integer", "name": "B"}]
    )
    assert "refer to a field as ${B}" in problem.message


def test_misplaced_hd_columns_are_reported(make_dcd: MakeDcd) -> None:
    problems = problems_of(
        make_dcd,
        [
            {"type": "text", "name": "A", "hd::number_format": "3.1"},
            {"type": "integer", "name": "B", "hd::format": "ssin"},
            {"type": "text", "name": "C", "hd::format": "iban"},
            {"type": "decimal", "name": "D", "hd::number_format": "x.y"},
        ],
    )
    assert [(p.row, p.column) for p in problems] == [
        (2, "hd::number_format"),
        (3, "hd::format"),
        (4, "hd::format"),
        (5, "hd::number_format"),
    ]


def test_calculation_on_a_typed_field_makes_it_computed(make_dcd: MakeDcd) -> None:
    definition = make_dcd(
        [{"type": "text", "name": "T"}, {"type": "integer", "name": "A", "calculation": "1 + 1"}]
    )
    assert definition.field("A").is_computed
    assert compile_dcd(definition).validate({"T": "x", "A": "7"}).values["A"] == 2


def test_every_problem_is_reported_at_once(make_dcd: MakeDcd) -> None:
    problems = problems_of(
        make_dcd,
        [
            {"type": "text", "name": "A"},
            {"type": "strange", "name": "B"},
            {"type": "integer", "name": "C", "constraint": "1 +"},
            {"type": "select_one missing", "name": "D"},
        ],
        settings={"version": "one"},
    )
    assert len(problems) == 4
    assert "4 problem(s)" in str(WorkbookError(problems))


def test_a_file_that_is_not_a_workbook_is_reported() -> None:
    with pytest.raises(WorkbookError) as caught:
        read_workbook(b"not a zip file")
    assert caught.value.problems[0].sheet == "workbook"


# --------------------------------------------------------------------------- shipped workbooks

SHIPPED = sorted(
    item.name
    for item in (resources.files("hdhub.registrations") / "dcds").iterdir()
    if item.name.endswith(".xlsx")
)


def test_workbooks_are_shipped() -> None:
    assert SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_workbook_loads(name: str) -> None:
    data = (resources.files("hdhub.registrations") / "dcds" / name).read_bytes()
    definition = read_workbook(data)
    assert name.startswith(f"{definition.project_code}_{definition.dcd_code}_{definition.version}")
    assert definition.business_key
    assert {"en", "fr", "nl"} <= set(definition.languages)


# --------------------------------------------------------------------------- pyxform's spellings


@pytest.mark.parametrize("column", ["relevant", "relevance", "bind::relevant", "Relevance"])
def test_every_spelling_of_relevant_is_skip_logic(make_dcd: MakeDcd, column: str) -> None:
    definition = make_dcd(
        [
            {"type": "integer", "name": "A"},
            {"type": "text", "name": "B", column: "${A} > 1", "required": "yes"},
        ]
    )
    compiled = compile_dcd(definition)
    assert definition.field("B").relevant == "${A} > 1"
    assert compiled.validate({"A": "1"}).ok  # B does not apply, so it is not required
    assert [e.rule for e in compiled.validate({"A": "2"}).errors] == ["required"]


@pytest.mark.parametrize("column", ["required", "bind::required"])
def test_every_spelling_of_required_is_applied(make_dcd: MakeDcd, column: str) -> None:
    compiled = compile_dcd(make_dcd([{"type": "text", "name": "A", column: "yes"}]))
    assert [e.rule for e in compiled.validate({}).errors] == ["required"]


@pytest.mark.parametrize("column", ["read_only", "readonly", "bind::readonly"])
def test_every_spelling_of_read_only_is_read(make_dcd: MakeDcd, column: str) -> None:
    assert make_dcd([{"type": "text", "name": "A", column: "yes"}]).field("A").read_only


@pytest.mark.parametrize(
    ("required_column", "constraint_column"),
    [
        ("required_message::English (en)", "constraint_message::English (en)"),
        ("jr:requiredMsg", "jr:constraintMsg"),
        ("bind::jr:requiredMsg::English", "bind::jr:constraintMsg::English"),
        ("jr:requiredMsg:English", "jr:constraintMsg:English"),
        ("required message", "constraint message"),
    ],
)
def test_every_spelling_of_the_messages_is_shown(
    make_dcd: MakeDcd, required_column: str, constraint_column: str
) -> None:
    compiled = compile_dcd(
        make_dcd(
            [
                {"type": "text", "name": "A", "required": "yes", required_column: "Say A."},
                {"type": "integer", "name": "B", "constraint": ". < 10", constraint_column: "Below 10."},
            ]
        )
    )
    assert [e.message for e in compiled.validate({"B": "12"}).errors] == ["Say A.", "Below 10."]


@pytest.mark.parametrize("column", ["repeat_count", "jr:count", "count", "control::jr:count"])
def test_every_spelling_of_the_repeat_count_is_read(make_dcd: MakeDcd, column: str) -> None:
    definition = make_dcd(
        [
            {"type": "integer", "name": "N"},
            {"type": "begin_repeat", "name": "R", column: "${N}", "hd::repeat_max": 3},
            {"type": "text", "name": "T"},
            {"type": "end_repeat"},
        ]
    )
    assert definition.repeat("R").repeat_count == "${N}"
    errors = compile_dcd(definition).validate({"N": "1", "T_1": "a", "T_2": "b"}).errors
    assert [(e.field, e.rule) for e in errors] == [("T_2", "repeat_count")]


@pytest.mark.parametrize(
    "column", ["label:English", "label::English", "label::en", "Label:English (en)", "caption::en"]
)
def test_every_spelling_of_a_translated_label_is_read(make_dcd: MakeDcd, column: str) -> None:
    definition = make_dcd([{"type": "text", "name": "A", column: "Name", "label:French": "Nom"}])
    assert definition.field("A").labels == {"en": "Name", "fr": "Nom"}


@pytest.mark.parametrize(
    "column", ["media::image", "guidance_hint", "personal_data", "hd::unknown", "bind::type", "trigger"]
)
def test_a_column_that_is_not_read_is_refused_where_it_is_filled(make_dcd: MakeDcd, column: str) -> None:
    problem = only_problem(
        make_dcd, [{"type": "text", "name": "A"}, {"type": "text", "name": "B", column: "x"}]
    )
    assert (problem.sheet, problem.row, problem.column) == ("survey", 3, column)
    assert "does not read" in problem.message


def test_two_spellings_of_one_column_are_refused(make_dcd: MakeDcd) -> None:
    problem = only_problem(
        make_dcd, [{"type": "integer", "name": "A", "relevant": "true()", "relevance": "false()"}]
    )
    assert (problem.sheet, problem.row, problem.column) == ("survey", 1, "relevance")
    assert "same column" in problem.message


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ({"type": "begin_group", "name": "G", "required": "yes"}, "required"),
        ({"type": "begin_group", "name": "G", "constraint": "true()"}, "constraint"),
        ({"type": "begin_group", "name": "G", "hint::en": "help"}, "hint::en"),
        ({"type": "begin_group", "name": "G", "repeat_count": "2"}, "repeat_count"),
    ],
)
def test_a_rule_a_group_cannot_hold_is_refused(
    make_dcd: MakeDcd, row: dict[str, object], column: str
) -> None:
    problem = only_problem(make_dcd, [row, {"type": "text", "name": "A"}, {"type": "end_group"}])
    assert (problem.sheet, problem.row, problem.column) == ("survey", 2, column)


def test_a_rule_on_an_end_row_is_refused(make_dcd: MakeDcd) -> None:
    survey = [
        {"type": "begin_group", "name": "G"},
        {"type": "text", "name": "A"},
        {"type": "end_group", "relevance": "false()"},
    ]
    problem = only_problem(make_dcd, survey)
    assert (problem.sheet, problem.row, problem.column) == ("survey", 4, "relevance")  # as written


def test_a_repeat_count_on_a_field_is_refused(make_dcd: MakeDcd) -> None:
    problem = only_problem(make_dcd, [{"type": "text", "name": "A", "jr:count": "2"}])
    assert (problem.sheet, problem.row, problem.column) == ("survey", 2, "jr:count")


@pytest.mark.parametrize(
    "constraint",
    [
        "regex(., '[a-')",
        "regex(., concat('[', 'a'))",  # a constant pattern, folded when the DCD is compiled
        "regex(., 'a{4294967296}')",  # past what re can count (OverflowError)
        "regex(., '(?<=a+)b')",
        "regex(., '(a)\\1')",  # a backreference: RE2 matches in linear time, and cannot
        "regex(., '(?=a)b')",
        "regex(., 'a{0,5}++')",
        "regex(., '((a{1000}){1000})')",  # too large for RE2's program
    ],
)
def test_a_regex_that_does_not_compile_is_a_workbook_problem(make_dcd: MakeDcd, constraint: str) -> None:
    problem = only_problem(
        make_dcd, [{"type": "text", "name": "A"}, {"type": "text", "name": "B", "constraint": constraint}]
    )
    assert (problem.sheet, problem.row, problem.column) == ("survey", 3, "constraint")
    assert "invalid regular expression" in problem.message


@pytest.mark.parametrize(
    ("pattern", "named"),
    [
        ("(a)\\1", "backreference"),
        ("(?P<x>a)(?P=x)", "backreference"),
        ("(?!a)b", "lookahead"),
        ("(?<=a)b", "lookbehind"),
        ("(?>a+)b", "atomic group"),
        ("(a)?(?(1)b|c)", "conditional group"),
    ],
)
def test_a_regex_that_needs_backtracking_is_refused_at_its_cell_saying_why(
    make_dcd: MakeDcd, pattern: str, named: str
) -> None:
    survey = [
        {"type": "text", "name": "A"},
        {"type": "text", "name": "B", "constraint": f"regex(., '{pattern}')"},
    ]
    problem = only_problem(make_dcd, survey)
    assert (problem.sheet, problem.row, problem.column) == ("survey", 3, "constraint")
    assert named in problem.message and "linear time" in problem.message


@pytest.mark.parametrize(
    "pattern", ["(a+)+$", "^[0-9]{11}$", "^.{0,5000}$", "^\\w+@\\w+\\.be$", "(?i)^[A-Z]{2}$"]
)
def test_a_regex_without_backreference_or_lookaround_is_read(make_dcd: MakeDcd, pattern: str) -> None:
    survey = [{"type": "text", "name": "B", "constraint": f"regex(., '{pattern}')"}]
    assert make_dcd(survey).survey[0].constraint == f"regex(., '{pattern}')"


def test_a_setting_that_is_not_read_is_refused(make_dcd: MakeDcd) -> None:
    settings = {"version": "1.0.0", "default_language": "en", "instance_name": "concat('x', ${A})"}
    problem = only_problem(make_dcd, [{"type": "text", "name": "A"}], settings=settings)
    assert (problem.sheet, problem.row, problem.column) == ("settings", 2, "instance_name")


def test_pyxform_spellings_of_the_settings_are_read(make_dcd: MakeDcd) -> None:
    settings = {"version": "1.0.0", "set form title": "Title", "set form id": "TEST_DCD"}
    assert make_dcd([{"type": "text", "name": "A"}], settings=settings).settings["form_title"] == "Title"


def test_a_form_id_other_than_the_dcd_code_is_refused_naming_both(make_dcd: MakeDcd) -> None:
    for spelling in ("form_id", "set form id"):
        settings = {"version": "1.0.0", spelling: "ANGIO_HOSP"}
        problem = only_problem(make_dcd, [{"type": "text", "name": "A"}], settings=settings)
        assert (problem.sheet, problem.row, problem.column) == ("settings", 2, spelling)
        assert "'ANGIO_HOSP'" in problem.message and "'TEST_DCD'" in problem.message
    # The same, or none: the DCD's code names the form.
    for settings in ({"version": "1.0.0", "form_id": "TEST_DCD"}, {"version": "1.0.0"}):
        assert make_dcd([{"type": "text", "name": "A"}], settings=settings).dcd_code == "TEST_DCD"


def test_an_hd_key_that_is_not_read_is_refused(make_dcd: MakeDcd) -> None:
    hd = {**HD, "business_keys": "IDC_PAT"}  # a typo: the business key would be lost
    problem = only_problem(make_dcd, SURVEY, CHOICES, hd=hd)
    assert (problem.sheet, problem.column) == ("hd", "key") and "business_keys" in problem.message


def test_a_problem_names_the_column_as_the_workbook_spells_it(make_dcd: MakeDcd) -> None:
    problem = only_problem(make_dcd, [{"type": "text", "name": "A", "bind::relevant": "${NOPE} = 1"}])
    assert (problem.row, problem.column) == (2, "bind::relevant") and "NOPE" in problem.message
    # Found when the definition is compiled, after reading: still the column as written.
    problem = only_problem(
        make_dcd, [{"type": "text", "name": "A", "bind::constraint": "regex(., concat('[', 'a'))"}]
    )
    assert (problem.row, problem.column) == (2, "bind::constraint")


@pytest.mark.parametrize("code", ["../../etc", "ANGIO HOSP", "1ANGIO", "ANGIO-HOSP", "A" * 65])
def test_a_dcd_code_that_is_no_code_is_reported(make_dcd: MakeDcd, code: str) -> None:
    """The code names the DCD in URLs, file names and the v2 API: a path or a space in it
    made a draft the console could never open again."""
    problem = only_problem(make_dcd, [{"type": "text", "name": "A"}], hd={**HD, "dcd_code": code})
    assert (problem.sheet, problem.column) == ("hd", "value")
    assert "is not a code" in problem.message
