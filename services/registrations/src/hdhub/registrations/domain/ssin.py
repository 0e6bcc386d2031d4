"""Belgian social security identification numbers (SSIN, NISS in French, INSZ in Dutch).

An SSIN has 11 digits: ``YYMMDD`` (the birth date), ``SSS`` (a sequence number, odd for
men and even for women) and ``CC``, the check number ``97 - (YYMMDDSSS mod 97)``. For
people born in 2000 or later the check is computed over ``2YYMMDDSSS``. A birth date that
is not fully known has ``00`` for the unknown parts.

BIS numbers are given to people who are not in the national register: their month is
raised by 20 when the sex was not known when the number was attributed and by 40 when it
was. Everything here is a pure function; nothing logs or echoes the number.
"""

from __future__ import annotations

import datetime
from enum import StrEnum

__all__ = [
    "Sex",
    "checked_ssin",
    "format_ssin",
    "is_bis_number",
    "is_valid_ssin",
    "normalise_ssin",
    "ssin_birth_date",
    "ssin_birth_year",
    "ssin_check_number",
    "ssin_sex",
]

_SEPARATORS = str.maketrans("", "", " .-/\t")
_CENTURY_2000 = 2_000_000_000


class Sex(StrEnum):
    MALE = "M"
    FEMALE = "F"


def normalise_ssin(text: str) -> str | None:
    """The 11 digits of ``text`` written with or without separators, or None.

    ``85.04.02-169.32``, ``85 04 02 169 32`` and ``85040216932`` all give
    ``85040216932``. Only the form is checked here, not the check number.
    """
    digits = text.strip().translate(_SEPARATORS)
    if len(digits) != 11 or not (digits.isascii() and digits.isdigit()):
        return None
    return digits


def ssin_check_number(first_nine: str, *, born_2000_or_later: bool) -> int:
    """The check number (1..97) of the first nine digits ``YYMMDDSSS``."""
    base = int(first_nine)
    if born_2000_or_later:
        base += _CENTURY_2000
    return 97 - base % 97


def _month_is_plausible(month: int) -> bool:
    # 0 means "unknown"; BIS numbers add 20 or 40 to the month.
    return month <= 12 or 20 <= month <= 32 or 40 <= month <= 52


def _century(ssin: str) -> int | None:
    """1900 or 2000, from which check number matches; None when neither does."""
    check = int(ssin[9:])
    if ssin_check_number(ssin[:9], born_2000_or_later=False) == check:
        return 1900
    if ssin_check_number(ssin[:9], born_2000_or_later=True) == check:
        return 2000
    return None


def is_valid_ssin(text: str) -> bool:
    """True when ``text`` is an SSIN (or BIS number) whose check number is right."""
    ssin = normalise_ssin(text)
    if ssin is None:
        return False
    if not _month_is_plausible(int(ssin[2:4])) or int(ssin[4:6]) > 31:
        return False
    return _century(ssin) is not None


def checked_ssin(text: str) -> str | None:
    """The normalised SSIN when ``text`` is a valid one (or BIS number), else None.

    The same answer as ``normalise_ssin`` followed by ``is_valid_ssin``, in one pass: this
    is what the validation engine runs on every record.
    """
    digits = text.strip()
    if not digits.isdigit():
        digits = digits.translate(_SEPARATORS)
    if len(digits) != 11 or not (digits.isdigit() and digits.isascii()):
        return None
    month = int(digits[2:4])
    if not (month <= 12 or 20 <= month <= 32 or 40 <= month <= 52) or int(digits[4:6]) > 31:
        return None
    base = int(digits[:9])
    check = int(digits[9:])
    if 97 - base % 97 != check and 97 - (base + _CENTURY_2000) % 97 != check:
        return None
    return digits


def is_bis_number(text: str) -> bool:
    """True for a valid BIS number (month raised by 20 or 40)."""
    ssin = normalise_ssin(text)
    return ssin is not None and is_valid_ssin(ssin) and int(ssin[2:4]) >= 20


def ssin_birth_year(text: str) -> int | None:
    """The four-digit birth year, or None when the number is not valid."""
    ssin = normalise_ssin(text)
    if ssin is None or not is_valid_ssin(ssin):
        return None
    century = _century(ssin)
    assert century is not None  # is_valid_ssin checked it
    return century + int(ssin[:2])


def ssin_birth_date(text: str) -> datetime.date | None:
    """The birth date, or None when the number is not valid or the date is partly unknown."""
    year = ssin_birth_year(text)
    if year is None:
        return None
    ssin = normalise_ssin(text)
    assert ssin is not None
    month = int(ssin[2:4]) % 20  # BIS: 21..32 and 41..52 give 1..12
    day = int(ssin[4:6])
    if month == 0 or day == 0:
        return None
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return None


def ssin_sex(text: str) -> Sex | None:
    """The sex from the sequence number (odd: male, even: female).

    None when the number is not valid or is a BIS number attributed while the sex was
    unknown (month raised by 20), whose sequence number says nothing about it.
    """
    ssin = normalise_ssin(text)
    if ssin is None or not is_valid_ssin(ssin):
        return None
    if 20 <= int(ssin[2:4]) <= 32:
        return None
    return Sex.MALE if int(ssin[6:9]) % 2 == 1 else Sex.FEMALE


def format_ssin(text: str) -> str | None:
    """The usual written form ``YY.MM.DD-SSS.CC``, or None when ``text`` is not 11 digits."""
    ssin = normalise_ssin(text)
    if ssin is None:
        return None
    return f"{ssin[0:2]}.{ssin[2:4]}.{ssin[4:6]}-{ssin[6:9]}.{ssin[9:11]}"
