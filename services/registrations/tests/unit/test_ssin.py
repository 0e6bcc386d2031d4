"""Belgian SSIN (NISS/INSZ): normalisation, mod-97 check, birth date and sex, BIS numbers."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from hdhub.registrations.domain.ssin import (
    Sex,
    checked_ssin,
    format_ssin,
    is_bis_number,
    is_valid_ssin,
    normalise_ssin,
    ssin_birth_date,
    ssin_birth_year,
    ssin_check_number,
    ssin_sex,
)


def make_ssin(birth: datetime.date, sequence: int, *, month_offset: int = 0) -> str:
    first_nine = f"{birth.year % 100:02d}{birth.month + month_offset:02d}{birth.day:02d}{sequence:03d}"
    check = ssin_check_number(first_nine, born_2000_or_later=birth.year >= 2000)
    return f"{first_nine}{check:02d}"


def test_separators_are_removed() -> None:
    assert normalise_ssin("85.04.02-169.32") == "85040216932"
    assert normalise_ssin(" 85 04 02 169 32 ") == "85040216932"
    assert normalise_ssin("85040216932") == "85040216932"


def test_anything_but_eleven_digits_does_not_normalise() -> None:
    assert normalise_ssin("8504021693") is None
    assert normalise_ssin("850402169321") is None
    assert normalise_ssin("85040216932a") is None
    assert normalise_ssin("８５０４０２１６９３２") is None  # full-width digits are not ASCII


def test_example_number_is_valid_with_and_without_separators() -> None:
    assert is_valid_ssin("85.04.02-169.32")
    assert is_valid_ssin("85040216932")


def test_wrong_check_number_is_rejected() -> None:
    assert not is_valid_ssin("85040216933")


def test_born_in_2000_or_later_uses_the_2_prefix() -> None:
    ssin = make_ssin(datetime.date(2001, 3, 5), 67)
    assert is_valid_ssin(ssin)
    assert ssin_birth_year(ssin) == 2001
    # The same digits checked as if born in 1901 fail.
    old_check = ssin_check_number(ssin[:9], born_2000_or_later=False)
    assert old_check != int(ssin[9:])


def test_birth_date_and_sex_are_read_from_the_number() -> None:
    assert ssin_birth_date("85.04.02-169.32") == datetime.date(1985, 4, 2)
    assert ssin_sex("85040216932") is Sex.MALE  # 169 is odd
    woman = make_ssin(datetime.date(1958, 7, 14), 124)
    assert ssin_sex(woman) is Sex.FEMALE


def test_unknown_birth_day_gives_no_birth_date() -> None:
    first_nine = "850400169"
    ssin = first_nine + f"{ssin_check_number(first_nine, born_2000_or_later=False):02d}"
    assert is_valid_ssin(ssin)
    assert ssin_birth_date(ssin) is None
    assert ssin_birth_year(ssin) == 1985


def test_bis_number_with_sex_unknown_adds_20_to_the_month() -> None:
    bis = make_ssin(datetime.date(1990, 6, 15), 11, month_offset=20)
    assert is_valid_ssin(bis)
    assert is_bis_number(bis)
    assert ssin_birth_date(bis) == datetime.date(1990, 6, 15)
    assert ssin_sex(bis) is None


def test_bis_number_with_sex_known_adds_40_to_the_month() -> None:
    bis = make_ssin(datetime.date(1990, 6, 15), 12, month_offset=40)
    assert is_bis_number(bis)
    assert ssin_birth_date(bis) == datetime.date(1990, 6, 15)
    assert ssin_sex(bis) is Sex.FEMALE


def test_impossible_month_is_rejected() -> None:
    first_nine = "851502169"  # month 15
    ssin = first_nine + f"{ssin_check_number(first_nine, born_2000_or_later=False):02d}"
    assert not is_valid_ssin(ssin)


def test_format_gives_the_usual_written_form() -> None:
    assert format_ssin("85040216932") == "85.04.02-169.32"
    assert format_ssin("123") is None


births = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2099, 12, 31))


@given(births, st.integers(min_value=1, max_value=997))
def test_computed_check_number_makes_a_valid_ssin(birth: datetime.date, sequence: int) -> None:
    ssin = make_ssin(birth, sequence)
    assert is_valid_ssin(ssin)
    assert is_valid_ssin(format_ssin(ssin) or "")
    assert ssin_birth_date(ssin) == birth
    assert ssin_sex(ssin) is (Sex.MALE if sequence % 2 else Sex.FEMALE)


@given(births, st.integers(min_value=1, max_value=997), st.integers(min_value=1, max_value=96))
def test_any_other_check_number_is_rejected(birth: datetime.date, sequence: int, shift: int) -> None:
    ssin = make_ssin(birth, sequence)
    wrong = (int(ssin[9:]) - 1 + shift) % 97 + 1  # another value in 1..97
    other_century = ssin_check_number(ssin[:9], born_2000_or_later=birth.year < 2000)
    if wrong == other_century:
        return  # the same digits are a valid number for someone born a century apart
    assert not is_valid_ssin(ssin[:9] + f"{wrong:02d}")


@given(st.text(max_size=20))
def test_random_text_never_raises(text: str) -> None:
    is_valid_ssin(text)
    ssin_birth_date(text)
    ssin_sex(text)
    normalise_ssin(text)


@given(st.one_of(st.text(max_size=16), st.from_regex(r"[0-9 .\-]{9,16}", fullmatch=True)))
def test_checked_ssin_agrees_with_normalise_then_validate(text: str) -> None:
    normalised = normalise_ssin(text)
    expected = normalised if normalised is not None and is_valid_ssin(normalised) else None
    assert checked_ssin(text) == expected


@given(births, st.integers(min_value=1, max_value=997))
def test_checked_ssin_accepts_every_valid_number(birth: datetime.date, sequence: int) -> None:
    ssin = make_ssin(birth, sequence)
    assert checked_ssin(format_ssin(ssin) or "") == ssin
