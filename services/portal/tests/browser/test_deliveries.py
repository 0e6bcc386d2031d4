"""The deliveries page and the sim's switches in Chromium: the operator switches the
central platform's stand-in to refuse, registrations submitted meanwhile stay unconfirmed,
and once aged as time would (one past its 48 hours: NOK; one refused for good: parked)
the organisation's registrant sees both with the reason in words; another organisation's
member and a member without registration rights are refused, and only the operator sees
the switches. Every page passes axe-core."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from services.portal.tests.browser.conftest import check_page, new_context, sign_in
from tests.e2e.conftest import Platform
from tests.support.samples import record

pytestmark = pytest.mark.e2e

NURSE = ("nurse@az-demo.test", "demo-nurse")
BIOLOGIST = ("biologist@lab-demo.test", "demo-lab")
MANAGER = ("manager@az-demo.test", "demo-manager")
OPERATOR = ("operator@hdhub.test", "demo-operator")
PAGE = "/portal/o/az-demo/deliveries"


def switch(page: Page, mode: str) -> None:
    page.goto("/portal/operator/sim")
    page.locator(f"#mode-{mode}").check()
    page.get_by_role("button", name="Switch").click()
    expect(page.locator(".notice")).to_have_text("Switched.")


@pytest.fixture(scope="module")
def aged(browser: Browser, portal: Platform) -> Iterator[dict[str, str]]:
    """Three registrations of az-demo submitted while the stand-in refuses; one then aged
    to NOK, one parked for an identifier pseudonymisation refused."""
    page = new_context(browser, portal).new_page()
    sign_in(page, *OPERATOR, start="/portal/operator/sim")
    switch(page, "refuse")
    token = portal.token("az-demo-his", "demo-his-secret")
    ids = []
    with portal.client(token) as c:
        for _ in range(3):
            body = {"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": record(), "submit": True}
            r = c.post("/api/v1/registrations", json=body)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    db_path = portal.data_dir / "registrations.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the worker tried each once: Pending, the receiver down
        with sqlite3.connect(db_path) as db:
            rows = db.execute(
                f"SELECT count(*) FROM deliveries WHERE state = 'pending' AND registration_id IN ({','.join('?' * 3)})",
                ids,
            ).fetchone()
        if rows[0] == 3:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the deliveries did not reach pending")
    with sqlite3.connect(db_path) as db:  # as 48 hours and a refusal would
        db.execute("UPDATE deliveries SET state = 'nok', attempts = 4 WHERE registration_id = ?", (ids[0],))
        db.execute(
            "UPDATE deliveries SET state = 'parked', reason = 'identifier-refused:ssin-checksum',"
            " parked_at = CURRENT_TIMESTAMP WHERE registration_id = ?",
            (ids[1],),
        )
    yield {"nok": ids[0], "parked": ids[1], "pending": ids[2], "operator": page}  # type: ignore[dict-item]
    switch(page, "accept")
    page.context.close()


def test_the_operator_switches_the_stand_in(aged: dict[str, object]) -> None:
    page = aged["operator"]
    assert isinstance(page, Page)
    page.goto("/portal/operator/sim")
    expect(page.locator("#mode")).to_contain_text("Refuse")
    check_page(page, "sim")
    page.get_by_label("Confirmation delay, in seconds").fill("soon")
    page.get_by_role("button", name="Switch").click()
    expect(page.locator("#ack_delay_seconds-error")).to_contain_text("Type a number of seconds.")
    expect(page.locator("#mode")).to_contain_text("Refuse")


def test_parked_and_nok_deliveries_are_listed_with_their_reason(page: Page, aged: dict[str, str]) -> None:
    sign_in(page, *NURSE, start="/portal/o/az-demo/files")
    page.get_by_role("link", name="Deliveries", exact=True).click()
    expect(page.locator("h1")).to_contain_text("Deliveries")
    table = page.locator("#deliveries tbody")
    expect(table.locator("tr")).to_have_count(2)
    parked = table.locator(
        "tr", has=page.locator(f"a[href='/portal/o/az-demo/registrations/{aged['parked']}']")
    )
    expect(parked).to_contain_text("Parked: resends stopped")
    expect(parked).to_contain_text("Pseudonymisation refused a patient identifier")
    expect(parked).to_contain_text("ssin-checksum")
    nok = table.locator("tr", has=page.locator(f"a[href='/portal/o/az-demo/registrations/{aged['nok']}']"))
    expect(nok).to_contain_text("NOK: being resent")
    expect(nok).to_contain_text("The central platform could not be reached")
    expect(table).not_to_contain_text(aged["pending"])
    check_page(page, "deliveries")
    page.get_by_label("State").select_option("parked")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tr")).to_have_count(1)
    expect(page.locator("ul[aria-label='Filters in use']")).to_contain_text("Parked")
    # Each row leads to the registration's own page.
    table.locator("tr a").first.click()
    expect(page).to_have_url(re.compile(f"/portal/o/az-demo/registrations/{aged['parked']}$"))
    expect(page.locator("h1")).to_contain_text("Registration")
    # Only the operator drives the stand-in.
    response = page.goto("/portal/operator/sim")
    assert response is not None and response.status == 403


def test_another_organisations_member_sees_no_delivery_of_ours(
    browser: Browser, portal: Platform, aged: dict[str, str]
) -> None:
    page = new_context(browser, portal).new_page()
    sign_in(page, *BIOLOGIST, start="/portal/o/lab-demo/deliveries")
    expect(page.locator("h1")).to_contain_text("Deliveries")
    expect(page.locator("body")).not_to_contain_text(aged["parked"])
    expect(page.locator("body")).not_to_contain_text(aged["nok"])
    response = page.goto(PAGE)
    assert response is not None and response.status == 404
    page.context.close()
    page = new_context(browser, portal).new_page()
    sign_in(page, *MANAGER, start="/portal/o/az-demo/members")
    expect(page.get_by_role("link", name="Deliveries", exact=True)).to_have_count(0)
    response = page.goto(PAGE)
    assert response is not None and response.status == 403
    page.context.close()


def test_the_deliveries_page_in_dutch_passes_axe(
    browser: Browser, portal: Platform, aged: dict[str, str]
) -> None:
    page = new_context(browser, portal, lang="nl").new_page()
    sign_in(page, *NURSE, start=PAGE)
    expect(page.locator("#deliveries tbody tr")).to_have_count(2)
    check_page(page, "deliveries", "nl")
    page.context.close()
