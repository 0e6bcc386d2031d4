"""SSIN-like numbers in free text (VCF headers). A copy of the mod-97 rule of
registrations' ``domain/ssin.py`` (services never import each other's packages): 11 digits,
``YYMMDD`` a plausible date (BIS months +20/+40, ``00`` for unknown parts), and the check
number ``97 - (YYMMDDSSS mod 97)``, over ``2YYMMDDSSS`` for births from 2000 on."""

from __future__ import annotations

import re

# 11 digits as an SSIN is written: bare or with the usual separators, not inside a longer number.
_CANDIDATE = re.compile(r"(?<![\d])(\d{2})[.\- ]?(\d{2})[.\- ]?(\d{2})[.\- ]?(\d{3})[.\- ]?(\d{2})(?![\d])")
_CENTURY_2000 = 2_000_000_000


def is_ssin(digits: str) -> bool:
    """True when the 11 ``digits`` form a valid SSIN or BIS number."""
    if len(digits) != 11 or not (digits.isascii() and digits.isdigit()):
        return False
    month, day = int(digits[2:4]), int(digits[4:6])
    if not (month <= 12 or 20 <= month <= 32 or 40 <= month <= 52) or day > 31:
        return False
    base, check = int(digits[:9]), int(digits[9:])
    return 97 - base % 97 == check or 97 - (base + _CENTURY_2000) % 97 == check


def contains_ssin(text: str) -> bool:
    """Whether ``text`` holds an SSIN anywhere (the number itself is never returned)."""
    return any(is_ssin("".join(m.groups())) for m in _CANDIDATE.finditer(text))
