"""The NIPPIN Manager's pages in Chromium: the reimbursed registries and the report, a
registry's records with their result and message status, archiving a message with a
reason, an export requested and downloaded once ready; and nobody else gets in."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from services.portal.tests.browser.conftest import check_page, new_context, password_token, sign_in
from tests.e2e.conftest import Platform
from tests.support.samples import VALID, ssin

# The first test also starts the platform and waits for four implants' messages.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BILLING = ("billing@az-demo.test", "demo-billing")
NURSE = ("nurse@az-demo.test", "demo-nurse")
BIOLOGIST = ("biologist@lab-demo.test", "demo-lab")
OPERATOR = ("operator@hdhub.test", "demo-operator")
ORG = "az-demo"


def _implant(day: int, **overrides: str) -> dict[str, str]:
    return {
        **VALID["PACEMAKER"],
        "IDC_PAT": ssin("620303", day),
        "DT_IMPLANT": f"{day:02d}/03/2025",
        **overrides,
    }


def _submit(portal: Platform, token: str, values: dict[str, str]) -> str:
    body = {"organisation_id": ORG, "dcd": "PACEMAKER", "values": values, "submit": True}
    with portal.client(token) as c:
        r = c.post("/api/v1/registrations", json=body)
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["id"])


def _messages(portal: Platform, token: str) -> dict[str, dict[str, Any]]:
    with portal.client(token) as c:
        r = c.get(f"/api/v1/nippin/{ORG}/messages", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {m["registration_id"]: m for m in r.json()["items"]}


@pytest.fixture(scope="module")
def implants(portal: Platform) -> Iterator[dict[str, str]]:
    """Four implants of az-demo: one sent, one invalid (no SSIN), one not sent (MyCareNet
    down), one whose message nippin lost (not found)."""
    nurse, billing = password_token(portal, *NURSE), password_token(portal, *BILLING)
    operator = password_token(portal, *OPERATOR)
    made = {
        "sent": _submit(portal, nurse, _implant(3)),
        "invalid": _submit(
            portal, nurse, _implant(4, IDC_PAT="", TX_PAT_LAST_NAME="Peeters", TX_PAT_FIRST_NAME="Jo")
        ),
        "lost": _submit(portal, nurse, _implant(5)),
    }
    _until(lambda: {made["sent"], made["invalid"], made["lost"]} <= set(_messages(portal, billing)))
    with portal.client(operator) as c:
        assert c.put("/sim/mycarenet", json={"mode": "down"}).status_code == 200
    made["unsent"] = _submit(portal, nurse, _implant(6))
    _until(lambda: _messages(portal, billing).get(made["unsent"], {}).get("status") == "ERROR")
    with portal.client(operator) as c:
        assert c.put("/sim/mycarenet", json={"mode": "accept"}).status_code == 200
    _until(lambda: _messages(portal, billing)[made["sent"]]["status"] == "SENT")
    lost = _messages(portal, billing)[made["lost"]]["id"]
    with sqlite3.connect(portal.data_dir / "nippin.db") as db:  # the hand-over lost: only registrations knows
        db.execute("DELETE FROM jobs WHERE subject_id = ?", (lost,))
        db.execute("DELETE FROM nippin_transitions WHERE message_id = ?", (lost,))
        db.execute("DELETE FROM nippin_messages WHERE id = ?", (lost,))
    yield made


def _until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.3)


def test_the_nippin_manager_reviews_archives_and_exports(page: Page, implants: dict[str, str]) -> None:
    sign_in(page, *BILLING)
    page.get_by_role("link", name="Reimbursed registries").first.click()
    expect(page.locator("h1")).to_contain_text("Reimbursed registries")
    page.get_by_role("button", name="Build tonight's report now").click()
    expect(page.get_by_role("status")).to_contain_text("Tonight's report was built again")
    check_page(page, "nippin")

    page.get_by_role("link", name="Pacemaker implant").click()
    expect(page.locator("h1")).to_contain_text("Pacemaker implant")
    rows = page.locator("tbody tr")
    expect(rows.filter(has_text="Not found")).to_contain_text(
        "no NIPPIN message was made for this registration"
    )
    expect(rows.filter(has_text="Not sent").first).to_contain_text("MyCareNet answered HTTP 503")
    check_page(page, "nippin-records")
    page.get_by_label("Result").select_option("invalid")
    page.get_by_role("button", name="Filter").click()
    invalid = page.locator("tbody tr").filter(has_text="PatientSSIN")
    expect(invalid.first).to_contain_text("Invalid")
    invalid.first.get_by_role("link", name=re.compile("^Archive")).click()

    expect(page.locator("h1")).to_contain_text("Billing message of")
    expect(page.get_by_role("heading", name="Why the message is invalid")).to_be_visible()
    page.get_by_role("button", name="Archive the message").click()
    expect(page.get_by_role("alert")).to_contain_text("Say why in 3 to 500 characters.")
    check_page(page, "nippin-archive")
    page.get_by_role("textbox", name=re.compile("^Why")).fill("Billed on paper with the insurer's agreement")
    page.get_by_role("button", name="Archive the message").click()
    expect(page.get_by_role("status")).to_contain_text("was archived")

    page.get_by_role("link", name="Exports").click()
    page.get_by_label(re.compile("^First implant date")).fill("01/03/2025")
    page.get_by_label(re.compile("^Last implant date")).fill("31/02/2025")
    page.get_by_role("button", name="Request the export").click()
    expect(page.get_by_role("alert")).to_contain_text("Write the date as day/month/year")
    page.get_by_label(re.compile("^Last implant date")).fill("31/03/2025")
    page.get_by_role("button", name="Request the export").click()
    expect(page.get_by_role("status")).to_contain_text("The export is being made")
    download_link = page.locator("#exports").get_by_role("link", name=re.compile("^Download")).first
    expect(download_link).to_be_visible(timeout=60_000)  # htmx asks again until it is ready
    check_page(page, "nippin-exports")
    with page.expect_download() as info:
        download_link.click()
    assert info.value.suggested_filename == "nippin-PACEMAKER-2025-03-01-2025-03-31.csv"
    rows_by_id = {
        r["message_id"]: r
        for r in csv.DictReader(io.StringIO(open(info.value.path(), encoding="utf-8").read()), delimiter=";")
    }
    assert {r["result"] for r in rows_by_id.values()} >= {"valid", "invalid", "not_found", "not_sent"}
    assert "patient_ssin" not in next(iter(rows_by_id.values()))


@pytest.mark.parametrize(
    ("who", "organisation", "status"),
    [(NURSE, ORG, 403), (BIOLOGIST, ORG, 404), (BILLING, "lab-demo", 404)],
    ids=["registrant-of-the-organisation", "another-organisations-member", "nippin-manager-elsewhere"],
)
def test_the_nippin_pages_are_refused_by_direct_url(
    page: Page, implants: dict[str, str], who: tuple[str, str], organisation: str, status: int
) -> None:
    sign_in(page, *who)
    expect(page.locator("h1")).to_have_text(re.compile("^Welcome"))
    o = f"/portal/o/{organisation}/nippin"
    for path in (
        o,
        f"{o}/registries/PACEMAKER",
        f"{o}/messages/{implants['invalid']}/archive",
        f"{o}/exports",
        f"{o}/exports/table",
        f"{o}/exports/x/download",
    ):
        response = page.goto(path)
        assert response is not None and response.status == status, path
        expect(page.locator("h1")).to_have_text("Forbidden" if status == 403 else "Organisation not found")
    assert page.request.post(f"{o}/report").status in (403, 404)  # no CSRF token either


def test_the_nippin_pages_in_dutch_pass_axe(
    browser: Browser, portal: Platform, implants: dict[str, str]
) -> None:
    context = new_context(browser, portal, lang="nl")
    page = context.new_page()
    sign_in(page, *BILLING)
    expect(page.locator("h1")).to_have_text(re.compile("^Welkom"))
    for name, path in (
        ("nippin", f"/portal/o/{ORG}/nippin"),
        ("nippin-records", f"/portal/o/{ORG}/nippin/registries/PACEMAKER"),
        ("nippin-exports", f"/portal/o/{ORG}/nippin/exports"),
    ):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        check_page(page, name, "nl")
    context.close()
