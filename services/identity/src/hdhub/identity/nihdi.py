"""NIHDI (RIZIV/INAMI) numbers of organisations.

The rule we implement (documented in docs/identity.md): an organisation's NIHDI number is
8 digits, a 6-digit base followed by 2 check digits equal to ``97 - (base mod 97)``; the
same modulo-97 scheme RIZIV uses for the first 8 digits of a care provider's 11-digit
number (6-digit base, 2 check digits, 3-digit qualification). Dots, dashes and spaces as
written on paper (``7-10004-36``) are accepted and removed.
"""

from __future__ import annotations

import re

from hdhub.common.errors import FieldProblem

_SEPARATORS = re.compile(r"[\s.\-/]")


def normalise(raw: str) -> str:
    return _SEPARATORS.sub("", raw or "")


def check_digits(base: str) -> str:
    return f"{97 - int(base) % 97:02d}"


def problems(raw: str, field: str = "nihdi_number") -> list[FieldProblem]:
    """What is wrong with ``raw`` as an organisation NIHDI number (empty when valid)."""
    number = normalise(raw)
    if not number.isdigit() or len(number) != 8:
        return [FieldProblem(field, "nihdi-length", "An organisation NIHDI number has exactly 8 digits.")]
    if number[6:] != check_digits(number[:6]):
        return [
            FieldProblem(
                field,
                "nihdi-check",
                "The check digits do not match: the last two digits are 97 minus the first six modulo 97.",
            )
        ]
    return []
