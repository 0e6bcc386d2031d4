"""The XLSForm expression language: tokenizer, parser, AST and a compiler to closures.

Expressions in ``relevant``, ``constraint``, ``calculation``, ``required``,
``choice_filter`` and ``repeat_count`` are the XPath 1.0 subset ODK uses::

    ${age} >= 18 and selected(${risk}, 'smoker')
    . <= today() and . > ${DT_BIRTH}
    if(${weight} != '', ${weight} div (${height} * ${height}), '')
    region = ${region}                      (choice_filter: bare names are choice columns)

The text is tokenized and parsed by hand (a Pratt parser) into the AST below; user text
is never given to ``eval``. The AST is plain data: :func:`compile_expression` turns it
into Python closures for one record at a time, and a columnar compiler can be written
against the same nodes.

Semantics, following XPath 1.0 and ODK (JavaRosa) where they matter:

* a missing value reads as the empty string ``''``; as a number it is NaN;
* ``=`` and ``!=``: if either side is a boolean both are compared as booleans, else if
  either is a number both are compared as numbers, else if either is a date, time or
  datetime both are (a ``'yyyy-mm-dd'`` string is read as a date), else as strings;
  NaN equals nothing, so ``${n} != ''`` is true for any answered number;
* ``<``, ``<=``, ``>``, ``>=`` compare numbers, or dates when either side is one;
* ``and`` and ``or`` short-circuit, ``if()`` and ``coalesce()`` evaluate lazily;
* date arithmetic as in ODK: ``date + n`` and ``date - n`` give a date (n days),
  ``date - date`` gives the number of days; a date read as a number is the number of days
  since 1970-01-01 (``decimal-date-time()``);
* ``div`` by zero gives infinity or NaN, ``mod`` truncates like XPath's.
"""

from __future__ import annotations

import datetime
import functools
import math
import operator
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeAlias

__all__ = [
    "FUNCTIONS",
    "BareName",
    "Binary",
    "Call",
    "Context",
    "CurrentValue",
    "Evaluator",
    "ExpressionError",
    "ExpressionSyntaxError",
    "FieldRef",
    "FieldSlot",
    "Node",
    "NumberLiteral",
    "StringLiteral",
    "Unary",
    "UnknownReferenceError",
    "bare_names",
    "compile_expression",
    "field_references",
    "is_constant",
    "parse_expression",
    "returns_boolean",
    "to_source",
    "uses_current_value",
    "walk",
    "xpath_boolean",
    "xpath_number",
    "xpath_string",
]


# --------------------------------------------------------------------------- errors


class ExpressionError(ValueError):
    """A problem in an expression's text, at ``position`` (0-based character offset)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position


class ExpressionSyntaxError(ExpressionError):
    """The text is not a well-formed expression, or calls an unknown function."""


class UnknownReferenceError(ExpressionError):
    """A ``${name}`` or bare name that the compiler cannot resolve."""


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class NumberLiteral:
    value: float
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class StringLiteral:
    value: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class FieldRef:
    """``${name}``: the value of another field (the same repeat instance inside a repeat)."""

    name: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class CurrentValue:
    """``.``: the value of the field the expression belongs to."""

    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class BareName:
    """A bare name; in ``choice_filter`` it reads a column of the choice being filtered."""

    name: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Unary:
    operator: str  # only "-"
    operand: Node
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Binary:
    operator: str  # or and = != < <= > >= + - * div mod
    left: Node
    right: Node
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    arguments: tuple[Node, ...]
    position: int = field(default=0, compare=False)


Node: TypeAlias = NumberLiteral | StringLiteral | FieldRef | CurrentValue | BareName | Unary | Binary | Call


#: Known functions and how many arguments they take (minimum, maximum or None).
FUNCTIONS: Mapping[str, tuple[int, int | None]] = {
    "selected": (2, 2),
    "count-selected": (1, 1),
    "selected-at": (2, 2),
    "string-length": (0, 1),
    "regex": (2, 2),
    "today": (0, 0),
    "now": (0, 0),
    "if": (3, 3),
    "coalesce": (2, None),
    "concat": (0, None),
    "int": (1, 1),
    "number": (0, 1),
    "string": (0, 1),
    "date": (1, 1),
    "date-time": (1, 1),
    "decimal-date-time": (1, 1),
    "decimal-date": (1, 1),
    "true": (0, 0),
    "false": (0, 0),
    "boolean": (1, 1),
    "boolean-from-string": (1, 1),
    "not": (1, 1),
    "round": (1, 2),
    "abs": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "pow": (2, 2),
    "min": (1, None),
    "max": (1, None),
    "substr": (2, 3),
    "substring": (2, 3),
    "contains": (2, 2),
    "starts-with": (2, 2),
    "ends-with": (2, 2),
    "normalize-space": (0, 1),
    "format-date": (2, 2),
}

_IMPURE_FUNCTIONS = frozenset({"today", "now"})
# Functions that read the current value when called without arguments.
_CONTEXT_DEFAULT = frozenset({"string-length", "number", "string", "normalize-space"})

_BINARY_PRECEDENCE: Mapping[str, int] = {
    "or": 1,
    "and": 2,
    "=": 3,
    "!=": 3,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "div": 6,
    "mod": 6,
}
_UNARY_PRECEDENCE = 7
_WORD_OPERATORS = frozenset({"or", "and", "div", "mod"})


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, Unary):
            stack.append(current.operand)
        elif isinstance(current, Binary):
            stack.extend((current.right, current.left))
        elif isinstance(current, Call):
            stack.extend(reversed(current.arguments))


def field_references(node: Node) -> frozenset[str]:
    """The names referred to as ``${name}``."""
    return frozenset(n.name for n in walk(node) if isinstance(n, FieldRef))


def bare_names(node: Node) -> frozenset[str]:
    return frozenset(n.name for n in walk(node) if isinstance(n, BareName))


def uses_current_value(node: Node) -> bool:
    return any(
        isinstance(n, CurrentValue)
        or (isinstance(n, Call) and not n.arguments and n.function in _CONTEXT_DEFAULT)
        for n in walk(node)
    )


def is_constant(node: Node) -> bool:
    """True when the value depends on nothing: no references, ``.``, today() or now()."""
    for n in walk(node):
        if isinstance(n, FieldRef | CurrentValue | BareName):
            return False
        if isinstance(n, Call) and (
            n.function in _IMPURE_FUNCTIONS or (not n.arguments and n.function in _CONTEXT_DEFAULT)
        ):
            return False
    return True


# --------------------------------------------------------------------------- tokenizer


class _Kind(Enum):
    NUMBER = "number"
    STRING = "string"
    FIELD = "field reference"
    DOT = "'.'"
    NAME = "name"
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    OPERATOR = "operator"
    END = "end of expression"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    position: int


_NAME_START = re.compile(r"[A-Za-z_]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*(?::[A-Za-z_][A-Za-z0-9_.\-]*)?")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_FIELD = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")
_WHITESPACE = frozenset(" \t\r\n")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char in _WHITESPACE:
            i += 1
            continue
        if char == "$":
            match = _FIELD.match(text, i)
            if match is None:
                raise ExpressionSyntaxError("a field reference is written ${name}", i)
            tokens.append(_Token(_Kind.FIELD, match.group(1), i))
            i = match.end()
            continue
        if char in "'\"":
            end = text.find(char, i + 1)
            if end < 0:
                raise ExpressionSyntaxError("unterminated string", i)
            tokens.append(_Token(_Kind.STRING, text[i + 1 : end], i))
            i = end + 1
            continue
        if char.isdigit() or (char == "." and i + 1 < length and text[i + 1].isdigit()):
            match = _NUMBER.match(text, i)
            if match is None or not match.group().isascii():
                raise ExpressionSyntaxError("malformed number", i)
            tokens.append(_Token(_Kind.NUMBER, match.group(), i))
            i = match.end()
            continue
        if char == ".":
            if i + 1 < length and text[i + 1] == ".":
                raise ExpressionSyntaxError("'..' (parent) is not supported", i)
            tokens.append(_Token(_Kind.DOT, ".", i))
            i += 1
            continue
        if char.isascii() and _NAME_START.match(char):
            match = _NAME.match(text, i)
            assert match is not None
            tokens.append(_Token(_Kind.NAME, match.group(), i))
            i = match.end()
            continue
        if char == "(":
            tokens.append(_Token(_Kind.LPAREN, char, i))
            i += 1
            continue
        if char == ")":
            tokens.append(_Token(_Kind.RPAREN, char, i))
            i += 1
            continue
        if char == ",":
            tokens.append(_Token(_Kind.COMMA, char, i))
            i += 1
            continue
        two = text[i : i + 2]
        if two in ("!=", "<=", ">="):
            tokens.append(_Token(_Kind.OPERATOR, two, i))
            i += 2
            continue
        if char in "+-*=<>":
            tokens.append(_Token(_Kind.OPERATOR, char, i))
            i += 1
            continue
        if char == "/":
            raise ExpressionSyntaxError("paths are not supported; divide with 'div'", i)
        raise ExpressionSyntaxError(f"unexpected character {char!r}", i)
    tokens.append(_Token(_Kind.END, "", length))
    return tokens


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._index = 0

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _expect(self, kind: _Kind) -> _Token:
        token = self._next()
        if token.kind is not kind:
            raise ExpressionSyntaxError(f"expected {kind.value}, found {_describe(token)}", token.position)
        return token

    def parse(self) -> Node:
        if self._peek().kind is _Kind.END:
            raise ExpressionSyntaxError("empty expression", 0)
        node = self._expression(0)
        token = self._peek()
        if token.kind is not _Kind.END:
            raise ExpressionSyntaxError(f"unexpected {_describe(token)}", token.position)
        return node

    def _infix_operator(self) -> str | None:
        token = self._peek()
        if token.kind is _Kind.OPERATOR:
            return token.text
        if token.kind is _Kind.NAME and token.text in _WORD_OPERATORS:
            return token.text
        return None

    def _expression(self, min_precedence: int) -> Node:
        left = self._prefix()
        while True:
            op = self._infix_operator()
            if op is None:
                return left
            precedence = _BINARY_PRECEDENCE[op]
            if precedence <= min_precedence:
                return left
            token = self._next()
            right = self._expression(precedence)
            left = Binary(op, left, right, token.position)

    def _prefix(self) -> Node:
        token = self._next()
        kind = token.kind
        if kind is _Kind.NUMBER:
            return NumberLiteral(float(token.text), token.position)
        if kind is _Kind.STRING:
            return StringLiteral(token.text, token.position)
        if kind is _Kind.FIELD:
            return FieldRef(token.text, token.position)
        if kind is _Kind.DOT:
            return CurrentValue(token.position)
        if kind is _Kind.LPAREN:
            inner = self._expression(0)
            self._expect(_Kind.RPAREN)
            return inner
        if kind is _Kind.OPERATOR and token.text == "-":
            return Unary("-", self._expression(_UNARY_PRECEDENCE - 1), token.position)
        if kind is _Kind.NAME:
            if self._peek().kind is _Kind.LPAREN:
                return self._call(token)
            if token.text in _WORD_OPERATORS:
                # XPath would read it as a name; in a DCD it is always a slip.
                raise ExpressionSyntaxError(f"expected a value, found {token.text!r}", token.position)
            return BareName(token.text, token.position)
        raise ExpressionSyntaxError(f"expected a value, found {_describe(token)}", token.position)

    def _call(self, name: _Token) -> Node:
        arity = FUNCTIONS.get(name.text)
        if arity is None:
            raise ExpressionSyntaxError(f"unknown function {name.text}()", name.position)
        self._expect(_Kind.LPAREN)
        arguments: list[Node] = []
        if self._peek().kind is not _Kind.RPAREN:
            while True:
                arguments.append(self._expression(0))
                if self._peek().kind is _Kind.COMMA:
                    self._next()
                    continue
                break
        self._expect(_Kind.RPAREN)
        low, high = arity
        if len(arguments) < low or (high is not None and len(arguments) > high):
            expected = str(low) if low == high else f"{low} or more" if high is None else f"{low} to {high}"
            raise ExpressionSyntaxError(
                f"{name.text}() takes {expected} argument(s), not {len(arguments)}", name.position
            )
        if name.text == "regex" and isinstance(arguments[1], StringLiteral):
            checked_pattern(arguments[1].value, arguments[1].position)
        return Call(name.text, tuple(arguments), name.position)


def _describe(token: _Token) -> str:
    if token.kind is _Kind.END:
        return "the end of the expression"
    if token.kind in (_Kind.NAME, _Kind.OPERATOR, _Kind.NUMBER):
        return repr(token.text)
    return str(token.kind.value)


def parse_expression(text: str) -> Node:
    """Parse ``text``; raises :class:`ExpressionSyntaxError` with the position on bad input."""
    if not isinstance(text, str):
        raise TypeError("an expression is a string")
    return _Parser(text).parse()


# --------------------------------------------------------------------------- unparser


def _number_source(value: float) -> str:
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def _string_source(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    # XPath 1.0 has no escapes: a string with both quotes is spelled with concat().
    parts = [f'"{part}"' if "'" in part else f"'{part}'" for part in re.split(r"(')", value) if part]
    return "concat(" + ", ".join(parts) + ")"


def _precedence(node: Node) -> int:
    if isinstance(node, Binary):
        return _BINARY_PRECEDENCE[node.operator]
    if isinstance(node, Unary):
        return _UNARY_PRECEDENCE
    return 99


def to_source(node: Node) -> str:
    """The expression as text; ``parse_expression(to_source(n)) == n``."""
    if isinstance(node, NumberLiteral):
        if not math.isfinite(node.value) or node.value < 0:
            raise ValueError("a number literal is finite and not negative")
        return _number_source(node.value)
    if isinstance(node, StringLiteral):
        return _string_source(node.value)
    if isinstance(node, FieldRef):
        return "${" + node.name + "}"
    if isinstance(node, CurrentValue):
        return "."
    if isinstance(node, BareName):
        return node.name
    if isinstance(node, Unary):
        inner = to_source(node.operand)
        if _precedence(node.operand) < _UNARY_PRECEDENCE:
            inner = f"({inner})"
        return f"-{inner}"
    if isinstance(node, Binary):
        precedence = _BINARY_PRECEDENCE[node.operator]
        left = to_source(node.left)
        if _precedence(node.left) < precedence:
            left = f"({left})"
        right = to_source(node.right)
        if _precedence(node.right) <= precedence:
            right = f"({right})"
        return f"{left} {node.operator} {right}"
    return f"{node.function}(" + ", ".join(to_source(a) for a in node.arguments) + ")"


# --------------------------------------------------------------------------- XPath values

_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_XPATH_NUMBER = re.compile(r"\s*-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?")
_ISO_TIME = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")
_NAN = math.nan


def xpath_number(value: object) -> float:
    """XPath ``number()``: NaN for a missing or non-numeric value; dates as days since 1970."""
    cls = value.__class__
    if cls is float:
        return value  # type: ignore[return-value]
    if cls is int:
        return float(value)  # type: ignore[arg-type]
    if value is None:
        return _NAN
    if cls is str:
        if _XPATH_NUMBER.fullmatch(value):  # type: ignore[call-overload]
            return float(value)  # type: ignore[arg-type]
        return _NAN
    if cls is bool:
        return 1.0 if value else 0.0
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else _NAN
    if isinstance(value, datetime.date):
        return _temporal_number(value)
    if isinstance(value, datetime.time):
        return _temporal_number(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return xpath_number(xpath_string(value))
    return _NAN


def _format_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def xpath_string(value: object) -> str:
    """XPath ``string()``: '' for a missing value; dates ISO; times HH:MM; lists space-joined."""
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
        return _format_number(value)  # type: ignore[arg-type]
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else "NaN"
    if isinstance(value, datetime.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M")
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


def _is_number(value: object) -> bool:
    cls = value.__class__
    return cls is int or cls is float or isinstance(value, Decimal)


def _is_temporal(value: object) -> bool:
    return isinstance(value, datetime.date | datetime.time)


def _parse_temporal(text: str) -> datetime.date | datetime.time | None:
    text = text.strip()
    try:
        if _ISO_DATE.fullmatch(text):
            return datetime.date.fromisoformat(text)
        if _ISO_DATETIME.fullmatch(text):
            return datetime.datetime.fromisoformat(text)
        if _ISO_TIME.fullmatch(text):
            if len(text.split(":")[0]) == 1:
                text = "0" + text
            return datetime.time.fromisoformat(text)
    except ValueError:
        return None
    return None


def _temporal_number(value: object) -> float:
    """Days since 1970-01-01 (fractional for datetimes; a time is a fraction of a day)."""
    if isinstance(value, str):
        parsed = _parse_temporal(value)
        if parsed is None:
            return xpath_number(value)
        value = parsed
    if isinstance(value, datetime.datetime):
        seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
        return float(value.toordinal() - _EPOCH_ORDINAL) + seconds / 86400.0
    if isinstance(value, datetime.date):
        return float(value.toordinal() - _EPOCH_ORDINAL)
    if isinstance(value, datetime.time):
        seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
        return seconds / 86400.0
    return xpath_number(value)


def _equals(a: object, b: object) -> bool:
    if a is None:
        a = ""
    if b is None:
        b = ""
    if a.__class__ is str and b.__class__ is str:
        return a == b
    if a.__class__ is bool or b.__class__ is bool:
        return xpath_boolean(a) == xpath_boolean(b)
    if _is_number(a) or _is_number(b):
        return xpath_number(a) == xpath_number(b)
    if _is_temporal(a) or _is_temporal(b):
        return _temporal_number(a) == _temporal_number(b)
    return xpath_string(a) == xpath_string(b)


def _compare(op: Callable[[float, float], bool], a: object, b: object) -> bool:
    if _is_temporal(a) or _is_temporal(b):
        return op(_temporal_number(a), _temporal_number(b))
    return op(xpath_number(a), xpath_number(b))


def _days(days: float) -> datetime.timedelta:
    return datetime.timedelta(days=days)


def _add(a: object, b: object) -> object:
    if _is_temporal(a) and not _is_temporal(b):
        return _shift(a, xpath_number(b))
    if _is_temporal(b) and not _is_temporal(a):
        return _shift(b, xpath_number(a))
    return xpath_number(a) + xpath_number(b)


def _subtract(a: object, b: object) -> object:
    if _is_temporal(a):
        if _is_temporal(b) or (isinstance(b, str) and _parse_temporal(b) is not None):
            return _temporal_number(a) - _temporal_number(b)
        return _shift(a, -xpath_number(b))
    if _is_temporal(b):
        return _temporal_number(a) - _temporal_number(b)
    return xpath_number(a) - xpath_number(b)


def _shift(value: object, days: float) -> object:
    """A date moved by a whole number of days stays a date; otherwise a number of days."""
    if math.isnan(days):
        return _NAN
    if isinstance(value, datetime.datetime):
        try:
            return value + _days(days)
        except OverflowError:
            return _NAN
    if isinstance(value, datetime.date) and days.is_integer():
        try:
            return value + _days(days)
        except OverflowError:
            return _NAN
    return _temporal_number(value) + days


def _divide(a: object, b: object) -> float:
    x, y = xpath_number(a), xpath_number(b)
    if y == 0.0:
        if x == 0.0 or math.isnan(x):
            return _NAN
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def _modulo(a: object, b: object) -> float:
    x, y = xpath_number(a), xpath_number(b)
    if y == 0.0 or math.isnan(x) or math.isnan(y) or math.isinf(x):
        return _NAN
    return math.fmod(x, y)


def _multiply(a: object, b: object) -> float:
    return xpath_number(a) * xpath_number(b)


# --------------------------------------------------------------------------- functions


def _selection(value: object) -> list[str]:
    if isinstance(value, list | tuple):
        return [xpath_string(v) for v in value]
    return xpath_string(value).split()


def _to_date(value: object) -> object:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if _is_number(value) or value.__class__ is bool:
        days = xpath_number(value)
        if not math.isfinite(days):
            return None
        try:
            return datetime.date.fromordinal(_EPOCH_ORDINAL + math.floor(days))
        except (OverflowError, ValueError):
            return None
    parsed = _parse_temporal(xpath_string(value))
    if isinstance(parsed, datetime.datetime):
        return parsed.date()
    if isinstance(parsed, datetime.date):
        return parsed
    return None


def _to_datetime(value: object) -> object:
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day)
    if _is_number(value):
        days = xpath_number(value)
        if not math.isfinite(days):
            return None
        try:
            return datetime.datetime(1970, 1, 1) + _days(days)
        except OverflowError:
            return None
    parsed = _parse_temporal(xpath_string(value))
    if isinstance(parsed, datetime.datetime):
        return parsed
    if isinstance(parsed, datetime.date):
        return datetime.datetime(parsed.year, parsed.month, parsed.day)
    return None


def _round(value: object, digits: object = None) -> float:
    x = xpath_number(value)
    if not math.isfinite(x):
        return x
    if digits is None:
        return float(math.floor(x + 0.5))
    places = xpath_number(digits)
    if not math.isfinite(places):
        return _NAN
    try:
        quantum = Decimal(1).scaleb(-int(places))
        return float(Decimal(repr(x)).quantize(quantum, rounding=ROUND_HALF_UP))
    except InvalidOperation:
        return _NAN


def _int(value: object) -> float:
    x = xpath_number(value)
    if not math.isfinite(x):
        return x
    return float(math.trunc(x))


def _pow(a: object, b: object) -> float:
    try:
        result = math.pow(xpath_number(a), xpath_number(b))
    except (OverflowError, ValueError):
        return _NAN
    return result


def _extreme(pick: Callable[..., float], *values: object) -> float:
    numbers = [xpath_number(v) for v in values]
    if any(math.isnan(n) for n in numbers):
        return _NAN
    return pick(numbers)


def _substr(value: object, start: object, end: object = None) -> str:
    text = xpath_string(value)
    first = xpath_number(start)
    if math.isnan(first):
        return ""
    begin = int(max(0.0, min(first, len(text))))  # clamped first: infinities have no int
    if end is None:
        return text[begin:]
    last = xpath_number(end)
    if math.isnan(last):
        return ""
    return text[begin : max(begin, int(max(min(last, len(text)), 0)))]


def _round_position(x: float) -> float:
    """XPath's round() for positions: infinities stay infinite (floor would raise)."""
    return x if math.isinf(x) else math.floor(x + 0.5)


def _substring(value: object, start: object, length: object = None) -> str:
    # XPath 1.0: 1-based, rounded positions.
    text = xpath_string(value)
    first = xpath_number(start)
    if math.isnan(first):
        return ""
    first = _round_position(first)
    if length is None:
        last = math.inf
    else:
        count = xpath_number(length)
        if math.isnan(count):
            return ""
        last = first + _round_position(count)
        if math.isnan(last):  # -inf + inf: XPath gives NaN, and no character is selected
            return ""
    return "".join(c for i, c in enumerate(text, start=1) if first <= i < last)


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def checked_pattern(pattern: str, position: int) -> re.Pattern[str]:
    """``pattern`` compiled, or an :class:`ExpressionSyntaxError` at ``position`` saying why:
    a workbook's pattern that does not compile is a problem of the workbook, never an
    ``re.error`` (or OverflowError, for a repetition count past what ``re`` holds) escaping."""
    try:
        with warnings.catch_warnings():  # "possible nested set" and the like still compile
            warnings.simplefilter("ignore", FutureWarning)
            return _regex(pattern)
    except re.error as exc:
        raise ExpressionSyntaxError(f"invalid regular expression: {exc.msg}", position) from None
    except (OverflowError, RecursionError, ValueError) as exc:
        raise ExpressionSyntaxError(f"invalid regular expression: {exc}", position) from None


_FORMAT_DATE = {
    "%Y": lambda d: f"{d.year:04d}",
    "%y": lambda d: f"{d.year % 100:02d}",
    "%m": lambda d: f"{d.month:02d}",
    "%n": lambda d: str(d.month),
    "%d": lambda d: f"{d.day:02d}",
    "%e": lambda d: str(d.day),
    "%H": lambda d: f"{getattr(d, 'hour', 0):02d}",
    "%h": lambda d: str(getattr(d, "hour", 0)),
    "%M": lambda d: f"{getattr(d, 'minute', 0):02d}",
    "%S": lambda d: f"{getattr(d, 'second', 0):02d}",
}


def _format_date(value: object, pattern: object) -> str:
    day = _to_datetime(value) if isinstance(value, datetime.datetime) else _to_date(value)
    if not isinstance(day, datetime.date):
        return ""
    return re.sub(r"%[YymndeHhMS]", lambda m: _FORMAT_DATE[m.group()](day), xpath_string(pattern))


def _boolean_from_string(value: object) -> bool:
    return xpath_string(value) in ("true", "1")


# Eager functions: every argument is evaluated, then the function is applied.
_EAGER: Mapping[str, Callable[..., object]] = {
    "selected": lambda a, b: xpath_string(b).strip() in _selection(a),
    "count-selected": lambda a: float(len(_selection(a))),
    "selected-at": lambda a, n: (lambda s, i: s[int(i)] if math.isfinite(i) and 0 <= int(i) < len(s) else "")(
        _selection(a), xpath_number(n)
    ),
    "string-length": lambda a: float(len(xpath_string(a))),
    "regex": lambda a, p: _regex(xpath_string(p)).search(xpath_string(a)) is not None,
    "concat": lambda *args: "".join(xpath_string(a) for a in args),
    "int": _int,
    "number": xpath_number,
    "string": xpath_string,
    "date": _to_date,
    "date-time": _to_datetime,
    "decimal-date-time": _temporal_number,
    "decimal-date": _temporal_number,
    "true": lambda: True,
    "false": lambda: False,
    "boolean": xpath_boolean,
    "boolean-from-string": _boolean_from_string,
    "not": lambda a: not xpath_boolean(a),
    "round": _round,
    "abs": lambda a: abs(xpath_number(a)),
    "floor": lambda a: (lambda x: float(math.floor(x)) if math.isfinite(x) else x)(xpath_number(a)),
    "ceiling": lambda a: (lambda x: float(math.ceil(x)) if math.isfinite(x) else x)(xpath_number(a)),
    "pow": _pow,
    "min": lambda *args: _extreme(min, *args),
    "max": lambda *args: _extreme(max, *args),
    "substr": _substr,
    "substring": _substring,
    "contains": lambda a, b: xpath_string(b) in xpath_string(a),
    "starts-with": lambda a, b: xpath_string(a).startswith(xpath_string(b)),
    "ends-with": lambda a, b: xpath_string(a).endswith(xpath_string(b)),
    "normalize-space": lambda a: " ".join(xpath_string(a).split()),
    "format-date": _format_date,
}


# --------------------------------------------------------------------------- compiler


class Context:
    """What a compiled expression reads: field values by slot, ``.``, the choice, the clock."""

    __slots__ = ("choice", "current", "now", "today", "values")

    def __init__(
        self,
        values: Sequence[object] = (),
        *,
        current: object = None,
        choice: Mapping[str, object] | None = None,
        today: datetime.date | None = None,
        now: datetime.datetime | None = None,
    ) -> None:
        self.values = values
        self.current = current
        self.choice = choice
        self.today = today
        self.now = now


Evaluator: TypeAlias = Callable[[Context], Any]


@dataclass(frozen=True, slots=True)
class FieldSlot:
    """Where a ``${name}`` lives in :attr:`Context.values`, and how to read it.

    ``reader`` turns the stored value into its XPath value (an ISO date string into a
    ``date``, say); None means the stored value is used as is. It must accept None.
    """

    index: int
    reader: Callable[[object], object] | None = None
    #: What the reader always gives, when known: ``"date"`` (a ``datetime.date`` or None).
    #: It lets comparisons between dates skip the general XPath conversions.
    kind: str | None = None


def compile_expression(
    node: Node,
    *,
    fields: Callable[[str], FieldSlot] | None = None,
    columns: Callable[[str], str] | None = None,
    current_kind: str | None = None,
) -> Evaluator:
    """Compile ``node`` to a closure over a :class:`Context`.

    ``fields`` resolves ``${name}`` to a slot once, here; ``columns`` resolves a bare name
    to the key it reads in ``Context.choice`` (``choice_filter`` only). Either may raise
    ``KeyError`` for an unknown name, reported as :class:`UnknownReferenceError`.
    ``current_kind`` says what ``.`` always holds, like :attr:`FieldSlot.kind`. Parts
    that depend on nothing are evaluated now. The closure may raise on values no rule
    foresaw (a bad dynamic regex); callers turn that into a validation error.
    """
    return _Compiler(fields, columns, current_kind).compile(node)


_CONSTANT_CONTEXT = Context()

_BOOLEAN_OPERATORS = frozenset({"or", "and", "=", "!=", "<", "<=", ">", ">="})
_BOOLEAN_FUNCTIONS = frozenset(
    {
        "selected",
        "regex",
        "true",
        "false",
        "boolean",
        "boolean-from-string",
        "not",
        "contains",
        "starts-with",
        "ends-with",
    }
)


def returns_boolean(node: Node) -> bool:
    """True when the node always evaluates to a Python bool."""
    if isinstance(node, Binary):
        return node.operator in _BOOLEAN_OPERATORS
    return isinstance(node, Call) and node.function in _BOOLEAN_FUNCTIONS


def _as_boolean(evaluate: Evaluator) -> Evaluator:
    return lambda ctx: xpath_boolean(evaluate(ctx))


def _days_between(later: Evaluator, earlier: Evaluator) -> Evaluator:
    """``date - date`` when both are statically dates: the number of days, NaN if one is missing."""

    def days(ctx: Context) -> float:
        a = later(ctx)
        if a is None:
            return _NAN
        b = earlier(ctx)
        if b is None:
            return _NAN
        return float((a - b).days)

    return days


def _selected_code(selection: Evaluator, code: str) -> Evaluator:
    """``selected(x, 'code')`` with a constant code: a list membership test."""

    def selected(ctx: Context) -> bool:
        value = selection(ctx)
        if value.__class__ is list:
            return code in value
        return code in _selection(value)

    return selected


def _constant(value: object) -> Evaluator:
    def constant(_ctx: Context) -> object:
        return value

    return constant


_RELATIONAL: Mapping[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARITHMETIC: Mapping[str, Callable[[object, object], object]] = {
    "+": _add,
    "-": _subtract,
    "*": _multiply,
    "div": _divide,
    "mod": _modulo,
}


class _Compiler:
    def __init__(
        self,
        fields: Callable[[str], FieldSlot] | None,
        columns: Callable[[str], str] | None,
        current_kind: str | None = None,
    ) -> None:
        self._fields = fields
        self._columns = columns
        self._current_kind = current_kind

    def compile(self, node: Node) -> Evaluator:
        evaluator = self._compile(node)
        if is_constant(node):
            try:
                value = evaluator(_CONSTANT_CONTEXT)
            except Exception:  # noqa: BLE001 - left for run time, where it becomes a field error
                return evaluator
            return _constant(value)
        return evaluator

    def _constant(self, node: Node) -> tuple[bool, object]:
        if not is_constant(node):
            return False, None
        try:
            return True, self._compile(node)(_CONSTANT_CONTEXT)
        except Exception:  # noqa: BLE001
            return False, None

    def _compile(self, node: Node) -> Evaluator:
        if isinstance(node, NumberLiteral | StringLiteral):
            return _constant(node.value)
        if isinstance(node, FieldRef):
            return self._field(node)
        if isinstance(node, CurrentValue):
            return lambda ctx: ctx.current
        if isinstance(node, BareName):
            return self._bare_name(node)
        if isinstance(node, Unary):
            operand = self._compile(node.operand)
            return lambda ctx: -xpath_number(operand(ctx))
        if isinstance(node, Binary):
            return self._binary(node)
        return self._call(node)

    def _field(self, node: FieldRef) -> Evaluator:
        if self._fields is None:
            raise UnknownReferenceError(f"no field ${{{node.name}}} here", node.position)
        try:
            slot = self._fields(node.name)
        except KeyError:
            raise UnknownReferenceError(f"unknown field ${{{node.name}}}", node.position) from None
        index, reader = slot.index, slot.reader
        if reader is None:
            return lambda ctx: ctx.values[index]
        return lambda ctx: reader(ctx.values[index])

    def _bare_name(self, node: BareName) -> Evaluator:
        if self._columns is None:
            raise UnknownReferenceError(
                f"bare name {node.name!r}: refer to a field as ${{{node.name}}}", node.position
            )
        try:
            key = self._columns(node.name)
        except KeyError:
            raise UnknownReferenceError(f"unknown choice column {node.name!r}", node.position) from None

        def column(ctx: Context) -> object:
            choice = ctx.choice
            return None if choice is None else choice.get(key)

        return column

    def _date_operand(self, node: Node) -> Evaluator | None:
        """An evaluator giving a ``date`` or None when ``node`` is statically a date."""
        if isinstance(node, FieldRef) and self._fields is not None:
            try:
                kind = self._fields(node.name).kind
            except KeyError:
                return None
            return self._field(node) if kind == "date" else None
        if isinstance(node, CurrentValue) and self._current_kind == "date":
            return lambda ctx: ctx.current
        if isinstance(node, Call) and node.function == "today":
            return self._call(node)
        if isinstance(node, StringLiteral) and _ISO_DATE.fullmatch(node.value):
            try:
                return _constant(datetime.date.fromisoformat(node.value))
            except ValueError:
                return None
        return None

    def _date_comparison(self, op: str, left: Evaluator, right: Evaluator) -> Evaluator:
        # The general rules give the same answers: a missing date is NaN (only = between
        # two missing values holds), two dates compare as their day numbers.
        if op in ("=", "!="):
            negate = op == "!="

            def equals(ctx: Context) -> bool:
                a = left(ctx)
                b = right(ctx)
                if a is None or b is None:
                    return (a is None and b is None) is not negate
                return (a == b) is not negate

            return equals
        compare = _RELATIONAL[op]

        def relate(ctx: Context) -> bool:
            a = left(ctx)
            if a is None:
                return False
            b = right(ctx)
            return b is not None and compare(a, b)

        return relate

    def _binary(self, node: Binary) -> Evaluator:
        op = node.operator
        if op in _RELATIONAL or op in ("=", "!="):
            left_date = self._date_operand(node.left)
            right_date = self._date_operand(node.right) if left_date is not None else None
            if left_date is not None and right_date is not None:
                return self._date_comparison(op, left_date, right_date)
        left = self._compile(node.left)
        right = self._compile(node.right)
        if op in ("and", "or"):
            # Operands that are already booleans (comparisons, not(), selected()...) need
            # no conversion: the common case, and the evaluation stays two calls deep.
            if not returns_boolean(node.left):
                left = _as_boolean(left)
            if not returns_boolean(node.right):
                right = _as_boolean(right)
            if op == "and":
                return lambda ctx: left(ctx) and right(ctx)
            return lambda ctx: left(ctx) or right(ctx)
        if op in ("=", "!="):
            negate = op == "!="
            known, constant = self._constant(node.right)
            if known and constant.__class__ is str:
                # The common `${x} = 'code'`: a string compare unless x holds a number or date.
                text: str = constant

                index = self._direct_index(node.left)
                if index is not None:

                    def equals_text_field(ctx: Context) -> bool:
                        value = ctx.values[index]
                        if value is None:
                            return (text == "") is not negate
                        if value.__class__ is str:
                            return (value == text) is not negate
                        return _equals(value, text) is not negate

                    return equals_text_field

                def equals_text(ctx: Context) -> bool:
                    value = left(ctx)
                    if value is None:
                        return (text == "") is not negate
                    if value.__class__ is str:
                        return (value == text) is not negate
                    return _equals(value, text) is not negate

                return equals_text
            if negate:
                return lambda ctx: not _equals(left(ctx), right(ctx))
            return lambda ctx: _equals(left(ctx), right(ctx))
        if op in _RELATIONAL:
            compare = _RELATIONAL[op]
            known, constant = self._constant(node.right)
            if known and _is_number(constant):
                number = xpath_number(constant)

                if isinstance(node.left, CurrentValue):

                    def compare_current(ctx: Context) -> bool:
                        value = ctx.current
                        cls = value.__class__
                        if cls is int or cls is float:
                            return compare(value, number)
                        return value is not None and compare(_temporal_number(value), number)

                    return compare_current

                def compare_number(ctx: Context) -> bool:
                    value = left(ctx)
                    cls = value.__class__
                    if cls is int or cls is float:
                        return compare(value, number)
                    return value is not None and compare(_temporal_number(value), number)

                return compare_number
            return lambda ctx: _compare(compare, left(ctx), right(ctx))
        if op == "-":
            left_date = self._date_operand(node.left)
            right_date = self._date_operand(node.right) if left_date is not None else None
            if left_date is not None and right_date is not None:
                return _days_between(left_date, right_date)
        arithmetic = _ARITHMETIC[op]
        return lambda ctx: arithmetic(left(ctx), right(ctx))

    def _direct_index(self, node: Node) -> int | None:
        """The slot of a ``${name}`` read as stored (no reader), else None."""
        if not isinstance(node, FieldRef) or self._fields is None:
            return None
        try:
            slot = self._fields(node.name)
        except KeyError:
            return None
        return slot.index if slot.reader is None else None

    def _call(self, node: Call) -> Evaluator:
        name = node.function
        args = [self._compile(a) for a in node.arguments]
        if name == "if":
            condition, then, otherwise = args
            return lambda ctx: then(ctx) if xpath_boolean(condition(ctx)) else otherwise(ctx)
        if name == "coalesce":

            def coalesce(ctx: Context) -> object:
                value: object = None
                for arg in args:
                    value = arg(ctx)
                    if xpath_string(value) != "":
                        return value
                return value

            return coalesce
        if name == "today":
            return lambda ctx: ctx.today if ctx.today is not None else datetime.date.today()
        if name == "now":
            return lambda ctx: ctx.now if ctx.now is not None else datetime.datetime.now()
        if name == "not":
            (operand,) = args
            if returns_boolean(node.arguments[0]):
                return lambda ctx: not operand(ctx)
            return lambda ctx: not xpath_boolean(operand(ctx))
        if name == "selected":
            known, code = self._constant(node.arguments[1])
            if known:
                return _selected_code(args[0], xpath_string(code).strip())
        if name == "count-selected":
            (selection,) = args

            def count_selected(ctx: Context) -> float:
                value = selection(ctx)
                if value.__class__ is list:
                    return float(len(value))
                return float(len(_selection(value)))

            return count_selected
        function = _EAGER[name]
        if not args and name in _CONTEXT_DEFAULT:
            return lambda ctx: function(ctx.current)
        if len(args) == 1:
            (only,) = args
            return lambda ctx: function(only(ctx))
        if len(args) == 2:
            first, second = args
            if name == "regex":
                known, pattern = self._constant(node.arguments[1])
                if known:  # a constant pattern (concat('[', 'a')) is checked as a literal is
                    compiled = checked_pattern(xpath_string(pattern), node.arguments[1].position)
                    return lambda ctx: compiled.search(xpath_string(first(ctx))) is not None
            return lambda ctx: function(first(ctx), second(ctx))
        if not args:
            return lambda _ctx: function()
        return lambda ctx: function(*[arg(ctx) for arg in args])
