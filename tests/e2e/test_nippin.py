"""NIPPIN against `hdhub run all` processes: killed with SIGKILL while implants are being
submitted and sent, restarted, nothing is lost and nothing doubled (counted by message id
in the MyCareNet folder); and no patient identifier reaches the log on the way."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Platform, base_env, hdhub_process, run_all
from tests.support.samples import VALID, ssin
from tests.support.stack import free_port

pytestmark = pytest.mark.e2e
ORG = "az-demo"


def implant(n: int) -> dict[str, str]:
    return {
        **VALID["PACEMAKER"],
        "IDC_PAT": ssin("620202", n),
        "DT_IMPLANT": f"{n % 28 + 1:02d}/{n // 28 % 12 + 1:02d}/2025",
    }


def person(platform: Platform, username: str, password: str) -> str:
    r = httpx.post(
        f"{platform.base_url}/realms/hdhub/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": username,
            "password": password,
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def submit(platform: Platform, token: str, values: dict[str, str]) -> None:
    body = {"organisation_id": ORG, "dcd": "PACEMAKER", "values": values, "submit": True}
    with platform.client(token) as c:
        c.post("/api/v1/registrations", json=body)


def messages(platform: Platform, token: str) -> list[dict[str, Any]]:
    with platform.client(token) as c:
        r = c.get(f"/api/v1/nippin/{ORG}/messages", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def stored_registrations(platform: Platform, token: str) -> set[str]:
    with platform.client(token) as c:
        r = c.get("/api/v1/registrations", params={"organisation_id": ORG, "dcd": "PACEMAKER", "limit": 500})
    assert r.status_code == 200, r.text
    return {i["id"] for i in r.json()["items"] if i["status"] != "open"}


def test_killed_mid_flow_and_restarted_loses_and_doubles_no_message(tmp_path: Path) -> None:
    env = {
        **base_env(tmp_path),
        "HDHUB_NIPPIN_INTERFACE": "FILE_SYSTEM",
        # The stand-in gateway collects elsewhere: what nippin wrote stays to be counted.
        "HDHUB_SIM_MYCARENET_FOLDER": str(tmp_path / "not-collected"),
        # The killed process's claims lapse after 15 s, not the default 60 s (and nippin's
        # lease, twice its MyCareNet timeout at least, with it).
        "HDHUB_JOB_LEASE_SECONDS": "15",
        "HDHUB_NIPPIN_MYCARENET_TIMEOUT_SECONDS": "5",
    }
    outbox = tmp_path / "var" / "mycarenet" / "out"
    port = free_port()
    submitted = 0
    with hdhub_process(
        ["run", "all", "--port", str(port)], env, tmp_path / "first.log", port=port
    ) as process:
        platform = Platform(f"http://127.0.0.1:{port}", tmp_path / "first.log", tmp_path / "var")
        nurse = person(platform, "nurse@az-demo.test", "demo-nurse")

        def keep_submitting() -> None:
            nonlocal submitted
            while submitted < 40:
                try:
                    submit(platform, nurse, implant(submitted + 1))
                except httpx.HTTPError:
                    return  # the process died under the request
                submitted += 1

        worker = threading.Thread(target=keep_submitting)
        worker.start()
        while submitted < 15:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)  # mid-flow: submits, hand-overs and sends in flight
        process.wait(timeout=10)
        worker.join(timeout=30)
    assert 15 <= submitted < 40

    with hdhub_process(["run", "all", "--port", str(port)], env, tmp_path / "second.log", port=port):
        platform = Platform(f"http://127.0.0.1:{port}", tmp_path / "second.log", tmp_path / "var")
        nurse = person(platform, "nurse@az-demo.test", "demo-nurse")
        for n in range(submitted + 1, 41):
            submit(platform, nurse, implant(n))
        billing = person(platform, "billing@az-demo.test", "demo-billing")
        stored = stored_registrations(platform, nurse)
        assert len(stored) >= 40 - 1  # at most the one cut mid-request is missing
        deadline = time.monotonic() + 120  # the dead worker's leases run out after 15 s
        while time.monotonic() < deadline:
            found = messages(platform, billing)
            if len(found) >= len(stored) and all(m["status"] == "SENT" for m in found):
                break
            time.sleep(1)
        found = messages(platform, billing)
    by_registration: dict[str, list[str]] = {}
    for m in found:
        by_registration.setdefault(m["registration_id"], []).append(m["id"])
    assert set(by_registration) == stored, "every stored registration made a message"
    assert all(len(ids) == 1 for ids in by_registration.values()), "no registration made two"
    assert {m["status"] for m in found} == {"SENT"}
    written = {p.name.removesuffix(".xml") for p in outbox.glob("*.xml")}
    assert written == {m["id"] for m in found}, "each message reached the folder, once, under its id"


def test_no_patient_identifier_reaches_the_log_on_the_way_to_mycarenet(tmp_path: Path) -> None:
    values = implant(99)
    with run_all(tmp_path) as platform:
        nurse = person(platform, "nurse@az-demo.test", "demo-nurse")
        billing = person(platform, "billing@az-demo.test", "demo-billing")
        submit(platform, nurse, values)
        submit(
            platform,
            nurse,
            {**implant(98), "IDC_PAT": "", "TX_PAT_LAST_NAME": "Verbruggen", "TX_PAT_FIRST_NAME": "Ine"},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = sorted(m["status"] for m in messages(platform, billing))
            if statuses == ["INVALID", "SENT"]:
                break
            time.sleep(0.5)
        assert statuses == ["INVALID", "SENT"]
        with platform.client(billing) as c:
            assert c.post(f"/api/v1/nippin/{ORG}/reports").status_code == 201
        time.sleep(0.5)
        text = platform.log.read_text()
    assert "NIPPIN report built" in text  # the scan saw nippin's work
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(r.get("http_path", "").startswith("/api/v1/nippin/") for r in records)
    for secret in (values["IDC_PAT"], "Verbruggen"):
        assert secret not in text
