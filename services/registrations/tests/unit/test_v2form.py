"""The HD4DP v2 form of values and codes, and business keys of patients without an SSIN."""

from __future__ import annotations

import hashlib
import hmac
import json
import pathlib

import pytest

from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.engine.v2form import codelist_id, codes_from_ids, v2_values, value_id
from hdhub.registrations.engine.xlsform import read_workbook
from hdhub.registrations.records.business_key import business_key

SECRET = b"unit-test-secret"
KEY = ("IDC_PAT", "DT_HOSPZ")
WORKBOOK = pathlib.Path(__file__).parents[2] / "src/hdhub/registrations/dcds/HDBP0012_ANGIO_HOSP_1.0.0.xlsx"


@pytest.fixture(scope="module")
def angio() -> DcdDefinition:
    return read_workbook(WORKBOOK)


def no_ssin(last: str = "Van der Berg-Élie", first: str = "José", **more: str) -> dict[str, str]:
    return {
        "IDC_PAT": "",
        "DT_HOSPZ": "2025-02-03",
        "DT_PAT_DOB": "1949-11-10",
        "CD_PAT_SEX": "M",
        "TX_PAT_LAST_NAME": last,
        "TX_PAT_FIRST_NAME": first,
        **more,
    }


def key(values: dict[str, str]) -> str | None:
    return business_key(SECRET, "ANGIO_HOSP", KEY, values, ssin_fields=("IDC_PAT",))


def test_a_patient_with_an_ssin_keeps_the_key_it_always_had() -> None:
    values = {"IDC_PAT": "49111003394", "DT_HOSPZ": "2025-02-03"}
    message = json.dumps(
        ["ANGIO_HOSP", ["49111003394", "2025-02-03"]], separators=(",", ":"), sort_keys=True
    ).encode()
    assert key(values) == hmac.new(SECRET, message, hashlib.sha256).hexdigest()[:40]


def test_without_an_ssin_the_pseudocode_inputs_make_a_deterministic_key() -> None:
    first = key(no_ssin())
    assert first is not None and len(first) == 40
    assert key(no_ssin("VAN DER BERG ELIE", " jose ")) == first  # case, accents, spaces, hyphens
    assert key(no_ssin(first="Maria")) != first
    assert key({**no_ssin(), "DT_PAT_DOB": "1949-11-11"}) != first
    assert key({**no_ssin(), "DT_HOSPZ": "2025-02-04"}) != first
    assert key(no_ssin(first="")) is None  # an input missing: no key (each record its own)
    # Only a field named as the SSIN falls back on the pseudocode inputs.
    assert business_key(SECRET, "ANGIO_HOSP", KEY, no_ssin()) is None


def test_values_read_back_in_v2_form(angio: DcdDefinition) -> None:
    stored = {
        "DT_HOSPZ": "2025-02-03",
        "DT_SYMPT_ONSET": "2025-02-03T06:40:00",
        "MS_WEIGHT": "80.5",
        "MS_HEIGHT": 171,
        "CD_RISK_FACTORS": ["hypertension", "dyslipidaemia"],
        "CD_PAT_SEX": "M",
        "TX_AUTHOR": "someone",
    }
    assert v2_values(angio, stored) == {
        "DT_HOSPZ": "03/02/2025",
        "DT_SYMPT_ONSET": "03/02/2025 06:40",
        "MS_WEIGHT": 80.5,
        "MS_HEIGHT": 171,
        "CD_RISK_FACTORS": "hypertension|dyslipidaemia",
        "CD_PAT_SEX": "M",
        "TX_AUTHOR": "someone",
    }


def test_code_list_value_ids_become_codes_and_codes_win(angio: DcdDefinition) -> None:
    sent = {
        "CD_PAT_SEX": value_id("sex", "F"),
        "CD_ADM_TYPE": str(value_id("adm_type", "urgent")),
        "CD_RISK_FACTORS": [value_id("risk_factor", "diabetes"), "hypertension"],
        "CD_DISCH_MED": f"{value_id('medication', 'statin')}|aspirin",
        "CD_CAD_EXTENT": "2",  # a code that is digits stays the code
        "CD_INDICATION": "999",  # neither: left for validation to refuse
        "MS_HEIGHT": str(value_id("sex", "M")),  # not a CODE field: untouched
    }
    assert codes_from_ids(angio, sent) == {
        "CD_PAT_SEX": "F",
        "CD_ADM_TYPE": "urgent",
        "CD_RISK_FACTORS": ["diabetes", "hypertension"],
        "CD_DISCH_MED": "statin|aspirin",
        "CD_CAD_EXTENT": "2",
        "CD_INDICATION": "999",
        "MS_HEIGHT": str(value_id("sex", "M")),
    }


def test_ids_are_stable_nine_digit_numbers_unique_within_each_list(angio: DcdDefinition) -> None:
    assert codelist_id("sex") == codelist_id("sex") and 100_000_000 <= codelist_id("sex") < 1_000_000_000
    for codelist in angio.codelists.values():
        ids = [value_id(codelist.name, c) for c in codelist.codes]
        assert len(set(ids)) == len(ids)
        assert all(100_000_000 <= i < 1_000_000_000 for i in ids)
    assert len({codelist_id(name) for name in angio.codelists}) == len(angio.codelists)
