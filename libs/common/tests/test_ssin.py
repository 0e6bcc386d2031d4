"""The SSIN rule (Royal Decree of 8 February 1991 and the BIS layout), checked against the
rule itself: python-stdnum's be.ssn accepts impossible days and sequence 000, so it is no
reference here."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hdhub.common.ssin import (
    InvalidSsin,
    SsinReason,
    birth_date,
    checked_ssin,
    contains_ssin,
    is_bis_number,
    sex,
    ssin_check_number,
    ssin_message,
    ssin_problem,
    validated_ssin,
)

TODAY = date(2026, 12, 3)


def number(yy: int, mm: int, dd: int, seq: int, *, from_2000: bool = False, check: int | None = None) -> str:
    """Eleven digits with the right check number for the century (or ``check``)."""
    nine = f"{yy:02d}{mm:02d}{dd:02d}{seq:03d}"
    right = ssin_check_number(nine, born_2000_or_later=from_2000)
    return f"{nine}{right if check is None else check:02d}"


def ssin_of(birth: date, seq: int, offset: int = 0) -> str:
    return number(birth.year % 100, birth.month + offset, birth.day, seq, from_2000=birth.year >= 2000)


CASES = [
    # (what it shows, the text, None when valid or the reason)
    ("the usual example", "85040216932", None),
    ("dots and a hyphen", "85.04.02-169.32", None),
    ("spaces", " 85 04 02 169 32 ", None),
    ("a slash is no separator", "85/04/02-169.32", SsinReason.CHARACTERS),
    ("a tab is no separator", "85040216932\t", SsinReason.CHARACTERS),
    ("an underscore is no separator", "850402_16932", SsinReason.CHARACTERS),
    ("full-width digits", "８５０４０２１６９３２", SsinReason.CHARACTERS),
    ("letters", "85040216A32", SsinReason.CHARACTERS),
    ("ten digits", "8504021693", SsinReason.LENGTH),
    ("twelve digits", "850402169321", SsinReason.LENGTH),
    ("month 13", number(85, 13, 2, 169), SsinReason.MONTH),
    ("month 19", number(85, 19, 2, 169), SsinReason.MONTH),
    ("month 33", number(85, 33, 2, 169), SsinReason.MONTH),
    ("month 53", number(85, 53, 2, 169), SsinReason.MONTH),
    ("sequence 000", number(85, 4, 2, 0), SsinReason.SEQUENCE),
    ("sequence 999", number(85, 4, 2, 999), SsinReason.SEQUENCE),
    ("sequence 001", number(85, 4, 2, 1), None),
    ("sequence 998", number(85, 4, 2, 998), None),
    ("a wrong check number", "85040216933", SsinReason.CHECK),
    ("31 February", number(85, 2, 31, 169), SsinReason.DATE),
    ("30 February", number(85, 2, 30, 169), SsinReason.DATE),
    ("31 April", number(85, 4, 31, 169), SsinReason.DATE),
    ("day 32", number(85, 1, 32, 169), SsinReason.DATE),
    ("day 00 with a real month", number(85, 4, 0, 169), SsinReason.DATE),
    ("29 February 1985", number(85, 2, 29, 169), SsinReason.DATE),
    ("29 February 1984", number(84, 2, 29, 169), None),
    ("29 February 1900 (not leap)", number(0, 2, 29, 169), SsinReason.DATE),
    ("29 February 2000 (leap)", number(0, 2, 29, 169, from_2000=True), None),
    ("31 February in a BIS number, sex unknown", number(85, 22, 31, 169), SsinReason.DATE),
    ("31 February in a BIS number, sex known", number(85, 42, 31, 169), SsinReason.DATE),
    ("29 February 1985 in a BIS number", number(85, 42, 29, 169), SsinReason.DATE),
    ("29 February 1984 in a BIS number", number(84, 22, 29, 169), None),
    ("month and day unknown", number(85, 0, 0, 169), None),
    ("month unknown, day counter 01", number(85, 0, 1, 169), None),
    ("month unknown, day counter past 31", number(85, 0, 45, 169), None),
    ("month unknown, day counter 99", number(85, 0, 99, 169), None),
    ("BIS, month unknown, counter past 31", number(85, 20, 60, 169), None),
    ("BIS, sex known, month unknown", number(85, 40, 0, 169), None),
    ("born today", ssin_of(TODAY, 12), None),
    ("born tomorrow", ssin_of(TODAY + timedelta(days=1), 12), SsinReason.FUTURE),
    (
        "a year still to come, only the 2 prefix checks",
        number(30, 5, 1, 12, from_2000=True),
        SsinReason.FUTURE,
    ),
    ("the same digits checking for 1930", number(30, 5, 1, 12), None),
    ("month unknown in a year still to come", number(27, 0, 5, 12, from_2000=True), SsinReason.FUTURE),
    ("month unknown in this year", number(26, 0, 5, 12, from_2000=True), None),
]


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_rule_table(text: str, reason: SsinReason | None) -> None:
    assert ssin_problem(text, today=TODAY) == reason
    if reason is None:
        assert validated_ssin(text, today=TODAY) == text.replace(" ", "").replace(".", "").replace("-", "")
    else:
        with pytest.raises(InvalidSsin) as raised:
            validated_ssin(text, today=TODAY)
        assert raised.value.reason is reason


def test_each_reason_has_its_own_message_in_four_languages_without_the_number() -> None:
    for lang in ("en", "fr", "nl", "de"):
        texts = {ssin_message(reason, lang) for reason in SsinReason}
        assert len(texts) == len(SsinReason)
    assert (
        ssin_message(SsinReason.DATE, "nl")
        == "De geboortedatum in dit rijksregisternummer (INSZ) bestaat niet."
    )
    assert ssin_message(SsinReason.CHECK, "xx") == ssin_message(SsinReason.CHECK, "en")
    bad = number(85, 2, 31, 169)
    with pytest.raises(InvalidSsin) as raised:
        validated_ssin(bad, today=TODAY)
    assert bad not in str(raised.value) and bad[:6] not in str(raised.value)


def test_birth_date_sex_and_bis() -> None:
    assert birth_date("85.04.02-169.32", today=TODAY) == date(1985, 4, 2)
    assert sex("85040216932", today=TODAY) == "M"
    assert sex(number(85, 4, 2, 168), today=TODAY) == "F"
    bis_unknown_sex = number(90, 26, 15, 11)
    assert is_bis_number(bis_unknown_sex, today=TODAY) and sex(bis_unknown_sex, today=TODAY) is None
    assert birth_date(bis_unknown_sex, today=TODAY) == date(1990, 6, 15)
    assert sex(number(90, 46, 15, 12), today=TODAY) == "F"
    assert birth_date(number(85, 0, 45, 169), today=TODAY) is None
    assert birth_date(number(1, 3, 5, 67, from_2000=True), today=TODAY) == date(2001, 3, 5)


def test_contains_ssin_finds_the_same_numbers_the_rule_accepts() -> None:
    assert contains_ssin("sample 85040216932 here", today=TODAY)
    assert contains_ssin("id=85.04.02-169.32;", today=TODAY)
    assert not contains_ssin("85040216933", today=TODAY)  # wrong check number
    assert not contains_ssin("chr7:155040216932", today=TODAY)  # part of a longer number
    assert not contains_ssin(number(85, 2, 31, 169), today=TODAY)  # 31 February
    assert not contains_ssin(number(85, 4, 2, 0), today=TODAY)  # sequence 000
    assert not contains_ssin(number(30, 5, 1, 12, from_2000=True), today=TODAY)  # born in 2030


# --------------------------------------------------------------------------- properties

births = st.dates(min_value=date(1900, 1, 1), max_value=TODAY)
sequences = st.integers(min_value=1, max_value=998)
offsets = st.sampled_from([0, 20, 40])


@given(births, sequences, offsets)
def test_every_possible_birth_gives_a_valid_number(birth: date, seq: int, offset: int) -> None:
    ssin = ssin_of(birth, seq, offset)
    assert validated_ssin(ssin, today=TODAY) == ssin
    assert birth_date(ssin, today=TODAY) == birth
    assert sex(ssin, today=TODAY) == (None if offset == 20 else "M" if seq % 2 else "F")


@given(births, sequences, st.lists(st.sampled_from([".", "-", " ", ""]), min_size=12, max_size=12))
def test_separators_anywhere_do_not_matter(birth: date, seq: int, seps: list[str]) -> None:
    ssin = ssin_of(birth, seq)
    written = "".join(s + d for s, d in zip(seps, ssin, strict=False)) + seps[-1]
    assert validated_ssin(written, today=TODAY) == ssin


@given(births, sequences, st.integers(min_value=0, max_value=11), st.characters())
def test_any_other_character_is_refused(birth: date, seq: int, at: int, char: str) -> None:
    assume(char not in "0123456789. -")
    ssin = ssin_of(birth, seq)
    assert ssin_problem(ssin[:at] + char + ssin[at:], today=TODAY) is SsinReason.CHARACTERS


@given(births, sequences, st.integers(min_value=1, max_value=96))
def test_any_other_check_number_is_refused(birth: date, seq: int, shift: int) -> None:
    ssin = ssin_of(birth, seq)
    wrong = (int(ssin[9:]) - 1 + shift) % 97 + 1  # another value in 1..97
    other_century = ssin_check_number(ssin[:9], born_2000_or_later=birth.year < 2000)
    reason = ssin_problem(ssin[:9] + f"{wrong:02d}", today=TODAY)
    if wrong == other_century:  # the digits read for a birth a century apart
        assert reason in (None, SsinReason.DATE, SsinReason.FUTURE)
    else:
        assert reason is SsinReason.CHECK


@given(
    st.integers(min_value=1900, max_value=2025),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=29, max_value=99),
    sequences,
    offsets,
)
def test_a_day_the_month_does_not_have_is_refused(
    year: int, month: int, day: int, seq: int, offset: int
) -> None:
    assume(day > calendar.monthrange(year, month)[1])
    ssin = number(year % 100, month + offset, day, seq, from_2000=year >= 2000)
    assert ssin_problem(ssin, today=TODAY) is SsinReason.DATE


@given(
    st.integers(min_value=1900, max_value=2026), st.integers(min_value=0, max_value=99), sequences, offsets
)
def test_month_unknown_takes_any_day_counter(year: int, day: int, seq: int, offset: int) -> None:
    ssin = number(year % 100, offset, day, seq, from_2000=year >= 2000)
    assert ssin_problem(ssin, today=TODAY) is None
    assert birth_date(ssin, today=TODAY) is None


@given(st.dates(min_value=TODAY + timedelta(days=1), max_value=date(2099, 12, 31)), sequences, offsets)
def test_a_birth_after_today_is_refused(birth: date, seq: int, offset: int) -> None:
    assert ssin_problem(ssin_of(birth, seq, offset), today=TODAY) is SsinReason.FUTURE


@given(st.text(max_size=24))
def test_any_text_gives_digits_or_a_reason(text: str) -> None:
    reason = ssin_problem(text, today=TODAY)
    digits = checked_ssin(text, today=TODAY)
    assert (reason is None) == (digits is not None)
    if digits is not None:
        assert len(digits) == 11 and digits.isdigit() and contains_ssin(digits, today=TODAY)


def test_today_is_the_date_in_brussels_whatever_the_servers_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 23:30 UTC on 3 December it is already 4 December in Belgium: a child born there
    that day has a valid number, not one "born in the future"."""
    import datetime as dt

    from hdhub.common import ssin

    class LateEvening(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> LateEvening:
            utc = cls(2026, 12, 3, 23, 30, tzinfo=dt.UTC)
            return utc.astimezone(tz) if tz else utc.replace(tzinfo=None)  # type: ignore[return-value]

    monkeypatch.setattr(ssin, "datetime", LateEvening)
    assert ssin.belgian_today() == date(2026, 12, 4)
    assert ssin_problem(ssin_of(date(2026, 12, 4), 12)) is None
    assert ssin_problem(ssin_of(date(2026, 12, 5), 12)) is SsinReason.FUTURE
