"""Issue 25: ODK's functions and values where the differential test against Enketo cannot
go (random values, code lists, refusals at import) or where a worked example says more."""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from hdhub.registrations.engine.expressions import (
    Context,
    ExpressionSyntaxError,
    FieldSlot,
    compile_expression,
    parse_expression,
)
from hdhub.registrations.engine.functions import REFUSED_FUNCTIONS
from hdhub.registrations.engine.validation import CompiledDcd
from hdhub.registrations.engine.xlsform import WorkbookError

MakeCompiled = Callable[..., CompiledDcd]
TODAY = datetime.date(2025, 3, 30)


def evaluate(text: str, values: Mapping[str, object] | None = None, *, current: object = None) -> Any:
    names = list(values or {})
    evaluator = compile_expression(parse_expression(text), fields=lambda name: FieldSlot(names.index(name)))
    return evaluator(Context(list((values or {}).values()), current=current, today=TODAY))


# --------------------------------------------------------------------------- random and code lists


def test_uuid_gives_a_random_version_4_uuid_or_a_token_of_the_length_asked() -> None:
    first, second = evaluate("uuid()"), evaluate("uuid()")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", first)
    assert first != second
    assert re.fullmatch(r"[a-z0-9]{12}", evaluate("uuid(12)"))


def test_jr_choice_name_gives_the_label_in_the_dcds_default_language(make_compiled: MakeCompiled) -> None:
    compiled = make_compiled(
        [
            {"type": "select_one sex", "name": "SEX"},
            {"type": "calculate", "name": "SEX_LABEL", "calculation": "jr:choice-name(${SEX}, '${SEX}')"},
        ],
        [
            {"list_name": "sex", "name": "F", "label::en": "Female", "label::fr": "Femme"},
            {"list_name": "sex", "name": "M", "label::en": "Male", "label::fr": "Homme"},
        ],
    )
    assert compiled.validate({"SEX": "F"}, lang="fr").values["SEX_LABEL"] == "Female"


def test_jr_choice_name_of_a_field_that_is_no_select_is_refused_at_import(
    make_dcd: Callable[..., Any],
) -> None:
    with pytest.raises(WorkbookError) as caught:
        make_dcd(
            [
                {"type": "text", "name": "A"},
                {"type": "calculate", "name": "B", "calculation": "jr:choice-name(${A}, '${A}')"},
            ]
        )
    assert "not a select field" in str(caught.value)


def test_once_keeps_the_value_a_stored_record_holds(make_compiled: MakeCompiled) -> None:
    compiled = make_compiled(
        [{"type": "text", "name": "A"}, {"type": "calculate", "name": "ID", "calculation": "once(uuid())"}]
    )
    fresh = compiled.validate({"A": "x"}).values["ID"]
    assert re.fullmatch(r"[0-9a-f-]{36}", fresh)
    assert compiled.validate({"A": "x", "ID": fresh}).values["ID"] == fresh


def test_decimal_date_is_decimal_date_time() -> None:
    assert evaluate("decimal-date('2024-01-02')") == evaluate("decimal-date-time('2024-01-02')") == 19724


@pytest.mark.parametrize("name", sorted(REFUSED_FUNCTIONS))
def test_refused_functions_say_why(name: str) -> None:
    with pytest.raises(
        ExpressionSyntaxError, match=re.escape(f"{name}() is not supported: {REFUSED_FUNCTIONS[name]}")
    ):
        parse_expression(f"{name}(1)")


# --------------------------------------------------------------------------- repeats


REPEAT = [
    {"type": "text", "name": "ID"},
    {"type": "integer", "name": "N"},
    {"type": "begin_repeat", "name": "dose", "repeat_count": "${N}", "hd::repeat_max": 3},
    {"type": "integer", "name": "MG"},
    {"type": "end_repeat"},
    {"type": "calculate", "name": "DOSES", "calculation": "count(${dose})"},
    {"type": "calculate", "name": "TOTAL", "calculation": "sum(${MG})"},
    {"type": "calculate", "name": "LIST", "calculation": "join(' ', ${MG})"},
    {"type": "calculate", "name": "LAST", "calculation": "indexed-repeat(${MG}, ${dose}, ${N})"},
    {"type": "integer", "name": "MAX", "constraint": ". >= max(${MG})"},
]


def test_count_sum_join_and_indexed_repeat_read_the_instances_that_are_there(
    make_compiled: MakeCompiled,
) -> None:
    compiled = make_compiled(REPEAT)
    result = compiled.validate({"ID": "x", "N": 2, "MG_1": 10, "MG_2": 25, "MAX": 30})
    assert result.ok, result.errors
    assert {k: result.values[k] for k in ("DOSES", "TOTAL", "LIST", "LAST")} == {
        "DOSES": 2,
        "TOTAL": 35,
        "LIST": "10 25",
        "LAST": 25,
    }
    low = compiled.validate({"ID": "x", "N": 2, "MG_1": 10, "MG_2": 25, "MAX": 20})
    assert [e.rule for e in low.errors] == ["constraint"]


def test_a_count_beyond_the_repeats_size_is_an_error(make_compiled: MakeCompiled) -> None:
    record = {"ID": "x", "N": 5, "MG_1": 1, "MG_2": 1, "MG_3": 1, "MAX": 1}
    result = make_compiled(REPEAT).validate(record, lang="nl")
    assert [(e.field, e.rule) for e in result.errors] == [("dose", "repeat_count")]
    assert "hoogstens 3" in result.errors[0].message


# --------------------------------------------------------------------------- values and functions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("decimal-date-time('2024-01-01T10:00:00Z')", 19723 + 11 / 24),  # 11:00 in Brussels
        ("decimal-date-time('2024-07-01T10:00:00.500+02:00')", 19905 + (10 * 3600 + 0.5) / 86400),
        ("number('2024-01-02')", 19724.0),
        ("'2024-01-02' + 1", 19725.0),
        ("date('1970-1-2') = date(1)", True),
        ("string(date('1'))", "1970-01-02"),
        (
            "format-date('2024-01-02T10:20:30.456+01:00', '%a %e %b %Y %H:%M:%S.%3')",
            "Tue 2 Jan 2024 10:20:30.456",
        ),
        ("format-date(date('2024-03-04'), '%y%n%e %h%% %d/%m')", "2434 0% 04/03"),
        ("round(-1.5)", -2.0),
        ("round(2.5)", 3.0),
        ("round(1.005, 2)", 1.01),
        ("substr('hello', -3)", "llo"),
        ("substr('hello', 1, -1)", "ell"),
        ("substring-before('2024-01-02', '-')", "2024"),
        ("substring-after('2024-01-02', '-')", "01-02"),
        ("translate('a-b-c', '-b', '+')", "a++c"),
        ("normalize-space(concat(' a', '\u00a0', 'b  '))", "a\u00a0b"),
        ("pow(0, -1)", float("inf")),
        ("sqrt(-1) != sqrt(-1)", True),
        ("checklist(1, 2, true(), false(), 'yes')", True),
        ("weighted-checklist(5, -1, true(), 3, 'x', 2, false(), 10)", True),
        ("count-selected('a  b')", 2.0),
    ],
)
def test_odk_values_and_functions(text: str, expected: object) -> None:
    assert (
        evaluate(text) == pytest.approx(expected)
        if isinstance(expected, float)
        else evaluate(text) == expected
    )


def test_digest_hashes_the_texts_utf8_bytes() -> None:
    text = "é"
    assert (
        evaluate(f"digest('{text}', 'SHA-256')")
        == base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    )
    assert evaluate(f"digest('{text}', 'md5', 'hex')") == hashlib.md5(text.encode()).hexdigest()  # noqa: S324


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("format-date(today(), '%Q')", "format-date() does not know %Q"),
        ("digest('x', 'MD4')", "digest() takes MD5"),
        ("weighted-checklist(1, 2, true())", "pairs of an answer and its weight"),
        ("jr:choice-name(${A}, 'A')", "jr:choice-name(${x}, '${x}')"),
    ],
)
def test_arguments_written_as_literals_are_checked_when_the_workbook_is_read(text: str, says: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match=re.escape(says)):
        parse_expression(text)


def test_a_dates_text_that_names_no_day_is_no_date() -> None:
    assert evaluate("date('2024-02-30')") is None
    assert evaluate("number('2024-13-01')") != evaluate("number('2024-13-01')")


# --------------------------------------------------------------------------- XLSForm


def test_select_multiple_accepts_odks_space_separated_codes_and_csvs_bars(
    make_compiled: MakeCompiled,
) -> None:
    compiled = make_compiled(
        [{"type": "text", "name": "ID"}, {"type": "select_multiple abc", "name": "M"}],
        [{"list_name": "abc", "name": code, "label": code} for code in "abc"],
    )
    assert compiled.validate({"ID": "x", "M": "c a"}).values["M"] == ["a", "c"]
    assert compiled.validate({"ID": "x", "M": "a|c"}).values["M"] == ["a", "c"]


def test_or_other_adds_the_code_other_and_a_text_field_asked_when_it_is_chosen(
    make_compiled: MakeCompiled,
) -> None:
    compiled = make_compiled(
        [{"type": "select_one sex or specify other", "name": "SEX"}],
        [{"list name": "sex", "name": "F", "label": "Female"}],
    )
    definition = compiled.definition
    assert definition.codelist("sex").codes == ("F", "other")
    assert definition.field("SEX_other").relevant == "selected(${SEX}, 'other')"
    dropped = compiled.validate({"SEX": "F", "SEX_other": "x"})
    assert "SEX_other" not in dropped.values and [w.rule for w in dropped.warnings] == ["not_relevant"]


def test_a_workbook_saved_as_xls_is_refused_with_how_to_save_it_as_xlsx() -> None:
    from hdhub.registrations.engine.xlsform import read_workbook

    with pytest.raises(WorkbookError) as caught:
        read_workbook(bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 504)
    assert "save it as .xlsx" in str(caught.value)
