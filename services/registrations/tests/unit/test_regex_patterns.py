"""regex() patterns are matched by RE2 in linear time and answer as Python's re did."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hdhub.registrations.engine.patterns import compile_linear

ATOMS = [
    "a", "b", "A", "é", "1", "\\.", "-", ".", "\\d", "\\D", "\\w", "\\W", "\\s", "\\S", "[^a]", "[a-c\\d]",
    "[\\W1]", "[^\\s_]", "[é-ü]", "\\n", "^", "$", "\\A", "\\Z", "\\u00e9", "\\x41",
]  # fmt: skip
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{1,3}", "{2,}", "*?", "+?", "??", "{0,2}?"]
FLAGS = ["", "", "(?i)", "(?m)", "(?s)", "(?a)", "(?im)"]
TEXT = st.text(alphabet="aAbBé1٣ _-.\n\u00a0\u2003x", max_size=12)


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    pieces = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            inner = draw(st.lists(patterns(depth + 1), min_size=1, max_size=3))
            group = draw(st.sampled_from(["(", "(?:", "(?i:", "(?-i:"]))
            atom = group + "|".join(inner) + ")"
        else:
            atom = draw(st.sampled_from(ATOMS))
        quantifier = "" if atom in ("^", "$", "\\A", "\\Z") else draw(st.sampled_from(QUANTIFIERS))
        pieces.append(atom + quantifier)
    body = "".join(pieces)
    return draw(st.sampled_from(FLAGS)) + body if depth == 0 else body


@given(patterns(), st.lists(TEXT, min_size=1, max_size=5))
@settings(max_examples=600, deadline=None)
def test_re2_answers_as_pythons_re(pattern: str, texts: list[str]) -> None:
    try:
        expected = re.compile(pattern)
    except re.error:
        with pytest.raises(ValueError, match="invalid regular expression"):
            compile_linear(pattern)
        return
    compiled = compile_linear(pattern)
    for text in texts:
        assert compiled.search(text) == (expected.search(text) is not None), (
            pattern,
            text,
            compiled.translated,
        )


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("^[0-9]+$", "123\n", True),  # re's $ also stands before a newline that ends the text
        ("^[0-9]+\\Z", "123\n", False),
        ("^\\d$", "٣", True),  # \d, \w and \s are re's Unicode classes, not RE2's ASCII ones
        ("^\\w+$", "Zoë_2", True),
        ("^\\s$", "\u00a0", True),
        ("^.{1500}$", "x" * 1500, True),  # past RE2's 1000 the repetition is split
        ("^.{1500}$", "x" * 1499, False),
        ("^x{1000,2500}$", "x" * 2501, False),
        ("(?i)straße", "STRASSE", False),
        ("x", "\ud800x", True),  # a lone surrogate in a value is just another character
    ],
)
def test_pythons_meaning_is_kept(pattern: str, text: str, matches: bool) -> None:
    assert compile_linear(pattern).search(text) is matches
    assert (re.search(pattern, text) is not None) is matches


@pytest.mark.parametrize("pattern", ["(a+)+$", "^(a|a)*$", "(a|aa)+$", "(.*a){12}$", "^(\\w+\\s?)*$"])
def test_patterns_that_make_re_backtrack_answer_at_once(pattern: str) -> None:
    compiled = compile_linear(pattern)
    started = time.perf_counter()
    assert compiled.search("a" * 5000 + "!") is False
    assert time.perf_counter() - started < 1.0  # re: longer than the universe has been around


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(a)\\1", "backreference"),
        ("(?=a)", "lookahead"),
        ("(?<!a)b", "lookbehind"),
        ("a*+", "possessive"),
        ("(?>a)", "atomic"),
        ("(a)?(?(1)b)", "conditional"),
        ("(?:a{1000}){1000}", "too large"),
        ("[a-", "unterminated character set"),
    ],
)
def test_what_cannot_be_matched_in_linear_time_is_refused_saying_why(pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match="invalid regular expression") as raised:
        compile_linear(pattern)
    assert why in str(raised.value)
