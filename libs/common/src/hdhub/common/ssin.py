"""Belgian social security identification numbers (SSIN; NISS in French, INSZ in Dutch):
the one rule every service checks them with (registrations' validation, intake's scan of
files, pseudonymisation).

The rule (Royal Decree of 8 February 1991, and the BIS-number layout):

* ``YYMMDD`` (the birth date), ``SSS`` (a sequence number) and ``CC``, the check number
  ``97 - (YYMMDDSSS mod 97)``; for births from 2000 on it is computed over ``2YYMMDDSSS``.
  The check number therefore also says the century.
* BIS numbers raise the month by 20 (sex unknown when attributed) or 40 (sex known).
* Month ``00`` means the month is unknown; the day part is then ``00`` or a counter from
  ``01`` up that may exceed 31. With a real month the date must exist in that year (no
  31 February, no 29 February outside leap years), BIS numbers included.
* A birth date after today (in Belgium: the date in Brussels, whatever the server's zone)
  is not a birth date: a number that only checks with the ``2``
  prefix for a year still to come is invalid.
* Sequence numbers ``000`` and ``999`` are never attributed.
* Written with or without the separators ``.``, ``-`` and spaces; nothing else.

Each broken rule has its own :class:`SsinReason` and message (en/fr/nl/de). Nothing here
logs, and no message carries the number: it identifies a patient.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = [
    "InvalidSsin",
    "SsinReason",
    "belgian_today",
    "birth_date",
    "checked_ssin",
    "contains_ssin",
    "is_bis_number",
    "is_valid_ssin",
    "mask_ssins",
    "sex",
    "ssin_check_number",
    "ssin_message",
    "ssin_problem",
    "validated_ssin",
]

_SEPARATORS = str.maketrans("", "", ". -")
_ALLOWED = frozenset("0123456789. -")
_CENTURY_2000 = 2_000_000_000
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # 29: leap years checked apart
# 11 digits as an SSIN is written, bare or with one separator between the usual groups,
# not part of a longer number: what a scan of free text (file names, VCF headers) looks at.
_CANDIDATE = re.compile(
    r"(?<![0-9])([0-9]{2})[. -]?([0-9]{2})[. -]?([0-9]{2})[. -]?([0-9]{3})[. -]?([0-9]{2})(?![0-9])"
)


class SsinReason(StrEnum):
    """Which part of the rule a number breaks, in the order they are checked."""

    CHARACTERS = "characters"  # something other than digits, '.', '-' and spaces
    LENGTH = "length"  # not 11 digits
    MONTH = "month"  # not 00-12, 20-32 or 40-52
    SEQUENCE = "sequence"  # 000 or 999, never attributed
    CHECK = "check"  # the check number fits neither century
    DATE = "date"  # a real month with a day that month does not have that year
    FUTURE = "future"  # a birth date after today


class InvalidSsin(ValueError):
    """A number that is not an SSIN; ``reason`` says which rule, the message never the number."""

    def __init__(self, reason: SsinReason) -> None:
        super().__init__(_MESSAGES[reason]["en"])
        self.reason = reason


_MESSAGES: Mapping[SsinReason, Mapping[str, str]] = {
    SsinReason.CHARACTERS: {
        "en": "A national register number (SSIN) has only digits, optionally separated by '.', '-' or spaces.",
        "fr": "Un numéro de registre national (NISS) ne contient que des chiffres, éventuellement séparés par '.', '-' ou des espaces.",
        "nl": "Een rijksregisternummer (INSZ) bevat enkel cijfers, eventueel gescheiden door '.', '-' of spaties.",
        "de": "Eine Nationalregisternummer (INSZ) enthält nur Ziffern, wahlweise getrennt durch '.', '-' oder Leerzeichen.",
    },
    SsinReason.LENGTH: {
        "en": "A national register number (SSIN) has 11 digits.",
        "fr": "Un numéro de registre national (NISS) compte 11 chiffres.",
        "nl": "Een rijksregisternummer (INSZ) telt 11 cijfers.",
        "de": "Eine Nationalregisternummer (INSZ) hat 11 Ziffern.",
    },
    SsinReason.MONTH: {
        "en": "The month part of this national register number (SSIN) is impossible: 00-12, or 20-32 and 40-52 for a BIS number.",
        "fr": "Le mois de ce numéro de registre national (NISS) est impossible : 00-12, ou 20-32 et 40-52 pour un numéro BIS.",
        "nl": "De maand in dit rijksregisternummer (INSZ) is onmogelijk: 00-12, of 20-32 en 40-52 voor een BIS-nummer.",
        "de": "Der Monat dieser Nationalregisternummer (INSZ) ist unmöglich: 00-12, oder 20-32 und 40-52 für eine BIS-Nummer.",
    },
    SsinReason.SEQUENCE: {
        "en": "The sequence number of this national register number (SSIN) is never attributed (000 or 999).",
        "fr": "Le numéro d'ordre de ce numéro de registre national (NISS) n'est jamais attribué (000 ou 999).",
        "nl": "Het volgnummer van dit rijksregisternummer (INSZ) wordt nooit toegekend (000 of 999).",
        "de": "Die laufende Nummer dieser Nationalregisternummer (INSZ) wird nie vergeben (000 oder 999).",
    },
    SsinReason.CHECK: {
        "en": "The check number (last 2 digits) of this national register number (SSIN) is wrong: check the 11 digits.",
        "fr": "Le nombre de contrôle (2 derniers chiffres) de ce numéro de registre national (NISS) est erroné : vérifiez les 11 chiffres.",
        "nl": "Het controlegetal (laatste 2 cijfers) van dit rijksregisternummer (INSZ) klopt niet: controleer de 11 cijfers.",
        "de": "Die Prüfziffer (letzte 2 Ziffern) dieser Nationalregisternummer (INSZ) ist falsch: Prüfen Sie die 11 Ziffern.",
    },
    SsinReason.DATE: {
        "en": "The birth date in this national register number (SSIN) does not exist.",
        "fr": "La date de naissance de ce numéro de registre national (NISS) n'existe pas.",
        "nl": "De geboortedatum in dit rijksregisternummer (INSZ) bestaat niet.",
        "de": "Das Geburtsdatum in dieser Nationalregisternummer (INSZ) existiert nicht.",
    },
    SsinReason.FUTURE: {
        "en": "The birth date in this national register number (SSIN) lies in the future.",
        "fr": "La date de naissance de ce numéro de registre national (NISS) est dans le futur.",
        "nl": "De geboortedatum in dit rijksregisternummer (INSZ) ligt in de toekomst.",
        "de": "Das Geburtsdatum in dieser Nationalregisternummer (INSZ) liegt in der Zukunft.",
    },
}


def ssin_message(reason: SsinReason, lang: str = "en") -> str:
    """The message for ``reason`` in ``lang`` (en, fr, nl or de; others get English)."""
    texts = _MESSAGES[reason]
    return texts.get(lang) or texts["en"]


def ssin_check_number(first_nine: str, *, born_2000_or_later: bool) -> int:
    """The check number (1..97) of the first nine digits ``YYMMDDSSS``."""
    base = int(first_nine)
    if born_2000_or_later:
        base += _CENTURY_2000
    return 97 - base % 97


def _digits(text: str) -> str:
    """The 11 digits of ``text`` without its separators, or InvalidSsin (characters, length)."""
    if len(text) == 11 and text.isdigit() and text.isascii():
        return text  # the usual case: nothing to clean up
    if not _ALLOWED.issuperset(text):
        raise InvalidSsin(SsinReason.CHARACTERS)
    digits = text.translate(_SEPARATORS)
    if len(digits) != 11:
        raise InvalidSsin(SsinReason.LENGTH)
    return digits


_BELGIUM = ZoneInfo("Europe/Brussels")


def belgian_today() -> date:
    """Today's date in Brussels: a child born just after midnight there is born "today"
    although a server on UTC is still at yesterday."""
    return datetime.now(_BELGIUM).date()


def _year(digits: str, today: date | None) -> int:
    """The four-digit birth year of 11 ``digits`` in form, or InvalidSsin naming the first
    rule they break after the form (month, sequence, check, date, future)."""
    month = int(digits[2:4])
    if month > 52 or 12 < month % 20 or 32 < month < 40:
        raise InvalidSsin(SsinReason.MONTH)
    sequence = digits[6:9]
    if sequence == "000" or sequence == "999":
        raise InvalidSsin(SsinReason.SEQUENCE)
    body, check = int(digits[:9]), int(digits[9:])
    if 97 - body % 97 == check:
        year = 1900 + body // 10_000_000
    elif 97 - (body + _CENTURY_2000) % 97 == check:
        year = 2000 + body // 10_000_000
    else:
        raise InvalidSsin(SsinReason.CHECK)
    month %= 20
    day = int(digits[4:6])
    if month:  # a real month: the date must exist
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        if day == 0 or day > _MONTH_DAYS[month] or (month == 2 and day == 29 and not leap):
            raise InvalidSsin(SsinReason.DATE)
    if year >= 2000:  # only the 2000s can lie ahead
        now = today or belgian_today()
        if (year, month, day if month else 0) > (now.year, now.month, now.day):
            raise InvalidSsin(SsinReason.FUTURE)
    return year


def validated_ssin(text: str, *, today: date | None = None) -> str:
    """The 11 digits of the SSIN (or BIS number) ``text`` (spaces are separators too).

    Raises :class:`InvalidSsin` naming the first rule it breaks. ``today`` (default: the
    date in Brussels) is what a birth date may not come after.
    """
    digits = _digits(text)
    _year(digits, today)
    return digits


def ssin_problem(text: str, *, today: date | None = None) -> SsinReason | None:
    """None when ``text`` is an SSIN, else the reason it is not."""
    try:
        validated_ssin(text, today=today)
    except InvalidSsin as invalid:
        return invalid.reason
    return None


def checked_ssin(text: str, *, today: date | None = None) -> str | None:
    """The 11 digits of the SSIN ``text``, or None when it is not one."""
    try:
        return validated_ssin(text, today=today)
    except InvalidSsin:
        return None


def is_valid_ssin(text: str, *, today: date | None = None) -> bool:
    """True when ``text`` is an SSIN or BIS number under the whole rule."""
    return checked_ssin(text, today=today) is not None


def is_bis_number(text: str, *, today: date | None = None) -> bool:
    """True for a valid BIS number (month raised by 20 or 40)."""
    digits = checked_ssin(text, today=today)
    return digits is not None and int(digits[2:4]) >= 20


def birth_date(text: str, *, today: date | None = None) -> date | None:
    """The birth date, or None when ``text`` is not an SSIN or its month is unknown."""
    try:
        digits = _digits(text)
        year = _year(digits, today)
    except InvalidSsin:
        return None
    month = int(digits[2:4]) % 20
    return date(year, month, int(digits[4:6])) if month else None


def sex(text: str, *, today: date | None = None) -> str | None:
    """``M`` (odd sequence) or ``F`` (even); None when ``text`` is not an SSIN or is a BIS
    number attributed while the sex was unknown (month raised by 20)."""
    digits = checked_ssin(text, today=today)
    if digits is None or 20 <= int(digits[2:4]) < 40:
        return None
    return "M" if int(digits[6:9]) % 2 else "F"


def contains_ssin(text: str, *, today: date | None = None) -> bool:
    """Whether ``text`` holds an SSIN anywhere: 11 digits, bare or in the usual groups with
    ``.``, ``-`` or a space between them, not part of a longer number, that pass the whole
    rule. The number itself is never returned."""
    for m in _CANDIDATE.finditer(text):
        try:
            _year("".join(m.groups()), today)
        except InvalidSsin:
            continue
        return True
    return False


def mask_ssins(text: str, mask: str, *, today: date | None = None) -> str:
    """``text`` with every SSIN in it (as :func:`contains_ssin` finds them) replaced by
    ``mask``. Numbers of the same shape that fail the rule stay as they are: a UUID's run
    of digits, a timestamp, an order number (of 100,000 random UUIDs, 713 hold an
    SSIN-shaped run and 1 passes the rule)."""

    def masked(m: re.Match[str]) -> str:
        try:
            _year("".join(m.groups()), today)
        except InvalidSsin:
            return m.group(0)
        return mask

    return _CANDIDATE.sub(masked, text)
