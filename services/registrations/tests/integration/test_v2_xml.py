"""The v2 submit and definition routes in XML: the same record, validation, errors and
statuses as JSON; the answers valid against the published XSD; hostile XML refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, SubElement, fromstring, tostring

import pytest
import xmlschema

from hdhub.common.xml import NAMESPACE, PROBLEM_NAMESPACE, prefers_xml
from tests.support.samples import record
from tests.support.stack import Stack

HIS = "az-demo-his"
SUBMIT = "/proxy/api/dcd/payload/submit?organization-id=az-demo&dcd-id=ANGIO_HOSP&dcd-version-id=1.0.0"
XSD = "/proxy/api/dcd/payload/xsd?dcd-id=ANGIO_HOSP&dcd-version-id=1.0.0"
XML = {"Content-Type": "application/xml"}


def as_xml(values: dict[str, Any], *, namespace: str | None = NAMESPACE) -> bytes:
    root = Element("record", {"xmlns": namespace} if namespace else {})
    for key, value in values.items():
        field = SubElement(root, key)
        if isinstance(value, list):
            for item in value:
                SubElement(field, "i").text = item
        else:
            field.text = value
    return tostring(root, encoding="utf-8", xml_declaration=True)


def angio(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = record()
    values["CD_RISK_FACTORS"] = values["CD_RISK_FACTORS"].split("|")  # a multi-select as <i>s
    return {**values, **overrides}


async def schemas(stack: Stack) -> tuple[xmlschema.XMLSchema, xmlschema.XMLSchema]:
    headers = await stack.headers(HIS)
    dcd = await stack.client.get(XSD, headers=headers)
    problem = await stack.client.get("/proxy/api/problem.xsd", headers=headers)
    assert dcd.status_code == problem.status_code == 200, dcd.text + problem.text
    assert dcd.headers["content-type"].startswith("application/xml")
    return xmlschema.XMLSchema(dcd.text), xmlschema.XMLSchema(problem.text)


def local(element: Element, name: str) -> str:
    found = element.find(f"{{{element.tag[1:].split('}')[0]}}}{name}")
    assert found is not None, name
    return found.text or ""


async def test_an_xml_record_is_stored_as_its_json_twin_and_answered_in_xml(stack: Stack) -> None:
    dcd_schema, _ = await schemas(stack)
    values = angio()
    sent = as_xml(values)
    dcd_schema.validate(sent)  # what a hospital checks before sending
    r = await stack.client.post(SUBMIT, content=sent, headers=await stack.headers(HIS) | XML)
    assert r.status_code == 202, r.text
    assert r.headers["content-type"].startswith("application/xml") and r.headers["location"]
    dcd_schema.validate(r.text)
    answer = fromstring(r.content)
    assert answer.tag == f"{{{NAMESPACE}}}submitAccepted"
    stored = await stack.client.get(
        f"/api/v1/registrations/{local(answer, 'registrationId')}", headers=await stack.headers(HIS)
    )
    assert stored.status_code == 200
    assert stored.json()["values"]["CD_RISK_FACTORS"] == values["CD_RISK_FACTORS"]

    # The same record in JSON is the same registration: its business key, and nothing changes.
    twin = {**values, "CD_RISK_FACTORS": "|".join(values["CD_RISK_FACTORS"])}
    again = await stack.client.post(SUBMIT, json=twin, headers=await stack.headers(HIS))
    assert again.status_code == 202, again.text
    assert again.json()["businessKey"] == local(answer, "businessKey")
    assert again.json()["registrationId"] == local(answer, "registrationId")


async def test_xml_without_a_namespace_and_json_answers_when_asked(stack: Stack) -> None:
    r = await stack.client.post(
        SUBMIT,
        content=as_xml(angio(STATUS="draft"), namespace=None),
        headers=await stack.headers(HIS) | XML | {"Accept": "application/json"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "open"


async def test_an_invalid_xml_record_is_a_problem_in_xml_in_the_callers_language(stack: Stack) -> None:
    _, problem_schema = await schemas(stack)
    bad = angio(DT_PAT_DOB="31/02/1949")
    r = await stack.client.post(
        SUBMIT, content=as_xml(bad), headers=await stack.headers(HIS) | XML | {"Accept-Language": "fr"}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+xml")
    problem_schema.validate(r.text)
    problem = fromstring(r.content)
    assert problem.tag == f"{{{PROBLEM_NAMESPACE}}}problem"
    errors = problem.find(f"{{{PROBLEM_NAMESPACE}}}errors")
    assert errors is not None
    fields = [(local(e, "field"), local(e, "rule"), local(e, "message")) for e in errors]
    assert [(f, rule) for f, rule, _ in fields] == [("DT_PAT_DOB", "type")]
    json_twin = await stack.client.post(
        SUBMIT,
        json={**bad, "CD_RISK_FACTORS": "|".join(bad["CD_RISK_FACTORS"])},
        headers=await stack.headers(HIS) | {"Accept-Language": "fr"},
    )
    assert json_twin.status_code == 422
    assert [e["message"] for e in json_twin.json()["errors"]] == [m for _, _, m in fields]
    assert "1949" not in r.text  # the value is not echoed back


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        (b"<record><IDC_PAT>1</record>", 400, "malformed-xml"),
        (b"", 400, "malformed-xml"),
        (b"\xff\xfe<record/>", 400, "malformed-xml"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;'
            b'&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><record><X>&c;</X></record>',
            400,
            "xml-forbidden",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<record><IDC_PAT>&x;</IDC_PAT></record>",
            400,
            "xml-forbidden",
        ),
        (b"<registration><IDC_PAT>1</IDC_PAT></registration>", 422, "xml-root"),
        (b"<record><IDC_PAT>1</IDC_PAT><IDC_PAT>2</IDC_PAT></record>", 422, "xml-shape"),
        (b"<record><CD_RISK_FACTORS><i><i>x</i></i></CD_RISK_FACTORS></record>", 422, "xml-shape"),
        (b"<record><CD_RISK_FACTORS>x<i>y</i></CD_RISK_FACTORS></record>", 422, "xml-shape"),
        (b"<record><CD_RISK_FACTORS><i>y</i>x</CD_RISK_FACTORS></record>", 422, "xml-shape"),
        (b'<?xml version="1.0" encoding="x-nope"?><record/>', 400, "malformed-xml"),
        (b'<record xmlns="urn:other"><IDC_PAT>1</IDC_PAT></record>', 422, "xml-root"),
        (b'<record xmlns:o="urn:other"><o:IDC_PAT>1</o:IDC_PAT></record>', 422, "xml-shape"),
    ],
    ids=[
        "unclosed",
        "empty",
        "not-utf8",
        "entity-expansion",
        "external-entity",
        "root",
        "twice",
        "deep",
        "mixed",
        "text-after-items",
        "unknown-encoding",
        "root-in-another-namespace",
        "field-in-another-namespace",
    ],
)
async def test_hostile_or_broken_xml_is_refused_with_its_reason(
    stack: Stack, body: bytes, status: int, slug: str
) -> None:
    started = time.perf_counter()
    r = await stack.client.post(SUBMIT, content=body, headers=await stack.headers(HIS) | XML)
    assert time.perf_counter() - started < 5  # nothing expanded
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+xml")
    assert f"/problems/{slug}" in r.text
    assert "root:" not in r.text and "Traceback" not in r.text
    if slug == "malformed-xml" and body:
        assert "Line 1, column" in r.text


async def test_another_organisations_member_is_refused_in_xml(stack: Stack) -> None:
    r = await stack.client.post(
        SUBMIT, content=as_xml(angio()), headers=await stack.headers("lab-demo-lims") | XML
    )
    assert r.status_code in (403, 404), r.text
    assert r.headers["content-type"].startswith("application/problem+xml")


async def test_the_definition_in_xml_is_valid_against_the_xsd_and_says_what_the_json_says(
    stack: Stack,
) -> None:
    dcd_schema, _ = await schemas(stack)
    url = "/proxy/api/dcd/payload/definition?dcd-id=ANGIO_HOSP&language-id=nl"
    as_json = await stack.client.get(url, headers=await stack.headers(HIS))
    r = await stack.client.get(url, headers=await stack.headers(HIS) | {"Accept": "application/xml"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    dcd_schema.validate(r.text)
    decoded = dcd_schema.to_dict(r.text)
    assert [f["key"] for f in decoded["fields"]["i"]] == [f["key"] for f in as_json.json()["fields"]]
    assert decoded["dcdCode"] == "ANGIO_HOSP"
    # No Accept, or JSON ranked first: JSON as before.
    both = await stack.client.get(
        url, headers=await stack.headers(HIS) | {"Accept": "application/json, application/xml;q=0.5"}
    )
    assert both.headers["content-type"].startswith("application/json")


async def test_every_shipped_dcd_has_a_valid_xsd(stack: Stack) -> None:
    import hdhub.registrations

    # The shipped versions only: the session's stack also holds the DCDs and versions other
    # tests imported (a version 7.0.0 of ANGIO_FU_PCI with 4,000 more fields, whose XSD
    # took xmlschema half a minute to read).
    shipped = dict(
        p.stem.split("_", 1)[1].rsplit("_", 1)
        for p in (Path(hdhub.registrations.__file__).parent / "dcds").glob("*.xlsx")
    )
    menu = await stack.client.get("/proxy/api/dcd/menu/structure")
    codes = [d["dcdCode"] for p in menu.json() for d in p["dcds"] if d["dcdCode"] in shipped]
    assert len(codes) == len(shipped) >= 8
    for code in codes:
        r = await stack.client.get(
            f"/proxy/api/dcd/payload/xsd?dcd-id={code}&dcd-version-id={shipped[code]}",
            headers=await stack.headers(HIS),
        )
        assert r.status_code == 200, (code, r.text)
        xmlschema.XMLSchema(r.text)  # raises on an invalid schema


def test_accept_ranks_xml_above_json_only_when_it_says_so() -> None:
    assert prefers_xml("application/xml")
    assert prefers_xml("application/json;q=0.5, application/xml")
    assert not prefers_xml(None) and not prefers_xml("*/*") and not prefers_xml("application/json")
    assert not prefers_xml("application/xml, application/json")  # a tie is JSON
    assert not prefers_xml("application/xml;q=0, */*")
    assert not prefers_xml("application/xml;q=nonsense")
