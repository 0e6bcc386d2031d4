"""The pages' four languages: gettext catalogues (Babel) under ``portal/locale``, English
the source; dates, times and numbers in Belgian conventions (dd/mm/yyyy, 24-hour time,
Europe/Brussels, decimal comma in nl, fr and de, point in en).

The catalogues are read from their ``.po`` files at start-up (no compiled ``.mo`` to keep
in step); ``tests/test_catalogues.py`` checks none misses a message.
"""

from __future__ import annotations

import datetime as dt
import io
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

LANGUAGE_NAMES = {"nl": "Nederlands", "fr": "Français", "en": "English", "de": "Deutsch"}
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
BRUSSELS = ZoneInfo("Europe/Brussels")
# Babel locales for formats: Belgium's, except English, whose decimal point the brief asks.
FORMAT_LOCALES = {"nl": "nl_BE", "fr": "fr_BE", "de": "de_BE", "en": "en_GB"}


def N_(message: str) -> str:
    """Mark a message for the catalogues; it is translated where it is shown."""
    return message


@lru_cache(maxsize=8)
def translations(lang: str) -> NullTranslations:
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if lang == "en" or not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


#: Each language's Babel locale, parsed once (parsing it per call was a tenth of a grid page).
_LOCALES = {lang: Locale.parse(name) for lang, name in FORMAT_LOCALES.items()}


class Formats:
    """Dates as dd/mm/yyyy and times as HH:mm in Brussels, as Babel writes the patterns
    ``dd/MM/yyyy HH:mm`` in each of the four locales (digits only, so written directly:
    Babel took a fifth of a grid page of 50 rows); numbers in the language's format."""

    def __init__(self, lang: str) -> None:
        self.locale = _LOCALES[lang]

    def datetime(self, value: dt.datetime | dt.date | str | None) -> str:
        if not value:
            return ""
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if not isinstance(value, dt.datetime):  # a day: its midnight, as Babel takes it
            value = dt.datetime.combine(value, dt.time())
        if value.tzinfo is None:  # as Babel takes a time without an offset: UTC
            value = value.replace(tzinfo=dt.UTC)
        t = value.astimezone(BRUSSELS)
        return f"{t.day:02d}/{t.month:02d}/{t.year:04d} {t.hour:02d}:{t.minute:02d}"

    def date(self, value: dt.date | dt.datetime | str | None) -> str:
        if not value:
            return ""
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if isinstance(value, dt.datetime):
            value = value.astimezone(BRUSSELS).date()
        return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"

    def number(self, value: int | float) -> str:
        return format_decimal(value, locale=self.locale)


def typed_day(value: str) -> str | None:
    """A day as people type it here (dd/mm/yyyy, or yyyy-mm-dd) in ISO form; None when it
    is no date. Dots and dashes between the parts are read as slashes. The year is typed in
    full: 1/1/27 is no date (read as it stands it would be the year 27, which nobody meant)."""
    text = value.strip()
    try:
        if len(text) == 10 and text[4] == "-":
            return dt.date.fromisoformat(text).isoformat()
        parts = text.replace(".", "/").replace("-", "/").split("/")
        if len(parts) != 3 or len(parts[2].strip()) != 4:
            return None
        day, month, year = (int(p) for p in parts)
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None
