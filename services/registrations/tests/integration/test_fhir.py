"""HL7 FHIR R4 at /fhir: Questionnaires from the DCDs, registrations as QuestionnaireResponses
through the same engine, lifecycle and tenancy; errors as OperationOutcomes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.questionnaire import Questionnaire
from fhirclient.models.questionnaireresponse import QuestionnaireResponse

from tests.support.samples import record
from tests.support.stack import Stack

HIS = "az-demo-his"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def response_for(
    values: dict[str, Any], *, status: str = "completed", org: str = "az-demo"
) -> dict[str, Any]:
    """A QuestionnaireResponse of ANGIO_HOSP 1.0.0 with these values as answers (flat)."""
    items = []
    for key, value in values.items():
        if "|" in value or key in ("CD_RISK_FACTORS", "CD_CARDIAC_HIST", "CD_DISCH_MED"):
            answers = [{"valueCoding": {"code": code}} for code in value.split("|")]
        elif key.startswith("DT_") and "/" in value:
            dd, mm, yyyy = value.split("/")
            answers = [{"valueDate": f"{yyyy}-{mm}-{dd}"}]
        else:
            answers = [{"valueString": value}]
        items.append({"linkId": key, "answer": answers})
    body = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://127.0.0.1:8000/fhir/Questionnaire/ANGIO_HOSP|1.0.0",
        "status": status,
        "author": {"reference": f"Organization/{org}"},
        "item": items,
    }
    QuestionnaireResponse(body, strict=True)  # what we send is valid R4
    return body


async def test_metadata_is_a_valid_capability_statement(stack: Stack) -> None:
    r = await stack.client.get("/fhir/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    statement = CapabilityStatement(r.json(), strict=True)
    assert statement.fhirVersion == "4.0.1"
    kinds = {resource.type for resource in statement.rest[0].resource}
    assert kinds == {"Questionnaire", "QuestionnaireResponse"}


async def test_a_dcd_version_is_a_questionnaire_in_the_callers_language(stack: Stack) -> None:
    headers = await stack.headers(HIS)
    r = await stack.client.get(
        "/fhir/Questionnaire/ANGIO_HOSP-1.0.0", headers=headers | {"Accept-Language": "fr"}
    )
    assert r.status_code == 200, r.text
    q = Questionnaire(r.json(), strict=True)
    assert (q.version, q.language, q.status) == ("1.0.0", "fr", "active")
    flat = {}

    def walk(items: Any) -> None:
        for item in items or []:
            flat[item.linkId] = item
            walk(item.item)

    walk(q.item)
    assert flat["IDC_PAT"].type == "string" and flat["DT_HOSPZ"].type == "date"
    assert flat["CD_RISK_FACTORS"].type == "choice" and flat["CD_RISK_FACTORS"].repeats
    codes = [o.valueCoding.code for o in flat["CD_RISK_FACTORS"].answerOption]
    assert "hypertension" in codes
    # Skip logic rides as SDC's enableWhenExpression; the other languages as translations.
    raw = r.json()
    assert "sdc-questionnaire-enableWhenExpression" in r.text
    assert raw["_title"]["extension"][0]["url"] == "http://hl7.org/fhir/StructureDefinition/translation"
    search = await stack.client.get("/fhir/Questionnaire?name=ANGIO_HOSP&version=1.0.0", headers=headers)
    bundle = Bundle(search.json(), strict=True)
    assert bundle.total >= 1 and all("ANGIO_HOSP" in e.resource.id for e in bundle.entry)


async def test_a_response_is_stored_read_back_and_resent_unchanged(stack: Stack) -> None:
    headers = await stack.headers(HIS) | FHIR_JSON
    values = record()
    r = await stack.client.post("/fhir/QuestionnaireResponse", json=response_for(values), headers=headers)
    assert r.status_code == 201, r.text
    stored = QuestionnaireResponse(r.json(), strict=True)
    assert stored.status == "completed" and stored.identifier.value
    # Read over REST: the same registration.
    rest = await stack.client.get(f"/api/v1/registrations/{stored.id}", headers=await stack.headers(HIS))
    assert rest.status_code == 200 and rest.json()["status"] in ("sending", "submitted")
    # Read as FHIR and sent again: the same registration (business key), nothing else.
    read = await stack.client.get(f"/fhir/QuestionnaireResponse/{stored.id}", headers=headers)
    assert read.status_code == 200
    again = read.json()
    for drop in ("id", "meta", "identifier", "authored"):
        again.pop(drop)
    resent = await stack.client.post("/fhir/QuestionnaireResponse", json=again, headers=headers)
    assert resent.status_code == 200, resent.text
    assert resent.json()["id"] == stored.id
    after = await stack.client.get(f"/api/v1/registrations/{stored.id}", headers=await stack.headers(HIS))
    assert after.json()["values"] == rest.json()["values"]


async def test_an_invalid_response_is_an_operation_outcome_naming_the_item_in_french(stack: Stack) -> None:
    headers = await stack.headers(HIS) | FHIR_JSON | {"Accept-Language": "fr"}
    bad = response_for(record())  # then a date that does not exist, as text
    bad["item"] = [
        i
        if i["linkId"] != "DT_PAT_DOB"
        else {"linkId": "DT_PAT_DOB", "answer": [{"valueString": "31/02/1949"}]}
        for i in bad["item"]
    ]
    r = await stack.client.post("/fhir/QuestionnaireResponse", json=bad, headers=headers)
    assert r.status_code == 422, r.text
    outcome = OperationOutcome(r.json(), strict=True)
    assert [i.expression for i in outcome.issue] == [["DT_PAT_DOB"]]
    assert "1949" not in r.text
    validated = await stack.client.post("/fhir/QuestionnaireResponse/$validate", json=bad, headers=headers)
    assert validated.status_code == 200
    assert validated.json()["issue"][0]["details"]["text"] == outcome.issue[0].details.text
    fine = await stack.client.post(
        "/fhir/QuestionnaireResponse/$validate", json=response_for(record()), headers=headers
    )
    assert fine.json()["issue"][0]["severity"] == "information"


async def test_structure_errors_and_unknown_paths_are_operation_outcomes(stack: Stack) -> None:
    headers = await stack.headers(HIS) | FHIR_JSON
    wrong = response_for(record())
    wrong["status"] = 5
    r = await stack.client.post("/fhir/QuestionnaireResponse", json=wrong, headers=headers)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["expression"] == ["status"]
    for status, call in (
        (400, stack.client.post("/fhir/QuestionnaireResponse", content=b"{not json", headers=headers)),
        (404, stack.client.get("/fhir/QuestionnaireResponse/nope", headers=headers)),
        (404, stack.client.get("/fhir/Questionnaire/NOPE-1.0.0", headers=headers)),
        (401, stack.client.get("/fhir/QuestionnaireResponse")),
    ):
        answer = await call
        assert answer.status_code == status, answer.text
        OperationOutcome(answer.json(), strict=True)


async def test_a_draft_then_search_by_questionnaire_status_and_date(stack: Stack) -> None:
    headers = await stack.headers(HIS) | FHIR_JSON
    values = record()
    del values["DT_DISCH"]
    r = await stack.client.post(
        "/fhir/QuestionnaireResponse", json=response_for(values, status="in-progress"), headers=headers
    )
    assert r.status_code == 201, r.text
    draft = r.json()
    assert draft["status"] == "in-progress"
    found = await stack.client.get(
        "/fhir/QuestionnaireResponse?questionnaire=http://127.0.0.1:8000/fhir/Questionnaire/ANGIO_HOSP"
        "&status=in-progress&authored=ge2020-01-01&_count=500",
        headers=headers,
    )
    assert found.status_code == 200, found.text
    bundle = Bundle(found.json(), strict=True)
    assert draft["id"] in {e.resource.id for e in bundle.entry}
    assert all(e.resource.status == "in-progress" for e in bundle.entry)
    none = await stack.client.get("/fhir/QuestionnaireResponse?authored=lt2000-01-01", headers=headers)
    assert none.json()["total"] == 0
    for query, parameter in (
        ("authored=yesterday", "authored"),
        ("authored=ge2020-13-45", "authored"),
        ("status=xyz", "status"),
    ):
        bad = await stack.client.get(f"/fhir/QuestionnaireResponse?{query}", headers=headers)
        assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
        assert OperationOutcome(bad.json(), strict=True).issue[0].expression == [parameter], bad.text


async def test_a_batch_answers_each_entry_on_its_own(stack: Stack) -> None:
    headers = await stack.headers(HIS) | FHIR_JSON
    good = response_for(record())
    bad = response_for(record(CD_PAT_CONSENT="no"))
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": good, "request": {"method": "POST", "url": "QuestionnaireResponse"}},
            {"resource": bad, "request": {"method": "POST", "url": "QuestionnaireResponse"}},
            {"resource": good, "request": {"method": "DELETE", "url": "QuestionnaireResponse/x"}},
        ],
    }
    r = await stack.client.post("/fhir", json=bundle, headers=headers)
    assert r.status_code == 200, r.text
    answered = Bundle(r.json(), strict=True)
    assert answered.type == "batch-response"
    assert [e.response.status for e in answered.entry] == ["201 Created", "422", "400"]
    assert answered.entry[1].response.outcome.issue[0].expression == ["CD_PAT_CONSENT"]


async def test_another_organisation_can_neither_write_nor_read_nor_find(stack: Stack) -> None:
    mine = await stack.client.post(
        "/fhir/QuestionnaireResponse",
        json=response_for(record()),
        headers=await stack.headers(HIS) | FHIR_JSON,
    )
    assert mine.status_code == 201
    other = await stack.headers("lab-demo-lims") | FHIR_JSON
    write = await stack.client.post("/fhir/QuestionnaireResponse", json=response_for(record()), headers=other)
    assert write.status_code == 403 and write.json()["resourceType"] == "OperationOutcome"
    read = await stack.client.get(f"/fhir/QuestionnaireResponse/{mine.json()['id']}", headers=other)
    assert read.status_code in (403, 404)
    found = await stack.client.get("/fhir/QuestionnaireResponse?_count=500", headers=other)
    assert mine.json()["id"] not in found.text


async def test_structure_errors_name_the_element_in_words_not_python(stack: Stack) -> None:
    headers = await stack.headers(HIS) | FHIR_JSON
    no_status = response_for(record())
    del no_status["status"]
    garbage_items = response_for(record()) | {"item": [1, None, "x"]}
    for body, expression in ((no_status, "QuestionnaireResponse.status"), (garbage_items, "item")):
        r = await stack.client.post("/fhir/QuestionnaireResponse", json=body, headers=headers)
        assert r.status_code == 400, r.text
        outcome = OperationOutcome(r.json(), strict=True)
        assert outcome.issue[0].expression == [expression]
        assert "object at 0x" not in r.text and "self" not in r.text and "fhirclient" not in r.text


async def test_items_that_do_not_fit_the_questionnaire_are_refused_naming_the_link_id(stack: Stack) -> None:
    headers = await stack.headers(HIS) | FHIR_JSON
    values = record()
    ssin = values["IDC_PAT"]

    def changed(link: str, item: dict[str, Any]) -> dict[str, Any]:
        body = response_for(values)
        body["item"] = [i if i["linkId"] != link else item for i in body["item"]]
        return body

    twice = response_for(values)
    twice["item"].append({"linkId": "IDC_PAT", "answer": [{"valueString": ssin}]})
    cases = {
        "fhir-duplicate": twice,
        "fhir-value-type": changed(
            "MS_HEIGHT", {"linkId": "MS_HEIGHT", "answer": [{"valueQuantity": {"value": 180, "unit": "cm"}}]}
        ),
        "fhir-repeats": changed(
            "CD_PAT_SEX",
            {
                "linkId": "CD_PAT_SEX",
                "answer": [{"valueCoding": {"code": "M"}}, {"valueCoding": {"code": "F"}}],
            },
        ),
        "fhir-nested": changed(
            "IDC_PAT",
            {
                "linkId": "IDC_PAT",
                "answer": [{"valueString": ssin}],
                "item": [{"linkId": "IDC_PAT", "answer": [{"valueString": ssin}]}],
            },
        ),
    }
    for rule, body in cases.items():
        for path in ("/fhir/QuestionnaireResponse", "/fhir/QuestionnaireResponse/$validate"):
            r = await stack.client.post(path, json=body, headers=headers)
            assert r.status_code == (422 if path.endswith("Response") else 200), (rule, r.text)
            outcome = OperationOutcome(r.json(), strict=True)
            issue = outcome.issue[0]
            assert issue.severity == "error" and issue.diagnostics == f"rule {rule}", (rule, r.text)
            assert issue.expression[0] in ("IDC_PAT", "MS_HEIGHT", "CD_PAT_SEX"), r.text
            assert ssin not in r.text and ssin.replace(".", "").replace("-", "") not in r.text


async def test_items_that_do_not_fit_are_refused_in_the_callers_language(stack: Stack) -> None:
    values = record()
    twice = response_for(values)
    twice["item"].append({"linkId": "IDC_PAT", "answer": [{"valueString": values["IDC_PAT"]}]})
    quantity = response_for(values)
    quantity["item"] = [
        i
        if i["linkId"] != "MS_HEIGHT"
        else {"linkId": "MS_HEIGHT", "answer": [{"valueQuantity": {"value": 1}}]}
        for i in quantity["item"]
    ]
    expected = {
        "nl": ("Dit item is twee keer beantwoord", "valueQuantity wordt niet aanvaard"),
        "fr": ("Cet élément a reçu deux réponses", "valueQuantity n'est pas accepté"),
        "de": ("Dieses Element ist zweimal beantwortet", "valueQuantity wird nicht angenommen"),
        "en": ("This item is answered twice", "valueQuantity is not taken"),
    }
    for lang, (duplicate, value_type) in expected.items():
        headers = await stack.headers(HIS) | FHIR_JSON | {"Accept-Language": f"{lang}-BE,{lang};q=0.9"}
        for body, words in ((twice, duplicate), (quantity, value_type)):
            r = await stack.client.post("/fhir/QuestionnaireResponse", json=body, headers=headers)
            assert r.status_code == 422, r.text
            text = OperationOutcome(r.json(), strict=True).issue[0].details.text
            assert text.startswith(words), (lang, text)


async def test_status_completed_is_counted_and_paged_by_the_database(stack: Stack) -> None:
    headers = await stack.headers(HIS) | FHIR_JSON
    draft = record()
    del draft["DT_DISCH"]
    for body in (response_for(draft, status="in-progress"), response_for(record())):
        assert (await stack.client.post("/fhir/QuestionnaireResponse", json=body, headers=headers)).is_success
    url: str | None = "/fhir/QuestionnaireResponse?status=completed&_count=1&lenient=a%26b"
    seen: list[str] = []
    total = None
    while url:
        r = await stack.client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        bundle = Bundle(r.json(), strict=True)
        total = bundle.total
        assert bundle.entry and all(e.resource.status == "completed" for e in bundle.entry)
        seen += [e.resource.id for e in bundle.entry]
        url = next((link.url for link in bundle.link if link.relation == "next"), None)
        if url:
            assert parse_qs(urlsplit(url).query)["lenient"] == ["a&b"]  # the query, encoded
    assert total is not None and len(seen) == len(set(seen)) == total >= 1


async def test_a_batch_whose_entry_is_not_a_list_or_too_long_says_which(stack: Stack) -> None:
    headers = await stack.headers(HIS) | FHIR_JSON
    entry = {"resource": {"resourceType": "QuestionnaireResponse"}, "request": {"method": "GET", "url": "x"}}
    for entries, title in (("x", "must be a list"), ([entry] * 1001, "at most 1,000")):
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}
        r = await stack.client.post("/fhir", json=bundle, headers=headers)
        assert r.status_code == 400, r.text
        outcome = OperationOutcome(r.json(), strict=True)
        assert title in outcome.issue[0].details.text and outcome.issue[0].expression == ["Bundle.entry"]


def test_a_date_time_answer_carries_the_belgian_zone_both_ways() -> None:
    """FHIR's dateTime needs a zone with a time (a registration with one once answered
    500 on read); the DCD holds the hospital's wall clock."""
    from hdhub.registrations.fhir.responses import _answer_value, _zoned

    assert _zoned("2025-02-03T10:00:00") == "2025-02-03T10:00:00+01:00"
    assert _zoned("2025-07-03T10:00:00") == "2025-07-03T10:00:00+02:00"
    assert _answer_value({"valueDateTime": "2025-02-03T09:00:00Z"}) == "2025-02-03T10:00:00"
    assert _answer_value({"valueDateTime": "2025-02-03T10:00:00+01:00"}) == "2025-02-03T10:00:00"
    body = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [{"linkId": "DT_SYMPT_ONSET", "answer": [{"valueDateTime": _zoned("2025-02-03T10:00:00")}]}],
    }
    QuestionnaireResponse(body, strict=True)  # what a read answers is valid R4
