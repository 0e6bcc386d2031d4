"""The functions of ODK's XPath that an expression may call, and how many arguments each takes.

:data:`FUNCTIONS` is what the parser accepts; :data:`EAGER` holds the functions whose
arguments are all evaluated first. The others read more than their arguments' values
(``if``, ``coalesce`` and ``once`` evaluate lazily, ``today()`` and ``now()`` read the
clock, ``jr:choice-name`` the code lists, ``indexed-repeat`` a repeat's instances) and are
compiled in :mod:`.expressions`. Semantics follow ODK's XForms specification and its
reference evaluators (JavaRosa, Enketo); docs/dcd-format.md lists each function and where
hdhub differs from Enketo's evaluator, and why.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import math
import re
import secrets
import string
import uuid
from collections.abc import Callable, Iterator, Mapping
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from hdhub.registrations.engine.patterns import LinearPattern, compile_linear
from hdhub.registrations.engine.xpath import (
    NodeSet,
    is_number,
    local_now,
    parse_temporal,
    temporal_number,
    xpath_boolean,
    xpath_number,
    xpath_string,
)

__all__ = [
    "EAGER",
    "FUNCTIONS",
    "REFUSED_FUNCTIONS",
    "REPEAT_FUNCTIONS",
    "checked_format",
    "checked_pattern",
    "digest_check",
]

#: Every function an expression may call: (least, most) arguments, most None for any number.
FUNCTIONS: Mapping[str, tuple[int, int | None]] = {
    # logic and choices
    "if": (3, 3),
    "coalesce": (2, None),
    "not": (1, 1),
    "true": (0, 0),
    "false": (0, 0),
    "boolean": (1, 1),
    "boolean-from-string": (1, 1),
    "selected": (2, 2),
    "selected-at": (2, 2),
    "count-selected": (1, 1),
    "jr:choice-name": (2, 2),
    "checklist": (2, None),
    "weighted-checklist": (2, None),
    "once": (1, 1),
    # text
    "string": (0, 1),
    "concat": (0, None),
    "join": (1, None),
    "string-length": (0, 1),
    "substr": (2, 3),
    "substring": (2, 3),
    "substring-before": (2, 2),
    "substring-after": (2, 2),
    "translate": (3, 3),
    "contains": (2, 2),
    "starts-with": (2, 2),
    "ends-with": (2, 2),
    "normalize-space": (0, 1),
    "regex": (2, 2),
    "digest": (2, 3),
    "uuid": (0, 1),
    # numbers
    "number": (0, 1),
    "int": (1, 1),
    "round": (1, 2),
    "abs": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "pow": (2, 2),
    "sqrt": (1, 1),
    "exp": (1, 1),
    "exp10": (1, 1),
    "log": (1, 1),
    "log10": (1, 1),
    "sin": (1, 1),
    "cos": (1, 1),
    "tan": (1, 1),
    "asin": (1, 1),
    "acos": (1, 1),
    "atan": (1, 1),
    "atan2": (2, 2),
    "pi": (0, 0),
    "min": (1, None),
    "max": (1, None),
    # repeats
    "count": (1, 1),
    "count-non-empty": (1, 1),
    "sum": (1, 1),
    "indexed-repeat": (3, 3),
    # dates and times
    "today": (0, 0),
    "now": (0, 0),
    "date": (1, 1),
    "date-time": (1, 1),
    "decimal-date-time": (1, 1),
    "decimal-date": (1, 1),
    "decimal-time": (1, 1),
    "format-date": (2, 2),
    "format-date-time": (2, 2),
}

#: ODK's functions that hdhub refuses, and why (the import says so).
REFUSED_FUNCTIONS: Mapping[str, str] = {
    "random": "a registration is validated again on every save and submission, so a random value would change",
    "randomize": "a registration is validated again on every save and submission, so the order would change",
    "position": "hdhub has no paths; a repeat instance is numbered by its flattened name (_1, _2...)",
    "last": "hdhub has no paths; count(${repeat}) gives the number of instances",
    "current": "hdhub has no paths; ${name} refers to a field, . to the field's own value",
    "instance": "secondary instances (external choice lists, pulldata) are not part of a DCD",
    "pulldata": "secondary instances (external CSV files) are not part of a DCD",
    "jr:itext": "labels are read per language by the forms, not computed",
    "area": "hdhub has no geopoint, geotrace or geoshape fields",
    "distance": "hdhub has no geopoint, geotrace or geoshape fields",
    "geofence": "hdhub has no geopoint, geotrace or geoshape fields",
    "base64-decode": "a registration holds no binary values",
    "extract-signed": "a registration holds no signed values",
}

#: Functions over a repeat: their arguments may be a repeat (``${visit}``) or a repeated
#: field read from outside it (every instance's value). indexed-repeat() takes its field
#: and repeat from its first two arguments.
REPEAT_FUNCTIONS = frozenset({"count", "count-non-empty", "sum", "min", "max", "join", "indexed-repeat"})

_NAN = math.nan
#: An argument left out (a missing value given is None, which reads as '' or NaN).
_ABSENT = object()


def _values(*arguments: object) -> Iterator[object]:
    """The arguments, each value of a node-set in turn."""
    for argument in arguments:
        if isinstance(argument, NodeSet):
            yield from argument
        else:
            yield argument


# --------------------------------------------------------------------------- text


def _selection(value: object) -> list[str]:
    """The codes of a multiple selection: a list's items, or the space-separated codes of a text."""
    if isinstance(value, list | tuple):
        return [xpath_string(v) for v in value]
    return [code for code in xpath_string(value).split(" ") if code]


def _selected_at(value: object, index: object) -> str:
    position = xpath_number(index)
    if not math.isfinite(position):
        return ""
    # A text is cut at each space as it is, as ODK's engines do ('a  b' has an empty second code).
    codes = (
        [xpath_string(v) for v in value]
        if isinstance(value, list | tuple)
        else xpath_string(value).split(" ")
    )
    at = math.trunc(position)
    return codes[at] if 0 <= at < len(codes) else ""


def _slice_index(value: object, length: int) -> int:
    """JavaScript's slice() position: whole toward zero, negative from the end, NaN as 0."""
    x = xpath_number(value)
    if math.isnan(x):
        return 0
    if math.isinf(x):
        return 0 if x < 0 else length
    whole = math.trunc(max(min(x, length), -length))  # -0.5 is 0, the start, not the end
    return max(length + whole, 0) if whole < 0 else whole


def _substr(value: object, start: object, end: object = _ABSENT) -> str:
    """ODK's substr(): 0-based, the end excluded, negative positions count from the end."""
    text = xpath_string(value)
    begin = _slice_index(start, len(text))
    stop = len(text) if end is _ABSENT else _slice_index(end, len(text))
    return text[begin:stop]


def _round_position(x: float) -> float:
    """XPath's round() for positions: infinities stay infinite (floor would raise)."""
    return x if math.isinf(x) else math.floor(x + 0.5)


def _substring(value: object, start: object, length: object = _ABSENT) -> str:
    """XPath 1.0's substring(): 1-based, rounded positions."""
    text = xpath_string(value)
    first = xpath_number(start)
    if math.isnan(first):
        return ""
    first = _round_position(first)
    if length is _ABSENT:
        last = math.inf
    else:
        count = xpath_number(length)
        if math.isnan(count):
            return ""
        last = first + _round_position(count)
        if math.isnan(last):  # -inf + inf: XPath gives NaN, and no character is selected
            return ""
    return "".join(c for i, c in enumerate(text, start=1) if first <= i < last)


def _substring_before(value: object, separator: object) -> str:
    text, part = xpath_string(value), xpath_string(separator)
    at = text.find(part)
    return text[:at] if at >= 0 else ""


def _substring_after(value: object, separator: object) -> str:
    text, part = xpath_string(value), xpath_string(separator)
    at = text.find(part)
    return text[at + len(part) :] if at >= 0 else ""


def _translate(value: object, source: object, target: object) -> str:
    """XPath's translate(): each character of ``source`` becomes the one at its place in
    ``target``, or goes when ``target`` is shorter; the first occurrence in ``source`` counts."""
    mapping: dict[int, int | None] = {}
    replacement = xpath_string(target)
    for i, char in enumerate(xpath_string(source)):
        mapping.setdefault(ord(char), ord(replacement[i]) if i < len(replacement) else None)
    return xpath_string(value).translate(mapping)


_XPATH_SPACE = re.compile(r"[ \t\r\n]+")


def _normalize_space(value: object) -> str:
    """XPath's normalize-space(): only space, tab, carriage return and line feed are white space."""
    return _XPATH_SPACE.sub(" ", xpath_string(value)).strip(" ")


def checked_pattern(pattern: str) -> LinearPattern:
    """``pattern`` compiled for matching in linear time (engine/patterns.py); ValueError
    saying why when it does not compile (a repetition count past what ``re`` holds
    included) or needs backtracking (a backreference, a lookaround), never an ``re.error``
    escaping."""
    return compile_linear(pattern)


def _regex_search(value: object, pattern: object) -> bool:
    return checked_pattern(xpath_string(pattern)).search(xpath_string(value))


_DIGESTS = {"md5": "md5", "sha-1": "sha1", "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}


def digest_check(algorithm: str, encoding: str = "base64") -> None:
    """ValueError when digest() does not know the algorithm or the encoding."""
    if algorithm.lower() not in _DIGESTS:
        raise ValueError("digest() takes MD5, SHA-1, SHA-256, SHA-384 or SHA-512")
    if encoding.lower() not in ("base64", "hex"):
        raise ValueError("digest() encodes as base64 or hex")


def _digest(message: object, algorithm: object, encoding: object = "base64") -> str:
    """The hash of the text's UTF-8 bytes (XForms 1.1), base64 unless ``hex`` is asked."""
    name, form = xpath_string(algorithm), xpath_string(encoding)
    digest_check(name, form)
    hashed = hashlib.new(_DIGESTS[name.lower()], xpath_string(message).encode("utf-8"))
    if form.lower() == "hex":
        return hashed.hexdigest()
    return base64.b64encode(hashed.digest()).decode("ascii")


_TOKEN_CHARACTERS = string.ascii_lowercase + string.digits
_LONGEST_TOKEN = 1000


def _uuid(length: object = _ABSENT) -> str:
    """A random version 4 UUID, or a random token of ``length`` letters and digits."""
    if length is _ABSENT:
        return str(uuid.uuid4())
    count = xpath_number(length)
    if not 0 <= count <= _LONGEST_TOKEN:
        raise ValueError(f"uuid() makes tokens of up to {_LONGEST_TOKEN} characters")
    return "".join(secrets.choice(_TOKEN_CHARACTERS) for _ in range(int(count)))


def _join(separator: object, *values: object) -> str:
    return xpath_string(separator).join(xpath_string(v) for v in _values(*values))


# --------------------------------------------------------------------------- numbers


def _round_half_away(x: float) -> float:
    size = abs(x)
    whole = math.floor(size)
    if size - whole >= 0.5:  # exact for every double: the fraction of a double is one too
        whole += 1
    return math.copysign(whole, x)


_MOST_PLACES = 308
_ROUNDING = Context(prec=2 * _MOST_PLACES + 20)


def _round(value: object, digits: object = _ABSENT) -> float:
    """Half away from zero (round(-1.5) is -2, as round(-1.5, 0)); with digits, on the
    decimal written (round(1.005, 2) is 1.01), as JavaRosa's BigDecimal does."""
    x = xpath_number(value)
    if not math.isfinite(x):
        return x
    if digits is _ABSENT:
        return _round_half_away(x)
    places = xpath_number(digits)
    if not abs(places) <= _MOST_PLACES:  # 10 to the power places is no double (or NaN)
        return _NAN
    try:
        quantum = Decimal(1).scaleb(-math.trunc(places))
        return float(Decimal(repr(x)).quantize(quantum, rounding=ROUND_HALF_UP, context=_ROUNDING))
    except InvalidOperation:
        return _NAN


def _int(value: object) -> float:
    x = xpath_number(value)
    return float(math.trunc(x)) if math.isfinite(x) else x


def _pow(a: object, b: object) -> float:
    """``a`` to the power ``b`` with the IEEE results of JavaScript's and Java's pow."""
    x, y = xpath_number(a), xpath_number(b)
    if y == 0:
        return 1.0
    if math.isnan(x) or math.isnan(y) or (abs(x) == 1 and math.isinf(y)):
        return _NAN
    odd = y.is_integer() and abs(y) < 2**53 and int(y) % 2 == 1
    try:
        return math.pow(x, y)
    except OverflowError:
        return -math.inf if x < 0 and odd else math.inf
    except ValueError:
        if x == 0:  # zero to a negative power
            return math.copysign(math.inf, x) if odd else math.inf
        return _NAN


def _real(function: Callable[[float], float]) -> Callable[[object], float]:
    """``function`` over XPath numbers: NaN where it is not defined, infinity on overflow."""

    def apply(value: object) -> float:
        x = xpath_number(value)
        try:
            return function(x)
        except OverflowError:
            return math.inf
        except ValueError:
            if x == 0 and function in (math.log, math.log10):
                return -math.inf
            return _NAN

    return apply


def _extreme(pick: Callable[..., float], *values: object) -> float:
    numbers = [xpath_number(v) for v in _values(*values)]
    if not numbers or any(math.isnan(n) for n in numbers):
        return _NAN
    return pick(numbers)


def _sum(values: object) -> float:
    return math.fsum(xpath_number(v) for v in _values(values)) if isinstance(values, NodeSet) else _NAN


def _count_non_empty(values: object) -> float:
    return float(sum(1 for v in _values(values) if xpath_string(v) != ""))


def _within(count: float, least: object, most: object) -> bool:
    low, high = xpath_number(least), xpath_number(most)
    return (low < 0 or count >= low) and (high < 0 or count <= high)


def _checklist(least: object, most: object, *answers: object) -> bool:
    """True when between ``least`` and ``most`` answers are true (a negative bound is no bound)."""
    return _within(float(sum(1 for v in _values(*answers) if xpath_boolean(v))), least, most)


def _weighted_checklist(least: object, most: object, *pairs: object) -> bool:
    """checklist() where each answer counts with the weight after it (a weight that is no
    number counts 0)."""
    weights = (xpath_number(w) for a, w in zip(pairs[::2], pairs[1::2], strict=False) if xpath_boolean(a))
    total = sum(w for w in weights if not math.isnan(w))
    return _within(total, least, most)


def _boolean_from_string(value: object) -> bool:
    return xpath_string(value) in ("true", "1")


# --------------------------------------------------------------------------- dates and times

_EPOCH = datetime.datetime(1970, 1, 1)
_RAW_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _days_text(text: str) -> datetime.date | None:
    """A text of a number read as days since 1970 (its whole part), as ODK's date() does."""
    try:
        return datetime.date.fromordinal(_EPOCH.toordinal() + math.trunc(float(text)))
    except (OverflowError, ValueError):
        return None


def _moment(value: object) -> datetime.date | None:
    """The date or date-time a value stands for: a date, a date-time, days since 1970 (a
    fraction is a time of day), or a text of one of these; None otherwise."""
    if isinstance(value, datetime.date):
        return value
    if is_number(value):
        days = xpath_number(value)
        if not math.isfinite(days):
            return None
        try:
            moment = _EPOCH + datetime.timedelta(days=days)
        except OverflowError:
            return None
        return moment.date() if days.is_integer() else moment
    if not isinstance(value, str | NodeSet | list | tuple):
        return None
    text = xpath_string(value)
    if _RAW_NUMBER.fullmatch(text):
        return _days_text(text)
    parsed = parse_temporal(text)
    return parsed if isinstance(parsed, datetime.date) else None


def _to_date(value: object) -> datetime.date | None:
    """date(): the day, any time of day dropped (JavaRosa's date())."""
    moment = _moment(value)
    return moment.date() if isinstance(moment, datetime.datetime) else moment


def _to_datetime(value: object) -> datetime.datetime | None:
    """date-time(): the moment, midnight for a date."""
    moment = _moment(value)
    if moment is None or isinstance(moment, datetime.datetime):
        return moment
    return datetime.datetime(moment.year, moment.month, moment.day)


def _decimal_date_time(value: object) -> float:
    """Days since 1970-01-01 of a date or date-time (a number is taken as it is)."""
    if is_number(value):
        return xpath_number(value)
    if isinstance(value, datetime.date):
        return temporal_number(value)
    parsed = parse_temporal(xpath_string(value))
    return temporal_number(parsed) if isinstance(parsed, datetime.date) else _NAN


_TIME_WITH_OFFSET = re.compile(
    r"\s*([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?(Z|[+-][0-9]{2}:[0-9]{2})?\s*"
)


def _decimal_time(value: object) -> float:
    """The fraction of a day of a time (``10:30``, ``10:30:00.000+02:00``, read in Belgian time)."""
    if isinstance(value, datetime.time):
        return temporal_number(value)
    match = _TIME_WITH_OFFSET.fullmatch(xpath_string(value))
    if match is None:
        return _NAN
    hour, minute, second, fraction, offset = match.groups()
    if offset is not None:
        # The offset of today's date: on a day Belgium changes its clock the answer follows it.
        parsed = parse_temporal(f"{local_now().date().isoformat()}T{xpath_string(value).strip()}")
        return temporal_number(parsed.time()) if isinstance(parsed, datetime.datetime) else _NAN
    try:
        moment = datetime.time(
            int(hour), int(minute), int(second or 0), int((fraction or "0")[:6].ljust(6, "0"))
        )
    except ValueError:
        return _NAN
    return temporal_number(moment)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FORMAT_ESCAPES: Mapping[str, Callable[[datetime.datetime], str]] = {
    "Y": lambda d: f"{d.year:04d}",
    "y": lambda d: f"{d.year:04d}"[2:],
    "m": lambda d: f"{d.month:02d}",
    "n": lambda d: str(d.month),
    "b": lambda d: _MONTHS[d.month - 1],
    "d": lambda d: f"{d.day:02d}",
    "e": lambda d: str(d.day),
    "a": lambda d: _WEEKDAYS[d.weekday()],
    "H": lambda d: f"{d.hour:02d}",
    "h": lambda d: str(d.hour),
    "M": lambda d: f"{d.minute:02d}",
    "S": lambda d: f"{d.second:02d}",
    "3": lambda d: f"{d.microsecond // 1000:03d}",
    "%": lambda _d: "%",
}
_ESCAPE = re.compile(r"%(.?)", re.DOTALL)


def checked_format(pattern: str) -> None:
    """ValueError naming the first escape format-date() does not know (``%Q``, a last ``%``)."""
    for match in _ESCAPE.finditer(pattern):
        if match.group(1) not in _FORMAT_ESCAPES:
            shown = "%" + match.group(1) if match.group(1) else "a % at the end"
            known = " ".join("%" + k for k in _FORMAT_ESCAPES)
            raise ValueError(f"format-date() does not know {shown} (it knows {known})")


def _format_date(value: object, pattern: object) -> str:
    """ODK's format-date(): %Y %y %m %n %b %d %e %a %H %h %M %S %3 and %%; month and day
    names in English, whatever the language of the record: a computed value is stored."""
    text = xpath_string(pattern)
    checked_format(text)
    moment = _moment(value)
    if moment is None:
        return ""
    if not isinstance(moment, datetime.datetime):
        moment = datetime.datetime(moment.year, moment.month, moment.day)
    return _ESCAPE.sub(lambda m: _FORMAT_ESCAPES[m.group(1)](moment), text)


# --------------------------------------------------------------------------- the table


def _floor(value: object) -> float:
    x = xpath_number(value)
    return float(math.floor(x)) if math.isfinite(x) else x


def _ceiling(value: object) -> float:
    x = xpath_number(value)
    return float(math.ceil(x)) if math.isfinite(x) else x


#: Functions whose arguments are all evaluated, then the function applied.
EAGER: Mapping[str, Callable[..., object]] = {
    "selected": lambda a, b: xpath_string(b).strip() in _selection(a),
    "count-selected": lambda a: float(len(_selection(a))),
    "selected-at": _selected_at,
    "checklist": _checklist,
    "weighted-checklist": _weighted_checklist,
    "not": lambda a: not xpath_boolean(a),
    "true": lambda: True,
    "false": lambda: False,
    "boolean": xpath_boolean,
    "boolean-from-string": _boolean_from_string,
    "string": xpath_string,
    "concat": lambda *args: "".join(xpath_string(a) for a in args),
    "join": _join,
    "string-length": lambda a: float(len(xpath_string(a))),
    "substr": _substr,
    "substring": _substring,
    "substring-before": _substring_before,
    "substring-after": _substring_after,
    "translate": _translate,
    "contains": lambda a, b: xpath_string(b) in xpath_string(a),
    "starts-with": lambda a, b: xpath_string(a).startswith(xpath_string(b)),
    "ends-with": lambda a, b: xpath_string(a).endswith(xpath_string(b)),
    "normalize-space": _normalize_space,
    "regex": _regex_search,
    "digest": _digest,
    "uuid": _uuid,
    "number": xpath_number,
    "int": _int,
    "round": _round,
    "abs": lambda a: abs(xpath_number(a)),
    "floor": _floor,
    "ceiling": _ceiling,
    "pow": _pow,
    "sqrt": _real(math.sqrt),
    "exp": _real(math.exp),
    "exp10": _real(lambda x: math.pow(10.0, x)),
    "log": _real(math.log),
    "log10": _real(math.log10),
    "sin": _real(math.sin),
    "cos": _real(math.cos),
    "tan": _real(math.tan),
    "asin": _real(math.asin),
    "acos": _real(math.acos),
    "atan": _real(math.atan),
    "atan2": lambda y, x: math.atan2(xpath_number(y), xpath_number(x)),
    "pi": lambda: math.pi,
    "min": lambda *args: _extreme(min, *args),
    "max": lambda *args: _extreme(max, *args),
    "sum": _sum,
    "count": lambda values: float(len(values)) if isinstance(values, NodeSet) else _NAN,
    "count-non-empty": _count_non_empty,
    "date": _to_date,
    "date-time": _to_datetime,
    "decimal-date-time": _decimal_date_time,
    "decimal-date": _decimal_date_time,
    "decimal-time": _decimal_time,
    "format-date": _format_date,
    "format-date-time": _format_date,
}
