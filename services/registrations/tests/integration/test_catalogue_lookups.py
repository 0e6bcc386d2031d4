"""/api/v1 and the HD4DP v2 API find fields, code lists and the latest version the same
way (hdhub.registrations.catalogue): a field by its technical name or the name of one
instance of a repeat, a code list by its name or its v2 number."""

from __future__ import annotations

from hdhub.registrations.engine.v2form import codelist_id
from tests.support.samples import record
from tests.support.stack import Stack

NURSE = "nurse@az-demo.test"
V1 = "/api/v1/dcds/ANGIO_HOSP/versions"
V2 = "/proxy/api/dcd"


async def test_a_code_list_is_found_by_its_name_or_its_v2_number_in_both_apis(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    by_name = await stack.client.get(f"{V1}/latest/codelists/sex", headers=h)
    by_number = await stack.client.get(f"{V1}/1.0.0/codelists/{codelist_id('sex')}", headers=h)
    assert by_name.status_code == by_number.status_code == 200
    assert by_name.json() == by_number.json()
    v2 = await stack.client.get(
        f"{V2}/codelist", params={"code-list-id": "sex", "dcd-id": "ANGIO_HOSP"}, headers=h
    )
    assert [c["code"] for c in v2.json()] == [c["code"] for c in by_name.json()["choices"]]
    missing = await stack.client.get(f"{V1}/latest/codelists/no-such-list", headers=h)
    assert missing.status_code == 404 and missing.json()["title"] == "Code list no-such-list not found"


async def test_a_repeated_field_is_found_by_its_name_or_one_instance_in_both_apis(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    field = await stack.client.get(f"{V1}/latest/fields/DT_CABG", headers=h)
    instance = await stack.client.get(f"{V1}/latest/fields/DT_CABG_2", headers=h)
    assert field.status_code == instance.status_code == 200 and field.json() == instance.json()
    for name in ("DT_CABG", "DT_CABG_2"):
        v2 = await stack.client.get(
            f"{V2}/field", params={"dcd-id": "ANGIO_HOSP", "field-name": name}, headers=h
        )
        assert [f["key"] for f in v2.json()] == ["DT_CABG"]
    missing = await stack.client.get(f"{V1}/latest/fields/NO_SUCH_FIELD", headers=h)
    assert missing.status_code == 404 and missing.json()["title"] == "Field NO_SUCH_FIELD not found"


async def test_latest_names_the_newest_version_wherever_a_version_is_asked_for(stack: Stack) -> None:
    h = await stack.headers(NURSE)
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "dcd_version": "latest", "values": record()},
        headers=h,
    )
    assert r.status_code == 201 and r.json()["dcd_version"] == "1.0.0", r.text
    definition = await stack.client.get(f"{V1}/latest", headers=h)
    assert definition.json()["version"] == "1.0.0"
