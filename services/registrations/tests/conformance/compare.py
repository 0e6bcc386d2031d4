"""Comparing hdhub's values with the reference's, and naming where they part.

Two results agree when they are the same XPath value, or when a form would store the
same text for them (the reference's ``coalesce()`` gives text where hdhub keeps the number).
When a whole expression disagrees, :func:`root_causes` looks for the first place the two
part: a part of the tree that disagrees while every part under it agrees. :data:`RULES`
then names that place; each name is a row of the table of known differences in
docs/dcd-format.md, which says why hdhub differs there. A disagreement no rule names
fails the test.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from hdhub.registrations.engine.expressions import (
    Binary,
    Call,
    CurrentValue,
    ExpressionSyntaxError,
    FieldRef,
    Node,
    Unary,
    to_source,
    xpath_boolean,
    xpath_number,
    xpath_string,
)
from hdhub.registrations.engine.xpath import parse_temporal
from services.registrations.tests.conformance.corpus import REPEAT, REPEAT_FIELDS, to_reference
from services.registrations.tests.conformance.reference import ReferenceResult

DOC = Path(__file__).resolve().parents[4] / "docs" / "dcd-format.md"


# --------------------------------------------------------------------------- values


def js_number(x: float) -> str:
    """ECMAScript's Number::toString: how the reference writes a number as text."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    _, digits_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple))
    k = len(digits)
    n = k + int(exponent)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        body = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + body


def _is_number(value: object) -> bool:
    return value.__class__ in (int, float) or isinstance(value, Decimal)


def same_number(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)


def _reference_text(result: ReferenceResult) -> str:
    if result.kind == "number":
        return js_number(result.value)
    if result.kind == "boolean":
        return "true" if result.value else "false"
    if result.kind == "nodeset":
        return result.value[0] if result.value else ""
    return str(result.value)


def agree(mine: object, theirs: ReferenceResult) -> bool:
    """True when hdhub's value ``mine`` and the reference's result are the same."""
    if isinstance(mine, BaseException):
        return theirs.kind == "error"
    if theirs.kind == "error":
        return False
    if isinstance(mine, tuple):  # a node-set: the values of the repeat's instances
        texts = theirs.value if theirs.kind == "nodeset" else None
        return texts is not None and [xpath_string(v) for v in mine] == texts
    if theirs.kind == "number" and _is_number(mine):
        return same_number(float(mine), theirs.value)  # type: ignore[arg-type]
    if theirs.kind == "boolean" and isinstance(mine, bool):
        return mine is theirs.value
    if theirs.kind == "nodeset" and _is_number(mine):
        text = _reference_text(theirs)
        return same_number(float(mine), xpath_number(text))  # type: ignore[arg-type]
    return xpath_string(mine) == _reference_text(theirs)


# --------------------------------------------------------------------------- where they part


@dataclass(frozen=True, slots=True)
class Place:
    """A part of an expression and what each side gave for it and for its arguments."""

    node: Node
    mine: object
    theirs: ReferenceResult
    children: tuple[tuple[Node, object, ReferenceResult], ...]
    values: Mapping[str, object]  # the record's canonical values, by flat name


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.arguments
    return ()


def judged(node: Node) -> Iterator[Node]:
    """The parts of ``node`` that are compared on their own, children before parents: not
    the repeat's fields given to an aggregate (they mean the whole repeat only there)."""
    if isinstance(node, Call) and node.function in (
        "count",
        "sum",
        "min",
        "max",
        "count-non-empty",
        "join",
        "indexed-repeat",
    ):
        for argument in node.arguments:
            if not (isinstance(argument, FieldRef) and argument.name in (*REPEAT_FIELDS, REPEAT)):
                yield from judged(argument)
    else:
        for child in children(node):
            yield from judged(child)
    yield node


def root_causes(
    node: Node, results: Mapping[Node, tuple[object, ReferenceResult]], values: Mapping[str, object]
) -> list[Place]:
    """The parts that disagree while all their compared arguments agree."""
    places = []
    for part in judged(node):
        mine, theirs = results[part]
        if agree(mine, theirs):
            continue
        parts = tuple((c, *results[c]) for c in children(part) if c in results)
        if all(agree(m, t) for _, m, t in parts):
            places.append(Place(part, mine, theirs, parts, values))
    return places


# --------------------------------------------------------------------------- the known differences

Rule = Callable[[Place], bool]


def _function(place: Place, *names: str) -> bool:
    return isinstance(place.node, Call) and place.node.function in names


def _operator(place: Place, *operators: str) -> bool:
    return isinstance(place.node, Binary) and place.node.operator in operators


def _child_texts(place: Place) -> list[str]:
    return [xpath_string(m) for _, m, _ in place.children if not isinstance(m, BaseException)]


def _is_temporal(value: object) -> bool:
    return isinstance(value, datetime.date | datetime.time)


def _date_arithmetic(place: Place) -> bool:
    return (
        _operator(place, "+", "-")
        and isinstance(place.mine, datetime.date)
        and place.theirs.kind == "number"
        and same_number(xpath_number(place.mine), place.theirs.value)
    )


def _reads_field(place: Place) -> bool:
    return any(isinstance(c, FieldRef | CurrentValue) for c, _, _ in place.children)


def _number_text(place: Place) -> bool:
    """A number written as text: the reference switches to exponents (1e+21, 1e-7)."""
    numbers = [m for _, m, _ in place.children if _is_number(m)]
    numbers += [t.value for _, _, t in place.children if t.kind == "number"]
    return any(
        math.isfinite(float(n)) and n != 0 and not 1e-6 <= abs(float(n)) < 1e21
        for n in numbers  # type: ignore[arg-type]
    )


def _datetime_text(place: Place) -> bool:
    return isinstance(place.mine, datetime.datetime) and place.theirs.kind in ("date", "string")


_BOOLEAN_CONTEXTS = ("and", "or", "=", "!=")


def _field_as_boolean(place: Place) -> bool:
    """A field where a boolean is wanted: hdhub (as JavaRosa) takes its value's truth, the
    reference XPath's node-set rule (true when the element exists, even empty or 0)."""
    wants_boolean = _operator(place, *_BOOLEAN_CONTEXTS) or _function(
        place, "not", "boolean", "if", "checklist", "weighted-checklist"
    )
    return wants_boolean and any(
        t.kind == "nodeset" and t.value and not xpath_boolean(m) for _, m, t in place.children
    )


_LITERAL_CHECKS = ("does not know", "digest() takes", "digest() encodes", "invalid regular expression")


def _checked_at_import(place: Place) -> bool:
    """A literal argument a function does not know (a format-date escape, a regex, a digest
    algorithm): hdhub refuses the whole expression at import, the reference fails only when
    it runs that part (and not at all when a lazy and/or skips it)."""
    mine = place.mine
    return isinstance(mine, ExpressionSyntaxError) and any(check in mine.message for check in _LITERAL_CHECKS)


_DATE_LIKE = re.compile(r"\s*[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}")


def _impossible_date(place: Place) -> bool:
    """A text that starts like a date but names no day (2024-02-30, 2024-13-01), or a value
    that is no date given to a date function: hdhub reads no date, the reference rolls the
    day over or writes 'Invalid Date'."""
    if "Invalid Date" in str(place.theirs.value):
        return True
    texts = [_reference_text(t) for _, _, t in place.children if t.kind in ("nodeset", "string")]
    return any(_DATE_LIKE.match(t) and parse_temporal(t.strip()) is None for t in texts)


def _keeps_type(place: Place) -> bool:
    """coalesce() and once() keep their value's type in hdhub; the reference makes it text
    (so 'NaN' and 'false' are true, 'true' is no number)."""
    return any(
        isinstance(c, Call)
        and c.function in ("coalesce", "once")
        and not isinstance(m, str)
        and t.kind == "string"
        for c, m, t in place.children
    )


def _typed_fields(place: Place) -> bool:
    """A field hdhub reads as its type, as JavaRosa does, where that shows: a decimal field's
    text loses its trailing zeros ('0.00' is 0), a number field given to decimal-date-time()
    or boolean-from-string() is a number, once() gives the field's own typed value back. The
    reference reads every field as its text."""
    if _function(place, "once") and _is_number(place.mine) and place.theirs.kind == "string":
        return same_number(float(place.mine), xpath_number(place.theirs.value))  # type: ignore[arg-type]
    typed = [
        (m, t)
        for c, m, t in place.children
        if _reads_a_field(c) and not isinstance(m, str | None | BaseException) and t.kind == "nodeset"
    ]
    if any(xpath_string(m) != _reference_text(t) for m, t in typed):
        return True
    return bool(typed) and _function(place, "decimal-date-time", "boolean-from-string")


def _reads_a_field(node: Node) -> bool:
    return isinstance(node, FieldRef | CurrentValue) or (
        isinstance(node, Call) and node.function == "indexed-repeat"
    )


def _xpath_space(place: Place) -> bool:
    """normalize-space() with white space XPath 1.0 does not name (no-break space...): hdhub
    keeps it, the reference's JavaScript \\s collapses it."""
    return _function(place, "normalize-space") and any(
        any(c.isspace() and c not in " \t\r\n" for c in xpath_string_or_empty(m))
        for _, m, _ in place.children
    )


def _utf16(place: Place) -> bool:
    """A character beyond the Basic Multilingual Plane (an emoji) counts one in hdhub, two in
    JavaScript's UTF-16 strings."""
    return _function(place, "string-length", "substr", "substring", "translate") and any(
        any(ord(c) > 0xFFFF for c in xpath_string_or_empty(m)) for _, m, _ in place.children
    )


def _reference_and_or_error(place: Place) -> bool:
    """The reference's lazy and/or loses a token when its left side decides (a TypeError)."""
    return (
        _operator(place, "and", "or") and place.theirs.kind == "error" and "reading 't'" in place.theirs.value
    )


def _digest_input(place: Place) -> bool:
    """digest() of something that is not ASCII text: the reference hashes a field's node-set
    object, a number or a boolean as it is, and each character's low byte."""
    if not _function(place, "digest") or not place.children:
        return False
    message = place.children[0][2]
    return message.kind != "string" or not str(message.value).isascii()


def _browser_translate(place: Place) -> bool:
    """translate() whose second argument is empty or repeats a character: jsdom's XPath puts
    'undefined' around every character, or takes a repeated character's last place (XPath
    1.0: its first)."""
    if not _function(place, "translate") or len(place.children) != 3:
        return False
    source = _reference_text(place.children[1][2])
    return source == "" or len(set(source)) < len(source)


_JS_NUMBER = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*(?:e[+-]?[0-9]+)?|\.[0-9]+(?:e[+-]?[0-9]+)?|Infinity|0x[0-9a-f]+)", re.I
)


def _reads_as_js_number(text: str) -> bool:
    """JavaScript's Number() reads it, XPath's number() does not (0x10, 1e3, +5, Infinity)."""
    stripped = text.strip()
    return bool(stripped) and math.isnan(xpath_number(text)) and _JS_NUMBER.fullmatch(stripped) is not None


def _number_syntax(place: Place) -> bool:
    texts = [_reference_text(t) for _, _, t in place.children if t.kind in ("nodeset", "string")]
    if _function(place, "sum", "min", "max"):
        for argument in place.node.arguments:  # type: ignore[union-attr]
            if isinstance(argument, FieldRef) and argument.name in REPEAT_FIELDS:
                texts += [
                    xpath_string(v) for k, v in place.values.items() if k.startswith(argument.name + "_")
                ]
    return any(_reads_as_js_number(t) for t in texts)


def _boolean_from_number(place: Place) -> bool:
    return _function(place, "boolean-from-string") and any(t.kind == "number" for _, _, t in place.children)


def _browser_substring(place: Place) -> bool:
    """substring() from position 0 or below, or NaN: jsdom's XPath gets it wrong."""
    if not _function(place, "substring") or len(place.children) < 2:
        return False
    start = xpath_number(place.children[1][1])
    return math.isnan(start) or start < 0.5


def _text_beside_date(place: Place) -> bool:
    """A text or a field beside a date in arithmetic: the reference reads it as a date too
    (a number in it as a whole number of days, '1.5' is day 1, none beyond 100 million
    days), hdhub as a number."""
    return (
        isinstance(place.node, Binary)
        and any(_is_temporal(m) for _, m, _ in place.children)
        and any(
            t.kind in ("string", "nodeset") and not _DATE_LIKE.match(_reference_text(t))
            for _, _, t in place.children
        )
    )


def _reference_and_or_date(place: Place) -> bool:
    """and/or beside a date: the reference reads the other side as a date first, so a text
    that is none is false there."""
    return _operator(place, "and", "or") and any(_is_temporal(m) for _, m, _ in place.children)


def _empty_node_set(place: Place) -> bool:
    """indexed-repeat() of an instance that is not there: hdhub gives a missing value ('',
    so != any text holds); the reference an empty node-set, which equals nothing and differs
    from nothing."""
    return _operator(place, "=", "!=", "<", "<=", ">", ">=") and any(
        isinstance(c, Call) and c.function == "indexed-repeat" and t.kind == "nodeset" and not t.value
        for c, _, t in place.children
    )


def _date_as_boolean(place: Place) -> bool:
    """1970-01-01 beside a boolean: hdhub takes a date as true; the reference reads a date's
    text as its day number, and day 0 is false."""
    return (
        _operator(place, "=", "!=")
        and any(isinstance(m, bool) for _, m, _ in place.children)
        and any(isinstance(m, datetime.date) and xpath_number(m) == 0 for _, m, _ in place.children)
    )


def _date_drops_time(place: Place) -> bool:
    mine = place.mine
    return (
        _function(place, "date")
        and isinstance(mine, datetime.date)
        and not isinstance(mine, datetime.datetime)
        and str(place.theirs.value).startswith(mine.isoformat() + "T")
    )


def _date_parsing(place: Place) -> bool:
    """A text that is not ODK's date format given to a date function: the reference hands
    it to JavaScript's Date parser, which guesses ('a:.1' is 1 January 2001)."""
    return (
        _function(place, "date", "date-time", "format-date", "format-date-time", "decimal-date-time")
        and xpath_string_or_empty(place.mine) == ""
        and any(
            t.kind in ("string", "nodeset") and not _DATE_LIKE.match(_reference_text(t))
            for _, _, t in place.children[:1]
        )
    )


def xpath_string_or_empty(value: object) -> str:
    return "" if isinstance(value, BaseException) else xpath_string(value)


def _maths_last_digit(place: Place) -> bool:
    """Numbers that agree but for their last binary digit (Python's C library and V8 compute
    log, sin... each their own way) show once written out as text; and a moment made of a
    fraction of a day lands on either side of a millisecond (JavaScript truncates to the
    millisecond, Python rounds to the microsecond)."""
    if _function(place, "format-date", "format-date-time") and place.children:
        days = place.children[0][1]
        return _is_number(days) and not float(days).is_integer()  # type: ignore[arg-type]
    return any(
        _is_number(m) and t.kind == "number" and float(m) != t.value and same_number(float(m), t.value)  # type: ignore[arg-type]
        for _, m, t in place.children
    )


_TIME_TEXT = re.compile(r"\s*[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?\s*")


def _time_values(place: Place) -> bool:
    """A time of day (a time field, or a text such as '10:30'): hdhub reads it as a time,
    the reference as text, which ODK writes with seconds and an offset."""
    return any(
        isinstance(m, datetime.time)
        or (t.kind in ("string", "nodeset") and _TIME_TEXT.fullmatch(_reference_text(t)))
        for _, m, t in place.children
    )


#: Each known difference by its name in docs/dcd-format.md, and how to recognise it.
RULES: Mapping[str, Rule] = {
    "date-arithmetic": _date_arithmetic,
    "datetime-text": _datetime_text,
    "number-text": _number_text,
    "field-as-boolean": _field_as_boolean,
    "checked-at-import": _checked_at_import,
    "impossible-date": _impossible_date,
    "keeps-type": _keeps_type,
    "typed-fields": _typed_fields,
    "xpath-space": _xpath_space,
    "utf-16": _utf16,
    "reference-and-or-error": _reference_and_or_error,
    "digest-input": _digest_input,
    "browser-translate": _browser_translate,
    "number-syntax": _number_syntax,
    "boolean-from-string-number": _boolean_from_number,
    "browser-substring": _browser_substring,
    "time-values": _time_values,
    "date-drops-time": _date_drops_time,
    "date-as-boolean": _date_as_boolean,
    "text-beside-date": _text_beside_date,
    "reference-and-or-date": _reference_and_or_date,
    "empty-node-set": _empty_node_set,
    "date-parsing": _date_parsing,
    "maths-last-digit": _maths_last_digit,
}


#: Known differences no rule recognises, because the differential test runs the reference
#: in UTC where they cannot show: each is shown by the test named.
SHOWN_BY_TESTS: Mapping[str, str] = {
    "zone-day-count": "test_hdhub_counts_calendar_days_where_the_reference_in_brussels_counts_elapsed_time",
}


def classify(place: Place) -> str | None:
    """The known difference that explains ``place``, None when none does."""
    return next((name for name, rule in RULES.items() if rule(place)), None)


# --------------------------------------------------------------------------- the documented list

_ROW = re.compile(r"^\|\s*`([a-z0-9-]+)`\s*\|")


def documented_differences(text: str | None = None) -> set[str]:
    """The names in the table of known differences in docs/dcd-format.md."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    start = text.find("<!-- known-differences:start -->")
    end = text.find("<!-- known-differences:end -->")
    if start < 0 or end < 0:
        return set()
    return {m.group(1) for line in text[start:end].splitlines() if (m := _ROW.match(line))}


def describe(place: Place, instance: int | None) -> str:

    args = ", ".join(f"{to_source(c)} -> {m!r} / {t.kind}:{t.value!r}" for c, m, t in place.children)
    return (
        f"{to_source(place.node)}  [reference: {to_reference(place.node, instance)}]\n"
        f"    hdhub {place.mine!r}, reference {place.theirs.kind}:{place.theirs.value!r}\n"
        f"    arguments: {args}"
    )
