"""Hospital IT on the HD4DP v2-compatible API: menu, definitions, look-ups, submission."""

from __future__ import annotations

import asyncio
import re

from tests.support.samples import record
from tests.support.stack import Stack

HIS = "az-demo-his"
SUBMIT = "/proxy/api/dcd/payload/submit?organization-id=az-demo&dcd-id=ANGIO_HOSP&dcd-version-id=1.0.0"


async def wait_for_status(stack: Stack, registration_id: str, status: str, who: str = HIS) -> dict:
    for _ in range(100):
        r = await stack.client.get(
            f"/api/v1/registrations/{registration_id}", headers=await stack.headers(who)
        )
        assert r.status_code == 200, r.text
        if r.json()["status"] == status:
            return r.json()
        await asyncio.sleep(0.05)
    raise AssertionError(f"registration never became {status}: {r.json()['status']}")


async def test_hospital_system_lists_its_organisations_over_identity_grpc(stack: Stack) -> None:
    r = await stack.client.get("/proxy/api/organizations", headers=await stack.headers(HIS))
    assert r.status_code == 200, r.text
    assert r.json() == [
        {
            "id": "az-demo",
            "name": "AZ Demo Hospital",
            "identificationType": "NIHDI",
            "identificationValue": "71000436",
            "roles": ["registrant"],
        }
    ]


async def test_menu_lists_projects_dcds_and_versions(stack: Stack) -> None:
    r = await stack.client.get("/proxy/api/dcd/menu/structure?language=nl", headers=await stack.headers(HIS))
    assert r.status_code == 200
    projects = {p["projectId"]: p for p in r.json()}
    assert {"HDBP0012", "HDBP0263", "HDBP0257"} <= set(projects)
    angio = projects["HDBP0012"]
    assert angio["projectAbbreviation"] == "ANGIO"
    assert [d["dcdCode"] for d in angio["dcds"]] == [
        "ANGIO_HOSP",
        "ANGIO_HOSP_PCI",
        "ANGIO_HOSP_FFR",
        "ANGIO_HOSP_FFR_PCI",
        "ANGIO_FU_PCI",
    ]
    assert angio["dcds"][0]["name"] == "Hospitalisatie"
    assert angio["dcds"][0]["versions"][0]["dcdVersionId"] == "1.0.0"


async def test_submission_answers_202_with_business_key_and_becomes_submitted(stack: Stack) -> None:
    r = await stack.client.post(SUBMIT, json=record(), headers=await stack.headers(HIS))
    assert r.status_code == 202, r.text
    body = r.json()
    assert re.fullmatch(r"[0-9a-f]{40}", body["businessKey"])
    assert re.fullmatch(r"201\.\d{2}\.\d{6}\.\d{2}", body["registrationCode"])
    reg = await wait_for_status(stack, body["registrationId"], "submitted")
    assert reg["status_confirmation"] == "pending"
    assert reg["business_key"] == body["businessKey"]


async def test_draft_status_saves_without_submitting(stack: Stack) -> None:
    values = record()
    del values["DT_DISCH"]  # a draft may be incomplete
    r = await stack.client.post(SUBMIT, json={**values, "STATUS": "draft"}, headers=await stack.headers(HIS))
    assert r.status_code == 202, r.text
    reg = (
        await stack.client.get(
            f"/api/v1/registrations/{r.json()['registrationId']}", headers=await stack.headers(HIS)
        )
    ).json()
    assert reg["status"] == "open" and reg["registration_code"] is None
    assert [i["field"] for i in reg["open_issues"]] == ["DT_DISCH"]


async def test_multi_select_codes_separated_by_spaces_as_odk_writes_them_are_accepted(stack: Stack) -> None:
    sent = record(CD_RISK_FACTORS="dyslipidaemia hypertension", STATUS="draft")
    r = await stack.client.post(SUBMIT, json=sent, headers=await stack.headers(HIS))
    assert r.status_code == 202, r.text
    reg = (
        await stack.client.get(
            f"/api/v1/registrations/{r.json()['registrationId']}", headers=await stack.headers(HIS)
        )
    ).json()
    assert reg["values"]["CD_RISK_FACTORS"] == ["hypertension", "dyslipidaemia"]  # the code list's order


async def test_latest_submission_with_the_same_business_key_wins(stack: Stack) -> None:
    h = await stack.headers(HIS)
    first = record()
    r1 = await stack.client.post(SUBMIT, json=first, headers=h)
    reg1 = await wait_for_status(stack, r1.json()["registrationId"], "submitted")
    corrected = {**first, "MS_WEIGHT": "82.5"}
    r2 = await stack.client.post(SUBMIT, json=corrected, headers=h)
    assert r2.status_code == 202
    assert r2.json()["businessKey"] == r1.json()["businessKey"]
    assert r2.json()["registrationId"] == r1.json()["registrationId"]
    assert r2.json()["registrationCode"] == reg1["registration_code"]
    reg2 = await wait_for_status(stack, r1.json()["registrationId"], "submitted")
    assert reg2["values"]["MS_WEIGHT"] == "82.5"
    history = (await stack.client.get(f"/api/v1/registrations/{reg2['id']}/history", headers=h)).json()[
        "items"
    ]
    assert [e["action"] for e in history] == ["create", "submit", "processed", "resubmit", "processed"]
    assert history[3]["changed_fields"] == ["MS_BMI", "MS_WEIGHT"]  # BMI is calculated from the weight
    assert {e["actor"] for e in history} == {HIS, "hdhub"}
    page = (
        await stack.client.get(f"/api/v1/registrations?business_key={r1.json()['businessKey']}", headers=h)
    ).json()
    assert page["total"] == 1


async def test_validation_errors_name_field_rule_and_message_in_dutch(stack: Stack) -> None:
    h = await stack.headers(HIS, **{"Accept-Language": "nl"})
    before = (
        await stack.client.get(
            "/api/v1/registrations?organisation_id=az-demo&include_deleted=true", headers=h
        )
    ).json()["total"]
    bad = record(DT_HOSPZ="31/02/2024", IDC_PAT="85040216933", CD_PAT_SEX="Q", MS_HEIGHT="tall")
    r = await stack.client.post(SUBMIT, json=bad, headers=h)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "/problems/invalid-registration"
    by_field = {e["field"]: e for e in problem["errors"]}
    assert by_field["DT_HOSPZ"]["rule"] in ("type", "date")
    assert by_field["IDC_PAT"]["rule"] == "ssin"
    assert by_field["CD_PAT_SEX"]["rule"] == "choice"
    assert by_field["MS_HEIGHT"]["rule"] == "type"
    assert all(e["message"] and e["path"] for e in problem["errors"])
    # Messages are Dutch, and never echo the identifier that was sent.
    assert "85040216933" not in r.text
    english = await stack.client.post(SUBMIT, json=bad, headers=await stack.headers(HIS))
    assert {e["message"] for e in english.json()["errors"]} != {e["message"] for e in problem["errors"]}
    after = (
        await stack.client.get(
            "/api/v1/registrations?organisation_id=az-demo&include_deleted=true", headers=h
        )
    ).json()["total"]
    assert after == before


async def test_bad_requests_get_problems_and_store_nothing(stack: Stack) -> None:
    h = await stack.headers(HIS)
    r = await stack.client.post(
        SUBMIT, content=b'{"IDC_PAT": ', headers={**h, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["type"] == "/problems/malformed-json"
    r = await stack.client.post(SUBMIT, json=[1, 2], headers=h)
    assert r.status_code == 400
    r = await stack.client.post(SUBMIT.replace("ANGIO_HOSP", "NOPE"), json=record(), headers=h)
    assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"
    r = await stack.client.post(SUBMIT.replace("1.0.0", "9.9.9"), json=record(), headers=h)
    assert r.status_code == 404
    r = await stack.client.post(SUBMIT, json={**record(), "STATUS": "maybe"}, headers=h)
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-status"
    # It names the field, the rule and says it in the caller's language, like every other
    # field error (it was a bare title, in English only).
    for status, lang, words in ((True, "nl", "moet draft"), ("DELETE", "fr", "doit valoir draft")):
        r = await stack.client.post(
            SUBMIT, json={**record(), "STATUS": status}, headers={**h, "Accept-Language": lang}
        )
        assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-status"
        (error,) = r.json()["errors"]
        assert (error["field"], error["rule"]) == ("STATUS", "status") and words in error["message"], error
        # The title stays English, as the OpenAPI document's Accept-Language says (it
        # promised translated titles, which no route gives).
        assert r.json()["title"] == "STATUS must be draft or submit"
    document = (await stack.client.get("/openapi.json")).json()
    (language,) = [
        p
        for p in document["paths"]["/proxy/api/dcd/payload/submit"]["post"]["parameters"]
        if p["name"] == "Accept-Language"
    ]
    assert "`title` is English" in language["description"]
    r = await stack.client.post(SUBMIT, json={**record(), "NOT_A_FIELD": "1"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "unknown_field"
    huge = {**record(), "TX_INDICATION_OTHER": "x" * (6 * 1024 * 1024)}
    r = await stack.client.post(SUBMIT, json=huge, headers=h)
    assert r.status_code == 413 and r.json()["type"] == "/problems/payload-too-large"


async def test_another_organisations_token_cannot_submit_for_this_one(stack: Stack) -> None:
    r = await stack.client.post(SUBMIT, json=record(), headers=await stack.headers("lab-demo-lims"))
    assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden"
    r = await stack.client.post(SUBMIT, json=record())
    assert r.status_code == 401
    r = await stack.client.post(SUBMIT, json=record(), headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401


async def test_concurrent_submissions_of_one_record_make_one_registration(stack: Stack) -> None:
    h = await stack.headers(HIS)
    values = record()
    answers = await asyncio.gather(*[stack.client.post(SUBMIT, json=values, headers=h) for _ in range(6)])
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers if a.status_code != 202]
    assert len({a.json()["registrationId"] for a in answers}) == 1
    assert len({a.json()["businessKey"] for a in answers}) == 1
    page = (
        await stack.client.get(
            f"/api/v1/registrations?business_key={answers[0].json()['businessKey']}", headers=h
        )
    ).json()
    assert page["total"] == 1
