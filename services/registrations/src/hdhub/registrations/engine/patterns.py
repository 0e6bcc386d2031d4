"""regex() patterns matched in linear time.

A DCD's ``regex(., '(a+)+$')`` is written by whoever made the workbook; Python's ``re``
backtracks, and such a pattern takes seconds (doubling with each character of the value)
on a short value, blocking the service for every organisation. Patterns are therefore read
with Python's own parser (so what they mean does not change: the same syntax, the same
``\\d``, ``\\w`` and ``\\s``, the same ``$``) and written out again for RE2, which matches in
time linear in the value. What RE2 cannot match in linear time (a backreference, a
lookahead or lookbehind, a conditional group, an atomic group or a possessive repeat; none
of them is XML Schema's) is refused when the pattern is compiled, which for a pattern
written in the workbook is when the workbook is imported.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import re2

__all__ = ["LinearPattern", "compile_linear"]

_P: Any = re._parser  # type: ignore[attr-defined]  # sre's parser: the syntax re accepts
_C: Any = re._constants  # type: ignore[attr-defined]

_RE2_MOST = 1000  # RE2's largest repetition count
_TOP = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)  # RE2 reads UTF-8, which has no place for them
_OPTIONS = re2.Options()
_OPTIONS.never_capture = True  # a yes or no is all regex() asks
_OPTIONS.log_errors = False  # a pattern refused is the workbook's problem, said there
_UNANCHORED = re2._Anchor.UNANCHORED
_NEWLINE_END = r"(?:\n?\z)"  # re's $: the end, or before a newline that ends the text

Ranges = list[tuple[int, int]]


class LinearPattern:
    """A compiled regex() pattern; ``search`` is linear in the length of the text."""

    __slots__ = ("_compiled", "pattern", "translated")

    def __init__(self, pattern: str, translated: str, compiled: Any) -> None:
        self.pattern = pattern
        self.translated = translated
        self._compiled = (
            compiled  # re2's own RE2 object: re2.search's str bookkeeping costs 7 times the match
        )

    def search(self, text: str) -> bool:
        """True when the pattern matches somewhere in ``text`` (re.search's sense)."""
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no pattern can name one, so it is any other character
            data = _without_surrogates(text).encode("utf-8")
        return bool(self._compiled.Match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)


def _without_surrogates(text: str) -> str:
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


class _Refused(ValueError):
    pass


@functools.lru_cache(maxsize=128)  # each RE2 object may hold up to 8 MiB of DFA cache
def compile_linear(pattern: str) -> LinearPattern:
    """``pattern`` (Python's syntax, as regex() always read it) compiled for RE2;
    ValueError saying why when it does not compile or needs backtracking."""
    try:
        with warnings.catch_warnings():  # "possible nested set" and the like still compile
            warnings.simplefilter("ignore", FutureWarning)
            parsed = _P.parse(pattern, 0)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc.msg}") from None
    except (OverflowError, RecursionError, ValueError) as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    try:
        translated = _sequence(list(parsed), int(parsed.state.flags))
    except _Refused as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    except RecursionError:
        raise ValueError("invalid regular expression: nested too deeply") from None
    compiled = re2._re2.RE2(translated.encode("utf-8"), _OPTIONS)
    if not compiled.ok():
        why = str(compiled.error())
        if "too large" in why or "repetition" in why or "size" in why:
            why = "too large to match in linear time (fewer or smaller repetitions)"
        raise ValueError(f"invalid regular expression: {why}") from None
    return LinearPattern(pattern, translated, compiled)


# --------------------------------------------------------------------------- translation

_REFUSED = {
    "GROUPREF": "a backreference (\\1, (?P=name)) is not supported",
    "GROUPREF_EXISTS": "a conditional group (?(1)...) is not supported",
    "ASSERT": "a lookahead or lookbehind ((?=...), (?<=...)) is not supported",
    "ASSERT_NOT": "a negative lookahead or lookbehind ((?!...), (?<!...)) is not supported",
    "ATOMIC_GROUP": "an atomic group (?>...) is not supported",
    "POSSESSIVE_REPEAT": "a possessive repeat (*+, ++, ?+) is not supported",
}


def _sequence(items: Sequence[tuple[Any, Any]], flags: int) -> str:
    return "".join(_node(op, av, flags) for op, av in items)


def _node(op: Any, av: Any, flags: int) -> str:
    name = str(op)
    if name in _REFUSED:
        raise _Refused(_REFUSED[name] + ": regular expressions are matched in linear time")
    ignore = bool(flags & re.IGNORECASE)
    if name == "LITERAL":
        return _folded(_char(av), ignore)
    if name == "NOT_LITERAL":
        return _folded(f"[^{_char(av)}]", ignore)
    if name == "ANY":
        return r"(?s:.)" if flags & re.DOTALL else r"[^\n]"
    if name == "IN":
        return _folded(_set(av, flags), ignore)
    if name == "BRANCH":
        return "(?:" + "|".join(_sequence(list(alt), flags) for alt in av[1]) + ")"
    if name == "SUBPATTERN":
        _group, add, remove, inner = av
        return "(?:" + _sequence(list(inner), (flags | add) & ~remove) + ")"
    if name in ("MAX_REPEAT", "MIN_REPEAT"):
        low, high, inner = av
        return _repeat("(?:" + _sequence(list(inner), flags) + ")", low, high, lazy=name == "MIN_REPEAT")
    if name == "AT":
        return _at(str(av), flags)
    raise _Refused(f"{name.lower()} is not supported")  # pragma: no cover - every node sre makes is above


def _folded(text: str, ignore: bool) -> str:
    return f"(?i:{text})" if ignore else text


def _char(code: int) -> str:
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    if _SURROGATES[0] <= code <= _SURROGATES[1]:
        raise _Refused("a surrogate code point cannot be matched")
    return f"\\x{{{code:x}}}"


def _at(where: str, flags: int) -> str:
    multiline = bool(flags & re.MULTILINE)
    if where == "AT_BEGINNING":
        return "(?m:^)" if multiline else r"\A"
    if where == "AT_BEGINNING_STRING":
        return r"\A"
    if where == "AT_END":
        return "(?m:$)" if multiline else _NEWLINE_END
    if where == "AT_END_STRING":
        return r"\z"
    if where == "AT_BOUNDARY":  # RE2's word boundary knows ASCII word characters only
        return r"\b"
    if where == "AT_NON_BOUNDARY":
        return r"\B"
    raise _Refused(f"{where.lower()} is not supported")  # pragma: no cover


def _repeat(body: str, low: int, high: int, *, lazy: bool) -> str:
    """``body{low,high}``, in pieces of at most RE2's 1000 (the same texts match)."""
    unbounded = high == _C.MAXREPEAT
    lazy_mark = "?" if lazy else ""
    if not unbounded and high <= _RE2_MOST:
        return body + _count(low, high) + lazy_mark
    if unbounded and low <= _RE2_MOST:
        return body + _count(low, None) + lazy_mark
    parts: list[str] = []
    rest = low
    while rest > _RE2_MOST:
        parts.append(f"{body}{{{_RE2_MOST}}}")
        rest -= _RE2_MOST
    if unbounded:
        parts.append(body + _count(rest, None) + lazy_mark)
        return "".join(parts)
    parts.append(f"{body}{{{rest}}}")
    optional = high - low
    while optional > 0:
        step = min(optional, _RE2_MOST)
        parts.append(f"{body}{{0,{step}}}{lazy_mark}")
        optional -= step
    return "".join(parts)


def _count(low: int, high: int | None) -> str:
    if high is None:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    if (low, high) == (0, 1):
        return "?"
    return f"{{{low}}}" if low == high else f"{{{low},{high}}}"


def _set(items: Iterable[tuple[Any, Any]], flags: int) -> str:
    """A character class; re's categories (\\d, \\w, \\s and their negations) as the exact
    ranges of characters re gives them, so a class reads as it did."""
    negate = False
    ranges: Ranges = []
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            ranges.append((av, av))
        elif name == "RANGE":
            ranges.append((av[0], av[1]))
        elif name == "CATEGORY":
            ranges.extend(_category(str(av), ascii_only=bool(flags & re.ASCII)))
        else:  # pragma: no cover - sre puts nothing else in a class
            raise _Refused(f"{name.lower()} in a character class is not supported")
    merged = _merge(ranges)
    body = "".join(_range(low, high) for low, high in merged)
    if not body:  # nothing in the class: [^...] of everything matches nothing
        return r"[^\x{0}-\x{10ffff}]" if not negate else r"(?s:.)"
    return f"[^{body}]" if negate else f"[{body}]"


def _range(low: int, high: int) -> str:
    return _class_char(low) if low == high else f"{_class_char(low)}-{_class_char(high)}"


def _class_char(code: int) -> str:
    char = chr(code)
    return char if char.isascii() and char.isalnum() else f"\\x{{{code:x}}}"


def _merge(ranges: Ranges) -> Ranges:
    """Sorted, joined, and without surrogates (which no UTF-8 text holds)."""
    out: Ranges = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return _complement(_complement(out), [_SURROGATES])


def _complement(ranges: Sequence[tuple[int, int]], extra: Sequence[tuple[int, int]] = ()) -> Ranges:
    """Every code point not in the sorted, disjoint ``ranges`` (nor in ``extra``)."""
    out: Ranges = []
    start = 0
    for low, high in sorted([*ranges, *extra]):
        if low > start:
            out.append((start, low - 1))
        start = max(start, high + 1)
    if start <= _TOP:
        out.append((start, _TOP))
    return out


@functools.cache
def _category(name: str, *, ascii_only: bool) -> Ranges:
    positive = name.replace("CATEGORY_NOT_", "CATEGORY_")
    ranges = _ascii_category(positive) if ascii_only else _unicode_category(positive)
    return _complement(ranges) if positive != name else ranges


_ASCII = {
    "CATEGORY_DIGIT": [(0x30, 0x39)],
    "CATEGORY_SPACE": [(0x09, 0x0D), (0x20, 0x20)],
    "CATEGORY_WORD": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}
_WHICH = {"CATEGORY_DIGIT": r"\d+", "CATEGORY_SPACE": r"\s+", "CATEGORY_WORD": r"\w+"}


def _ascii_category(name: str) -> Ranges:
    if name not in _ASCII:  # pragma: no cover - the line-break categories are only re's own
        raise _Refused(f"{name.lower()} is not supported")
    return _ASCII[name]


@functools.cache
def _unicode_category(name: str) -> Ranges:
    """The characters ``re`` itself counts as a digit, a space or a word character."""
    if name not in _WHICH:  # pragma: no cover
        raise _Refused(f"{name.lower()} is not supported")
    return [(m.start(), m.end() - 1) for m in re.finditer(_WHICH[name], _every_character())]


def _every_character() -> str:  # 4 MB, built for the three categories once each
    return "".join(map(chr, range(_TOP + 1)))
