"""Hospital IT drives a running hdhub over HTTP, as an existing HD4DP v2 integration would."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.e2e.conftest import Platform
from tests.support.samples import record

pytestmark = pytest.mark.e2e
SUBMIT = "/proxy/api/dcd/payload/submit?organization-id=az-demo&dcd-id=ANGIO_HOSP_PCI&dcd-version-id=latest"


def test_make_run_banner_lists_demo_logins(platform: Platform) -> None:
    deadline = time.monotonic() + 10
    while "Demo logins" not in platform.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = platform.log.read_text()
    assert "az-demo-his" in text and "nurse@az-demo.test" in text and "/docs" in text


def test_run_sets_start_ups_objects_aside_from_the_collector(platform: Platform) -> None:
    """Once started, `hdhub run` freezes what start-up built (hdhub.common.heap), so a
    full collection no longer walks it (bench/bench_gc.py: about 200 ms -> 0.3 ms)."""
    said = re.compile(
        r"start-up done: (\d+) objects set aside from the garbage collector \(event loop: (\w+)\)"
    )
    deadline = time.monotonic() + 10
    while not said.search(platform.log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = said.search(platform.log.read_text())
    assert found, platform.log.read_text()[-3000:]
    assert int(found.group(1)) > 100_000
    assert found.group(2) == "uvloop"  # uvicorn's choice where uvloop is installed


def test_openapi_documents_every_api(platform: Platform) -> None:
    with platform.client() as c:
        spec = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    paths = set(spec["paths"])
    assert {
        "/api/v1/registrations",
        "/proxy/api/dcd/payload/submit",
        "/proxy/api/dcd/menu/structure",
        "/api/v1/registries",
    } <= paths
    assert "/realms/hdhub/protocol/openid-connect/token" in paths


def test_metrics_are_exposed_for_prometheus(platform: Platform) -> None:
    with platform.client() as c:
        c.get("/healthz")
        r = c.get("/metrics")
    assert r.status_code == 200 and "http_server_requests_total" in r.text


def test_hospital_system_registers_and_follows_a_pci_hospitalisation(platform: Platform) -> None:
    token = platform.token("az-demo-his", "demo-his-secret")
    with platform.client(token) as c:
        orgs = c.get("/proxy/api/organizations").json()
        assert [o["id"] for o in orgs] == ["az-demo"]
        menu = c.get("/proxy/api/dcd/menu/structure").json()
        angio = next(p for p in menu if p["projectId"] == "HDBP0012")
        dcd = next(d for d in angio["dcds"] if d["dcdCode"] == "ANGIO_HOSP_PCI")
        definition = c.get(f"/proxy/api/dcd/payload/definition?dcd-id={dcd['dcdId']}").json()
        assert {"DT_PCI_1", "DT_PCI_2"} <= {f["key"] for f in definition["fields"]}

        values = record("ANGIO_HOSP_PCI")
        # Bad input first: a Dutch hospital gets Dutch messages naming each field and rule.
        bad = {**values, "DT_PCI_1": "31/02/2024", "IDC_PAT": "85040216933"}
        r = c.post(SUBMIT, json=bad, headers={"Accept-Language": "nl"})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        rules = {(e["field"], e["rule"]) for e in r.json()["errors"]}
        assert ("IDC_PAT", "ssin") in rules and ("DT_PCI_1", "type") in rules
        assert "85040216933" not in r.text

        r = c.post(SUBMIT, json=values)
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert re.fullmatch(r"[0-9a-f]{40}", accepted["businessKey"])
        for _ in range(100):
            reg = c.get(f"/api/v1/registrations/{accepted['registrationId']}").json()
            if reg["status"] == "submitted":
                break
            time.sleep(0.1)
        assert reg["status"] == "submitted" and reg["status_confirmation"] == "pending"
        assert reg["registration_code"] == accepted["registrationCode"]

        # A correction is a resubmission of the whole record: the latest wins.
        r = c.post(SUBMIT, json={**values, "MS_WEIGHT": "79.0"})
        assert r.status_code == 202 and r.json()["registrationId"] == accepted["registrationId"]
        history = c.get(f"/api/v1/registrations/{accepted['registrationId']}/history").json()["items"]
        assert [h["action"] for h in history][:2] == ["create", "submit"] and history[-1]["action"] in (
            "resubmit",
            "processed",
        )


def test_another_organisation_cannot_see_or_write(platform: Platform) -> None:
    his = platform.token("az-demo-his", "demo-his-secret")
    lims = platform.token("lab-demo-lims", "demo-lims-secret")
    with platform.client(his) as c:
        reg_id = c.post(SUBMIT, json={**record("ANGIO_HOSP_PCI"), "STATUS": "draft"}).json()["registrationId"]
    with platform.client(lims) as c:
        assert c.get(f"/api/v1/registrations/{reg_id}").status_code == 404
        assert c.post(SUBMIT, json=record("ANGIO_HOSP_PCI")).status_code == 403


def test_no_patient_identifier_reaches_the_log(platform: Platform) -> None:
    token = platform.token("az-demo-his", "demo-his-secret")
    values = record("ANGIO_HOSP_PCI")
    with platform.client(token) as c:
        c.post(SUBMIT, json=values)
        c.post(SUBMIT, json={**values, "DT_PAT_DOB": "not a date"})
    time.sleep(0.5)
    text = platform.log.read_text()
    records = [
        json.loads(line) for line in text.splitlines() if line.startswith("{")
    ]  # every log line is JSON
    submits = [r for r in records if r.get("http_path") == "/proxy/api/dcd/payload/submit"]
    assert submits and all(r["trace_id"] and r["span_id"] for r in submits)  # access lines carry trace ids
    assert not any("organization-id" in r["message"] for r in submits)  # query strings are never logged
    assert values["IDC_PAT"] not in text
    assert values["IDC_PAT"].replace(".", "").replace("-", "") not in text
