"""The columnar engine gives exactly what the row engine gives, over any DCD and rows.

Hypothesis draws a DCD (a field of every type, a group, a counted repeat, calculations,
defaults, a choice filter; rules from templates the kernels run and random expression
trees they mostly leave to the row engine's closures) and a batch of rows written as
uploads write them (CSV dates, codes joined by |, typos, blanks, a STATUS, an unknown
column). The row engine over the rows ``decode_rows`` makes of the batch is the
reference: values, errors, warnings, rule names, messages in en/fr/nl/de, STATUS.
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hdhub.registrations.batches.arrow import rows_of
from hdhub.registrations.engine.columnar import BatchValidation, columnar
from hdhub.registrations.engine.dcd import (
    Choice,
    Codelist,
    DcdDefinition,
    Field,
    FieldType,
    Group,
    Repeat,
    SemVer,
    frozen_mapping,
)
from hdhub.registrations.engine.expressions import ExpressionError, to_source
from hdhub.registrations.engine.validation import CompiledDcd, DcdCompileError, Validation, compile_dcd
from services.registrations.tests.conformance.corpus import ANY, DATE, NUM, TRICKY_TEXTS, expression

TODAY = datetime.date(2026, 6, 1)
CODES = ("a", "b", "c", "0")

# Rules the kernels run (and a few they do not), per field; None: no rule.
RELEVANT = (
    None,
    "${s1} = 'a'",
    "${s1} != 'b' and ${n1} > 3",
    "selected(${m1}, 'b')",
    "${d1} <= today()",
    "${t1} != ''",
    "${x1} >= 2.5 or ${n2} = 1",
    "${n1} = ${n2}",
    "${t1} = '12'",
    "not(${d1} = ${d2})",
    "regex(${t1}, '^[ab]')",
)
CONSTRAINTS: dict[str, tuple[str | None, ...]] = {
    "n1": (None, ". >= ${n2}", ". > 0 and . <= 50", ". != 3", "-. < 2", ". = '4'"),
    "n2": (None, ". <= 20", ". * 2 < ${x1}"),
    "x1": (None, ". >= 0.5 and . <= 400", ". div 0 > 1", ". - ${n1} != 0"),
    "t1": (None, "string-length(.) <= 3", "regex(., '^[ab1]+$')", "string-length() > 1", "contains(., 'a')"),
    "t2": (None, ". != '0'", "string-length(.) < 5"),
    "d1": (None, ". <= today() and . >= ${d2}", "(today() - .) div 365.25 <= 60", ". = '2024-01-02'"),
    "d2": (None, ". >= '2000-01-01'", "${d1} - . <= 365", ". < today()"),
    "tm1": (None, ". >= '08:00'"),
    "dt1": (None, ". <= now()"),
    "s1": (None, ". != '0'", "selected(., 'a') or ${n1} > 2"),
    "m1": (None, "count-selected(.) < 3", "not(selected(., 'a') and selected(., 'c'))", "selected(., '')"),
    "rn": (None, ". >= 0", ". <= ${n1}"),
    "rt": (None, "string-length(.) <= 4"),
}
CALCULATIONS = (
    "${d1} - ${d2}",
    "int((${d1} - ${d2}) div 365.25)",
    "round(${x1} div 3, 1)",
    "round(${x1} * -1, 0)",
    "round(${n1} div 8, 2)",
    "if(${s1} = 'a', 'yes', 'no')",
    "${n1} * 2",
    "concat(${t1}, 'x')",
    "${t1}",
    "${n1} > 2",
    "${x1} div ${n2}",
    "sum(${rn})",
    "count(${rep})",
)
TYPES = {
    "n1": "integer",
    "n2": "integer",
    "x1": "decimal",
    "t1": "text",
    "t2": "text",
    "d1": "date",
    "d2": "date",
    "dt1": "datetime",
    "tm1": "time",
    "s1": "select_one",
    "m1": "select_multiple",
}
REPEAT_TYPES = {"rn": "integer", "rt": "text"}
KIND = {"integer": NUM, "decimal": NUM, "date": DATE}


def _rule(
    draw: st.DrawFn, rng: random.Random, templates: Sequence[str | None], kind: str, at: str
) -> str | None:
    """A template most of the time, a random tree (the conformance corpus's) otherwise."""
    if draw(st.integers(0, 9)) < 8:
        return draw(st.sampled_from(templates))
    return to_source(expression(rng, kind, at, depth=2))


@st.composite
def definitions(draw: st.DrawFn) -> DcdDefinition:
    rng = draw(st.randoms(use_true_random=False))

    def field(name: str, kind: str, *, repeat: str | None = None, group: tuple[str, ...] = ()) -> Field:
        at = f"{name}_1" if repeat else name
        required = draw(st.sampled_from([None, "true()", "true()", "${n1} > 1", "${s1} = 'a'"]))
        messages = (
            frozen_mapping({"en": f"{name} please", "fr": f"{name} svp"}) if draw(st.booleans()) else None
        )
        default = None
        if name == "s1":
            default = draw(st.sampled_from([None, "a"]))
        elif name == "d2":
            default = draw(st.sampled_from([None, "today()"]))
        choice_filter = None
        if name in ("s1", "m1"):
            choice_filter = draw(st.sampled_from([None, "flag = 'y'", "flag = ${t2}", "flag != ${s1}"]))
        number_format = None
        if kind == "decimal":
            from hdhub.registrations.engine.dcd import NumberFormat

            number_format = draw(st.sampled_from([None, NumberFormat(3, 1), NumberFormat(2, 2)]))
        if kind == "integer":
            from hdhub.registrations.engine.dcd import NumberFormat

            number_format = draw(st.sampled_from([None, NumberFormat(2, 0)]))
        base = kind.split()[0]
        return Field(
            name=name,
            type=FieldType(base),
            technical_name=name,
            labels=frozen_mapping({"en": name}),
            list_name="abc" if base.startswith("select") else None,
            required=required,
            required_messages=messages or frozen_mapping(),
            constraint=_rule(draw, rng, CONSTRAINTS.get(name, (None,)), KIND.get(kind, ANY), at),
            constraint_messages=messages or frozen_mapping(),
            relevant=_rule(draw, rng, RELEVANT, ANY, at) if draw(st.booleans()) else None,
            default=default,
            choice_filter=choice_filter,
            number_format=number_format,
            format="ssin" if name == "t2" and draw(st.integers(0, 4)) == 0 else None,
            group_path=(*group, repeat) if repeat else group,
            repeat=repeat,
            repeat_max=3 if repeat else 0,
        )

    plain = [field(name, kind) for name, kind in TYPES.items() if name not in ("t2", "d2")]
    grouped = [field(name, TYPES[name], group=("grp",)) for name in ("t2", "d2")]
    group = Group(
        "grp", relevant=draw(st.sampled_from([None, "${n2} != 1", "${s1} = 'b'"])), children=tuple(grouped)
    )
    calculated = Field(
        name="c1",
        type=FieldType.CALCULATE,
        technical_name="c1",
        calculation=draw(st.sampled_from(CALCULATIONS)),
    )
    computed_integer = Field(
        name="c2",
        type=FieldType.INTEGER,
        technical_name="c2",
        read_only=True,
        calculation=draw(st.sampled_from(["${n1} + ${n2}", "${d1} - ${d2}", "${x1} * 2"])),
    )
    repeated = tuple(field(name, kind, repeat="rep") for name, kind in REPEAT_TYPES.items())
    repeat = Repeat(
        "rep",
        3,
        repeat_count=draw(st.sampled_from([None, "${n1}", "${n2} - 1", "2"])),
        relevant=draw(st.sampled_from([None, None, "${s1} != 'c'"])),
        children=repeated,
    )
    flags = draw(st.lists(st.sampled_from(["y", "n", ""]), min_size=len(CODES), max_size=len(CODES)))
    codelist = Codelist(
        "abc",
        tuple(
            Choice(code, frozen_mapping({"en": code.upper()}), frozen_mapping({"flag": flag}))
            for code, flag in zip(CODES, flags, strict=True)
        ),
    )
    return DcdDefinition(
        project_code="HDBP0999",
        project_abbreviation="COL",
        dcd_code="COLUMNAR",
        dcd_number=999,
        version=SemVer(1, 0, 0),
        survey=(*plain, group, calculated, computed_integer, repeat),
        codelists={"abc": codelist},
        default_language="en",
        languages=("en", "fr", "nl", "de"),
    )


_DATES = st.dates(datetime.date(1990, 1, 1), datetime.date(2030, 12, 31))
_CELLS: dict[str, st.SearchStrategy[str | None]] = {
    "integer": st.one_of(
        st.integers(-5, 60).map(str),
        st.sampled_from(["007", "1.0", "x", " 3", "123", "99999999999999999999"]),
    ),
    "decimal": st.one_of(
        st.decimals(0, 500, places=2).map(str),
        st.sampled_from(["0.5", "0", "2.50", "1,5", "-0.0", ".5", "12.", "001.2", "1e3"]),
    ),
    "text": st.one_of(st.sampled_from(TRICKY_TEXTS), st.text(alphabet="ab1 -", max_size=5)),
    "date": st.one_of(
        _DATES.map(lambda d: f"{d:%d/%m/%Y}"),
        _DATES.map(datetime.date.isoformat),
        st.sampled_from(
            ["31/02/2024", "1/2/2024", "2024-1-2", "0000-01-01", "29/02/2023", " 01/02/2024", "x"]
        ),
    ),
    "time": st.sampled_from(["08:30", "23:59", "7:05", "24:00", "12:60", "08:30:00", "x"]),
    "datetime": st.sampled_from(["2024-01-02T10:00", "02/01/2024 10:00", "2024-02-30T10:00", "x"]),
    "select_one": st.sampled_from([*CODES, " a", "d", "A"]),
    "select_multiple": st.one_of(
        st.lists(st.sampled_from(CODES), min_size=1, max_size=4).map("|".join),
        st.sampled_from(["a b", "a||b", "d", "b|a", "a|a", " c "]),
    ),
    "ssin": st.sampled_from(
        ["62112308720", "62.11.23-087.20", "62112308721", "00000000097", "85073003328", "x"]
    ),
}


@st.composite
def batches(draw: st.DrawFn, definition: DcdDefinition) -> pa.Table:
    size = draw(st.integers(1, 10))
    columns: dict[str, list[str | None]] = {}
    names = [n for n in definition.flat_field_names() if n not in ("c1",)]
    names = draw(st.permutations(names))
    for name in names[: draw(st.integers(len(names) // 2, len(names)))]:
        field, _ = definition.resolve_flat_name(name)
        kind = "ssin" if field.format == "ssin" else field.type.value
        cell = st.one_of(st.none(), st.just(""), _CELLS[kind])
        # Few distinct values per column, as in a real file: repeated values are the common case.
        pool = draw(st.lists(cell, min_size=1, max_size=4))
        columns[name] = [draw(st.sampled_from(pool)) for _ in range(size)]
    if draw(st.booleans()):
        columns["STATUS"] = [
            draw(st.sampled_from([None, "", "draft", "Submit ", "bogus", " "])) for _ in range(size)
        ]
    if draw(st.booleans()):
        columns["zz_unknown"] = [draw(st.sampled_from([None, "", "1"])) for _ in range(size)]
    if draw(st.booleans()):
        columns["TX_AUTHOR"] = [draw(st.sampled_from([None, "me"])) for _ in range(size)]
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def _compiled(definition: DcdDefinition) -> CompiledDcd:
    try:
        return compile_dcd(definition)
    except (DcdCompileError, ExpressionError):
        assume(False)
        raise


def assert_same(compiled: CompiledDcd, table: pa.Table, lang: str) -> BatchValidation:
    expected = compiled.validate_many(rows_of(table), lang=lang, today=TODAY)
    got = columnar(compiled).validate_table(table, lang=lang, today=TODAY)
    results = got.results()
    assert [_outcome(r) for r in results] == [_outcome(r) for r in expected]
    assert got.errors == [(i, e) for i, r in enumerate(expected) for e in r.errors]
    assert got.warnings == [(i, w) for i, r in enumerate(expected) for w in r.warnings]
    assert got.valid_rows == sum(1 for r in expected if r.ok)
    return got


def _outcome(result: Validation) -> tuple[Any, ...]:
    return (
        result.values,
        [e.to_json() for e in result.errors],
        [w.to_json() for w in result.warnings],
        result.submit,
    )


@pytest.mark.timeout(600)  # 5-10 s alone; a loaded machine's share of two cores is far less
@settings(max_examples=150, suppress_health_check=[HealthCheck.data_too_large])
@given(data=st.data(), lang=st.sampled_from(["en", "fr", "nl", "de"]))
def test_columnar_engine_gives_the_row_engines_values_errors_and_messages(
    data: st.DataObject, lang: str
) -> None:
    definition = data.draw(definitions())
    compiled = _compiled(definition)
    table = data.draw(batches(definition))
    assert_same(compiled, table, lang)


# --------------------------------------------------------------------------- each tier, pinned


def _definition(*fields: Field, codelists: dict[str, Codelist] | None = None) -> DcdDefinition:
    return DcdDefinition(
        project_code="HDBP0999",
        project_abbreviation="COL",
        dcd_code="COLUMNAR_PINNED",
        dcd_number=998,
        version=SemVer(1, 0, 0),
        survey=fields,
        codelists=codelists or {},
        languages=("en", "fr", "nl", "de"),
    )


def test_a_constant_false_relevance_keeps_the_default_out() -> None:
    # Found by the differential test in CI: int(0) of a constant was a pyarrow scalar, which
    # the columnar engine read as true, so the field applied and took its default.
    compiled = compile_dcd(_definition(Field("d", FieldType.DATE, "d", relevant="int(0)", default="today()")))
    got = assert_same(compiled, pa.table({"d": [None, "01/02/2024"]}), "en")
    assert [r.values for r in got.results()] == [{}, {}]
    assert [w.rule for _, w in got.warnings] == ["not_relevant"]


def test_rows_where_a_rule_raises_are_the_row_engines_own() -> None:
    # A pattern taken from the row: some do not compile, and the rule raises for those rows.
    compiled = compile_dcd(
        _definition(
            Field("p", FieldType.TEXT, "p"),
            Field("t", FieldType.TEXT, "t", constraint="regex(., ${p})"),
        )
    )
    table = pa.table({"p": ["^a", "[", "^b", None], "t": ["abc", "abc", "abc", "x"]})
    got = assert_same(compiled, table, "fr")
    assert set(got._fallback) == {1}
    assert [e.rule for _, e in got.errors] == ["constraint", "constraint"]


def test_a_backtracking_regex_runs_in_linear_time_in_the_columnar_engine_too() -> None:
    compiled = compile_dcd(
        _definition(
            Field("p", FieldType.TEXT, "p"),
            Field("t", FieldType.TEXT, "t", constraint="regex(., '(a+)+$')"),
            Field("u", FieldType.TEXT, "u", constraint="regex(., ${p})"),
        )
    )
    long = "a" * 5000 + "!"
    table = pa.table({"p": ["(a+)+$", "(a)\\1", None], "t": [long, "aaa", "aa!"], "u": [long, "aa", None]})
    started = time.perf_counter()
    got = assert_same(compiled, table, "en")  # the row engine's answers, both engines timed
    assert time.perf_counter() - started < 1.0  # a bound, not a benchmark
    assert [(i, e.field, e.rule) for i, e in got.errors] == [
        (0, "t", "constraint"),
        (0, "u", "constraint"),
        (1, "u", "constraint"),  # a pattern from the row with a backreference: could not be evaluated
        (2, "t", "constraint"),
    ]


def test_texts_that_read_as_dates_against_a_numeric_code_go_to_the_row_engine() -> None:
    compiled = compile_dcd(
        _definition(
            Field("t", FieldType.TEXT, "t"),
            Field("n", FieldType.INTEGER, "n", relevant="${t} = '19724'"),
        )
    )
    table = pa.table({"t": ["2024-01-02", "19724", "abc", None], "n": ["1", "2", "3", "4"]})
    got = assert_same(compiled, table, "en")
    assert set(got._fallback) == {0}
    assert [w.rule for _, w in got.warnings] == ["not_relevant", "not_relevant"]


def test_rules_the_kernels_do_not_run_are_the_row_engines_closures() -> None:
    compiled = compile_dcd(
        _definition(
            Field("t", FieldType.TEXT, "t", constraint="concat(., 'x') = 'abx'"),
            Field("d", FieldType.DATE, "d", constraint="format-date(., '%Y') = '2024'"),
        )
    )
    table = pa.table({"t": ["ab", "b", "ab"], "d": ["01/02/2024", "01/02/2023", None]})
    assert_same(compiled, table, "nl")
    engine = columnar(compiled)
    assert engine.closure_rules == 2 and engine.kernel_rules == 0


def test_values_of_other_shapes_are_parsed_by_the_row_engines_parsers() -> None:
    codes = Codelist("abc", tuple(Choice(c) for c in CODES))
    compiled = compile_dcd(
        _definition(
            Field("n", FieldType.INTEGER, "n", required="true()"),
            Field("x", FieldType.DECIMAL, "x"),
            Field("d", FieldType.DATE, "d"),
            Field("m", FieldType.SELECT_MULTIPLE, "m", list_name="abc"),
            Field("s", FieldType.TEXT, "s", format="ssin"),
            codelists={"abc": codes},
        )
    )
    table = pa.table(
        {
            "n": [" 12", "+3", "x", "9007199254740993", "7"],  # 2**53 + 1: int64, not a double
            "x": ["001.50", "-0", "1,5", ".5", "2"],
            "d": ["1/2/2024", "31/02/2024", "2024-02-29", " 01/03/2024", "x"],
            "m": ["b|a|b", "a b", "d", "c|a", "0"],
            "s": ["62.11.23-087.20", "62112308721", "6211230872", "62 11 23 087 20", "62112308720"],
        }
    )
    got = assert_same(compiled, table, "de")
    assert 3 in got._fallback  # an integer a double cannot hold exactly


def test_a_batch_of_other_column_types_is_validated_row_by_row() -> None:
    compiled = compile_dcd(_definition(Field("n", FieldType.INTEGER, "n", constraint=". > 2")))
    table = pa.table({"n": pa.array([1, 5], pa.int64())})
    assert_same(compiled, table, "en")


def _shipped_angio() -> tuple[CompiledDcd, dict[str, str]]:
    import importlib.util
    import sys
    from pathlib import Path

    from hdhub.registrations.engine.xlsform import read_workbook

    path = Path(__file__).resolve().parents[2] / "dcds" / "samples.py"
    spec = importlib.util.spec_from_file_location("hdhub_dcds_samples_columnar", path)
    assert spec is not None and spec.loader is not None
    samples = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = samples
    spec.loader.exec_module(samples)
    code = "ANGIO_HOSP_FFR_PCI"
    return compile_dcd(read_workbook(samples.workbook_path(code))), dict(samples.VALID[code])


@pytest.mark.parametrize("lang", ["en", "fr", "nl", "de"])
def test_shipped_angio_rows_validate_the_same_in_both_engines(lang: str) -> None:
    compiled, valid = _shipped_angio()
    variations: list[dict[str, str]] = [
        {},
        {"MS_HEIGHT": "tall", "DT_DISCH": "31/02/2025"},
        {"IDC_PAT": "", "TX_PAT_LAST_NAME": "Peeters"},
        {"CD_INDICATION": "stemi", "DT_SYMPT_ONSET": "08/09/2025 07:10"},
        {"CD_DISCH_STATUS": "dead", "CD_CAD_EXTENT": "0"},
        {"MS_NB_PCI": "2", "DT_PCI_2": "09/09/2025", "CD_VESSELS_1": "graft|lad"},
        {"MS_NB_FFR": "0", "CD_RISK_FACTORS": "none|diabetes", "MS_WEIGHT": "88.05"},
        {"DT_PAT_DOB": "23/11/2062", "CD_STENT_TYPE_1": "dcb", "STATUS": "draft"},
        {"CD_CABG": "yes", "MS_NB_CABG": "1", "DT_CABG_1": "10/09/2025", "CD_RIZIV_TREAT_PHYS": "2345"},
    ]
    rows = [{**valid, **change} for change in variations for _ in range(3)]
    names = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})
    got = assert_same(compiled, table, lang)
    assert got.errors and got.warnings
    assert not got._fallback


# --------------------------------------------------------------------------- columns parsed together

# Fields of one kind are parsed as one concatenated column; what differs between them (a
# code list, a number format) must still hold per column.
_LISTS = {
    "l1": ("a", "b", "c"),
    "l2": ("c", "b", "x", " d"),  # the same codes in another order, and a code with a space
    "l3": ("b",),
    "l4": (),
}
_GROUPED_CELLS = st.sampled_from(
    [
        None, "", "a", "b", "c", "x", "d", " d", "a|b", "b|a", "c|b", "b|c|x", "x|x", "a b", "b|",
        "1", "12", "123", "0", "007", "1.5", "12.25", "123.5", "0.125", "99.99", "1,5",
        "01/02/2024", "29/02/2024", "29/02/2023", "31/04/2024", "31/12/0001", "01/01/0000",
        "2024-02-29", "2023-02-29", "0001-01-01", "9999-12-31", "1/2/2024", "+1/02/2024",
        "\u0663", "\uff11\uff12", "1234567890123456", "123456789012345", "-0", " 7",
    ]
)  # fmt: skip


@st.composite
def grouped_definitions(draw: st.DrawFn) -> DcdDefinition:
    from hdhub.registrations.engine.dcd import NumberFormat

    formats = st.sampled_from([None, NumberFormat(1, 0), NumberFormat(2, 1), NumberFormat(3, 3)])
    fields = []
    for i in range(draw(st.integers(2, 6))):
        kind = draw(
            st.sampled_from(
                [
                    FieldType.SELECT_ONE,
                    FieldType.SELECT_MULTIPLE,
                    FieldType.INTEGER,
                    FieldType.DECIMAL,
                    FieldType.DATE,
                ]
            )
        )
        fields.append(
            Field(
                f"f{i}",
                kind,
                f"f{i}",
                list_name=draw(st.sampled_from(sorted(_LISTS))) if kind.value.startswith("select") else None,
                number_format=draw(formats) if kind in (FieldType.INTEGER, FieldType.DECIMAL) else None,
                required=draw(st.sampled_from([None, "true()"])),
            )
        )
    codelists = {name: Codelist(name, tuple(Choice(c) for c in codes)) for name, codes in _LISTS.items()}
    return _definition(*fields, codelists=codelists)


@settings(max_examples=150)
@given(data=st.data())
def test_columns_parsed_together_keep_their_own_code_lists_and_formats(data: st.DataObject) -> None:
    compiled = _compiled(data.draw(grouped_definitions()))
    size = data.draw(st.integers(1, 6))
    names = [f.name for f in compiled.definition.fields]
    table = pa.table(
        {name: pa.array([data.draw(_GROUPED_CELLS) for _ in range(size)], pa.string()) for name in names}
    )
    assert_same(compiled, table, data.draw(st.sampled_from(["en", "fr"])))


def test_a_column_named_twice_is_left_to_the_row_engine() -> None:
    # gRPC refuses such a batch (duplicate-column); the engine itself reads it as the
    # reference does, which refuses it too.
    compiled = compile_dcd(_definition(Field("n", FieldType.INTEGER, "n", constraint=". > 2")))
    batch = pa.RecordBatch.from_arrays([pa.array(["1", "5"]), pa.array(["7", "x"])], names=["n", "n"])
    with pytest.raises(KeyError):
        rows_of(pa.Table.from_batches([batch]))
    with pytest.raises(KeyError):
        columnar(compiled).validate_table(batch)


def test_a_multi_select_with_empty_cells_is_read_by_selected() -> None:
    # A null selection must hold no codes underneath: list_flatten and list_parent_indices
    # read those differently, and selected() uses both.
    codes = Codelist("abc", tuple(Choice(c) for c in CODES))
    compiled = compile_dcd(
        _definition(
            Field("m", FieldType.SELECT_MULTIPLE, "m", list_name="abc"),
            Field("k", FieldType.SELECT_MULTIPLE, "k", list_name="abc"),
            Field("t", FieldType.TEXT, "t", relevant="selected(${m}, 'b') or selected(${k}, 'c')"),
            codelists={"abc": codes},
        )
    )
    table = pa.table({"m": ["a|b", "", None, "b", ""], "k": ["", "c", "", None, "a|c"], "t": ["x"] * 5})
    got = assert_same(compiled, table, "en")
    assert [r for r, w in got.warnings] == [2]


def test_grpc_batches_are_validated_column_by_column_unless_set_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hdhub.registrations.settings import RegistrationsSettings

    monkeypatch.delenv("HDHUB_REGISTRATIONS_COLUMNAR_VALIDATION", raising=False)
    assert RegistrationsSettings().columnar_validation is True
    monkeypatch.setenv("HDHUB_REGISTRATIONS_COLUMNAR_VALIDATION", "false")
    assert RegistrationsSettings().columnar_validation is False
