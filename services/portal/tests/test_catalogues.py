"""The pages' four languages: no catalogue misses a message, and formats are Belgian."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from hdhub.common.languages import pick_language
from hdhub.portal.pages.i18n import LOCALE_DIR, Formats, translations

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
import portal_messages  # noqa: E402

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _ids(path: Path) -> set[str]:
    with path.open("rb") as f:
        return {m.id for m in read_po(f) if m.id}


def test_the_template_catalogue_holds_every_message_of_the_pages(tmp_path: Path) -> None:
    portal_messages.extract(tmp_path / "fresh.pot")
    missing = _ids(tmp_path / "fresh.pot") - _ids(LOCALE_DIR / "messages.pot")
    assert not missing, f"run `make messages` and translate: {sorted(missing)[:10]}"


@pytest.mark.parametrize("lang", ["nl", "fr", "de"])
def test_no_catalogue_misses_a_message(lang: str) -> None:
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale=lang)
    wanted = _ids(LOCALE_DIR / "messages.pot")
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    assert wanted - set(translated) == set(), f"{lang} misses {sorted(wanted - set(translated))[:10]}"
    for msgid, text in translated.items():
        assert set(PLACEHOLDER.findall(msgid)) == set(PLACEHOLDER.findall(str(text))), (lang, msgid)


def test_the_catalogues_translate_what_the_pages_say() -> None:
    assert translations("nl").gettext("Members") == "Leden"
    assert translations("fr").gettext("Sign out") == "Se déconnecter"
    assert translations("de").gettext("Audit log") == "Prüfprotokoll"
    assert translations("en").gettext("Members") == "Members"


def test_dates_and_numbers_follow_belgian_conventions() -> None:
    summer = datetime(2026, 7, 1, 22, 30, tzinfo=UTC)  # 00:30 the next day in Brussels
    assert Formats("nl").datetime(summer) == "02/07/2026 00:30"
    assert Formats("en").date(summer) == "02/07/2026"
    assert Formats("fr").number(1234.5).replace("\u202f", " ") == "1 234,5"
    assert Formats("de").number(1234.5) == "1.234,5"
    assert Formats("nl").number(1234.5) == "1.234,5"
    assert Formats("en").number(1234.5) == "1,234.5"


def test_dates_are_written_as_babel_writes_the_patterns_in_each_language() -> None:
    """Formats writes dd/mm/yyyy HH:mm itself (Babel was a fifth of a grid page): the same
    text as Babel's patterns, across centuries, both sides of each clock change, times
    without an offset (UTC, as Babel takes them) and ISO strings."""
    import random
    from datetime import timedelta

    from babel.dates import format_date, format_datetime

    from hdhub.portal.pages.i18n import BRUSSELS, FORMAT_LOCALES

    rng = random.Random(7)
    start = datetime(1970, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(seconds=rng.randint(-(10**10), 10**10)) for _ in range(400)]
    moments += [datetime(2026, 3, 29, 0, 59, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]
    moments += [datetime(2026, 10, 25, 0, 59, tzinfo=UTC), datetime(2026, 10, 25, 1, 0, tzinfo=UTC)]
    for lang, locale in FORMAT_LOCALES.items():
        f = Formats(lang)
        for moment in moments:
            babel = format_datetime(moment, "dd/MM/yyyy HH:mm", tzinfo=BRUSSELS, locale=locale)
            assert f.datetime(moment) == f.datetime(moment.isoformat()) == babel
            assert f.datetime(moment.replace(tzinfo=None)) == babel
            on_the_day = format_datetime(moment.date(), "dd/MM/yyyy HH:mm", tzinfo=BRUSSELS, locale=locale)
            assert f.datetime(moment.date()) == on_the_day
            day = format_date(moment.astimezone(BRUSSELS).date(), "dd/MM/yyyy", locale=locale)
            assert f.date(moment) == day
            assert f.date(moment.date()) == format_date(moment.date(), "dd/MM/yyyy", locale=locale)


def test_the_language_is_the_remembered_choice_then_the_browsers() -> None:
    assert pick_language("de", "fr-BE,fr;q=0.9") == "de"
    assert pick_language(None, "fr-BE,fr;q=0.9") == "fr"
    assert pick_language("xx", "es,nl;q=0.5") == "nl"
    assert pick_language(None, None) == "en"


def test_days_are_read_as_people_here_write_them() -> None:
    from hdhub.portal.pages.i18n import typed_day

    assert typed_day("31/01/2026") == "2026-01-31"
    assert typed_day("1.2.2026") == "2026-02-01"
    assert typed_day("2026-02-01") == "2026-02-01"
    assert typed_day("31/02/2026") is None
    assert typed_day("yesterday") is None
    # The year in full: 1/1/27 was read as the year 27 (a fresh-eyes trial found it).
    assert typed_day("1/1/27") is None and typed_day("1/1/027") is None
    assert typed_day("1/1/0001") == "0001-01-01" and typed_day(" 1/1/2027 ") == "2027-01-01"
    assert typed_day("1/1/2027/5") is None
