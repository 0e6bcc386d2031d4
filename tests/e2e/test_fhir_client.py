"""A hospital system on FHIR R4 through a real FHIR client library (SMART's fhirclient)
against a running hdhub: capability, Questionnaire, a QuestionnaireResponse created, read,
found and sent again unchanged; a registration entered over REST read as FHIR."""

from __future__ import annotations

from typing import Any

import pytest
from fhirclient.models.questionnaire import Questionnaire
from fhirclient.models.questionnaireresponse import QuestionnaireResponse
from fhirclient.server import FHIRServer

from tests.e2e.conftest import Platform
from tests.support.samples import record

pytestmark = pytest.mark.e2e
MULTIPLE = ("CD_RISK_FACTORS", "CD_CARDIAC_HIST", "CD_DISCH_MED")


def server(platform: Platform) -> FHIRServer:
    fhir = FHIRServer(None, base_uri=f"{platform.base_url}/fhir/")
    fhir.session.headers["Authorization"] = f"Bearer {platform.token('az-demo-his', 'demo-his-secret')}"
    return fhir


def answers(values: dict[str, str]) -> list[dict[str, Any]]:
    items = []
    for key, value in values.items():
        if key in MULTIPLE:
            items.append({"linkId": key, "answer": [{"valueCoding": {"code": c}} for c in value.split("|")]})
        else:
            items.append({"linkId": key, "answer": [{"valueString": value}]})
    return items


def test_a_hospital_system_on_fhir_through_fhirclient(platform: Platform) -> None:
    fhir = server(platform)
    fhir.get_capability()
    assert fhir.capabilityStatement.fhirVersion == "4.0.1"

    questionnaire = Questionnaire.read("ANGIO_HOSP-1.0.0", fhir)
    assert questionnaire.url.endswith("/fhir/Questionnaire/ANGIO_HOSP")

    response = QuestionnaireResponse(
        {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": f"{questionnaire.url}|{questionnaire.version}",
            "status": "completed",
            "author": {"reference": "Organization/az-demo"},
            "item": answers(record()),
        }
    )
    created = QuestionnaireResponse(response.create(fhir), strict=True)
    assert created.status == "completed" and created.identifier.value

    read = QuestionnaireResponse.read(created.id, fhir)
    found = QuestionnaireResponse.where(
        struct={"questionnaire": questionnaire.url, "identifier": created.identifier.value}
    ).perform_resources(fhir)
    assert [r.id for r in found] == [created.id]

    # Sent again as read: the same registration, nothing changed.
    again = read.as_json()
    for drop in ("id", "meta", "identifier", "authored"):
        again.pop(drop, None)
    resent = QuestionnaireResponse(QuestionnaireResponse(again).create(fhir), strict=True)
    assert resent.id == created.id


def test_a_registration_entered_over_rest_reads_as_fhir_and_resends_unchanged(platform: Platform) -> None:
    token = platform.token("az-demo-his", "demo-his-secret")
    with platform.client(token) as rest:
        made = rest.post(
            "/api/v1/registrations",
            json={"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": record(), "submit": True},
        )
        assert made.status_code == 201, made.text
        before = rest.get(f"/api/v1/registrations/{made.json()['id']}").json()
    fhir = server(platform)
    read = QuestionnaireResponse.read(made.json()["id"], fhir)
    again = read.as_json()
    for drop in ("id", "meta", "identifier", "authored"):
        again.pop(drop, None)
    resent = QuestionnaireResponse(QuestionnaireResponse(again).create(fhir), strict=True)
    assert resent.id == before["id"]
    with platform.client(token) as rest:
        after = rest.get(f"/api/v1/registrations/{before['id']}").json()
    assert after["values"] == before["values"]
    assert after["registration_code"] == before["registration_code"]
