"""Cells written for a spreadsheet never run as formulas (OWASP CSV injection)."""

from __future__ import annotations

import pytest

from hdhub.common.spreadsheet import FORMULA_STARTS, safe_cell


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+x", "'+x"),
        ("-x", "'-x"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("\nx", "'\nx"),
        ("\uff1dHYPERLINK()", "'\uff1dHYPERLINK()"),
        ("ok", "ok"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (42, "42"),
        # A plain signed number is a value, and stays readable as one.
        ("-5", "-5"),
        ("+32", "+32"),
        ("-0.25", "-0.25"),
        ("-72,5", "-72,5"),
    ],
)
def test_cells_that_a_spreadsheet_would_run_are_prefixed_with_a_quote(value: object, written: str) -> None:
    assert safe_cell(value) == written


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_neutralising_twice_changes_nothing(start: str) -> None:
    once = safe_cell(start + "A1")
    assert once == "'" + start + "A1" and safe_cell(once) == once
