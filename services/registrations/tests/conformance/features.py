"""What the conformance report says about XLSForm and ODK's functions, as cases that run.

:data:`FEATURES` are XLSForm features, each a workbook and what hdhub must make of it;
:data:`PYXFORM_EXAMPLES` pyxform's own example forms (tests/fixtures/pyxform). The tests
(test_xlsform_features.py) check every case; ``tools/conformance_report.py`` runs the same
cases and writes the tables of docs/dcd-format.md from what happened, so the report
cannot say what the code does not do.

:data:`ODK_FUNCTIONS` lists the functions of ODK's XForms specification; each is
supported (hdhub's parser knows it) or refused with the reason the parser gives, and is
checked either against Enketo's evaluator (the differential test draws it) or by the
unit test :data:`UNIT_TESTED` names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.engine.validation import compile_dcd
from hdhub.registrations.engine.xlsform import DEFAULT_REPEAT_MAX, Problem, WorkbookError, read_workbook
from services.registrations.tests.conformance.workbooks import hd_ready, workbook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pyxform"


@dataclass(frozen=True, slots=True)
class Refused:
    """Where the first problem must be, and a fragment of its message."""

    sheet: str
    row: int | None
    column: str | None
    says: str


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    build: Callable[[], bytes]
    expect: Refused | None = None  # None: the workbook imports
    #: What must hold of the imported definition (supported features only).
    check: Callable[[DcdDefinition], bool] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    definition: DcdDefinition | None
    problems: tuple[Problem, ...]


def run(feature: Feature) -> Outcome:
    try:
        return Outcome(read_workbook(feature.build()), ())
    except WorkbookError as error:
        return Outcome(None, tuple(error.problems))


def _yes_no() -> list[dict[str, object]]:
    return [{"list_name": "yes_no", "name": code, "label": code} for code in ("yes", "no")]


def _repeat(size: dict[str, object] | None = None, inner: list[dict[str, object]] | None = None) -> bytes:
    return workbook(
        [
            {"type": "integer", "name": "N"},
            {"type": "begin_repeat", "name": "visit", **(size or {})},
            {"type": "date", "name": "DT_VISIT"},
            *(inner or []),
            {"type": "end_repeat"},
        ]
    )


def _flat_names(name: str, count: int) -> Callable[[DcdDefinition], bool]:
    return lambda d: d.field(name).flat_names == tuple(f"{name}_{i}" for i in range(1, count + 1))


def _validates(record: Mapping[str, object], values: Mapping[str, object]) -> Callable[[DcdDefinition], bool]:
    def check(definition: DcdDefinition) -> bool:
        result = compile_dcd(definition).validate(record)
        return not result.errors and all(result.values.get(k) == v for k, v in values.items())

    return check


FEATURES: tuple[Feature, ...] = (
    Feature(
        "`list name` header on the choices sheet (pyxform's older spelling)",
        lambda: workbook(
            [{"type": "select_one yes_no", "name": "A"}],
            [{"list name": "yes_no", "name": "yes", "label": "Yes"}],
        ),
    ),
    Feature(
        "pyxform's type spellings (`select one from yes_no`, `select all that apply`, `q int`, `add date prompt`, `dateTime`)",
        lambda: workbook(
            [
                {"type": "select one from yes_no", "name": "A"},
                {"type": "select all that apply yes_no", "name": "B"},
                {"type": "q int", "name": "C"},
                {"type": "add date prompt", "name": "D"},
                {"type": "dateTime", "name": "E"},
            ],
            _yes_no(),
        ),
        check=lambda d: (
            [f.type.value for f in d.fields]
            == ["select_one", "select_multiple", "integer", "date", "datetime"]
        ),
    ),
    Feature(
        "sheet names in capitals (`SURVEY`, `CHOICES`), column headers in any case",
        lambda: workbook(
            [{"TYPE": "select_one yes_no", "NAME": "A", "LABEL::English (en)": "A?"}],
            _yes_no(),
            sheet_names={"survey": "SURVEY", "choices": "CHOICES"},
        ),
    ),
    Feature(
        "`label:English`, `jr:constraintMsg`, `relevance`, `readonly` and pyxform's other column aliases",
        lambda: workbook(
            [
                {"type": "integer", "name": "A", "label:English": "A", "jr:constraintMsg": "at most 9"},
                {"type": "integer", "name": "B", "relevance": "${A} > 1", "constraint": ". < 9"},
            ]
        ),
    ),
    Feature(
        "`select_one LIST or_other` (and `or specify other`): a code `other` and a text field `NAME_other`",
        lambda: workbook([{"type": "select_one yes_no or_other", "name": "A"}], _yes_no()),
        check=_validates({"A": "other", "A_other": "maybe"}, {"A": "other", "A_other": "maybe"}),
    ),
    Feature(
        "`phone number` (pyxform: text of digits only)",
        lambda: workbook([{"type": "phone number", "name": "A"}]),
        check=lambda d: d.field("A").constraint is not None,
    ),
    Feature(
        f"a repeat without `hd::repeat_max`: flattened to {DEFAULT_REPEAT_MAX} instances",
        lambda: _repeat(),
        check=_flat_names("DT_VISIT", DEFAULT_REPEAT_MAX),
    ),
    Feature(
        "a repeat with `repeat_count` an expression and `hd::repeat_max`",
        lambda: _repeat({"repeat_count": "${N}", "hd::repeat_max": 3}),
        check=_flat_names("DT_VISIT", 3),
    ),
    Feature(
        "`count()`, `sum()`, `max()` and `indexed-repeat()` over a repeat, from outside it",
        lambda: workbook(
            [
                {"type": "text", "name": "ID"},
                {"type": "begin_repeat", "name": "dose"},
                {"type": "integer", "name": "MG"},
                {"type": "end_repeat"},
                {"type": "calculate", "name": "DOSES", "calculation": "count(${dose})"},
                {"type": "calculate", "name": "TOTAL", "calculation": "sum(${MG})"},
                {"type": "calculate", "name": "MOST", "calculation": "max(${MG})"},
                {"type": "calculate", "name": "SECOND", "calculation": "indexed-repeat(${MG}, ${dose}, 2)"},
            ]
        ),
        check=_validates(
            {"ID": "x", "MG_1": 10, "MG_2": 25}, {"DOSES": 2, "TOTAL": 35, "MOST": 25, "SECOND": 25}
        ),
    ),
    Feature(
        "a repeated field read from outside its repeat, other than in a function over the repeat",
        lambda: workbook(
            [
                {"type": "begin_repeat", "name": "dose"},
                {"type": "integer", "name": "MG"},
                {"type": "end_repeat"},
                {"type": "integer", "name": "N", "constraint": ". > ${MG}"},
            ],
            business_key="N",
        ),
        expect=Refused("survey", 5, "constraint", "use it in count(), sum()"),
    ),
    Feature(
        "a repeat inside a repeat",
        lambda: _repeat(
            inner=[
                {"type": "begin_repeat", "name": "drug"},
                {"type": "text", "name": "X"},
                {"type": "end_repeat"},
            ]
        ),
        expect=Refused("survey", 5, "type", "instance number"),
    ),
    Feature(
        "a calculation on a typed question without `read_only`: computed, as a read_only one",
        lambda: workbook(
            [{"type": "text", "name": "A"}, {"type": "integer", "name": "B", "calculation": "6 * 7"}]
        ),
        check=_validates({"A": "x", "B": 1}, {"B": 42}),
    ),
    Feature(
        "a plain-text default with parentheses (`N/A (unknown)`): a literal, not an expression",
        lambda: workbook(
            [{"type": "text", "name": "A"}, {"type": "text", "name": "B", "default": "N/A (unknown)"}]
        ),
        check=_validates({"A": "x"}, {"B": "N/A (unknown)"}),
    ),
    Feature(
        "`jr:choice-name(${x}, '${x}')`: the label of the chosen code",
        lambda: workbook(
            [
                {"type": "select_one yes_no", "name": "A"},
                {"type": "calculate", "name": "B", "calculation": "jr:choice-name(${A}, '${A}')"},
            ],
            [{"list_name": "yes_no", "name": "yes", "label": "Yes, certainly"}],
        ),
        check=_validates({"A": "yes"}, {"B": "Yes, certainly"}),
    ),
    Feature(
        "a select_multiple answered as ODK writes it, codes space-separated (`a c`)",
        lambda: workbook(
            [{"type": "select_multiple abc", "name": "A"}],
            [{"list_name": "abc", "name": c, "label": c} for c in "abc"],
        ),
        check=_validates({"A": "a c"}, {"A": ["a", "c"]}),
    ),
    Feature(
        "a select_multiple list with a code holding a space",
        lambda: workbook(
            [{"type": "text", "name": "X"}, {"type": "select_multiple abc", "name": "A"}],
            [{"list_name": "abc", "name": "a b", "label": "A"}],
        ),
        expect=Refused("survey", 3, "type", "hold no space"),
    ),
    Feature(
        "an `.xls` workbook (Excel 97-2003)",
        lambda: (FIXTURES / "yes_or_no_question.xls").read_bytes(),
        expect=Refused("workbook", None, None, "save it as .xlsx"),
    ),
    Feature(
        "geographic types (`geopoint`, `geotrace`, `geoshape`)",
        lambda: workbook([{"type": "text", "name": "A"}, {"type": "geopoint", "name": "B"}]),
        expect=Refused("survey", 3, "type", "no geographic fields"),
    ),
    Feature(
        "media types (`image`, `audio`, `video`, `file`, `barcode`)",
        lambda: workbook([{"type": "text", "name": "A"}, {"type": "image", "name": "B"}]),
        expect=Refused("survey", 3, "type", "no files or media"),
    ),
    Feature(
        "metadata types (`start`, `end`, `today`, `deviceid`, `username`, `audit`)",
        lambda: workbook([{"type": "text", "name": "A"}, {"type": "start", "name": "B"}]),
        expect=Refused("survey", 3, "type", "records who sent a registration and when"),
    ),
    Feature(
        "choices from a file (`select_one_from_file`, `select_one_external`) and `pulldata()`",
        lambda: workbook(
            [{"type": "text", "name": "A"}, {"type": "select_one_from_file fruits.csv", "name": "B"}]
        ),
        expect=Refused("survey", 3, "type", "no external files"),
    ),
    Feature(
        "media columns (`image`, `audio`, `video`, `media::image`)",
        lambda: workbook([{"type": "text", "name": "A", "media::image": "a.png"}]),
        expect=Refused("survey", 2, "media::image", "no images, audio or video"),
    ),
    Feature(
        "settings hdhub does not apply (`instance_name`, `style`, `allow_choice_duplicates`)",
        lambda: workbook(
            [{"type": "text", "name": "A"}],
            settings={"form_title": "X", "version": "1.0.0", "instance_name": "concat(${A}, '')"},
        ),
        expect=Refused("settings", 2, "instance_name", "does not read"),
    ),
)

#: pyxform's example forms (tests/example_xls), given the hd sheet and a semver version.
PYXFORM_EXAMPLES: tuple[Feature, ...] = (
    Feature("text_and_integer.xlsx", lambda: hd_ready((FIXTURES / "text_and_integer.xlsx").read_bytes())),
    Feature("yes_or_no_question.xlsx", lambda: hd_ready((FIXTURES / "yes_or_no_question.xlsx").read_bytes())),
    Feature("specify_other.xlsx", lambda: hd_ready((FIXTURES / "specify_other.xlsx").read_bytes())),
    Feature("group.xlsx", lambda: hd_ready((FIXTURES / "group.xlsx").read_bytes())),
    Feature("field-list.xlsx", lambda: hd_ready((FIXTURES / "field-list.xlsx").read_bytes())),
    Feature(
        "or_other.xlsx",
        lambda: hd_ready((FIXTURES / "or_other.xlsx").read_bytes()),
        expect=Refused("survey", 3, "choice_filter", "'yes' is not a column of list 'colors'"),
    ),
    Feature(
        "choice_filter_test.xlsx",
        lambda: hd_ready((FIXTURES / "choice_filter_test.xlsx").read_bytes()),
        expect=Refused("settings", 2, "allow_choice_duplicates", "does not read"),
    ),
    Feature(
        "case_insensitivity.xlsx",
        lambda: hd_ready((FIXTURES / "case_insensitivity.xlsx").read_bytes()),
        expect=Refused("survey", 3, "TYPE", "no external files"),
    ),
    Feature(
        "pull_data.xlsx",
        lambda: hd_ready((FIXTURES / "pull_data.xlsx").read_bytes()),
        expect=Refused("survey", 2, "calculation", "pulldata() is not supported"),
    ),
    Feature(
        "loop.xlsx",
        lambda: hd_ready((FIXTURES / "loop.xlsx").read_bytes()),
        expect=Refused("survey", 3, "type", "loop over a list"),
    ),
    Feature(
        "include.xlsx",
        lambda: hd_ready((FIXTURES / "include.xlsx").read_bytes()),
        expect=Refused("survey", 3, "type", "include of another workbook"),
    ),
    Feature(
        "yes_or_no_question.xls",
        lambda: (FIXTURES / "yes_or_no_question.xls").read_bytes(),
        expect=Refused("workbook", None, None, "save it as .xlsx"),
    ),
)

# --------------------------------------------------------------------------- functions

#: The functions of ODK's XForms specification (https://getodk.github.io/xforms-spec/),
#: pyxform's pulldata(), and hdhub's own alias decimal-date.
ODK_FUNCTIONS: tuple[str, ...] = (
    "if", "coalesce", "once", "position", "current", "instance", "last",
    "selected", "selected-at", "count-selected", "jr:choice-name", "jr:itext", "indexed-repeat",
    "regex", "contains", "starts-with", "ends-with", "substr", "substring", "substring-before",
    "substring-after", "translate", "string-length", "normalize-space", "concat", "join",
    "boolean-from-string", "string", "digest", "base64-decode", "extract-signed", "uuid",
    "int", "round", "floor", "ceiling", "pow", "log", "log10", "abs", "sin", "cos", "tan",
    "asin", "acos", "atan", "atan2", "sqrt", "exp", "exp10", "pi", "number", "random",
    "today", "now", "date", "date-time", "decimal-date-time", "decimal-date", "decimal-time",
    "format-date", "format-date-time",
    "area", "distance", "geofence",
    "randomize", "boolean", "not", "true", "false", "checklist", "weighted-checklist",
    "count", "count-non-empty", "sum", "max", "min", "pulldata",
)  # fmt: skip

#: Functions the differential test cannot compare, and the unit test that checks each
#: (test_odk_functions.py), with why the reference cannot.
UNIT_TESTED: Mapping[str, tuple[str, str]] = {
    "uuid": ("test_uuid_gives_a_random_version_4_uuid_or_a_token_of_the_length_asked", "random"),
    "jr:choice-name": (
        "test_jr_choice_name_gives_the_label_in_the_dcds_default_language",
        "not in the reference",
    ),
    "decimal-date": ("test_decimal_date_is_decimal_date_time", "hdhub's own alias, not in the reference"),
}
