"""The message builder and the XSD: a good payload validates; each bad one is refused with a
reason naming the element and the rule, and no reason repeats the value (an SSIN)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hdhub.nippin.domain.message import Header, build, validate

HEADER = Header(
    "0b8e3c0e-4bd8-4f57-9c4b-1d8f6b0e5f01",
    datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
    "R300-2026-1",
    "PACEMAKER",
    "1.0.0",
)
GOOD = {
    "PatientSSIN": "85073003328",
    "ImplantDate": "2026-11-20",
    "HospitalNihdi": "71000436",
    "PhysicianNihdi": "12345678730",
    "NomenclatureCode": "172711",
    "DeviceCode": "PM-40012345",
}


def message(**changes: str | None) -> bytes:
    fields = {**GOOD, **changes}
    return build(HEADER, [(k, v) for k, v in fields.items() if v is not None])


def test_a_complete_implant_message_is_valid() -> None:
    document = message(DeviceSerial="SN 123")
    assert validate(document).valid
    assert b"<nip:PatientSSIN>85073003328</nip:PatientSSIN>" in document
    assert b'<nip:dcd code="PACEMAKER" version="1.0.0"' in document


def test_fields_may_come_in_any_order() -> None:
    assert validate(build(HEADER, list(reversed(list(GOOD.items()))))).valid


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"PatientSSIN": "8507300332"},
            "implant/PatientSSIN: value doesn't match any pattern of ['[0-9]{11}']",
        ),
        ({"PatientSSIN": None}, "implant: The content of element 'nip:implant' is not complete"),
        ({"ImplantDate": "2026-13-20"}, "implant/ImplantDate: month must be in 1..12"),
        (
            {"HospitalNihdi": "7100043"},
            "implant/HospitalNihdi: value doesn't match any pattern of ['[0-9]{8}']",
        ),
        (
            {"PhysicianNihdi": "1234567873X"},
            "implant/PhysicianNihdi: value doesn't match any pattern of ['[0-9]{11}']",
        ),
        (
            {"NomenclatureCode": "17271"},
            "implant/NomenclatureCode: value doesn't match any pattern of ['[0-9]{6}']",
        ),
        ({"DeviceCode": "PM 4001"}, "implant/DeviceCode: value doesn't match any pattern"),
        ({"Unbound": "x"}, "implant: Unexpected child with tag 'nip:Unbound'"),
        ({"not an xml name": "x"}, "implant: Unexpected child with tag 'nip:invalidName'"),
    ],
)
def test_a_bad_payload_is_refused_with_its_reason(changes: dict[str, str | None], reason: str) -> None:
    result = validate(message(**changes))
    assert not result.valid
    assert any(r.startswith(reason) for r in result.reasons), result.reasons
    assert not any("8507300332" in r or "85073003328" in r for r in result.reasons)


def test_not_xml_is_refused_as_not_well_formed() -> None:
    assert validate(b"<nip:message").reasons == ("message: not well-formed XML (XMLResourceParseError)",)


def test_an_empty_value_leaves_the_element_out() -> None:
    assert b"DeviceSerial" not in message(DeviceSerial="")
