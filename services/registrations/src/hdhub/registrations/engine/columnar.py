"""The validation engine over an Arrow batch: a compiled DCD run column by column.

:class:`ColumnarDcd` replays what :class:`~.validation.CompiledDcd` does to one record
(parse, relevance, repeat counts, calculations, defaults, then the checks), in the same
order, over whole columns with ``pyarrow.compute``; the row engine stays the reference
and a differential test (tests/unit/test_columnar.py) holds the two to the same values,
errors, rule names and messages.

Three tiers keep the results identical whatever the DCD says:

1. values of the common shapes (a code of the list, ``dd/mm/yyyy``, plain digits...) are
   parsed by kernels; any other cell goes through the row engine's own parser;
2. a rule whose expression compiles to kernels (comparisons, arithmetic, dates,
   ``selected()``...) runs as kernels; any other rule runs as the row engine's closure,
   once per distinct combination of the values it reads;
3. a row where something falls outside both (a rule that raises, a value kernels cannot
   hold) is validated again, whole, by the row engine, and its result taken as is.

What a batch means is what :func:`~hdhub.registrations.batches.arrow.decode_rows` makes of
it: a null or empty cell is no value, so neither an ``unknown_field`` nor a STATUS.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from hdhub.common.patient_names import NAME_FIELDS
from hdhub.common.ssin import belgian_today
from hdhub.registrations.engine.dcd import FieldType, Repeat
from hdhub.registrations.engine.expressions import (
    Binary,
    Call,
    Context,
    CurrentValue,
    FieldRef,
    FieldSlot,
    Node,
    NumberLiteral,
    StringLiteral,
    Unary,
    xpath_boolean,
    xpath_number,
)
from hdhub.registrations.engine.functions import EAGER
from hdhub.registrations.engine.validation import (
    ROW_STATUSES,
    CompiledDcd,
    FieldError,
    Validation,
    _Invalid,
    _Rule,
    _Slot,
)
from hdhub.registrations.engine.xpath import dated_text, local_now, parse_temporal

__all__ = ["BatchValidation", "ColumnarDcd", "columnar"]

_EPOCH = datetime.date(1970, 1, 1)
#: Integers beyond this are not held as doubles exactly: rows with one go to the row engine.
_EXACT_INT = 2**53
_STRING_TYPES = (pa.string(), pa.large_string(), pa.string_view())
_LIST = pa.list_(pa.string())
#: The Python class of a value in an array of each storage type that can be patched
#: (replace_with_mask has no kernel for lists).
_PY_TYPES: dict[pa.DataType, type] = {pa.string(): str, pa.int64(): int}

# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class BatchValidation:
    """A batch's outcome, as ``validate_many`` gives it row by row, with its errors and
    warnings already listed in row order (each ``(row index, error)``)."""

    rows: int
    errors: list[tuple[int, FieldError]]
    warnings: list[tuple[int, FieldError]]
    _values: Callable[[], list[dict[str, Any]]]
    _submit: list[bool | None]
    _fallback: dict[int, Validation]

    @classmethod
    def of(cls, results: list[Validation]) -> BatchValidation:
        """The row engine's validations of a batch, in this shape."""
        return cls(
            len(results),
            [(i, e) for i, r in enumerate(results) for e in r.errors],
            [(i, w) for i, r in enumerate(results) for w in r.warnings],
            lambda: [r.values for r in results],
            [r.submit for r in results],
            dict(enumerate(results)),
        )

    @property
    def valid_rows(self) -> int:
        return self.rows - len({i for i, _ in self.errors})

    def results(self) -> list[Validation]:
        """One :class:`Validation` per row (values, errors, warnings, STATUS), as the row
        engine's ``validate_many`` gives them."""
        values = self._values()
        errors: list[list[FieldError]] = [[] for _ in range(self.rows)]
        warnings: list[list[FieldError]] = [[] for _ in range(self.rows)]
        for i, e in self.errors:
            errors[i].append(e)
        for i, w in self.warnings:
            warnings[i].append(w)
        out = [Validation(values[i], errors[i], warnings[i], self._submit[i]) for i in range(self.rows)]
        for i, result in self._fallback.items():
            out[i] = result
        return out


# --------------------------------------------------------------------------- masks


def _count(mask: pa.BooleanArray | None) -> int:
    return 0 if mask is None else mask.true_count


def _or(a: pa.BooleanArray | None, b: pa.BooleanArray | None) -> pa.BooleanArray | None:
    if a is None or a.true_count == 0:
        return b
    if b is None or b.true_count == 0:
        return a
    return pc.or_(a, b)


def _and(a: pa.BooleanArray, b: pa.BooleanArray | None) -> pa.BooleanArray | None:
    if b is None:
        return None
    if a.true_count == len(a) and a.null_count == 0:
        return b
    return pc.and_(a, b)


def _and_not(a: pa.BooleanArray, b: pa.BooleanArray | None) -> pa.BooleanArray:
    if b is None or b.true_count == 0:
        return a
    return pc.and_not(a, b)


def _rows(mask: pa.BooleanArray | None) -> list[int]:
    if mask is None or mask.true_count == 0:
        return []
    return pc.indices_nonzero(mask).to_pylist()  # type: ignore[no-any-return]


def _is_true(tri: pa.BooleanArray) -> pa.BooleanArray:
    """True where a three-state array (null: unknown) is True (``fill_null(tri, False)``,
    without a kernel call when there is no null)."""
    return tri if tri.null_count == 0 else pc.fill_null(tri, False)


# --------------------------------------------------------------------------- vectorised values


@dataclass(slots=True)
class _Vec:
    """A value in vectorised form: ``kind`` is bool (no nulls), num (float64, null for a
    missing value, NaN as XPath's), date (float64 days since 1970, null missing), str
    (null missing) or list (a selection; null missing). ``data`` is an array or, for a
    constant, a Python value. ``unsure`` marks rows the kernels cannot decide."""

    kind: str
    data: Any
    unsure: pa.BooleanArray | None = None


class _Unsupported(Exception):  # noqa: N818 - compile-time signal, never escapes
    pass


_Evaluate = Callable[["_Batch"], _Vec]
_RELATIONS = {"<": pc.less, "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal}
_PY_RELATIONS: Mapping[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_KIND_OF = {
    FieldType.INTEGER: "num",
    FieldType.DECIMAL: "num",
    FieldType.DATE: "date",
    FieldType.TEXT: "str",
    FieldType.SELECT_ONE: "str",
    FieldType.SELECT_MULTIPLE: "list",
}


def _unsure(*vecs: _Vec) -> pa.BooleanArray | None:
    out = None
    for v in vecs:
        out = _or(out, v.unsure)
    return out


def _nan(v: _Vec) -> Any:
    """A num or date as XPath numbers: a missing value is NaN."""
    if isinstance(v.data, pa.Array):
        return v.data if v.data.null_count == 0 else pc.fill_null(v.data, math.nan)
    return math.nan if v.data is None else v.data


def _as_bool(v: _Vec, n: int) -> _Vec:
    """XPath ``boolean()``."""
    data = v.data
    if not isinstance(data, pa.Array):
        return _Vec("bool", _constant_array(xpath_boolean(_python_constant(v)), n), v.unsure)
    if v.kind == "bool":
        return v
    if v.kind in ("num", "date"):
        if v.kind == "date":
            out = pc.is_valid(data)
        else:
            out = _is_true(pc.and_(pc.not_equal(data, 0.0), pc.invert(pc.is_nan(data))))
    elif v.kind == "str":
        out = _is_true(pc.not_equal(data, ""))
    else:  # list
        out = _is_true(pc.greater(pc.list_value_length(data), 0))
    return _Vec("bool", out, v.unsure)


def _python_constant(v: _Vec) -> object:
    if isinstance(v.data, pa.Scalar):
        return v.data.as_py()
    if v.kind == "date" and v.data is not None:
        return _EPOCH + datetime.timedelta(days=v.data)
    return v.data


_CONSTANTS: dict[tuple[bool, int], pa.BooleanArray] = {}


def _constant_array(value: bool, n: int) -> pa.BooleanArray:
    key = (value, n)
    found = _CONSTANTS.get(key)
    if found is None:
        if len(_CONSTANTS) > 64:
            _CONSTANTS.clear()
        found = _CONSTANTS[key] = pa.array([value] * n, pa.bool_())
    return found


class _Kernels:
    """Compiles a rule's expression to kernels over a batch, or raises _Unsupported.

    Each case below follows the row compiler's own case (expressions.py) for the kinds it
    accepts; everything else is left to the row engine's closure."""

    def __init__(self, engine: CompiledDcd, repeat: str | None, instance: int | None, current: int | None):
        self.engine = engine
        self.resolve = engine._resolver(repeat, instance)
        self.current = current  # the slot ``.`` reads (constraints)

    def compile(self, node: Node) -> _Evaluate:
        if isinstance(node, NumberLiteral):
            value = float(node.value)
            return lambda _b: _Vec("num", value)
        if isinstance(node, StringLiteral):
            text = node.value
            return lambda _b: _Vec("str", text)
        if isinstance(node, FieldRef):
            return self._slot_vector(self._field_index(node))
        if isinstance(node, CurrentValue):
            if self.current is None:
                raise _Unsupported
            return self._slot_vector(self.current)
        if isinstance(node, Unary):
            operand = self._num(node.operand)
            return lambda b: _negate(operand(b))
        if isinstance(node, Binary):
            return self._binary(node)
        if isinstance(node, Call):
            return self._call(node)
        raise _Unsupported

    # -- references ------------------------------------------------------------------

    def _field_index(self, node: FieldRef) -> int:
        try:
            slot = self.resolve(node.name)
        except KeyError:
            raise _Unsupported from None
        if not isinstance(slot, FieldSlot):
            raise _Unsupported
        return slot.index

    def _kind(self, index: int) -> str:
        slot = self.engine._slots[index]
        kind = _KIND_OF.get(slot.field.type)
        if kind is None or slot.field.type is FieldType.CALCULATE:
            raise _Unsupported
        return kind

    def _slot_vector(self, index: int) -> _Evaluate:
        self._kind(index)
        return lambda b: b.vector(index)

    def _static_kind(self, node: Node) -> str | None:
        if isinstance(node, FieldRef):
            try:
                return self._kind(self._field_index(node))
            except _Unsupported:
                return None
        if isinstance(node, CurrentValue) and self.current is not None:
            try:
                return self._kind(self.current)
            except _Unsupported:
                return None
        if isinstance(node, Call) and node.function == "today":
            return "date"
        return None

    def _date_operand(self, node: Node) -> _Evaluate | None:
        """As the row compiler's ``_date_operand``: statically a date (or None)."""
        if self._static_kind(node) == "date":
            return self.compile(node)
        if isinstance(node, StringLiteral):
            parsed = parse_temporal(node.value)
            if parsed.__class__ is datetime.date:
                days = float((parsed - _EPOCH).days)
                return lambda _b: _Vec("date", days)
        return None

    def _num(self, node: Node) -> _Evaluate:
        """An operand read as a number: a num, or a literal."""
        evaluate = self.compile(node)
        kind = self._result_kind(node)
        if kind != "num":
            raise _Unsupported
        return evaluate

    def _result_kind(self, node: Node) -> str:
        if isinstance(node, NumberLiteral):
            return "num"
        if isinstance(node, StringLiteral):
            return "str"
        if isinstance(node, FieldRef | CurrentValue):
            kind = self._static_kind(node)
            if kind is None:
                raise _Unsupported
            return kind
        if isinstance(node, Unary):
            return "num"
        if isinstance(node, Binary):
            if node.operator in ("or", "and", "=", "!=", "<", "<=", ">", ">="):
                return "bool"
            return "num"
        if isinstance(node, Call):
            if node.function in ("today",):
                return "date"
            if node.function in ("true", "false", "not", "selected"):
                return "bool"
            if node.function in ("count-selected", "string-length", "int", "round"):
                return "num"
            if node.function == "if":
                return self._result_kind(node.arguments[1])
        raise _Unsupported

    # -- operators -------------------------------------------------------------------

    def _binary(self, node: Binary) -> _Evaluate:
        op = node.operator
        if op in ("and", "or"):
            left, right = self.compile(node.left), self.compile(node.right)
            self._result_kind(node.left), self._result_kind(node.right)
            combine = pc.and_ if op == "and" else pc.or_

            def logical(b: _Batch) -> _Vec:
                x, y = _as_bool(left(b), b.n), _as_bool(right(b), b.n)
                return _Vec("bool", combine(x.data, y.data), _unsure(x, y))

            return logical
        if op in ("=", "!=", "<", "<=", ">", ">="):
            left_date = self._date_operand(node.left)
            right_date = self._date_operand(node.right) if left_date is not None else None
            if left_date is not None and right_date is not None:
                return _date_comparison(op, left_date, right_date)
            if op in ("=", "!="):
                return self._equality(node)
            return self._relation(node)
        if op == "-":
            left_date = self._date_operand(node.left)
            right_date = self._date_operand(node.right) if left_date is not None else None
            if left_date is not None and right_date is not None:
                return _arithmetic(pc.subtract, left_date, right_date)
        if op in ("+", "-", "*", "div"):
            left, right = self._num(node.left), self._num(node.right)
            kernel = {"+": pc.add, "-": pc.subtract, "*": pc.multiply, "div": pc.divide}[op]
            return _arithmetic(kernel, left, right)
        raise _Unsupported

    def _equality(self, node: Binary) -> _Evaluate:
        negate = node.operator == "!="
        left_kind = self._result_kind(node.left)
        if isinstance(node.right, StringLiteral) and not dated_text(node.right.value):
            text = node.right.value
            left = self.compile(node.left)
            if left_kind == "str":
                numeric = xpath_number(text) == xpath_number(text)
                return _text_equals(left, text, numeric, negate)
            if left_kind == "num":
                number = xpath_number(text)
                return _number_equals_text(left, text, number, negate)
            raise _Unsupported
        right_kind = self._result_kind(node.right)
        if left_kind == "num" and right_kind == "num":
            return _number_equals(self.compile(node.left), self.compile(node.right), negate)
        raise _Unsupported

    def _relation(self, node: Binary) -> _Evaluate:
        left_kind, right_kind = self._result_kind(node.left), self._result_kind(node.right)
        if left_kind not in ("num", "date") or right_kind not in ("num", "date"):
            raise _Unsupported
        left, right = self.compile(node.left), self.compile(node.right)
        kernel = _RELATIONS[node.operator]
        relation = _PY_RELATIONS[node.operator]

        def relate(b: _Batch) -> _Vec:
            x, y = left(b), right(b)
            a, c = _nan(x), _nan(y)
            if not isinstance(a, pa.Array) and not isinstance(c, pa.Array):
                return _Vec("bool", relation(a, c), _unsure(x, y))
            return _Vec("bool", _is_true(kernel(a, c)), _unsure(x, y))

        return relate

    # -- functions -------------------------------------------------------------------

    def _call(self, node: Call) -> _Evaluate:
        name, args = node.function, node.arguments
        if name == "today":
            return lambda b: _Vec("date", b.today_days)
        if name in ("true", "false"):
            value = name == "true"
            return lambda b: _Vec("bool", _constant_array(value, b.n))
        if name == "not":
            operand = self.compile(args[0])
            self._result_kind(args[0])

            def negation(b: _Batch) -> _Vec:
                v = _as_bool(operand(b), b.n)
                return _Vec("bool", pc.invert(v.data), v.unsure)

            return negation
        if name == "selected" and isinstance(args[1], StringLiteral):
            if self._result_kind(args[0]) != "list":
                raise _Unsupported
            selection = self.compile(args[0])
            code = args[1].value.strip()
            return lambda b: _selected(selection(b), code, b)
        if name == "count-selected":
            if self._result_kind(args[0]) != "list":
                raise _Unsupported
            selection = self.compile(args[0])

            def count_selected(b: _Batch) -> _Vec:
                v = selection(b)
                lengths = pc.fill_null(pc.list_value_length(v.data), 0)
                return _Vec("num", pc.cast(lengths, pa.float64()), v.unsure)

            return count_selected
        if name == "string-length":
            target: Node | None = args[0] if args else None
            if target is None:
                if self.current is None:
                    raise _Unsupported
                text = self._slot_vector(self.current)
                if self._kind(self.current) != "str":
                    raise _Unsupported
            else:
                if self._result_kind(target) != "str" or not isinstance(target, FieldRef | CurrentValue):
                    raise _Unsupported
                text = self.compile(target)

            def string_length(b: _Batch) -> _Vec:
                v = text(b)
                lengths = pc.fill_null(pc.utf8_length(v.data), 0)
                return _Vec("num", pc.cast(lengths, pa.float64()), v.unsure)

            return string_length
        if name == "int":
            operand = self._num(args[0])

            def truncate(b: _Batch) -> _Vec:
                v = operand(b)
                data = pc.trunc(_nan(v))
                # A constant operand gives a pyarrow scalar: a constant stays a Python
                # float, as every constant does here (``int(0)`` is false, not a value).
                return _Vec("num", data.as_py() if isinstance(data, pa.Scalar) else data, v.unsure)

            return truncate
        if name == "round" and len(args) == 2:
            number, digits = self._num(args[0]), self._num(args[1])
            function = EAGER["round"]

            def rounding(b: _Batch) -> _Vec:
                x, d = number(b), digits(b)
                xs = _nan(x)
                ds = _nan(d)
                if isinstance(ds, pa.Array) or not isinstance(xs, pa.Array):
                    raise _Unsupported
                if not (ds.is_integer() and 0 <= ds <= 15):
                    return _Vec(
                        "num",
                        pa.array([function(v, ds) for v in xs.to_pylist()], pa.float64()),
                        _unsure(x, d),
                    )
                # Half away from zero on the decimal written (the row engine's function)
                # is the float formula wherever the value is not within a hair of a tie;
                # those few go through the function itself.
                scale = 10.0**ds
                scaled = pc.multiply(pc.abs(xs), scale)
                whole = pc.floor(pc.add(scaled, 0.5))
                result = pc.multiply(pc.sign(xs), pc.divide(whole, scale))
                near_tie = pc.less(pc.abs(pc.subtract(pc.subtract(scaled, pc.floor(scaled)), 0.5)), 1e-6)
                odd = pc.or_(near_tie, pc.greater_equal(scaled, 2.0**52))
                odd = pc.or_(odd, pc.equal(xs, 0.0))  # -0.0 keeps its sign there
                odd = pc.and_(_is_true(odd), pc.is_finite(xs))
                result = pc.if_else(pc.is_finite(xs), result, xs)
                if odd.true_count:
                    values = result.to_pylist()
                    raw = xs.to_pylist()
                    for r in _rows(odd):
                        values[r] = function(raw[r], ds)
                    result = pa.array(values, pa.float64())
                return _Vec("num", result, _unsure(x, d))

            return rounding
        if name == "if":
            condition = self.compile(args[0])
            self._result_kind(args[0])
            kind = self._result_kind(args[1])
            if kind not in ("num", "str") or self._result_kind(args[2]) != kind:
                raise _Unsupported
            then, otherwise = self.compile(args[1]), self.compile(args[2])

            def choose(b: _Batch) -> _Vec:
                c = _as_bool(condition(b), b.n)
                x, y = then(b), otherwise(b)
                return _Vec(kind, pc.if_else(c.data, x.data, y.data), _unsure(c, x, y))

            return choose
        raise _Unsupported


def _negate(v: _Vec) -> _Vec:
    data = _nan(v)
    return _Vec("num", pc.negate(data) if isinstance(data, pa.Array) else -data, v.unsure)


def _arithmetic(kernel: Any, left: _Evaluate, right: _Evaluate) -> _Evaluate:
    def arithmetic(b: _Batch) -> _Vec:
        x, y = left(b), right(b)
        a, c = _nan(x), _nan(y)
        if not isinstance(a, pa.Array) and not isinstance(c, pa.Array):
            a = pa.array([a] * b.n, pa.float64())
        return _Vec("num", kernel(a, c), _unsure(x, y))

    return arithmetic


def _date_comparison(op: str, left: _Evaluate, right: _Evaluate) -> _Evaluate:
    """Dates: a missing one equals only a missing one and relates to nothing."""

    def compare(b: _Batch) -> _Vec:
        x, y = left(b), right(b)
        a, c = x.data, y.data
        if not isinstance(a, pa.Array):
            a = pa.array([a] * b.n, pa.float64())
        if op in ("=", "!="):
            both_missing = pc.and_(pc.is_null(a), pc.is_null(c)) if isinstance(c, pa.Array) else None
            equal = _is_true(pc.equal(a, c))
            if both_missing is not None:
                equal = pc.or_(equal, both_missing)
            elif c is None:
                equal = pc.is_null(a)
            return _Vec("bool", pc.invert(equal) if op == "!=" else equal, _unsure(x, y))
        return _Vec("bool", _is_true(_RELATIONS[op](a, c)), _unsure(x, y))

    return compare


def _text_equals(left: _Evaluate, text: str, numeric: bool, negate: bool) -> _Evaluate:
    """``${x} = 'code'`` for a text: a missing value equals ''; a value that reads as a
    date against a numeric code is XPath's slow case, left to the row engine."""

    def equals_text(b: _Batch) -> _Vec:
        v = left(b)
        data = v.data
        if not isinstance(data, pa.Array):
            raise _Unsupported  # a constant on the left: not written so
        same = pc.equal(data, text)
        result = pc.fill_null(same, text == "")
        unsure = v.unsure
        if numeric:
            # Only a dated text may equal a numeric code otherwise than by being it.
            dated = _is_true(pc.and_(pc.invert(same), pc.match_substring(data, "-")))
            unsure = _or(unsure, dated)
        return _Vec("bool", pc.invert(result) if negate else result, unsure)

    return equals_text


def _number_equals_text(left: _Evaluate, text: str, number: float, negate: bool) -> _Evaluate:
    def equals(b: _Batch) -> _Vec:
        v = left(b)
        result = pc.fill_null(pc.equal(v.data, number), text == "")
        return _Vec("bool", pc.invert(result) if negate else result, v.unsure)

    return equals


def _number_equals(left: _Evaluate, right: _Evaluate, negate: bool) -> _Evaluate:
    """Numbers: a missing one (read as '') equals only another missing one."""

    def equals(b: _Batch) -> _Vec:
        x, y = left(b), right(b)
        a, c = x.data, y.data
        if not isinstance(a, pa.Array):
            a = pa.array([a] * b.n, pa.float64())
        result = _is_true(pc.equal(a, c))
        if isinstance(c, pa.Array):
            result = pc.or_(result, pc.and_(pc.is_null(a), pc.is_null(c)))
        elif c is None:
            result = pc.is_null(a)
        return _Vec("bool", pc.invert(result) if negate else result, _unsure(x, y))

    return equals


def _selected(v: _Vec, code: str, b: _Batch) -> _Vec:
    data = v.data
    flat, parents = b.flattened(data)
    hits = pc.equal(flat, code)
    if hits.true_count == 0:
        result = _constant_array(False, b.n)
    else:
        parents = pc.filter(parents, hits)
        result = pc.is_in(b.positions, value_set=parents)
    if code == "":  # a missing selection reads as '', whose one code is ''
        result = pc.or_(result, pc.is_null(data))
    return _Vec("bool", result, v.unsure)


# --------------------------------------------------------------------------- compiled rules


@dataclass(slots=True)
class _ColumnarRule:
    rule: _Rule
    kernels: _Evaluate | None  # None: the row engine's closure, per distinct values
    current: int | None
    reader: Callable[[object], object] | None


class ColumnarDcd:
    """A compiled DCD run over Arrow batches. Build it with :func:`columnar`."""

    def __init__(self, engine: CompiledDcd) -> None:
        self.engine = engine
        self._rules: dict[int, _ColumnarRule] = {}
        self._plans: dict[tuple[str, ...], _ParsePlan] = {}
        self.kernel_rules = 0
        self.closure_rules = 0

    def rule(
        self,
        rule: _Rule,
        *,
        repeat: str | None,
        instance: int | None,
        current: int | None = None,
        reader: Callable[[object], object] | None = None,
        kernels: bool = True,
    ) -> _ColumnarRule:
        """The columnar form of a row rule (compiled on first use, then kept)."""
        found = self._rules.get(id(rule))
        if found is not None:
            return found
        evaluate: _Evaluate | None = None
        if kernels:
            try:
                evaluate = _Kernels(self.engine, repeat, instance, current).compile(rule.node)
            except _Unsupported:
                evaluate = None
        if evaluate is None:
            self.closure_rules += 1
        else:
            self.kernel_rules += 1
        compiled = _ColumnarRule(rule, evaluate, current, reader)
        self._rules[id(rule)] = compiled
        return compiled

    def parse_plan(self, names: Sequence[str]) -> _ParsePlan:
        """How batches with these columns are parsed (made on first use, then kept)."""
        key = tuple(names)
        found = self._plans.get(key)
        if found is None:
            if len(self._plans) > 32:  # an upload's batches share their columns
                self._plans.clear()
            found = self._plans[key] = _parse_plan(self.engine, key)
        return found

    def validate_table(
        self,
        table: pa.Table | pa.RecordBatch,
        *,
        lang: str = "en",
        today: datetime.date | None = None,
    ) -> BatchValidation:
        """Validate every row of ``table`` (columns of text) as ``validate_many`` would the
        rows :func:`~hdhub.registrations.batches.arrow.decode_rows` makes of it."""
        now = local_now()
        day = today or now.date()
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if table.num_rows == 0:
            return BatchValidation(0, [], [], list, [], {})
        if not all(f.type in _STRING_TYPES or f.type == pa.null() for f in table.schema):
            return _by_rows(self.engine, table, lang, day)
        if len(set(table.column_names)) != table.num_columns:
            return _by_rows(self.engine, table, lang, day)  # a name twice: the row engine's reading
        batch = _Batch(self, table, lang, day, now)
        return batch.run()


def _by_rows(engine: CompiledDcd, table: pa.Table, lang: str, day: datetime.date) -> BatchValidation:
    """A batch the kernels do not read (not all text, a column name twice): the row
    engine, row by row."""
    from hdhub.registrations.batches.arrow import rows_of

    return BatchValidation.of(engine.validate_many(rows_of(table), lang=lang, today=day))


def columnar(engine: CompiledDcd) -> ColumnarDcd:
    """The columnar form of ``engine``, built once and kept with it."""
    found: ColumnarDcd | None = getattr(engine, "_columnar", None)
    if found is None:
        found = ColumnarDcd(engine)
        engine._columnar = found  # type: ignore[attr-defined]
    return found


# --------------------------------------------------------------------------- one batch

_Column: TypeAlias = pa.Array | list[Any] | None  # None: no value in any row


class _Batch:
    """The state of one batch while the steps run: as the row engine's ``_Row``, a column
    per slot and a mask per set."""

    def __init__(
        self, owner: ColumnarDcd, table: pa.Table, lang: str, today: datetime.date, now: datetime.datetime
    ) -> None:
        self.owner = owner
        self.engine = engine = owner.engine
        self.table = table
        self.n = n = table.num_rows
        self.lang = lang
        self.today = today
        self.now = now
        self.today_days = float((today - _EPOCH).days)
        self.positions = pa.array(range(n), pa.int64())
        self.all = _constant_array(True, n)
        slots = len(engine._slots)
        self.cols: list[_Column] = [None] * slots
        self._py: list[list[Any] | None] = [None] * slots
        self._vec: list[_Vec | None] = [None] * slots
        self.bad: list[pa.BooleanArray | None] = [None] * slots
        self.inactive: list[pa.BooleanArray | None] = [None] * slots
        self.scopes: list[pa.BooleanArray] = [self.all] * len(engine._scopes)
        self.present: list[pa.BooleanArray] = [self.all] * len(engine._present_index)
        self.fallback: pa.BooleanArray | None = None
        # (row, phase, order, error): sorted at the end into the row engine's order.
        self.errors: list[tuple[int, int, int, FieldError]] = []
        self.warnings: list[tuple[int, int, FieldError]] = []
        self.submit: list[bool | None] = [None] * n
        self.seq = 0
        self._flat: dict[int, tuple[pa.ListArray, pa.Array, pa.Array]] = {}

    # -- values ----------------------------------------------------------------------

    def flattened(self, lists: pa.ListArray) -> tuple[pa.Array, pa.Array]:
        """A selection's codes and the row of each (kept for the batch: several rules read
        the same selection)."""
        found = self._flat.get(id(lists))
        if found is None or found[0] is not lists:
            found = self._flat[id(lists)] = (lists, pc.list_flatten(lists), pc.list_parent_indices(lists))
        return found[1], found[2]

    def py(self, index: int) -> list[Any]:
        found = self._py[index]
        if found is None:
            col = self.cols[index]
            if col is None:
                found = [None] * self.n
            elif isinstance(col, list):
                found = col
            else:
                found = col.to_pylist()
            self._py[index] = found
        return found

    def array(self, index: int) -> pa.Array | None:
        """The slot's values in their storage type (None: all missing)."""
        col = self.cols[index]
        if isinstance(col, list):
            kind = self.engine._slots[index].field.type
            col = pa.array(col, _storage(kind))
            self.cols[index] = col
        return col

    def vector(self, index: int) -> _Vec:
        found = self._vec[index]
        if found is not None:
            return found
        field_type = self.engine._slots[index].field.type
        kind = _KIND_OF[field_type]
        col = self.array(index)
        if col is None:
            data = pa.nulls(
                self.n, _LIST if kind == "list" else pa.string() if kind == "str" else pa.float64()
            )
        elif kind == "num":
            data = pc.cast(col, pa.float64())
        elif kind == "date":
            data = _iso_days(col)
        else:
            data = col
        found = self._vec[index] = _Vec(kind, data)
        return found

    def store(self, index: int, column: _Column) -> None:
        self.cols[index] = column
        self._py[index] = column if isinstance(column, list) else None
        self._vec[index] = None

    def clear(self, index: int, mask: pa.BooleanArray) -> None:
        """No value where ``mask`` holds."""
        col = self.cols[index]
        if col is None or mask.true_count == 0:
            return
        if isinstance(col, list):
            rows = set(_rows(mask))
            self.store(index, [None if i in rows else v for i, v in enumerate(col)])
        else:
            self.store(index, pc.if_else(mask, pa.scalar(None, col.type), col))

    def has_value(self, index: int) -> pa.BooleanArray | None:
        col = self.cols[index]
        if col is None:
            return None
        if isinstance(col, list):
            return pa.array([v is not None for v in col], pa.bool_())
        if col.null_count == 0:
            return self.all
        return pc.is_valid(col)

    def missing(self, index: int) -> pa.BooleanArray:
        has = self.has_value(index)
        return self.all if has is None else pc.invert(has)

    def reads_bad(self, rule: _Rule) -> pa.BooleanArray | None:
        out = None
        for i in rule.refs:
            out = _or(out, self.bad[i])
        return out

    def add_bad(self, index: int, mask: pa.BooleanArray | None) -> None:
        self.bad[index] = _or(self.bad[index], mask)

    def add_inactive(self, index: int, mask: pa.BooleanArray | None) -> None:
        self.inactive[index] = _or(self.inactive[index], mask)

    def give_up(self, mask: pa.BooleanArray | None) -> None:
        """These rows go to the row engine, whole."""
        self.fallback = _or(self.fallback, mask)

    def _same_error(
        self, rows: Iterable[int], phase: int, error: FieldError, order: int | None = None
    ) -> None:
        self.error(rows, phase, lambda _r: error, order)

    def error(
        self, rows: Iterable[int], phase: int, make: Callable[[int], FieldError], order: int | None = None
    ) -> None:
        if order is None:
            self.seq += 1
            order = self.seq
        for r in rows:
            self.errors.append((r, phase, order, make(r)))

    # -- evaluating rules --------------------------------------------------------------

    def evaluate(
        self, rule: _ColumnarRule, where: pa.BooleanArray, convert: str
    ) -> tuple[Any, pa.BooleanArray]:
        """The rule's value over the rows of ``where``: a boolean array for ``bool``, a
        list of Python values for ``value`` (None elsewhere), floats for ``number``; and
        the rows where it could not be had (they go to the row engine)."""
        if rule.kernels is not None:
            try:
                v = rule.kernels(self)
            except _Unsupported:
                v = None
            if v is not None and not (convert == "number" and v.kind != "num"):
                unsure = _and(where, v.unsure) if v.unsure is not None else None
                if convert == "bool":
                    return _as_bool(v, self.n).data, unsure
                if convert == "number":
                    return _nan(v) if isinstance(v.data, pa.Array) else pa.array(
                        [v.data] * self.n, pa.float64()
                    ), unsure
                return _to_python(v, self.n), unsure
        return self._closure(rule, where, convert)

    def _closure(
        self, rule: _ColumnarRule, where: pa.BooleanArray, convert: str
    ) -> tuple[Any, pa.BooleanArray]:
        """The row engine's closure, once per distinct combination of what it reads."""
        refs = rule.rule.refs | ({rule.current} if rule.current is not None else set())
        if len(refs) == 1 and not rule.rule.repeats:
            (index,) = refs
            column = self.cols[index]
            if isinstance(column, pa.Array) and not pa.types.is_list(column.type):
                return self._closure_by_value(rule, index, column, where, convert)
        engine = self.engine
        evaluate = rule.rule.evaluate
        ordered = sorted(refs)
        columns = [self.py(i) for i in ordered]
        presences: list[int] = []
        for name in rule.rule.repeats:
            presences.extend(
                engine._present_index[(name, i)]
                for i in range(1, engine.definition.repeat(name).max_instances + 1)
            )
        present_columns = [self.present[p].to_pylist() for p in presences]
        values: list[object] = [None] * len(engine._slots)
        present: list[bool | None] = [True] * len(engine._present_index)
        ctx = Context(values, today=self.today, now=self.now, present=present)
        memo: dict[tuple[Any, ...], object] = {}
        failed: list[int] = []
        out: list[object] = [None] * self.n
        current, reader = rule.current, rule.reader
        for r in _rows(where):
            key = tuple(_hashable(c[r]) for c in columns) + tuple(p[r] for p in present_columns)
            if key in memo:
                out[r] = memo[key]
                continue
            for i, c in zip(ordered, columns, strict=True):
                values[i] = c[r]
            for p, c in zip(presences, present_columns, strict=True):
                present[p] = c[r]
            if current is not None:
                value = values[current]
                ctx.current = value if reader is None else reader(value)
            try:
                result = evaluate(ctx)
                if convert == "bool":
                    result = xpath_boolean(result)
                elif convert == "number":
                    result = xpath_number(result)
            except Exception:  # noqa: BLE001 - the row engine reports it, row by row
                failed.append(r)
                continue
            memo[key] = out[r] = result
        unsure = (
            pa.array([False] * self.n, pa.bool_())
            if not failed
            else pc.is_in(self.positions, pa.array(failed, pa.int64()))
        )
        if convert == "bool":
            return pa.array([bool(v) for v in out], pa.bool_()), unsure
        if convert == "number":
            return pa.array([math.nan if v is None else v for v in out], pa.float64()), unsure
        return out, unsure

    def _distinct(self, indexes: Sequence[int], where: pa.BooleanArray) -> tuple[list[int], pa.Array] | None:
        """The distinct combinations of these slots' values over ``where``: a row holding
        each, and each row's combination (its position in that list). None when the
        values are not all in arrays (computed Python values), or a value holds the
        separators the combination is spelled with."""
        parts = []
        for i in indexes:
            col = self.cols[i]
            if col is None:
                continue
            if isinstance(col, list):
                return None
            text = pc.binary_join(col, "\x1e") if pa.types.is_list(col.type) else col
            if text.type != pa.string():
                text = pc.cast(text, pa.string())
            if pc.any(pc.match_substring_regex(text, "[\x1c-\x1f]")).as_py():
                return None
            parts.append(pc.fill_null(text, "\x1c"))
        rows = pc.indices_nonzero(where)
        if not parts:
            return [rows[0].as_py()], pa.array([0] * self.n, pa.int32())
        key = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "\x1f")
        chosen = pc.filter(key, where)
        distinct = pc.unique(chosen)
        first = pc.index_in(distinct, value_set=chosen)
        return pc.take(rows, first).to_pylist(), pc.index_in(key, value_set=distinct)

    def _closure_by_value(
        self, rule: _ColumnarRule, index: int, column: pa.Array, where: pa.BooleanArray, convert: str
    ) -> tuple[Any, pa.BooleanArray]:
        """A rule reading one field: its closure once per distinct value of the field."""
        distinct = pc.unique(pc.filter(column, where)).to_pylist()
        values: list[object] = [None] * len(self.engine._slots)
        ctx = Context(
            values, today=self.today, now=self.now, present=[True] * len(self.engine._present_index)
        )
        results: list[object] = []
        failed: list[object] = []
        for value in distinct:
            values[index] = value
            if rule.current is not None:
                ctx.current = value if rule.reader is None else rule.reader(value)
            try:
                result = rule.rule.evaluate(ctx)
                if convert == "bool":
                    result = xpath_boolean(result)
                elif convert == "number":
                    result = xpath_number(result)
            except Exception:  # noqa: BLE001 - the row engine reports it, row by row
                failed.append(value)
                result = None
            results.append(result)
        at = pc.index_in(column, value_set=pa.array(distinct, column.type))
        unsure = _is_true(pc.and_(where, pc.is_in(column, value_set=pa.array(failed, column.type))))
        if convert == "bool":
            return _is_true(pc.take(pa.array([bool(r) for r in results], pa.bool_()), at)), unsure
        if convert == "number":
            numbers = pa.array([math.nan if r is None else r for r in results], pa.float64())
            return pc.fill_null(pc.take(numbers, at), math.nan), unsure
        return [None if k is None else results[k] for k in at.to_pylist()], unsure

    # -- the run -----------------------------------------------------------------------

    def run(self) -> BatchValidation:
        self._parse()
        self._derive()
        self._check()
        return self._result()

    def _parse(self) -> None:
        plan = self.owner.parse_plan(self.table.column_names)
        n = self.n
        if plan.status is not None:
            raw = self._raw(plan.status)
            if raw is not None:
                self._status(raw, _present(raw))
        for position in plan.unknown:
            raw = self._raw(position)
            if raw is None:
                continue
            present = _present(raw)
            if present.true_count:
                name = self.table.column_names[position]
                message = self.engine._builtin("unknown_field", self.lang)
                error = FieldError(name, name, "unknown_field", message)
                self._same_error(_rows(present), 0, error, position)
        for position, index in plan.singles:
            raw = self._raw(position)
            if raw is not None:
                present = _present(raw)
                if present.true_count:
                    self._parse_cells(index, position, raw, present, None)
        for group in plan.groups:
            raws = [self._raw(position) for position, _ in group.columns]
            whole = pa.concat_arrays([pa.nulls(n, pa.string()) if raw is None else raw for raw in raws])
            present = _present(whole)
            # Only the columns with a value (most of a repeat's instances have none).
            cols = [j for j in range(len(raws)) if present.slice(j * n, n).true_count]
            if not cols:
                continue
            if len(cols) < len(raws):
                whole = pa.concat_arrays([whole.slice(j * n, n) for j in cols])
                present = pa.concat_arrays([present.slice(j * n, n) for j in cols])
            sure, value, vector = _PARSERS[group.kind](group, cols, whole, present, n)
            others = _and_not(present, sure)
            vector_kind = _VECTOR_KIND.get(group.kind)
            for k, j in enumerate(cols):
                position, index = group.columns[j]
                start = k * n
                column = value.slice(start, n)
                left = others.slice(start, n)
                if left.true_count:
                    self._parse_cells(index, position, whole.slice(start, n), left, column)
                    continue
                self.store(index, column)
                if vector is not None and vector_kind is not None:
                    self._vec[index] = _Vec(vector_kind, vector.slice(start, n))

    def _raw(self, position: int) -> pa.Array | None:
        """A column as one text array (None: no value in any row)."""
        column = self.table.column(position)
        if column.null_count == len(column):
            return None
        raw = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if raw.type != pa.string():
            raw = raw.cast(pa.string())
        return raw

    def _status(self, raw: pa.Array, present: pa.BooleanArray) -> None:
        message = None
        texts = raw.to_pylist()
        for r in _rows(present):
            text = texts[r].strip().lower()
            if text == "":
                continue
            wanted = ROW_STATUSES.get(text)
            if wanted is None:
                message = message or self.engine._builtin("status", self.lang)
                self.errors.append((r, 9, 0, FieldError("STATUS", "STATUS", "status", message)))
            else:
                self.submit[r] = wanted

    def _parse_cells(
        self, index: int, position: int, raw: pa.Array, others: pa.BooleanArray, value: pa.Array | None
    ) -> None:
        """Cells of other shapes (``others``): the row engine's parser, one by one; the rest
        keep ``value``, the kernels' parse."""
        engine = self.engine
        slot = engine._slots[index]
        rows = _rows(others)
        texts = raw.to_pylist()
        parsed_values: list[object] = []
        bad_rows: list[int] = []
        giving_up: list[int] = []
        kind = slot.field.type
        for r in rows:
            parsed = engine._parse_value(index, texts[r])
            if parsed.__class__ is _Invalid:
                bad_rows.append(r)
                err = engine._error(slot, parsed.rule, self.lang, parsed.params)
                self.errors.append((r, 1, position, err))
                parsed = None
            elif kind is FieldType.INTEGER and parsed is not None and abs(parsed) >= _EXACT_INT:  # type: ignore[arg-type]
                giving_up.append(r)
                parsed = None
            parsed_values.append(parsed)
        self.store(index, self._patched(value, others, rows, parsed_values))
        if bad_rows:
            self.add_bad(index, pc.is_in(self.positions, pa.array(bad_rows, pa.int64())))
        if giving_up:
            self.give_up(pc.is_in(self.positions, pa.array(giving_up, pa.int64())))

    def _patched(
        self, value: pa.Array | None, where: pa.BooleanArray, rows: list[int], parsed: list[object]
    ) -> _Column:
        """``value`` with the row parser's values at ``rows`` (``where``): still an array
        when they are of its type (strings, integers), else a list."""
        kind = None if value is None else _PY_TYPES.get(value.type)
        if value is not None and kind is not None and all(v is None or v.__class__ is kind for v in parsed):
            return pc.replace_with_mask(value, where, pa.array(parsed, value.type))
        values = value.to_pylist() if value is not None else [None] * self.n
        for r, v in zip(rows, parsed, strict=True):
            values[r] = v
        return values

    def _derive(self) -> None:
        engine = self.engine
        if not engine._steps:
            return
        for presence, slots in engine._uncounted:
            there = None
            for i in slots:
                there = _or(there, _or(self.has_value(i), self.bad[i]))
            self.present[presence] = there if there is not None else _constant_array(False, self.n)
        for key in engine.plan:
            self._step(key, self.all)

    def _step(self, key: tuple[str, Any], where: pa.BooleanArray) -> None:
        kind, what = key
        spec: Any = self.engine.plan_specs.get(key)
        if kind == "instance":
            self._instance(what, spec or [], where)
        elif kind == "scope":
            self._scope(spec[0], spec[1], where=where)
        elif kind == "count":
            self._count(spec[0], spec[1], spec[2], where=where)
        else:
            self._field(spec[0], spec[1], spec[2], spec[3], spec[4], where=where)

    def _instance(
        self, instance: tuple[str, int], inner: Sequence[tuple[str, Any]], where: pa.BooleanArray
    ) -> None:
        engine = self.engine
        repeat_name, i = instance
        repeat = engine.definition.repeat(repeat_name)
        state = self.present[engine._present_index[instance]]
        slots = [engine._slot_of[(f.name, i)] for f in engine.definition.fields if f.repeat == repeat_name]
        unknown = _and(where, pc.is_null(state)) if state.null_count else None
        if unknown is not None and unknown.true_count:
            for s in slots:
                self.add_bad(s, unknown)
        absent = pc.and_(where, _is_true(pc.invert(state)))
        self.seq += 1
        if absent.true_count:
            for s in slots:
                self.add_inactive(s, absent)
            if repeat.repeat_count is not None:
                inputs = [s for s in slots if engine._slots[s].name in engine._inputs]
                counts: list[int] = []
                for s in inputs:
                    has = self.has_value(s)
                    hit = _and(absent, has)
                    if hit is None or hit.true_count == 0:
                        self.seq += 1
                        continue
                    if not counts:
                        counts = self._instances_there(repeat)
                    self.clear(s, hit)
                    slot = engine._slots[s]
                    self.seq += 1
                    for r in _rows(hit):
                        error = engine._error(slot, "repeat_count", self.lang, {"count": counts[r]})
                        self.errors.append((r, 2, self.seq, error))
        there = pc.and_(where, _is_true(state))
        if there.true_count:
            for sub in inner:
                self._step(sub, there)
        else:
            self.seq += 1000  # order only needs to grow

    def _instances_there(self, repeat: Repeat) -> list[int]:
        counts = [0] * self.n
        for i in range(1, repeat.max_instances + 1):
            for r, v in enumerate(self.present[self.engine._present_index[(repeat.name, i)]].to_pylist()):
                if v:
                    counts[r] += 1
        return counts

    def _scope(self, scope: Any, rule: _Rule | None, *, where: pa.BooleanArray) -> None:
        index, parent = scope.index, scope.parent
        self.seq += 1
        if parent is not None:
            parent_state = self.scopes[parent]
            inherit = pc.and_(where, pc.invert(_is_true(parent_state)))
            state = self.scopes[index]
            if inherit.true_count:
                state = pc.if_else(inherit, parent_state, state)
            where = pc.and_not(where, inherit)
        else:
            state = self.scopes[index]
        if rule is None or where.true_count == 0:
            self.scopes[index] = state
            return
        bad = _and(where, self.reads_bad(rule))
        if bad is not None and bad.true_count:
            state = pc.if_else(bad, pa.scalar(None, pa.bool_()), state)
            where = pc.and_not(where, bad)
        item = scope.item
        instance = None if isinstance(item, Repeat) else scope.instance
        compiled = self.owner.rule(rule, repeat=scope.repeat, instance=instance)
        value, unsure = self.evaluate(compiled, where, "bool")
        self.give_up(unsure)
        self.scopes[index] = pc.if_else(where, value, state)

    def _count(
        self, repeat: Repeat, rule: _Rule, presence: tuple[int, ...], *, where: pa.BooleanArray
    ) -> None:
        engine = self.engine
        self.seq += 1
        bad = _and(where, self.reads_bad(rule))
        run = _and_not(where, bad)
        compiled = self.owner.rule(rule, repeat=None, instance=None)
        counts, unsure = self.evaluate(compiled, run, "number")
        self.give_up(unsure)
        maximum = repeat.max_instances
        path = "/".join((*repeat.group_path, repeat.name))
        # count < 0 (or unknown): presence unknown. NaN: no instance.
        unknown = bad if bad is not None else None
        negative = _is_true(pc.and_(run, pc.less(counts, 0.0)))
        unknown = _or(unknown, negative)
        known = _and_not(run, negative)
        too_many = _is_true(pc.and_(known, pc.greater(counts, float(maximum))))
        if too_many.true_count:
            message = engine._builtin("repeat_max", self.lang, {"max": maximum})
            error = FieldError(repeat.name, path, "repeat_count", message)
            self.error(_rows(too_many), 2, lambda _r: error)
        used = pc.fill_null(pc.floor(pc.if_else(pc.is_nan(counts), 0.0, counts)), 0.0)
        for i, p in enumerate(presence, start=1):
            state = self.present[p]
            if unknown is not None and unknown.true_count:
                state = pc.if_else(unknown, pa.scalar(None, pa.bool_()), state)
            state = pc.if_else(known, pc.less_equal(float(i), used), state)
            self.present[p] = state

    def _field(
        self,
        slot: _Slot,
        scope: int | None,
        relevant: _Rule | None,
        calculation: _Rule | None,
        default: _Rule | None,
        *,
        where: pa.BooleanArray,
    ) -> None:
        engine = self.engine
        index = slot.index
        f = slot.field
        self.seq += 1
        # A scope in force in every row (a group without relevance) turns nothing off.
        if scope is not None and self.scopes[scope] is not self.all:
            state = self.scopes[scope]
            if state.null_count:
                unknown = pc.and_(where, pc.is_null(state))
                self.add_bad(index, unknown)
                where = pc.and_not(where, unknown)
            off = pc.and_(where, pc.invert(_is_true(state)))
            if off.true_count:
                self._drop(slot, off)
                where = pc.and_not(where, off)
        self.seq += 1
        if relevant is not None and where.true_count:
            bad = _and(where, self.reads_bad(relevant))
            if bad is not None and bad.true_count:
                self.add_bad(index, bad)
                where = pc.and_not(where, bad)
            compiled = self.owner.rule(relevant, repeat=f.repeat, instance=slot.instance)
            active, unsure = self.evaluate(compiled, where, "bool")
            self.give_up(unsure)
            off = pc.and_not(where, active)  # active: no nulls
            if off.true_count:
                self._drop(slot, off)
                where = pc.and_(where, active)
        self.seq += 1
        if where.true_count == 0:
            return
        if calculation is not None:
            self._compute(slot, calculation, where)
            return
        static = engine._static_defaults.get(index)
        if default is None and static is None:
            return
        empty = pc.and_(where, self.missing(index))
        empty = _and_not(empty, self.bad[index])
        if empty.true_count == 0:
            return
        if default is not None:
            self._compute(slot, default, empty)
        else:
            values = list(self.py(index))
            for r in _rows(empty):
                values[r] = list(static) if isinstance(static, list) else static
            self.store(index, values)

    def _drop(self, slot: _Slot, mask: pa.BooleanArray) -> None:
        """Does not apply: no value, and a warning where one was given."""
        index = slot.index
        self.add_inactive(index, mask)
        had = _and(mask, self.has_value(index))
        if had is not None and had.true_count:
            self.clear(index, had)
            warning = self.engine._error(slot, "not_relevant", self.lang)
            self.seq += 1
            for r in _rows(had):
                self.warnings.append((r, self.seq, warning))

    def _compute(self, slot: _Slot, rule: _Rule, where: pa.BooleanArray) -> None:
        index = slot.index
        f = slot.field
        bad = _and(where, self.reads_bad(rule))
        if bad is not None and bad.true_count:
            self.add_bad(index, bad)
            self.clear(index, bad)
            where = pc.and_not(where, bad)
        if where.true_count == 0:
            return
        if rule.reads_current:
            compiled = self.owner.rule(
                rule,
                repeat=f.repeat,
                instance=slot.instance,
                current=index,
                reader=_reader(f.type),
                kernels=False,
            )
        else:
            compiled = self.owner.rule(rule, repeat=f.repeat, instance=slot.instance)
        if compiled.kernels is not None and self._compute_by_kernels(slot, compiled, where):
            return
        results, unsure = self.evaluate(compiled, where, "value")
        self.give_up(unsure)
        coerce = slot.coerce
        assert coerce is not None
        values = list(self.py(index))
        failed: list[int] = []
        memo: dict[Any, object] = {}
        for r in _rows(where):
            result = results[r]
            key = (result.__class__, _hashable(result))
            try:
                found = memo.get(key, memo)
            except TypeError:
                found = memo
            if found is memo:
                try:
                    found = coerce(result)
                except Exception:  # noqa: BLE001 - the row engine reports it
                    failed.append(r)
                    continue
                if found.__class__ is tuple:
                    found = list(found)
                try:
                    memo[key] = found
                except TypeError:
                    pass
            if f.type is FieldType.INTEGER and found is not None and abs(found) >= _EXACT_INT:  # type: ignore[arg-type]
                failed.append(r)
                found = None
            values[r] = list(found) if isinstance(found, list) else found
        self.store(index, values)
        if failed:
            self.give_up(pc.is_in(self.positions, pa.array(failed, pa.int64())))

    def _compute_by_kernels(self, slot: _Slot, rule: _ColumnarRule, where: pa.BooleanArray) -> bool:
        """A computed value coerced to its field's canonical form by kernels, in the cases
        where that is exact; False leaves it to the field's own coercion, value by value."""
        assert rule.kernels is not None
        try:
            v = rule.kernels(self)
        except _Unsupported:
            return False
        kind = slot.field.type
        if not isinstance(v.data, pa.Array):
            return False
        data = v.data
        index = slot.index
        self.give_up(_and(where, v.unsure))
        if kind is FieldType.CALCULATE and v.kind == "str":
            new: list[object] = pc.if_else(pc.equal(data, ""), pa.scalar(None, pa.string()), data).to_pylist()
        elif kind is FieldType.CALCULATE and v.kind == "bool":
            new = data.to_pylist()
        elif kind is FieldType.CALCULATE and v.kind == "num":
            new = self._canonical_numbers(_nan(v))
        elif kind is FieldType.INTEGER and v.kind == "num":
            number_format = slot.field.number_format
            x = _nan(v)
            finite = _is_true(pc.is_finite(x))
            rounded = pc.floor(pc.add(x, 0.5))
            fits = pc.less(pc.abs(rounded), float(_EXACT_INT))
            if number_format is not None:
                fits = pc.and_(fits, pc.less(pc.abs(rounded), 10.0**number_format.digits_before))
            self.give_up(pc.and_(pc.and_(where, finite), pc.invert(fits)))
            integers = pc.cast(
                pc.if_else(pc.and_(finite, fits), rounded, pa.scalar(None, pa.float64())), pa.int64()
            )
            old = self.array(index)
            self.store(
                index,
                integers
                if old is None and where is self.all
                else pc.if_else(where, integers, old if old is not None else pa.nulls(self.n, pa.int64())),
            )
            return True
        else:
            return False
        old_values = self.py(index)
        flags = where.to_pylist()
        self.store(index, [n if w else o for n, o, w in zip(new, old_values, flags, strict=True)])
        return True

    def _canonical_numbers(self, x: pa.Array) -> list[object]:
        """As ``_canonical_result`` for numbers: None when not finite, whole numbers as
        int, others as XPath writes them (once per distinct number)."""
        finite = _is_true(pc.is_finite(x))
        whole = pc.and_(pc.and_(finite, pc.equal(pc.trunc(x), x)), pc.less(pc.abs(x), 1e16))
        whole = _is_true(whole)
        out: list[object] = pc.cast(
            pc.if_else(whole, x, pa.scalar(None, pa.float64())), pa.int64()
        ).to_pylist()
        fractional = pc.and_not(finite, whole)
        if fractional.true_count == 0:
            return out
        # Arrow writes a double with the shortest digits that read back as it, as repr()
        # does: XPath's text wherever it writes no exponent; the others go through Python.
        texts = _keep(pc.cast(x, pa.string()), fractional)
        out = [t if i is None else i for i, t in zip(out, texts.to_pylist(), strict=True)]
        exponent = _is_true(pc.match_substring(texts, "e"))
        if exponent.true_count:
            from hdhub.registrations.engine.validation import _canonical_result

            numbers = x.to_pylist()
            for r in _rows(exponent):
                out[r] = _canonical_result(numbers[r])
        return out

    # -- checks ------------------------------------------------------------------------

    def _check(self) -> None:
        engine = self.engine
        groups = []
        for group in engine._check_groups:
            there = self.all if group.presence is None else _is_true(self.present[group.presence])
            if there.true_count:
                groups.append((group, there))
        missing: list[tuple[int, pa.BooleanArray]] = []
        for group, there in groups:
            for index in group.always:
                self._require(index, there, missing)
            for index, rule in group.conditional:
                slot = engine._slots[index]
                candidates = pc.and_(there, self.missing(index))
                candidates = _and_not(candidates, self.inactive[index])
                candidates = _and_not(candidates, self.bad[index])
                candidates = _and_not(candidates, self.reads_bad(rule))
                if candidates.true_count == 0:
                    continue
                compiled = self.owner.rule(rule, repeat=slot.field.repeat, instance=slot.instance)
                required, unsure = self.evaluate(compiled, candidates, "bool")
                self.give_up(unsure)
                self._require(index, pc.and_(candidates, required), missing)
        # As the row engine: what is missing is known bad only once all are found.
        for index, mask in missing:
            self.add_bad(index, mask)
        for group, there in groups:
            for index, rule, reader in group.constraints:
                self._constraint(index, rule, reader, there)
            for index, rule, by_code in group.choice_filters:
                self._choice_filter(index, rule, by_code, there)

    def _require(self, index: int, where: pa.BooleanArray, found: list[tuple[int, pa.BooleanArray]]) -> None:
        has = self.has_value(index)
        if has is self.all:
            return  # a value in every row
        missing = where if has is None else pc.and_not(where, has)
        if missing.true_count == 0:
            return
        missing = _and_not(missing, self.inactive[index])
        missing = _and_not(missing, self.bad[index])
        if missing.true_count == 0:
            return
        slot = self.engine._slots[index]
        error = self.engine._error(slot, "required", self.lang)
        self.error(_rows(missing), 3, lambda _r: error, order=index)
        found.append((index, missing))

    def _constraint(self, index: int, rule: _Rule, reader: Any, there: pa.BooleanArray) -> None:
        slot = self.engine._slots[index]
        where = _and(there, self.has_value(index))
        self.seq += 1
        if where is None:
            return
        where = _and_not(_and_not(where, self.bad[index]), self.reads_bad(rule))
        if where.true_count == 0:
            return
        compiled = self.owner.rule(
            rule, repeat=slot.field.repeat, instance=slot.instance, current=index, reader=reader
        )
        ok, unsure = self.evaluate(compiled, where, "bool")
        self.give_up(unsure)
        broken = pc.and_not(where, ok)  # ok: no nulls
        if broken.true_count:
            error = self.engine._error(slot, "constraint", self.lang)
            self.error(_rows(broken), 4, lambda _r: error)

    def _choice_filter(
        self, index: int, rule: _Rule, by_code: Mapping[str, Mapping[str, str]], there: pa.BooleanArray
    ) -> None:
        slot = self.engine._slots[index]
        where = _and(there, self.has_value(index))
        self.seq += 1
        if where is None:
            return
        where = _and_not(_and_not(where, self.bad[index]), self.reads_bad(rule))
        if where.true_count == 0:
            return
        # The row engine's closure once per distinct combination of the values it reads.
        engine = self.engine
        refs = sorted(rule.refs)
        distinct = None if rule.repeats else self._distinct([index, *refs], where)
        rows = _rows(where) if distinct is None else distinct[0]
        columns = [self.py(i) for i in refs]
        own = self.py(index)
        values: list[object] = [None] * len(engine._slots)
        ctx = Context(values, today=self.today, now=self.now, present=[True] * len(engine._present_index))
        presences: list[int] = []
        for name in rule.repeats:
            presences.extend(
                engine._present_index[(name, i)]
                for i in range(1, engine.definition.repeat(name).max_instances + 1)
            )
        present_columns = [self.present[p].to_pylist() for p in presences]
        memo: dict[tuple[Any, ...], bool] = {}
        failed: list[int] = []
        broken: list[int] = []
        evaluate = rule.evaluate
        for r in rows:
            value = own[r]
            key = (_hashable(value), *(_hashable(c[r]) for c in columns), *(p[r] for p in present_columns))
            allowed = memo.get(key)
            if allowed is None:
                for i, c in zip(refs, columns, strict=True):
                    values[i] = c[r]
                for p, c in zip(presences, present_columns, strict=True):
                    ctx.present[p] = c[r]  # type: ignore[index]
                ctx.current = value
                try:
                    allowed = True
                    for code in value if isinstance(value, list) else (value,):
                        ctx.choice = by_code.get(str(code))
                        if not xpath_boolean(evaluate(ctx)):
                            allowed = False
                            break
                except Exception:  # noqa: BLE001
                    failed.append(r)
                    continue
                finally:
                    ctx.choice = None
                memo[key] = allowed
            if not allowed:
                broken.append(r)
        if distinct is not None:
            # From the row holding each combination to every row holding it.
            reps, combination = distinct
            at = {r: k for k, r in enumerate(reps)}
            flags = [False] * len(reps)
            for r in broken:
                flags[at[r]] = True
            broken = _rows(pc.and_(where, _is_true(pc.take(pa.array(flags, pa.bool_()), combination))))
            if failed:
                lost = [False] * len(reps)
                for r in failed:
                    lost[at[r]] = True
                self.give_up(pc.and_(where, _is_true(pc.take(pa.array(lost, pa.bool_()), combination))))
        elif failed:
            self.give_up(pc.is_in(self.positions, pa.array(failed, pa.int64())))
        if broken:
            error = engine._error(slot, "choice_filter", self.lang)
            self._same_error(broken, 4, error)

    # -- the outcome -------------------------------------------------------------------

    def _result(self) -> BatchValidation:
        fallback_rows = _rows(self.fallback)
        gone = set(fallback_rows)
        self.errors.sort(key=lambda e: (e[0], e[1], e[2]))
        self.warnings.sort(key=lambda w: (w[0], w[1]))
        errors = [(r, e) for r, _, _, e in self.errors if r not in gone]
        warnings = [(r, w) for r, _, w in self.warnings if r not in gone]
        fallback: dict[int, Validation] = {}
        if fallback_rows:
            from hdhub.registrations.batches.arrow import rows_of

            rows = rows_of(self.table.take(pa.array(fallback_rows, pa.int64())))
            results = self.engine.validate_many(rows, lang=self.lang, today=self.today)
            for r, result in zip(fallback_rows, results, strict=True):
                fallback[r] = result
                self.submit[r] = result.submit
            merged_errors = errors + [(r, e) for r, res in fallback.items() for e in res.errors]
            merged_warnings = warnings + [(r, w) for r, res in fallback.items() for w in res.warnings]
            merged_errors.sort(key=lambda e: e[0])  # stable: each row's own order is kept
            merged_warnings.sort(key=lambda w: w[0])
            errors, warnings = merged_errors, merged_warnings
        output = self.engine._output
        n = self.n

        def values() -> list[dict[str, Any]]:
            columns = [(name, self.py(index)) for name, index in output if self.cols[index] is not None]
            out: list[dict[str, Any]] = [{} for _ in range(n)]
            for name, column in columns:
                for r, value in enumerate(column):
                    if value is not None:
                        out[r][name] = list(value) if isinstance(value, list) else value
            return out

        return BatchValidation(n, errors, warnings, values, self.submit, fallback)


# --------------------------------------------------------------------------- parsing


def _storage(kind: FieldType) -> pa.DataType:
    if kind is FieldType.INTEGER:
        return pa.int64()
    if kind is FieldType.SELECT_MULTIPLE:
        return _LIST
    if kind in (FieldType.CALCULATE, FieldType.NOTE):
        raise TypeError("computed fields stay Python values")
    return pa.string()


def _iso_days(col: pa.Array) -> pa.Array:
    """ISO dates (yyyy-mm-dd) as days since 1970 (null where missing)."""
    stamps = pc.strptime(col, format="%Y-%m-%d", unit="s", error_is_null=True)
    return pc.cast(pc.cast(pc.cast(stamps, pa.date32()), pa.int32()), pa.float64())


_DECIMAL = r"^(?:[1-9][0-9]*(?:\.[0-9]+)?|0(?:\.[0-9]+)?)$"
# Days that exist in every year (1 to 9999), as dd/mm/yyyy and yyyy-mm-dd.
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_DAY_MONTH = (
    r"(?:(?:0[1-9]|1[0-9]|2[0-8])/(?:0[1-9]|1[0-2])|(?:29|30)/(?:0[13-9]|1[0-2])|31/(?:0[13578]|1[02]))"
)
_MONTH_DAY = (
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
)
_DATE_DMY = rf"^{_DAY_MONTH}/{_YEAR}$"
_DATE_ISO = rf"^{_YEAR}-{_MONTH_DAY}$"
_TIME = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"
_CODE = re.compile(r"[!-{}~]+")


def _present(raw: pa.Array) -> pa.BooleanArray:
    """Where a cell holds a value: neither null nor empty."""
    return _is_true(pc.not_equal(raw, ""))


def _keep(values: pa.Array, where: pa.BooleanArray) -> pa.Array:
    """``values`` where ``where`` holds, null elsewhere."""
    return pc.if_else(where, values, pa.scalar(None, values.type))


def _match(raw: pa.Array, pattern: str) -> pa.BooleanArray:
    return _is_true(pc.match_substring_regex(raw, pattern))


@dataclass(slots=True)
class _CodeTable:
    """The code lists of a group's columns as one: the union of their codes, and per list
    (``offsets``: each column's list times ``width``) which of them it has and where."""

    union: pa.Array  # string: every code of the lists
    member: pa.Array  # bool, at list * width + code: the list has the code
    local: pa.Array  # int64, at list * width + code: its position in the list (null: not in it)
    offsets: list[int]  # per column: its list's number times width
    lists: list[list[str]]
    longest: int


def _code_table(engine: CompiledDcd, slots: Sequence[_Slot], *, pieces: bool) -> _CodeTable:
    names: list[str] = []
    for slot in slots:
        if slot.field.list_name not in names:
            names.append(slot.field.list_name or "")
    lists = [_sure_codes(engine, name) or [] for name in names]
    if pieces:
        # A code a multi-select's parse can be sure of is written with visible characters
        # other than | (what the row parser splits on); any other is left to the row parser.
        lists = [[c for c in codes if _CODE.fullmatch(c)] for codes in lists]
    union = list(dict.fromkeys(code for codes in lists for code in codes))
    width = len(union)
    member: list[bool] = []
    local: list[int | None] = []
    for codes in lists:
        where = {code: i for i, code in enumerate(codes)}
        member.extend(code in where for code in union)
        local.extend(where.get(code) for code in union)
    return _CodeTable(
        pa.array(union, pa.string()),
        pa.array(member, pa.bool_()),
        pa.array(local, pa.int64()),
        [names.index(slot.field.list_name or "") * width for slot in slots],
        lists,
        max((len(codes) for codes in lists), default=0),
    )


class _ParseGroup:
    """The input columns of one kind, parsed together as one concatenated column; what
    differs between them (a code list, a number format) is spread into a per-row array,
    kept per batch size."""

    def __init__(self, engine: CompiledDcd, kind: str, columns: list[tuple[int, int]]) -> None:
        self.kind = kind
        self.columns = columns  # (table position, slot index)
        slots = [engine._slots[index] for _, index in columns]
        self.formats = [slot.field.number_format for slot in slots]
        self.codes = _code_table(engine, slots, pieces=kind == "many") if kind in ("one", "many") else None
        self._spread: dict[tuple[tuple[int, ...], int], pa.Array] = {}

    def spread(self, values: list[int], n: int) -> pa.Array | int:
        """Each column's value on each of its ``n`` rows (one number when all are equal)."""
        if len(set(values)) == 1:
            return values[0]
        key = (tuple(values), n)
        found = self._spread.get(key)
        if found is None:
            if len(self._spread) > 8:
                self._spread.clear()
            found = pa.concat_arrays([pa.repeat(pa.scalar(v, pa.int64()), n) for v in values])
            self._spread[key] = found
        return found


@dataclass(slots=True)
class _ParsePlan:
    """How a batch's columns (by name, in order) are parsed."""

    groups: list[_ParseGroup]
    singles: list[tuple[int, int]]  # (position, slot index): no kernel parse for this kind
    status: int | None  # the STATUS column's position, when no field is called so
    unknown: list[int]  # positions of columns no field reads


def _parse_kind(engine: CompiledDcd, slot: _Slot) -> str | None:
    f = slot.field
    kind = f.type
    if kind is FieldType.TEXT:
        return "ssin" if f.format == "ssin" else "name" if f.name in NAME_FIELDS else "text"
    if kind in (FieldType.SELECT_ONE, FieldType.SELECT_MULTIPLE):
        if (f.list_name or "") not in engine.definition.codelists:
            return None
        return "one" if kind is FieldType.SELECT_ONE else "many"
    return _KIND_NAMES.get(kind)


_KIND_NAMES = {
    FieldType.INTEGER: "integer",
    FieldType.DECIMAL: "decimal",
    FieldType.DATE: "date",
    FieldType.TIME: "time",
}


def _parse_plan(engine: CompiledDcd, names: Sequence[str]) -> _ParsePlan:
    inputs = engine._inputs
    kinds: dict[str, list[tuple[int, int]]] = {}
    singles: list[tuple[int, int]] = []
    status: int | None = None
    unknown: list[int] = []
    for position, name in enumerate(names):
        entry = inputs.get(name)
        if entry is None:
            if name == "STATUS" and "STATUS" not in inputs:
                status = position
            elif name not in engine._skipped:
                unknown.append(position)
            continue
        index = entry[0]
        kind = _parse_kind(engine, engine._slots[index])
        if kind is None:
            singles.append((position, index))
        else:
            kinds.setdefault(kind, []).append((position, index))
    groups = [_ParseGroup(engine, kind, columns) for kind, columns in kinds.items()]
    return _ParsePlan(groups, singles, status, unknown)


# Each kind of input parsed by kernels, over the concatenation of all its columns (one
# kernel call per step for all of them, not one per column): the cells of the common
# shapes, parsed exactly as the row engine's parser would. Each returns where it is sure,
# the values there (None elsewhere), and their vector form (numbers, dates) or None.
_Parsed: TypeAlias = tuple[pa.BooleanArray, pa.Array, pa.Array | None]
_NO_LIMIT = 2**31 - 1


def _parse_text(
    group: _ParseGroup, _cols: list[int], raw: pa.Array, present: pa.BooleanArray, _n: int
) -> _Parsed:
    # A text with a visible ASCII character is not blank: kept as written; a name needs a
    # letter or digit (the row engine's name rule).
    sure = pc.and_(present, _match(raw, "[A-Za-z0-9]" if group.kind == "name" else "[!-~]"))
    return sure, pc.if_else(sure, raw, pa.scalar(None, pa.string())), None


def _parse_ssin(
    _group: _ParseGroup, _cols: list[int], raw: pa.Array, present: pa.BooleanArray, _n: int
) -> _Parsed:
    sure, digits = _sure_ssin(raw, present)
    return sure, digits, None


def _parse_integer(
    group: _ParseGroup, cols: list[int], raw: pa.Array, present: pa.BooleanArray, n: int
) -> _Parsed:
    # ^[0-9]{1,15}$ without a pattern: ASCII digits only (none is not), at most 15.
    digits_only = pc.and_(pc.ascii_is_decimal(raw), pc.less_equal(pc.binary_length(raw), 15))
    sure = _is_true(pc.and_(present, digits_only))
    formats = [group.formats[j] for j in cols]
    limits = [_NO_LIMIT if f is None else f.digits_before for f in formats]
    if any(limit != _NO_LIMIT for limit in limits):
        digits = pc.utf8_length(pc.utf8_ltrim(raw, "0"))
        sure = _is_true(pc.and_(sure, pc.less_equal(digits, group.spread(limits, n))))
    integers = pc.cast(pc.if_else(sure, raw, pa.scalar(None, pa.string())), pa.int64())
    return sure, integers, pc.cast(integers, pa.float64())


def _parse_decimal(
    group: _ParseGroup, cols: list[int], raw: pa.Array, present: pa.BooleanArray, n: int
) -> _Parsed:
    sure = pc.and_(present, _match(raw, _DECIMAL))
    formats = [group.formats[j] for j in cols]
    if any(f is not None for f in formats):
        before = group.spread([_NO_LIMIT if f is None else f.digits_before for f in formats], n)
        after = group.spread([_NO_LIMIT if f is None else f.digits_after for f in formats], n)
        length = pc.utf8_length(raw)
        point = pc.find_substring(raw, ".")
        no_point = pc.equal(point, -1)
        whole = pc.if_else(no_point, length, point)
        whole = pc.if_else(pc.starts_with(raw, "0"), 0, whole)
        fraction = pc.if_else(no_point, 0, pc.subtract(pc.subtract(length, point), 1))
        fits = pc.and_(pc.less_equal(whole, before), pc.less_equal(fraction, after))
        sure = _is_true(pc.and_(sure, fits))
    text = pc.if_else(sure, raw, pa.scalar(None, pa.string()))
    return sure, text, pc.cast(text, pa.float64())


def _parse_date(
    _group: _ParseGroup, _cols: list[int], raw: pa.Array, present: pa.BooleanArray, _n: int
) -> _Parsed:
    # Only days that exist pass the patterns (29 February aside, left to the row engine),
    # so strptime, which rolls 31/02 over into March, reads them as written.
    sure = pc.and_(present, _match(raw, _DATE_DMY))
    stamps = pc.strptime(raw, format="%d/%m/%Y", unit="s", error_is_null=True)
    rest = pc.and_not(present, sure)
    if rest.true_count:
        iso = pc.and_(rest, _match(raw, _DATE_ISO))
        if iso.true_count:
            sure = pc.or_(sure, iso)
            stamps = pc.if_else(
                iso, pc.strptime(raw, format="%Y-%m-%d", unit="s", error_is_null=True), stamps
            )
    dates = pc.cast(stamps, pa.date32())
    # Read only where sure in every cell of a column (the others go to the row engine).
    days = pc.cast(pc.cast(dates, pa.int32()), pa.float64())
    return sure, _keep(pc.cast(dates, pa.string()), sure), days


def _parse_time(
    _group: _ParseGroup, _cols: list[int], raw: pa.Array, present: pa.BooleanArray, _n: int
) -> _Parsed:
    sure = pc.and_(present, _match(raw, _TIME))
    return sure, pc.if_else(sure, raw, pa.scalar(None, pa.string())), None


def _parse_one(
    group: _ParseGroup, cols: list[int], raw: pa.Array, present: pa.BooleanArray, n: int
) -> _Parsed:
    table = group.codes
    assert table is not None
    if len(table.lists) == 1:
        member = pc.is_in(raw, value_set=table.union)
    else:
        # A code's place in the union of the lists, then whether the column's list has it.
        at = pc.index_in(raw, value_set=table.union)
        offsets = group.spread([table.offsets[j] for j in cols], n)
        member = pc.take(table.member, pc.add(at, offsets))
    sure = _is_true(pc.and_(present, member))
    return sure, pc.if_else(sure, raw, pa.scalar(None, pa.string())), None


def _parse_many(
    group: _ParseGroup, cols: list[int], raw: pa.Array, present: pa.BooleanArray, n: int
) -> _Parsed:
    # Every code of the union is written with visible characters other than | (the row
    # parser's shape for a code), so a cell whose every piece is a code has that shape.
    table = group.codes
    assert table is not None
    # Cells without a value split into no list (a null's list must be empty: kernels read
    # the lists under a null differently).
    lists = pc.split_pattern(_keep(raw, present), "|")
    flat = pc.list_flatten(lists)
    parents = pc.cast(pc.list_parent_indices(lists), pa.int64())
    at = pc.index_in(flat, value_set=table.union)
    if len(table.lists) > 1:
        offsets = group.spread([table.offsets[j] for j in cols], n)
        at = pc.add(at, offsets if isinstance(offsets, int) else pc.take(offsets, parents))
    # Each code's position in its column's list (null: not in it).
    positions = pc.take(table.local, at)
    wrong = pc.filter(parents, pc.is_null(positions))
    # In the code list's order, each code once, as the row parser gives them.
    keys = pc.add(pc.multiply(parents, table.longest + 1), pc.fill_null(positions, table.longest))
    order = pc.sort_indices(keys)
    keys = pc.take(keys, order)
    if len(keys) > 1:
        repeated = pc.equal(keys.slice(1), keys.slice(0, len(keys) - 1))
        if repeated.true_count:
            wrong = pa.concat_arrays([wrong, pc.filter(pc.take(parents, order).slice(1), repeated)])
    sure = present
    if len(wrong):
        sure = pc.and_not(present, pc.is_in(_arange(len(raw)), value_set=wrong))
    # Null where not sure, as a validity mask (an if_else would copy every list).
    ordered = pa.ListArray.from_arrays(lists.offsets, pc.take(flat, order), mask=pc.invert(sure))
    return sure, ordered, None


_PARSERS: dict[str, Callable[[_ParseGroup, list[int], pa.Array, pa.BooleanArray, int], _Parsed]] = {
    "text": _parse_text,
    "name": _parse_text,
    "ssin": _parse_ssin,
    "integer": _parse_integer,
    "decimal": _parse_decimal,
    "date": _parse_date,
    "time": _parse_time,
    "one": _parse_one,
    "many": _parse_many,
}
_VECTOR_KIND = {"integer": "num", "decimal": "num", "date": "date"}


def _arange(size: int) -> pa.Array:
    """0, 1, ... size - 1 (int64)."""
    if size == 0:
        return pa.array([], pa.int64())
    return pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), size)), 1)


_SSIN_PLAIN = r"^[0-9]{11}$"
_SSIN_DOTTED = r"^[0-9]{2}\.[0-9]{2}\.[0-9]{2}-[0-9]{3}\.[0-9]{2}$"
_MONTH_DAYS = pa.array([31, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], pa.int64())


def _digit_slice(text: pa.Array, start: int, stop: int) -> pa.Array:
    return pc.cast(pc.utf8_slice_codeunits(text, start, stop), pa.int64())


def _sure_ssin(raw: pa.Array, present: pa.BooleanArray) -> tuple[pa.BooleanArray, pa.Array]:
    """SSINs written as 11 digits or ``yy.mm.dd-sss.cc`` that pass every rule of
    hdhub.common.ssin (as of today): their 11 digits. Any other goes to the rule itself."""
    plain = _match(raw, _SSIN_PLAIN)
    dotted = _match(raw, _SSIN_DOTTED)
    shaped = pc.and_(present, pc.or_(plain, dotted))
    digits = raw
    if dotted.true_count:
        plain_digits = pc.replace_substring(pc.replace_substring(raw, ".", ""), "-", "")
        digits = pc.if_else(dotted, plain_digits, raw)
    digits = pc.if_else(shaped, digits, pa.scalar(None, pa.string()))
    month = _digit_slice(digits, 2, 4)
    month_ok = pc.invert(
        pc.or_(
            pc.or_(pc.greater(month, 52), pc.greater(pc.modulo(month, 20), 12)),
            pc.and_(pc.greater(month, 32), pc.less(month, 40)),
        )
    )
    sequence = pc.utf8_slice_codeunits(digits, 6, 9)
    sequence_ok = pc.and_(pc.not_equal(sequence, "000"), pc.not_equal(sequence, "999"))
    body, check = _digit_slice(digits, 0, 9), _digit_slice(digits, 9, 11)
    before = pc.equal(pc.subtract(97, pc.modulo(body, 97)), check)
    after = pc.equal(pc.subtract(97, pc.modulo(pc.add(body, 2_000_000_000), 97)), check)
    year = pc.add(pc.divide(body, 10_000_000), pc.if_else(before, 1900, 2000))
    real_month = pc.modulo(month, 20)
    day = _digit_slice(digits, 4, 6)
    leap = pc.and_(
        pc.equal(pc.modulo(year, 4), 0),
        pc.or_(pc.not_equal(pc.modulo(year, 100), 0), pc.equal(pc.modulo(year, 400), 0)),
    )
    month_days = pc.add(
        pc.take(_MONTH_DAYS, pc.if_else(month_ok, real_month, 0)),
        pc.cast(pc.and_(pc.equal(real_month, 2), leap), pa.int64()),
    )
    date_ok = pc.or_(pc.equal(real_month, 0), pc.and_(pc.greater(day, 0), pc.less_equal(day, month_days)))
    today = belgian_today()  # as the rule: the date in Brussels
    born = pc.add(
        pc.add(pc.multiply(year, 10_000), pc.multiply(real_month, 100)),
        pc.if_else(pc.equal(real_month, 0), 0, day),
    )
    future = pc.and_(
        pc.greater_equal(year, 2000), pc.greater(born, today.year * 10_000 + today.month * 100 + today.day)
    )
    ok = pc.and_(pc.and_(month_ok, sequence_ok), pc.or_(before, after))
    ok = pc.and_(pc.and_(ok, date_ok), pc.invert(future))
    sure = _is_true(pc.and_(shaped, ok))
    return sure, pc.if_else(sure, digits, pa.scalar(None, pa.string()))


def _sure_codes(engine: CompiledDcd, list_name: str | None) -> list[str] | None:
    codelist = engine.definition.codelists.get(list_name or "")
    if codelist is None:
        return None
    # Codes with surrounding spaces are read stripped by the row engine: not a sure match.
    return [c for c in codelist.codes if c == c.strip()]


def _reader(kind: FieldType) -> Callable[[object], object] | None:
    from hdhub.registrations.engine.validation import _READERS

    return _READERS.get(kind)


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _to_python(v: _Vec, n: int) -> list[object]:
    """The row closure's value, per row, from a kernel result."""
    data = v.data
    if not isinstance(data, pa.Array):
        return [_python_constant(v)] * n
    if v.kind == "date":
        return [None if d is None else _EPOCH + datetime.timedelta(days=d) for d in data.to_pylist()]
    return data.to_pylist()  # type: ignore[no-any-return]
