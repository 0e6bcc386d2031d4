"""What the differential test feeds both engines: a form, its values and expressions.

The form (:data:`FIELDS`, :data:`REPEAT_FIELDS`) has a field of every type and a repeat;
hypothesis draws a record of values for it and expressions over it (trees of hdhub's AST,
see :func:`expressions`). Each side gets the same thing in its own words: hdhub the record
and ``${name}`` expressions, the reference an XForms instance document and XPath paths
(:func:`instance_document`, :func:`to_reference`).
"""

from __future__ import annotations

import datetime
import io
import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape

from hypothesis import strategies as st
from openpyxl import Workbook

from hdhub.registrations.engine.expressions import (
    Binary,
    Call,
    CurrentValue,
    FieldRef,
    Node,
    NumberLiteral,
    StringLiteral,
    Unary,
    to_source,
)

#: The fields outside the repeat, by XLSForm type.
FIELDS: Mapping[str, str] = {
    "n1": "integer",
    "n2": "integer",
    "x1": "decimal",
    "t1": "text",
    "t2": "text",
    "d1": "date",
    "d2": "date",
    "dt1": "datetime",
    "tm1": "time",
    "s1": "select_one abc",
    "m1": "select_multiple abc",
}
REPEAT = "rep"
REPEAT_FIELDS: Mapping[str, str] = {"rn": "integer", "rt": "text"}
REPEAT_MAX = 3
CODES = ("a", "b", "c")


def workbook() -> bytes:
    """The form as a DCD workbook."""
    survey: list[dict[str, object]] = [{"type": kind, "name": name} for name, kind in FIELDS.items()]
    survey.append({"type": "begin_repeat", "name": REPEAT, "hd::repeat_max": REPEAT_MAX})
    survey.extend({"type": kind, "name": name} for name, kind in REPEAT_FIELDS.items())
    survey.append({"type": "end_repeat", "name": REPEAT})
    sheets: dict[str, list[dict[str, object]]] = {
        "survey": survey,
        "choices": [{"list_name": "abc", "name": code, "label::en": code.upper()} for code in CODES],
        "settings": [{"form_title": "Conformance", "form_id": "XPATH", "version": "1.0.0"}],
        "hd": [
            {"key": "project_code", "value": "HDBP0999"},
            {"key": "project_abbreviation", "value": "XPATH"},
            {"key": "dcd_code", "value": "XPATH"},
            {"key": "dcd_number", "value": 999},
            {"key": "business_key", "value": "t1"},
        ],
    }
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        headers = list(dict.fromkeys(key for row in rows for key in row))
        sheet.append(headers)
        for row in rows:
            sheet.append([row.get(h) for h in headers])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --------------------------------------------------------------------------- values

#: Texts where XPath engines tend to part: numbers and dates written as text, spaces.
TRICKY_TEXTS = (
    "",
    " ",
    "a",
    "b",
    "a c",
    " a  b ",
    "a\tb",
    "a\u00a0b",
    "é",
    "x😀y",
    "1",
    "12",
    "1.5",
    "-0",
    ".5",
    " 7 ",
    "1e3",
    "+5",
    "0x10",
    "NaN",
    "Infinity",
    "true",
    "false",
    "2024-01-02",
    "2024-1-2",
    "1970-1-2",
    "2024-02-30",
    "2024-13-01",
    "2024-01-02T10:00:00",
    "2024-01-02T10:00:00Z",
    "2024-01-02T10:00:00.123+02:00",
    "2024-03-31T02:30:00+01:00",
    "10:30",
    "it's",
)

_integers = st.one_of(st.integers(-20, 20), st.sampled_from([0, 1, 100, 2025, 19723, -1, 123456789]))
_decimals = st.builds(
    lambda number, places: format(Decimal(number).quantize(Decimal(1).scaleb(-places)), "f"),
    st.decimals(min_value=-500, max_value=500, places=3, allow_nan=False, allow_infinity=False),
    st.integers(0, 3),
)
_texts = st.one_of(st.sampled_from(TRICKY_TEXTS[1:]), st.text(alphabet="ab c1-.:", min_size=1, max_size=6))
_dates = st.one_of(
    st.dates(datetime.date(1950, 1, 1), datetime.date(2050, 12, 31)),
    # the days Belgium changes to and from summer time, and their neighbours
    st.sampled_from(
        [datetime.date(2024, 3, 30), datetime.date(2024, 3, 31), datetime.date(2024, 10, 27)]
        + [datetime.date(1970, 1, 1), datetime.date(2000, 2, 29), datetime.date(1969, 12, 31)]
    ),
)
_datetimes = st.datetimes(datetime.datetime(1960, 1, 1), datetime.datetime(2045, 1, 1)).map(
    lambda d: d.replace(microsecond=0)
)
_times = st.times().map(lambda t: f"{t.hour:02d}:{t.minute:02d}")
_selections = st.lists(st.sampled_from(CODES), min_size=1, max_size=3, unique=True).map(
    lambda chosen: sorted(chosen, key=CODES.index)
)


_VALUES: Mapping[str, st.SearchStrategy[object]] = {
    kind: st.one_of(st.none(), strategy)
    for kind, strategy in {
        "integer": _integers,
        "decimal": _decimals,
        "text": _texts,
        "date": _dates.map(datetime.date.isoformat),
        "datetime": _datetimes.map(lambda d: d.isoformat(timespec="seconds")),
        "time": _times,
        "select_one": st.sampled_from(CODES),
        "select_multiple": _selections,
    }.items()
}


def _value(kind: str) -> st.SearchStrategy[object]:
    return _VALUES[kind.split()[0]]


@dataclass(frozen=True, slots=True)
class Record:
    """Canonical values by flat name (None: missing) and how many repeat instances there are."""

    values: Mapping[str, object]
    instances: int

    def as_record(self) -> dict[str, object]:
        return {name: value for name, value in self.values.items() if value is not None}


@st.composite
def records(draw: st.DrawFn) -> Record:
    values: dict[str, object] = {name: draw(_value(kind)) for name, kind in FIELDS.items()}
    instances = draw(st.integers(0, REPEAT_MAX))
    for i in range(1, REPEAT_MAX + 1):
        for name, kind in REPEAT_FIELDS.items():
            value = draw(_value(kind)) if i <= instances else None
            if i <= instances and name == "rn" and value is None:
                value = 0  # an instance is there when it holds a value
            values[f"{name}_{i}"] = value
    return Record(values, instances)


def _xml_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(value)
    return escape(str(value))


def instance_document(values: Mapping[str, object], instances: int) -> str:
    """Canonical values (a record as hdhub stores it) as the XForms instance an ODK client holds."""
    parts = ["<data>"]
    for name in FIELDS:
        parts.append(f"<{name}>{_xml_text(values.get(name))}</{name}>")
    for i in range(1, instances + 1):
        inner = "".join(f"<{n}>{_xml_text(values.get(f'{n}_{i}'))}</{n}>" for n in REPEAT_FIELDS)
        parts.append(f"<{REPEAT}>{inner}</{REPEAT}>")
    parts.append("</data>")
    return "".join(parts)


# --------------------------------------------------------------------------- expressions

ANY, NUM, STR, DATE, TIME, SELECTION = "any", "num", "str", "date", "time", "selection"
# Arguments that take a constant of their own world.
CODE, PATTERN, FORMAT, ALGO, ENCODING = "code", "pattern", "format", "algo", "encoding"
# Arguments over the repeat, from outside it.
REPEATED, REPEAT_ITSELF, INDEX = "repeated", "repeat", "index"

#: Every function the differential test draws, with the shapes of its arguments. Functions
#: whose value is random (uuid, random), that read the form's code lists (jr:choice-name)
#: or that the reference does not have are checked by unit tests instead.
SIGNATURES: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "not": ((ANY,),),
    "if": ((ANY, ANY, ANY),),
    "coalesce": ((ANY, ANY),),
    "concat": ((ANY, ANY), (ANY, ANY, ANY)),
    "selected": ((SELECTION, CODE),),
    "selected-at": ((SELECTION, NUM),),
    "count-selected": ((SELECTION,),),
    "string-length": ((STR,),),
    "substr": ((STR, NUM), (STR, NUM, NUM)),
    "substring": ((STR, NUM), (STR, NUM, NUM)),
    "substring-before": ((STR, STR),),
    "substring-after": ((STR, STR),),
    "translate": ((STR, STR, STR),),
    "contains": ((STR, STR),),
    "starts-with": ((STR, STR),),
    "ends-with": ((STR, STR),),
    "normalize-space": ((STR,),),
    "regex": ((STR, PATTERN),),
    "join": ((STR, REPEATED),),
    "date": ((DATE,),),
    "date-time": ((DATE,),),
    "decimal-date-time": ((DATE,),),
    "decimal-time": ((TIME,),),
    "format-date": ((DATE, FORMAT),),
    "format-date-time": ((DATE, FORMAT),),
    "today": ((),),
    "now": ((),),
    "int": ((NUM,),),
    "number": ((ANY,),),
    "string": ((ANY,),),
    "boolean": ((ANY,),),
    "boolean-from-string": ((ANY,),),
    "true": ((),),
    "false": ((),),
    "round": ((NUM,), (NUM, NUM)),
    "abs": ((NUM,),),
    "floor": ((NUM,),),
    "ceiling": ((NUM,),),
    "pow": ((NUM, NUM),),
    "sqrt": ((NUM,),),
    "log": ((NUM,),),
    "log10": ((NUM,),),
    "exp": ((NUM,),),
    "exp10": ((NUM,),),
    "sin": ((NUM,),),
    "cos": ((NUM,),),
    "tan": ((NUM,),),
    "asin": ((NUM,),),
    "acos": ((NUM,),),
    "atan": ((NUM,),),
    "atan2": ((NUM, NUM),),
    "pi": ((),),
    "min": ((NUM,), (NUM, NUM), (NUM, NUM, NUM), (REPEATED,)),
    "max": ((NUM,), (NUM, NUM), (NUM, NUM, NUM), (REPEATED,)),
    "sum": ((REPEATED,),),
    "count": ((REPEAT_ITSELF,), (REPEATED,)),
    "count-non-empty": ((REPEATED,),),
    "indexed-repeat": ((REPEATED, REPEAT_ITSELF, INDEX),),
    "checklist": ((NUM, NUM, ANY, ANY), (NUM, NUM, ANY, ANY, ANY)),
    "weighted-checklist": ((NUM, NUM, ANY, NUM, ANY, NUM),),
    "digest": ((STR, ALGO), (STR, ALGO, ENCODING)),
    "once": ((ANY,),),
}
_AGGREGATING = frozenset({"min", "max", "sum", "count", "count-non-empty", "indexed-repeat", "join"})

_CONSTANTS: Mapping[str, tuple[str, ...]] = {
    CODE: ("a", "b", "c", "", " a", "z", "a b"),
    PATTERN: ("^[0-9]+$", "a", "^a", "b$", "[a-c]+", "^$", "^.{2,3}$", "(a|b)c", ".", "\\s", "^-?[0-9]"),
    FORMAT: (
        "%Y-%m-%d",
        "%d/%m/%Y",
        "%e %b %Y",
        "%a",
        "%H:%M:%S",
        "%y%n%e%h",
        "%3",
        "%%",
        "%Y-%m-%dT%H:%M:%S.%3",
        "x",
        "%Q",
    ),
    ALGO: ("MD5", "SHA-1", "SHA-256", "SHA-384", "SHA-512", "sha-256", "MD4"),
    ENCODING: ("base64", "hex", "HEX", "bin"),
}
_NUMBERS = (0.0, 1.0, 2.0, 0.5, 1.5, 2.5, 3.0, 10.0, 100.0, 0.1, 1.005, 1e-7, 1e21, 19723.0)
_DATE_TEXTS = tuple(t for t in TRICKY_TEXTS if t[:1].isdigit())

_NUMERIC_FIELDS = ("n1", "n2", "x1")
_TEXT_FIELDS = ("t1", "t2", "s1", "m1")
_DATE_FIELDS = ("d1", "d2", "dt1")


@dataclass(frozen=True, slots=True)
class Case:
    """One draw: a record, the field whose rules the expressions are (``.``), the expressions."""

    record: Record
    at: str  # a flat name: n1, or rn_2 inside the repeat's second instance
    expressions: tuple[Node, ...]

    @property
    def instance(self) -> int | None:
        name, _, number = self.at.rpartition("_")
        return int(number) if name in REPEAT_FIELDS else None


_TEXT_ALPHABET = "ab c1-.:"


def _literal(rng: random.Random, kind: str) -> Node:
    if kind in (NUM, INDEX) or (kind == ANY and rng.random() < 0.5):
        return NumberLiteral(rng.choice(_NUMBERS) if rng.random() < 0.5 else float(rng.randint(0, 400)))
    if kind == DATE and rng.random() < 0.5:
        return StringLiteral(rng.choice(_DATE_TEXTS))
    if rng.random() < 0.7:
        return StringLiteral(rng.choice(TRICKY_TEXTS))
    return StringLiteral("".join(rng.choice(_TEXT_ALPHABET) for _ in range(rng.randint(1, 6))))


def _leaf(rng: random.Random, kind: str, at: str) -> Node:
    choice = rng.randrange(10)
    if choice < 4:
        return _literal(rng, kind)
    if choice == 4:
        return CurrentValue()
    if choice == 5 and kind in (ANY, DATE):
        return Call(rng.choice(("today", "now", "true", "false")), ())
    pool = {
        NUM: _NUMERIC_FIELDS,
        STR: _TEXT_FIELDS,
        DATE: _DATE_FIELDS,
        TIME: ("tm1", "t1"),
        SELECTION: ("m1", "s1", "t1"),
    }.get(kind, tuple(FIELDS))
    if _in_repeat(at) and rng.random() < 0.5:
        pool = tuple(REPEAT_FIELDS)
    return FieldRef(rng.choice(pool))


def _in_repeat(at: str) -> bool:
    return at.rpartition("_")[0] in REPEAT_FIELDS


_OPERATORS = ("or", "and", "=", "!=", "<", "<=", ">", ">=", "+", "-", "*", "div", "mod")


def expression(rng: random.Random, kind: str = ANY, at: str = "n1", depth: int = 3) -> Node:
    """A tree whose value is roughly of ``kind`` (any value may show up anywhere)."""
    if kind in _CONSTANTS:
        return StringLiteral(rng.choice(_CONSTANTS[kind]))
    if kind == REPEATED:
        return FieldRef(rng.choice(tuple(REPEAT_FIELDS)))
    if kind == REPEAT_ITSELF:
        return FieldRef(REPEAT)
    if kind == INDEX:
        return NumberLiteral(float(rng.randint(0, 4))) if rng.random() < 0.8 else FieldRef("n1")
    if depth <= 0 or rng.random() < 0.3:
        return _leaf(rng, kind, at)
    shape = rng.randrange(10)
    if shape < 3:
        operator = rng.choice(_OPERATORS)
        side = NUM if operator in ("+", "-", "*", "div", "mod") and kind == NUM else kind
        return Binary(operator, expression(rng, side, at, depth - 1), expression(rng, side, at, depth - 1))
    if shape == 3:
        return Unary("-", expression(rng, NUM, at, depth - 1))
    in_repeat = _in_repeat(at)
    name = rng.choice([n for n in SIGNATURES if not (in_repeat and n in _AGGREGATING)])
    shapes = SIGNATURES[name]
    if in_repeat:
        shapes = tuple(s for s in shapes if REPEATED not in s and REPEAT_ITSELF not in s) or shapes
    arguments = rng.choice(shapes)
    return Call(name, tuple(expression(rng, a, at, depth - 1) for a in arguments))


@st.composite
def cases(draw: st.DrawFn, size: int = 8) -> Case:
    """A record drawn by hypothesis, the field the rules belong to, and expressions over it
    grown from a random generator hypothesis seeds (trees drawn node by node through
    hypothesis cost a hundred times more, for no better trees)."""
    record = draw(records())
    places = list(FIELDS) + [f"{n}_{i}" for i in range(1, record.instances + 1) for n in REPEAT_FIELDS]
    at = draw(st.sampled_from(places))
    rng = draw(st.randoms(use_true_random=False))
    trees = [expression(rng, ANY, at) for _ in range(rng.randint(1, size))]
    return Case(record, at, tuple(trees))


# --------------------------------------------------------------------------- the reference's words


def context_path(at: str) -> str:
    name, _, number = at.rpartition("_")
    if name in REPEAT_FIELDS:
        return f"/data/{REPEAT}[{number}]/{name}"
    return f"/data/{at}"


def to_reference(node: Node, instance: int | None) -> str:
    """``node`` as the reference reads it: ``${name}`` becomes the instance path."""
    if isinstance(node, FieldRef):
        if node.name == REPEAT:
            return f"/data/{REPEAT}"
        if node.name in REPEAT_FIELDS:
            where = f"{REPEAT}[{instance}]" if instance is not None else REPEAT
            return f"/data/{where}/{node.name}"
        return f"/data/{node.name}"
    if isinstance(node, CurrentValue):
        return "."
    if isinstance(node, NumberLiteral | StringLiteral):
        return to_source(node)
    if isinstance(node, Unary):
        # The reference reads a '-' before '(' or a path as a broken number.
        return f"(-1 * {to_reference(node.operand, instance)})"
    if isinstance(node, Binary):
        return f"({to_reference(node.left, instance)} {node.operator} {to_reference(node.right, instance)})"
    assert isinstance(node, Call)
    if node.function == "indexed-repeat":
        field, _, index = node.arguments
        assert isinstance(field, FieldRef)
        return f"/data/{REPEAT}[position() = {to_reference(index, None)}]/{field.name}"
    return f"{node.function}(" + ", ".join(to_reference(a, instance) for a in node.arguments) + ")"
