"""The central side (the sim, driven over REST as a person would) asks for a correction;
the hospital system reads the comment and fields, sends the corrected record again, and
it goes round to Submitted, OK; then the central side asks for the follow-up the DCD
defines. Real processes, over HTTP and gRPC (docs/delivery.md, "Decisions")."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Platform
from tests.support.samples import record

pytestmark = pytest.mark.e2e
SUBMIT = "/proxy/api/dcd/payload/submit?organization-id=az-demo&dcd-id=ANGIO_HOSP_PCI&dcd-version-id=latest"


def password_token(platform: Platform, username: str, password: str) -> str:
    r = httpx.post(
        f"{platform.base_url}/realms/hdhub/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": username,
            "password": password,
        },
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def until(
    c: httpx.Client, url: str, ok: Callable[[dict[str, Any]], bool], seconds: float = 40
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        got: dict[str, Any] = c.get(url).json()
        if ok(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.25)


def test_a_correction_asked_by_the_central_side_is_answered_by_resubmission(platform: Platform) -> None:
    his = platform.client(platform.token("az-demo-his", "demo-his-secret"))
    lims = platform.client(platform.token("lab-demo-lims", "demo-lims-secret"))
    central = platform.client(password_token(platform, "operator@hdhub.test", "demo-operator"))
    with his, lims, central:
        values = record("ANGIO_HOSP_PCI")
        r = his.post(SUBMIT, json=values)
        assert r.status_code == 202, r.text
        url = f"/api/v1/registrations/{r.json()['registrationId']}"
        reg = until(his, url, lambda g: g["status_confirmation"] == "ok")
        assert reg["status"] == "submitted" and reg["status_confirmation"] == "ok"

        r = central.post(
            "/sim/decisions",
            json={
                "registration_code": reg["registration_code"],
                "status": "corrections_needed",
                "comment": "Second PCI: please check its date",
                "fields": ["DT_PCI_2"],
            },
        )
        assert r.status_code == 201, r.text
        asked = r.json()
        reg = until(his, url, lambda g: g["status"] == "corrections_needed")
        assert reg["status"] == "corrections_needed" and reg["status_confirmation"] is None
        assert reg["central_decision"]["comment"] == "Second PCI: please check its date"
        assert reg["central_decision"]["fields"] == ["DT_PCI_2"]
        assert lims.get(f"{url}/decisions").status_code == 404  # another organisation sees nothing

        r = his.post(SUBMIT, json={**values, "DT_PCI_2": "13/03/2025"})
        assert r.status_code == 202, r.text
        reg = until(his, url, lambda g: g["status"] == "submitted" and g["status_confirmation"] == "ok")
        assert (reg["status"], reg["status_confirmation"]) == ("submitted", "ok")
        assert reg["values"]["DT_PCI_2"] == "2025-03-13"
        decisions = central.get(f"/sim/decisions?registration_code={reg['registration_code']}").json()[
            "items"
        ]
        assert [(d["decision_id"], d["outcome"]) for d in decisions] == [(asked["decision_id"], "applied")]

        r = central.post(
            "/sim/decisions",
            json={"registration_code": reg["registration_code"], "status": "follow_up_needed"},
        )
        assert r.status_code == 201, r.text
        until(his, url, lambda g: g["status"] == "follow_up_needed")
        follow_ups = his.get("/api/v1/follow-ups?organisation_id=az-demo&limit=500").json()["items"]
        assert [f["dcd_code"] for f in follow_ups if f["registration_id"] == reg["id"]] == ["ANGIO_FU_PCI"]
        assert lims.get("/api/v1/follow-ups?organisation_id=az-demo").status_code == 403
