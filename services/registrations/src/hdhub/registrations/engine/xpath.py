"""XPath values as ODK's engines hold them: conversions, dates and times, comparison and arithmetic.

A value in an expression is a Python ``str``, ``float`` (``int`` and ``Decimal`` are read
as numbers too), ``bool``, ``None`` (a missing value: ``''``, NaN as a number),
``datetime.date``, ``datetime.datetime``, ``datetime.time``, a ``list`` (a multiple
selection) or a :class:`NodeSet` (a repeated field read from outside its repeat).

Dates and times are Belgian wall-clock values: ``today()`` and ``now()`` read the clock
in :data:`ZONE`, a date-time written with ``Z`` or an offset is converted to it, and a
date counts as the number of calendar days since 1970-01-01 (``2024-01-01`` is 19723, as
in JavaRosa). docs/dcd-format.md ("Expressions") describes the rules; the conformance
tests compare them with Enketo's evaluator.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable
from decimal import Decimal
from zoneinfo import ZoneInfo

__all__ = [
    "ZONE",
    "NodeSet",
    "compare",
    "dated_text",
    "equals",
    "local_now",
    "parse_temporal",
    "temporal_number",
    "xpath_boolean",
    "xpath_number",
    "xpath_string",
]

#: The zone of today(), now() and of date-times given with an offset: a registry's
#: dates are Belgian (CET, CEST in summer).
ZONE = ZoneInfo("Europe/Brussels")


def local_now(instant: datetime.datetime | None = None) -> datetime.datetime:
    """The wall-clock time in :data:`ZONE` (naive) at ``instant`` (aware; now when None)."""
    moment = instant if instant is not None else datetime.datetime.now(datetime.UTC)
    return moment.astimezone(ZONE).replace(tzinfo=None)


class NodeSet(tuple[object, ...]):
    """The values of a repeated field in the repeat's instances that are there, in order."""

    __slots__ = ()


_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_EPOCH = datetime.datetime(1970, 1, 1)
_XPATH_NUMBER = re.compile(r"\s*-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*")
# ODK's date and date-time texts: the month and day may have one digit (2024-1-2); a time
# after T has minutes, optional seconds and fraction, and an optional Z or offset.
_DATE_TEXT = re.compile(
    r"\s*([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?\s*"
)
_TIME_TEXT = re.compile(r"\s*([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?\s*")
_NAN = math.nan


def _microseconds(fraction: str | None) -> int:
    return int((fraction or "0")[:6].ljust(6, "0"))


def _offset(text: str) -> datetime.timezone:
    if text == "Z":
        return datetime.UTC
    sign = -1 if text[0] == "-" else 1
    return datetime.timezone(sign * datetime.timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def parse_temporal(text: str) -> datetime.date | datetime.time | None:
    """A date (``2024-01-02``, ``2024-1-2``), a date-time (``2024-01-02T10:00``, with
    seconds, fraction, ``Z`` or an offset; converted to Belgian time) or a time of day
    (``10:30``, ``10:30:00``) written as text; None when the text is none of these or
    names a day that does not exist."""
    match = _DATE_TEXT.fullmatch(text)
    try:
        if match is not None:
            year, month, day, hour, minute, second, fraction, offset = match.groups()
            if hour is None:
                return datetime.date(int(year), int(month), int(day))
            moment = datetime.datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute),
                int(second or 0),
                _microseconds(fraction),
            )
            if offset is None:
                return moment
            return local_now(moment.replace(tzinfo=_offset(offset)))
        match = _TIME_TEXT.fullmatch(text)
        if match is not None:
            hour, minute, second, fraction = match.groups()
            return datetime.time(int(hour), int(minute), int(second or 0), _microseconds(fraction))
    except ValueError:
        return None
    return None


def temporal_number(value: object) -> float:
    """Days since 1970-01-01: whole days for a date, with the fraction of the day for a
    date-time; a time of day is its fraction of a day. Other values as :func:`xpath_number`."""
    if isinstance(value, str):
        parsed = parse_temporal(value)
        if parsed is None:
            return xpath_number(value)
        value = parsed
    if isinstance(value, datetime.datetime):
        return (value - _EPOCH) / datetime.timedelta(days=1)
    if isinstance(value, datetime.date):
        return float(value.toordinal() - _EPOCH_ORDINAL)
    if isinstance(value, datetime.time):
        seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
        return seconds / 86400.0
    return xpath_number(value)


def _text_number(text: str) -> float:
    if _XPATH_NUMBER.fullmatch(text):
        return float(text)
    if text[:1].isdigit() or text[:1].isspace():
        parsed = parse_temporal(text)
        if isinstance(parsed, datetime.date):  # a date-time is a date too
            return temporal_number(parsed)
    return _NAN


def xpath_number(value: object) -> float:
    """XPath ``number()``: NaN for a missing or non-numeric value; a date, or a text that
    is a date (``'2024-01-02'``), is its number of days since 1970-01-01."""
    cls = value.__class__
    if cls is float:
        return value  # type: ignore[return-value]
    if cls is int:
        return float(value)  # type: ignore[arg-type]
    if value is None:
        return _NAN
    if cls is str:
        return _text_number(value)  # type: ignore[arg-type]
    if cls is bool:
        return 1.0 if value else 0.0
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else _NAN
    if isinstance(value, datetime.date | datetime.time):
        return temporal_number(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return xpath_number(xpath_string(value))
    return _NAN


def format_number(value: float) -> str:
    """XPath's text of a number: no exponent, no ``.0`` on a whole number."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def xpath_string(value: object) -> str:
    """XPath ``string()``: '' for a missing value; dates ISO; times HH:MM; a selection
    space-separated; a node-set its first value."""
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[return-value]
    if value is None:
        return ""
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    if cls is float:
        return format_number(value)  # type: ignore[arg-type]
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else "NaN"
    if isinstance(value, datetime.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M")
    if isinstance(value, NodeSet):
        return xpath_string(value[0]) if value else ""
    if isinstance(value, list | tuple):
        return " ".join(xpath_string(v) for v in value)
    return str(value)


def xpath_boolean(value: object) -> bool:
    """XPath ``boolean()``: false for a missing value, '', 0, NaN and an empty selection."""
    cls = value.__class__
    if cls is bool:
        return value  # type: ignore[return-value]
    if value is None:
        return False
    if cls is str:
        return value != ""
    if cls is float:
        return not (value == 0.0 or value != value)
    if cls is int:
        return value != 0
    if isinstance(value, Decimal):
        return value.is_finite() and value != 0
    if isinstance(value, list | tuple):
        return len(value) > 0
    return True


def is_number(value: object) -> bool:
    cls = value.__class__
    return cls is int or cls is float or isinstance(value, Decimal)


def is_temporal(value: object) -> bool:
    return isinstance(value, datetime.date | datetime.time)


def dated_text(text: str) -> bool:
    """A text that reads as a date (cheap tests first: ``yyyy-``, or leading space)."""
    return (text[4:5] == "-" or text[:1].isspace()) and isinstance(parse_temporal(text), datetime.date)


def equals(a: object, b: object) -> bool:
    """XPath ``=``: as booleans if either is one, else as numbers if either is one, else
    as dates if either is a date or time, or both are texts of dates, else as text."""
    if a is None:
        a = ""
    if b is None:
        b = ""
    if a.__class__ is str and b.__class__ is str:
        if a == b:
            return True
        if dated_text(a) and (dated_text(b) or _XPATH_NUMBER.fullmatch(b)):
            return xpath_number(a) == xpath_number(b)
        if dated_text(b) and _XPATH_NUMBER.fullmatch(a):
            return xpath_number(a) == xpath_number(b)
        return False
    if a.__class__ is bool or b.__class__ is bool:
        return xpath_boolean(a) == xpath_boolean(b)
    if is_number(a) or is_number(b):
        return xpath_number(a) == xpath_number(b)
    if is_temporal(a) or is_temporal(b):
        return temporal_number(a) == temporal_number(b)
    return xpath_string(a) == xpath_string(b)


def compare(op: Callable[[float, float], bool], a: object, b: object) -> bool:
    """``<``, ``<=``, ``>``, ``>=``: as numbers, or as dates and times when either is one."""
    if is_temporal(a) or is_temporal(b):
        return op(temporal_number(a), temporal_number(b))
    return op(xpath_number(a), xpath_number(b))


def add(a: object, b: object) -> object:
    if is_temporal(a) and not is_temporal(b):
        return _shift(a, xpath_number(b))
    if is_temporal(b) and not is_temporal(a):
        return _shift(b, xpath_number(a))
    return xpath_number(a) + xpath_number(b)


def subtract(a: object, b: object) -> object:
    if is_temporal(a):
        if is_temporal(b) or (isinstance(b, str) and parse_temporal(b) is not None):
            return temporal_number(a) - temporal_number(b)
        return _shift(a, -xpath_number(b))
    if is_temporal(b):
        return temporal_number(a) - temporal_number(b)
    return xpath_number(a) - xpath_number(b)


def _shift(value: object, days: float) -> object:
    """A date moved by a whole number of days stays a date; otherwise a number of days."""
    if math.isnan(days):
        return _NAN
    if isinstance(value, datetime.datetime) or (isinstance(value, datetime.date) and days.is_integer()):
        try:
            return value + datetime.timedelta(days=days)
        except OverflowError:
            return _NAN
    return temporal_number(value) + days


def divide(a: object, b: object) -> float:
    x, y = xpath_number(a), xpath_number(b)
    if y == 0.0:
        if x == 0.0 or math.isnan(x):
            return _NAN
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def modulo(a: object, b: object) -> float:
    x, y = xpath_number(a), xpath_number(b)
    if y == 0.0 or math.isnan(x) or math.isnan(y) or math.isinf(x):
        return _NAN
    return math.fmod(x, y)


def multiply(a: object, b: object) -> float:
    return xpath_number(a) * xpath_number(b)
