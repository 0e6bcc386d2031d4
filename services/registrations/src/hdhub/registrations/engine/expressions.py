"""The XLSForm expression language: tokenizer, parser, AST and a compiler to closures.

Expressions in ``relevant``, ``constraint``, ``calculation``, ``required``,
``choice_filter`` and ``repeat_count`` are the XPath 1.0 subset ODK uses::

    ${age} >= 18 and selected(${risk}, 'smoker')
    . <= today() and . > ${DT_BIRTH}
    if(${weight} != '', ${weight} div (${height} * ${height}), '')
    sum(${dose}) <= 100                     (dose is a field of a repeat)
    region = ${region}                      (choice_filter: bare names are choice columns)

The text is tokenized and parsed by hand (a Pratt parser) into the AST below; user text
is never given to ``eval``. The AST is plain data: :func:`compile_expression` turns it
into Python closures for one record at a time, and a columnar compiler can be written
against the same nodes.

What a value is, and how it converts and compares (XPath 1.0 and ODK, dates in Belgian
time), lives in :mod:`.xpath`; the functions in :mod:`.functions`. Here:

* ``and`` and ``or`` short-circuit, ``if()``, ``coalesce()`` and ``once()`` evaluate lazily;
* ``${name}`` of a repeated field, from outside its repeat, is the node-set of its
  instances' values, and only the functions over a repeat take it (``count``, ``sum``,
  ``min``, ``max``, ``join``, ``count-non-empty``, ``indexed-repeat``);
* date arithmetic as in ODK: ``date + n`` and ``date - n`` give a date (n days),
  ``date - date`` gives the number of days; a date read as a number is the number of days
  since 1970-01-01 (``decimal-date-time()``).
"""

from __future__ import annotations

import datetime
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, TypeAlias

from hdhub.registrations.engine.functions import (
    EAGER,
    FUNCTIONS,
    REFUSED_FUNCTIONS,
    REPEAT_FUNCTIONS,
    checked_format,
    checked_pattern,
    digest_check,
)
from hdhub.registrations.engine.xpath import (
    NodeSet,
    add,
    compare,
    dated_text,
    divide,
    equals,
    is_number,
    local_now,
    modulo,
    multiply,
    parse_temporal,
    subtract,
    temporal_number,
    xpath_boolean,
    xpath_number,
    xpath_string,
)

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
    "NodeSet",
    "NumberLiteral",
    "RepeatSlot",
    "Resolver",
    "StringLiteral",
    "Unary",
    "UnknownReferenceError",
    "bare_names",
    "choice_name_fields",
    "compile_expression",
    "field_references",
    "is_constant",
    "parse_expression",
    "plain_references",
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


# Functions whose value changes from one call to the next: never computed in advance.
_IMPURE_FUNCTIONS = frozenset({"today", "now", "uuid", "decimal-time"})
# Functions that read the current value when called without arguments.
_CONTEXT_DEFAULT = frozenset({"string-length", "number", "string", "normalize-space"})
# Functions that read the current value whatever their arguments.
_READS_CURRENT = frozenset({"once"})

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
#: How deep an expression's tree may be: parentheses, calls, unary minus and operator
#: chains (``1 + 1 + ...`` is as deep as it is long). Forms nest a few levels; the bound
#: keeps the parser, the compiler and the evaluator (all recursive) far from Python's
#: recursion limit, so a pathological cell is a syntax error naming its position.
MAX_DEPTH = 100
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


def _depth(node: Node) -> int:
    """The tree's depth (a single node is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(current, Unary):
            stack.append((current.operand, level + 1))
        elif isinstance(current, Binary):
            stack.extend(((current.left, level + 1), (current.right, level + 1)))
        elif isinstance(current, Call):
            stack.extend((a, level + 1) for a in current.arguments)
    return deepest


def field_references(node: Node) -> frozenset[str]:
    """The names referred to as ``${name}``."""
    return frozenset(n.name for n in walk(node) if isinstance(n, FieldRef))


def bare_names(node: Node) -> frozenset[str]:
    return frozenset(n.name for n in walk(node) if isinstance(n, BareName))


def _reads_current(node: Node) -> bool:
    if isinstance(node, CurrentValue):
        return True
    return isinstance(node, Call) and (
        node.function in _READS_CURRENT or (not node.arguments and node.function in _CONTEXT_DEFAULT)
    )


def uses_current_value(node: Node) -> bool:
    return any(_reads_current(n) for n in walk(node))


def plain_references(node: Node) -> frozenset[str]:
    """The names referred to as ``${name}`` other than as an argument of a function over a
    repeat (``sum(${dose})``), where a repeated field may be read from outside its repeat."""
    aggregated: set[int] = set()
    for n in walk(node):
        if isinstance(n, Call) and n.function in REPEAT_FUNCTIONS:
            arguments = n.arguments[:2] if n.function == "indexed-repeat" else n.arguments
            aggregated.update(id(a) for a in arguments if isinstance(a, FieldRef))
    return frozenset(n.name for n in walk(node) if isinstance(n, FieldRef) and id(n) not in aggregated)


def choice_name_fields(node: Node) -> frozenset[str]:
    """The select fields whose labels ``jr:choice-name(value, '${name}')`` reads."""
    return frozenset(
        _choice_field(n.arguments[1]) or ""
        for n in walk(node)
        if isinstance(n, Call) and n.function == "jr:choice-name"
    ) - {""}


_CHOICE_FIELD = re.compile(r"\s*\$\{([A-Za-z_][A-Za-z0-9_.\-]*)\}\s*")


def _choice_field(argument: Node) -> str | None:
    if isinstance(argument, StringLiteral):
        match = _CHOICE_FIELD.fullmatch(argument.value)
        if match is not None:
            return match.group(1)
    return None


def is_constant(node: Node) -> bool:
    """True when the value depends on nothing: no references, ``.``, today() or now()."""
    for n in walk(node):
        if isinstance(n, FieldRef | CurrentValue | BareName):
            return False
        if isinstance(n, Call) and (n.function in _IMPURE_FUNCTIONS or _reads_current(n)):
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
        self._depth = 0

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
            if _depth(left) > MAX_DEPTH:
                raise ExpressionSyntaxError(
                    f"the expression nests more than {MAX_DEPTH} levels deep", token.position
                )

    def _prefix(self) -> Node:
        token = self._peek()
        if self._depth >= MAX_DEPTH:
            raise ExpressionSyntaxError(
                f"the expression nests more than {MAX_DEPTH} levels deep", token.position
            )
        self._depth += 1
        try:
            return self._prefix_at(self._next())
        finally:
            self._depth -= 1

    def _prefix_at(self, token: _Token) -> Node:
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
            refused = REFUSED_FUNCTIONS.get(name.text)
            if refused is not None:
                raise ExpressionSyntaxError(f"{name.text}() is not supported: {refused}", name.position)
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
        call = Call(name.text, tuple(arguments), name.position)
        _check_literals(call)
        return call


def _check_literals(call: Call) -> None:
    """Arguments written as literals are checked when the workbook is read: a pattern that
    does not compile, a date format or digest algorithm the function does not know."""
    name, arguments = call.function, call.arguments
    try:
        if name == "regex" and isinstance(arguments[1], StringLiteral):
            checked_pattern(arguments[1].value)
        elif name in ("format-date", "format-date-time") and isinstance(arguments[1], StringLiteral):
            checked_format(arguments[1].value)
        elif name == "digest" and all(isinstance(a, StringLiteral) for a in arguments[1:]):
            digest_check(*(a.value for a in arguments[1:] if isinstance(a, StringLiteral)))
    except ValueError as exc:
        raise ExpressionSyntaxError(str(exc), arguments[1].position) from None
    if name == "weighted-checklist" and len(arguments) % 2:
        raise ExpressionSyntaxError(
            "weighted-checklist() takes the least and most, then pairs of an answer and its weight",
            call.position,
        )
    if name == "jr:choice-name" and _choice_field(arguments[1]) is None:
        raise ExpressionSyntaxError(
            "jr:choice-name() names its select field as text: jr:choice-name(${x}, '${x}')",
            arguments[1].position,
        )


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


# --------------------------------------------------------------------------- compiler


class Context:
    """What a compiled expression reads: field values by slot, ``.``, the choice, the clock,
    and which repeat instances are there (by presence index, for node-sets)."""

    __slots__ = ("choice", "current", "now", "present", "today", "values")

    def __init__(
        self,
        values: Sequence[object] = (),
        *,
        current: object = None,
        choice: Mapping[str, object] | None = None,
        today: datetime.date | None = None,
        now: datetime.datetime | None = None,
        present: Sequence[bool | None] = (),
    ) -> None:
        self.values = values
        self.current = current
        self.choice = choice
        self.today = today
        self.now = now
        self.present = present


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


@dataclass(frozen=True, slots=True)
class RepeatSlot:
    """``${name}`` of a repeat, or of a field inside one, read from outside the repeat.

    ``presence`` gives, per instance, its index in :attr:`Context.present`; ``indexes``
    the field's slot in each instance (empty for the repeat itself).
    """

    repeat: str
    presence: tuple[int, ...]
    indexes: tuple[int, ...] = ()
    reader: Callable[[object], object] | None = None

    @property
    def is_repeat(self) -> bool:
        return not self.indexes


#: Resolves ``${name}`` once, at compile time; KeyError for an unknown name.
Resolver: TypeAlias = Callable[[str], FieldSlot | RepeatSlot]


def compile_expression(
    node: Node,
    *,
    fields: Resolver | None = None,
    columns: Callable[[str], str] | None = None,
    labels: Callable[[str], Mapping[str, str]] | None = None,
    current_kind: str | None = None,
) -> Evaluator:
    """Compile ``node`` to a closure over a :class:`Context`.

    ``fields`` resolves ``${name}`` to a slot once, here; ``columns`` resolves a bare name
    to the key it reads in ``Context.choice`` (``choice_filter`` only); ``labels`` gives a
    select field's label per code (``jr:choice-name``). Each may raise ``KeyError`` for an
    unknown name, reported as :class:`UnknownReferenceError`. ``current_kind`` says what
    ``.`` always holds, like :attr:`FieldSlot.kind`. Parts that depend on nothing are
    evaluated now. The closure may raise on values no rule foresaw (a bad dynamic regex);
    callers turn that into a validation error.
    """
    return _Compiler(fields, columns, labels, current_kind).compile(node)


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
        "checklist",
        "weighted-checklist",
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
        return code in xpath_string(value).split(" ")

    return selected


def _constant(value: object) -> Evaluator:
    def constant(_ctx: Context) -> object:
        return value

    return constant


def _plain_text(text: str) -> bool:
    """A text that equals only itself: no number, no date (``'yes'``, ``'C01'``)."""
    return xpath_number(text) != xpath_number(text)


_NAN = float("nan")
_RELATIONAL: Mapping[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARITHMETIC: Mapping[str, Callable[[object, object], object]] = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "div": divide,
    "mod": modulo,
}
_NODE_SET_USES = "count(), sum(), min(), max(), join(), count-non-empty() or indexed-repeat()"


class _Compiler:
    def __init__(
        self,
        fields: Resolver | None,
        columns: Callable[[str], str] | None,
        labels: Callable[[str], Mapping[str, str]] | None = None,
        current_kind: str | None = None,
    ) -> None:
        self._fields = fields
        self._columns = columns
        self._labels = labels
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

    def _slot(self, node: FieldRef) -> FieldSlot | RepeatSlot:
        if self._fields is None:
            raise UnknownReferenceError(f"no field ${{{node.name}}} here", node.position)
        try:
            return self._fields(node.name)
        except KeyError:
            raise UnknownReferenceError(f"unknown field ${{{node.name}}}", node.position) from None

    def _field(self, node: FieldRef) -> Evaluator:
        slot = self._slot(node)
        if isinstance(slot, RepeatSlot):
            what = "is a repeat" if slot.is_repeat else f"is inside repeat {slot.repeat!r}"
            raise UnknownReferenceError(
                f"${{{node.name}}} {what}: outside it, use it in {_NODE_SET_USES}", node.position
            )
        index, reader = slot.index, slot.reader
        if reader is None:
            return lambda ctx: ctx.values[index]
        return lambda ctx: reader(ctx.values[index])

    def _node_set(self, node: Node) -> Evaluator:
        """An argument of a function over a repeat: a repeat or repeated field gives its
        node-set; anything else its value."""
        if not isinstance(node, FieldRef):
            return self._compile(node)
        slot = self._slot(node)
        if not isinstance(slot, RepeatSlot):
            return self._field(node)
        presence = slot.presence
        if slot.is_repeat:
            return lambda ctx: NodeSet(None for p in presence if ctx.present[p])
        pairs = tuple(zip(slot.indexes, presence, strict=True))
        read = slot.reader or (lambda value: value)
        return lambda ctx: NodeSet(read(ctx.values[i]) for i, p in pairs if ctx.present[p])

    def _repeat_argument(self, call: Call, at: int, *, repeat: bool) -> RepeatSlot:
        """The repeat (``repeat``) or repeated field that argument ``at`` of ``call`` must be."""
        argument = call.arguments[at]
        slot = self._slot(argument) if isinstance(argument, FieldRef) else None
        if not isinstance(slot, RepeatSlot) or slot.is_repeat is not repeat:
            what = "a repeat, ${repeat}" if repeat else "a field of a repeat, from outside the repeat"
            if call.function == "count":
                what = "a repeat or a field of a repeat, from outside the repeat"
            raise UnknownReferenceError(
                f"argument {at + 1} of {call.function}() is {what}",
                getattr(argument, "position", call.position),
            )
        return slot

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
                slot = self._fields(node.name)
            except KeyError:
                return None
            return self._field(node) if isinstance(slot, FieldSlot) and slot.kind == "date" else None
        if isinstance(node, CurrentValue) and self._current_kind == "date":
            return lambda ctx: ctx.current
        if isinstance(node, Call) and node.function == "today":
            return self._call(node)
        if isinstance(node, StringLiteral):
            parsed = parse_temporal(node.value)
            if parsed.__class__ is datetime.date:
                return _constant(parsed)
        return None

    def _date_comparison(self, op: str, left: Evaluator, right: Evaluator) -> Evaluator:
        # The general rules give the same answers: a missing date is NaN (only = between
        # two missing values holds), two dates compare as their day numbers.
        if op in ("=", "!="):
            negate = op == "!="

            def equals_dates(ctx: Context) -> bool:
                a = left(ctx)
                b = right(ctx)
                if a is None or b is None:
                    return (a is None and b is None) is not negate
                return (a == b) is not negate

            return equals_dates
        relation = _RELATIONAL[op]

        def relate(ctx: Context) -> bool:
            a = left(ctx)
            if a is None:
                return False
            b = right(ctx)
            return b is not None and relation(a, b)

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
            return self._equality(node, left, right)
        if op in _RELATIONAL:
            return self._relation(node, left, right)
        if op == "-":
            left_date = self._date_operand(node.left)
            right_date = self._date_operand(node.right) if left_date is not None else None
            if left_date is not None and right_date is not None:
                return _days_between(left_date, right_date)
        arithmetic = _ARITHMETIC[op]
        return lambda ctx: arithmetic(left(ctx), right(ctx))

    def _equality(self, node: Binary, left: Evaluator, right: Evaluator) -> Evaluator:
        negate = node.operator == "!="
        known, constant = self._constant(node.right)
        if known and constant.__class__ is str and not dated_text(constant):
            # The common `${x} = 'code'`: a text equals the same text, and another text only
            # when it is a date and the code a number of days (rare: checked apart).
            text: str = constant
            numeric = not _plain_text(text)

            index = self._direct_index(node.left)
            if index is not None:

                def equals_text_field(ctx: Context) -> bool:
                    value = ctx.values[index]
                    if value is None:
                        return (text == "") is not negate
                    if value.__class__ is str and (value == text or not numeric or value[4:5] != "-"):
                        return (value == text) is not negate
                    return equals(value, text) is not negate

                return equals_text_field

            def equals_text(ctx: Context) -> bool:
                value = left(ctx)
                if value is None:
                    return (text == "") is not negate
                if value.__class__ is str and (value == text or not numeric or value[4:5] != "-"):
                    return (value == text) is not negate
                return equals(value, text) is not negate

            return equals_text
        if negate:
            return lambda ctx: not equals(left(ctx), right(ctx))
        return lambda ctx: equals(left(ctx), right(ctx))

    def _relation(self, node: Binary, left: Evaluator, right: Evaluator) -> Evaluator:
        relation = _RELATIONAL[node.operator]
        known, constant = self._constant(node.right)
        if known and is_number(constant):
            number = xpath_number(constant)

            if isinstance(node.left, CurrentValue):

                def compare_current(ctx: Context) -> bool:
                    value = ctx.current
                    cls = value.__class__
                    if cls is int or cls is float:
                        return relation(value, number)
                    return value is not None and relation(temporal_number(value), number)

                return compare_current

            def compare_number(ctx: Context) -> bool:
                value = left(ctx)
                cls = value.__class__
                if cls is int or cls is float:
                    return relation(value, number)
                return value is not None and relation(temporal_number(value), number)

            return compare_number
        return lambda ctx: compare(relation, left(ctx), right(ctx))

    def _direct_index(self, node: Node) -> int | None:
        """The slot of a ``${name}`` read as stored (no reader), else None."""
        if not isinstance(node, FieldRef) or self._fields is None:
            return None
        try:
            slot = self._fields(node.name)
        except KeyError:
            return None
        return slot.index if isinstance(slot, FieldSlot) and slot.reader is None else None

    def _call(self, node: Call) -> Evaluator:
        name = node.function
        special = self._special_call(node)
        if special is not None:
            return special
        if name in REPEAT_FUNCTIONS:
            if name == "count":  # a repeat's instances, or a repeated field's
                self._repeat_argument(node, 0, repeat=self._is_repeat(node))
            elif name in ("sum", "count-non-empty"):
                self._repeat_argument(node, 0, repeat=False)
            args = [self._node_set(a) for a in node.arguments]
        else:
            args = [self._compile(a) for a in node.arguments]
        function = EAGER[name]
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
                    try:
                        compiled = checked_pattern(xpath_string(pattern))
                    except ValueError as exc:
                        raise ExpressionSyntaxError(str(exc), node.arguments[1].position) from None
                    return lambda ctx: compiled.search(xpath_string(first(ctx)))
            return lambda ctx: function(first(ctx), second(ctx))
        if not args:
            return lambda _ctx: function()
        return lambda ctx: function(*[arg(ctx) for arg in args])

    def _is_repeat(self, node: Call) -> bool:
        argument = node.arguments[0]
        if not isinstance(argument, FieldRef):
            return False
        slot = self._slot(argument)
        return isinstance(slot, RepeatSlot) and slot.is_repeat

    def _special_call(self, node: Call) -> Evaluator | None:
        """The functions that read more than their arguments' values, or evaluate lazily."""
        name = node.function
        if name == "if":
            condition, then, otherwise = (self._compile(a) for a in node.arguments)
            return lambda ctx: then(ctx) if xpath_boolean(condition(ctx)) else otherwise(ctx)
        if name == "coalesce":
            args = [self._compile(a) for a in node.arguments]

            def coalesce(ctx: Context) -> object:
                value: object = None
                for arg in args:
                    value = arg(ctx)
                    if xpath_string(value) != "":
                        return value
                return value

            return coalesce
        if name == "once":
            (fresh,) = (self._compile(a) for a in node.arguments)
            # The value the record already holds, when it holds one (a stored record sent back).
            return lambda ctx: ctx.current if xpath_string(ctx.current) != "" else fresh(ctx)
        if name == "today":
            return lambda ctx: ctx.today if ctx.today is not None else local_now().date()
        if name == "now":
            return lambda ctx: ctx.now if ctx.now is not None else local_now()
        if name == "not":
            operand = self._compile(node.arguments[0])
            if returns_boolean(node.arguments[0]):
                return lambda ctx: not operand(ctx)
            return lambda ctx: not xpath_boolean(operand(ctx))
        if name == "selected":
            known, code = self._constant(node.arguments[1])
            if known:
                return _selected_code(self._compile(node.arguments[0]), xpath_string(code).strip())
        if name == "count-selected":
            selection = self._compile(node.arguments[0])

            def count_selected(ctx: Context) -> float:
                value = selection(ctx)
                if value.__class__ is list:
                    return float(len(value))
                return float(sum(1 for code in xpath_string(value).split(" ") if code))

            return count_selected
        if name == "indexed-repeat":
            return self._indexed_repeat(node)
        if name == "jr:choice-name":
            return self._choice_name(node)
        return None

    def _indexed_repeat(self, node: Call) -> Evaluator:
        """``indexed-repeat(${field}, ${repeat}, n)``: the field's value in instance n (1-based)."""
        field_slot = self._repeat_argument(node, 0, repeat=False)
        repeat_slot = self._repeat_argument(node, 1, repeat=True)
        if field_slot.repeat != repeat_slot.repeat:
            raise UnknownReferenceError(
                f"the field is in repeat {field_slot.repeat!r}, not {repeat_slot.repeat!r}",
                node.arguments[1].position,
            )
        instances = tuple(zip(field_slot.indexes, field_slot.presence, strict=True))
        read = field_slot.reader or (lambda value: value)
        position = self._compile(node.arguments[2])

        def pick(ctx: Context) -> object:
            n = xpath_number(position(ctx))
            if not (1 <= n <= len(instances)) or not n.is_integer():
                return None
            index, presence = instances[int(n) - 1]
            return read(ctx.values[index]) if ctx.present[presence] else None

        return pick

    def _choice_name(self, node: Call) -> Evaluator:
        """``jr:choice-name(value, '${field}')``: the label of the code in the field's list."""
        name = _choice_field(node.arguments[1])
        assert name is not None  # the parser checked it
        if self._labels is None:
            raise UnknownReferenceError("jr:choice-name() has no code lists here", node.arguments[1].position)
        try:
            labels = self._labels(name)
        except KeyError:
            raise UnknownReferenceError(
                f"jr:choice-name() names ${{{name}}}, which is not a select field", node.arguments[1].position
            ) from None
        value = self._compile(node.arguments[0])
        return lambda ctx: labels.get(xpath_string(value(ctx)).strip(), "")
