"""The one rule a patient's names are compared by (pseudocode, business key without SSIN)."""

from __future__ import annotations

import pytest

from hdhub.common.patient_names import normalise_name


@pytest.mark.parametrize(
    "spelling",
    ["Van der Berg-Élie", "VANDERBERG ELIE", "van der berg élie", "Vanderberg.Elie", " vanDerBerg'elie "],
)
def test_case_accents_spaces_and_punctuation_do_not_make_another_name(spelling: str) -> None:
    assert normalise_name(spelling) == "vanderbergelie"


def test_letters_and_digits_stay_and_distinct_names_stay_distinct() -> None:
    assert normalise_name("Ÿsaë Ñúñez 2") == "ysaenunez2"
    assert normalise_name("Straße") == "strasse"  # casefold: ß is ss
    assert normalise_name("Müller") != normalise_name("Muller-Thurgau")
    assert normalise_name("'- .") == ""  # nothing of a name left: the caller treats it as missing
