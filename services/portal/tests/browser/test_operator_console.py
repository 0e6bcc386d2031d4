"""The operator's console in Chromium: the installation overview (counts and states of
every organisation, what is wrong first), an organisation with parked deliveries found
from it, one of its deliveries archived and the others retried with a reason, the
archived one retried later; no registration's values anywhere;
and every console page refused to anyone but the operator, by direct URL."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from services.portal.tests.browser.conftest import check_page, new_context, password_token, sign_in
from tests.e2e.conftest import Platform
from tests.support import samples
from tests.support.samples import VALID, ssin

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NURSE = ("nurse@az-demo.test", "demo-nurse")
ADMIN = ("manager@az-demo.test", "demo-manager")
OPERATOR = ("operator@hdhub.test", "demo-operator")
ORG = "az-demo"
SECRET_NAME = "Vandersmissen"
PAGES = (
    "/portal/operator",
    "/portal/operator/catalogue",
    "/portal/operator/requests",
    "/portal/operator/audit",
    "/portal/operator/organisations/new",
    "/portal/operator/deliveries",
    f"/portal/operator/deliveries?organisation={ORG}",
    f"/portal/operator/deliveries?organisation={ORG}&view=archived",
    "/portal/operator/certificates",
    "/portal/operator/catalogue/PACEMAKER/1.0.0",
)
#: The console's forms, each refused to anyone but the operator (a 403 before any CSRF check).
POSTS = (
    "/portal/operator/deliveries/retry",
    "/portal/operator/deliveries/archive",
    "/portal/operator/jobs/retry",
    "/portal/operator/jobs/archive",
    "/portal/operator/organisations/new",
    "/portal/operator/catalogue/import",
    "/portal/operator/catalogue/PACEMAKER/1.0.0/state",
)


def _until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def parked(portal: Platform) -> Iterator[dict[str, str]]:
    """Two implants of az-demo submitted, delivered and confirmed, then parked (as ten days
    without a confirmation would have left them); their SSINs."""
    nurse = password_token(portal, *NURSE)
    made: dict[str, str] = {}
    for day in (21, 22):
        number = ssin("620303", day)
        values = {
            **VALID["PACEMAKER"],
            "IDC_PAT": number,
            "DT_IMPLANT": f"{day:02d}/03/2025",
            "TX_PAT_LAST_NAME": SECRET_NAME,
        }
        with portal.client(nurse) as c:
            r = c.post(
                "/api/v1/registrations",
                json={"organisation_id": ORG, "dcd": "PACEMAKER", "values": values, "submit": True},
            )
        assert r.status_code in (200, 201, 202), r.text
        made[str(r.json()["id"])] = number

    def delivered() -> bool:
        with sqlite3.connect(portal.data_dir / "registrations.db") as db:
            marks = ",".join("?" * len(made))
            states = db.execute(
                f"SELECT state FROM deliveries WHERE registration_id IN ({marks})", list(made)
            ).fetchall()
        # Confirmed: the worker is done with them, nothing of its writes the parking back.
        return len(states) == len(made) and all(s == "ok" for (s,) in states)

    _until(delivered)
    with sqlite3.connect(portal.data_dir / "registrations.db") as db:
        marks = ",".join("?" * len(made))
        db.execute(
            "UPDATE deliveries SET state = 'parked', parked_at = datetime('now'), attempts = 3 "
            f"WHERE registration_id IN ({marks})",
            list(made),
        )
    yield made


def test_the_operator_finds_parked_deliveries_and_retries_them(
    page: Page, portal: Platform, parked: dict[str, str]
) -> None:
    sign_in(page, *OPERATOR)
    page.get_by_role("link", name="Installation overview").click()
    expect(page.locator("h1")).to_have_text("Installation overview")
    row = page.locator(f"tr[data-organisation='{ORG}']")
    expect(row).to_contain_text("PACEMAKER")
    expect(row.locator("th")).to_contain_text("AZ Demo Hospital")  # named, the id beside it
    # Found by its name as well as its id.
    page.get_by_label("Organisation", exact=True).fill("demo hosp")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#organisations tbody tr")).to_have_count(1)
    expect(row).to_be_visible()
    page.goto("/portal/operator")
    # Its members, counted as its User Manager's members page lists them.
    with sqlite3.connect(portal.data_dir / "identity.db") as db:
        (members,) = db.execute(
            "SELECT count(*) FROM memberships WHERE organisation_id = ?", (ORG,)
        ).fetchone()
    assert members > 0
    expect(row.locator("td").nth(1)).to_have_text(str(members))
    check_page(page, "operator-overview")

    # What is wrong first: the filter keeps the organisations with parked deliveries.
    page.get_by_role("link", name=re.compile("^Parked deliveries: ")).click()
    expect(page.get_by_label("What is wrong", exact=True)).to_have_value("parked")
    rows = page.locator("#organisations tbody tr")
    expect(rows.first).to_have_attribute("data-organisation", ORG)
    expect(row.locator("td").nth(6)).to_have_text(re.compile("^2"))
    # Counts and states only: no SSIN, no name, no value of a registration.
    html = page.content()
    assert not any(number in html for number in parked.values())
    assert SECRET_NAME not in html and VALID["PACEMAKER"]["TX_DEVICE_SERIAL"] not in html

    # A background job whose attempts ran out shows beside them, as counts and its error's type.
    with sqlite3.connect(portal.data_dir / "registrations.db") as db:
        db.execute(
            "INSERT INTO jobs (id, kind, organisation_id, subject_id, payload, status, attempts, run_after,"
            " trace_context, last_error, created_at) VALUES ('00000000-0000-4000-9000-0000000000aa',"
            " 'console_test', ?, 'subject', '{}', 'parked', 5, datetime('now'), '{}',"
            " 'TimeoutError: the central platform did not answer', datetime('now'))",
            (ORG,),
        )
    row.get_by_role("link", name=re.compile(f"parked deliveries of {ORG}")).click()
    jobs = page.locator("#parked-jobs tr[data-kind='console_test']")
    expect(jobs).to_contain_text("TimeoutError")
    expect(jobs).not_to_contain_text("did not answer")
    expect(page.locator("h1")).to_contain_text("Parked deliveries")
    expect(page.locator("#parked-deliveries tbody tr")).to_have_count(2)
    expect(page.locator("#parked-deliveries tbody tr").first).to_contain_text(
        "No confirmation ten days after the first send"
    )
    assert not any(number in page.content() for number in parked.values())
    # One is set aside with a reason (ticked): out of the parked list, listed as archived.
    page.get_by_role("button", name="Archive the parked deliveries").click()
    expect(page.get_by_role("alert")).to_contain_text("Say why in 3 to 500 characters.")
    expect(page.locator("#archive-reason")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert").get_by_role("link")).to_have_attribute("href", "#archive-reason")
    expect(page.locator("#reason")).not_to_have_attribute("aria-invalid", "true")
    first = page.locator("#parked-deliveries tbody tr").first
    set_aside = first.get_attribute("data-registration")
    first.get_by_role("checkbox").check()
    page.get_by_role("textbox", name=re.compile("^Why archive them")).fill(
        "Known bad record, the hospital knows"
    )
    page.get_by_role("button", name="Archive the parked deliveries").click()
    expect(page.get_by_role("status")).to_contain_text("1 parked delivery(ies) of az-demo archived")
    expect(page.locator("#parked-deliveries tbody tr")).to_have_count(1)
    expect(page.locator(f"tr[data-registration='{set_aside}']")).to_have_count(0)
    page.get_by_role("link", name="Archived", exact=True).click()
    expect(page.locator("h1")).to_contain_text("Archived deliveries")
    expect(page.locator(f"tr[data-registration='{set_aside}']")).to_contain_text(
        "Known bad record, the hospital knows"
    )
    expect(page.locator(f"tr[data-registration='{set_aside}']")).to_contain_text("operator@hdhub.test")
    check_page(page, "operator-archived")
    page.goto("/portal/operator?problem=parked")
    expect(row.locator("td").nth(6)).to_have_text(re.compile("^1"))  # the parked count left it out
    page.goto(f"/portal/operator/deliveries?organisation={ORG}")

    page.get_by_role("button", name="Retry the parked deliveries").click()
    expect(page.get_by_role("alert")).to_contain_text("Say why in 3 to 500 characters.")
    check_page(page, "operator-parked")
    why = re.compile(r"^Why \(required")
    page.get_by_role("textbox", name=why).fill("The central platform is back after its outage")
    page.get_by_role("button", name="Retry the parked deliveries").click()
    expect(page.get_by_role("status")).to_contain_text("1 parked delivery(ies) of az-demo will be sent again")
    expect(page.locator("p.empty")).to_contain_text("No parked delivery")
    # The archived one is retried later, from the archived deliveries.
    page.get_by_role("link", name="Archived", exact=True).click()
    page.get_by_role("textbox", name=why).fill("The hospital corrected the record")
    page.get_by_role("button", name="Retry the archived deliveries").click()
    expect(page.get_by_role("status")).to_contain_text("1 parked delivery(ies) of az-demo will be sent again")
    expect(page.locator("p.empty")).to_contain_text("No archived delivery")

    # Each action is in the installation's audit log with the operator's reason and count.
    page.goto("/portal/operator/audit?action=operator.")
    audit = page.locator("table tbody tr")
    expect(audit.nth(0)).to_contain_text("operator.deliveries.retried_archived")
    expect(audit.nth(0)).to_contain_text("The hospital corrected the record")
    expect(audit.nth(1)).to_contain_text("operator.deliveries.retried")
    expect(audit.nth(1)).to_contain_text("The central platform is back after its outage")
    expect(audit.nth(2)).to_contain_text("operator.deliveries.archived")
    expect(audit.nth(2)).to_contain_text("Known bad record, the hospital knows")
    expect(audit.nth(2)).to_contain_text("operator@hdhub.test")

    # The overview counts them at once: the tallies moved with the retry's transaction.
    page.goto("/portal/operator?problem=parked")
    expect(page.locator(f"tr[data-organisation='{ORG}']")).to_have_count(0)

    # The catalogue says which organisations use which version (counts only).
    page.get_by_role("link", name="DCD catalogue").click()
    expect(page.locator("tr[data-dcd='PACEMAKER'][data-version='1.0.0']")).to_contain_text(
        "AZ Demo Hospital (2)"
    )
    expect(page.locator("tr[data-dcd='ANGIO_HOSP']").first).to_contain_text("no organisation")
    check_page(page, "operator-catalogue")

    # The confirmation check ran at once: the central platform had them, so they are OK.
    def confirmed() -> bool:
        with sqlite3.connect(portal.data_dir / "registrations.db") as db:
            marks = ",".join("?" * len(parked))
            states = db.execute(
                f"SELECT state FROM deliveries WHERE registration_id IN ({marks})", list(parked)
            ).fetchall()
        return [s for (s,) in states] == ["ok", "ok"]

    _until(confirmed)


def _park_job(portal: Platform, service: str, n: int, kind: str, error: str) -> str:
    """A job of ``kind`` (no worker claims it) parked in ``service``'s database, for lab-demo."""
    job_id = f"00000000-0000-4000-9000-{service[:4].encode().hex()}{n:04d}"
    with sqlite3.connect(portal.data_dir / f"{service}.db") as db:
        db.execute(
            "INSERT INTO jobs (id, kind, organisation_id, subject_id, payload, status, attempts, run_after,"
            " trace_context, last_error, created_at) VALUES (?, ?, 'lab-demo', 'subject', ?, 'parked', 8,"
            " datetime('now'), '{}', ?, datetime('now', '-2 days'))",
            (job_id, kind, f'{{"ssin": "{ssin("620303", 23)}"}}', error),
        )
    return job_id


def _job_states(portal: Platform, service: str, ids: list[str]) -> list[tuple[str, int]]:
    with sqlite3.connect(portal.data_dir / f"{service}.db") as db:
        marks = ",".join("?" * len(ids))
        return db.execute(f"SELECT status, attempts FROM jobs WHERE id IN ({marks})", ids).fetchall()


def test_the_operator_retries_and_archives_parked_jobs_of_every_service(page: Page, portal: Platform) -> None:
    uploads = [
        _park_job(portal, "uploads", n, "console_upload_test", f"ConnectionError: {SECRET_NAME} unreachable")
        for n in range(2)
    ]
    nippin = [_park_job(portal, "nippin", 0, "console_nippin_test", "ValueError")]
    sign_in(page, *OPERATOR)
    page.goto("/portal/operator/deliveries?organisation=lab-demo")
    group = page.locator("#parked-jobs tr[data-kind='console_upload_test']")
    expect(group).to_contain_text("Upload Center")
    expect(group).to_contain_text("ConnectionError")
    expect(group.locator("td").nth(5)).to_have_text("2")
    expect(page.locator("#parked-jobs tr[data-kind='console_nippin_test']")).to_contain_text("NIPPIN")
    assert SECRET_NAME not in page.content() and "620303" not in page.content()  # counts, no payload

    # Neither a group nor a reason: each refused, naming what is missing.
    retry = page.get_by_role("button", name="Retry the chosen jobs")
    retry.click()
    expect(page.get_by_role("alert")).to_contain_text("Choose a group of jobs.")
    check_page(page, "operator-jobs-refused")
    page.get_by_role("radio", name="Choose console_upload_test, ConnectionError of lab-demo").check()
    retry.click()
    expect(page.get_by_role("alert")).to_contain_text("Say why in 3 to 500 characters.")
    expect(page.locator("#jobs-reason")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert").get_by_role("link")).to_have_attribute("href", "#jobs-reason")
    # The group stays chosen: only the reason is missing.
    page.get_by_role("radio", name="Choose console_upload_test, ConnectionError of lab-demo").check()
    page.get_by_role("textbox", name=re.compile("^Why retry or archive them")).fill("   ")
    retry.click()
    expect(page.get_by_role("alert")).to_contain_text("Say why in 3 to 500 characters.")
    page.get_by_role("textbox", name=re.compile("^Why retry or archive them")).fill(
        "The upload store is reachable again"
    )
    retry.click()
    expect(page.get_by_role("status")).to_contain_text("2 background job(s) queued again")
    expect(page.locator("#parked-jobs tr[data-kind='console_upload_test']")).to_have_count(0)
    assert _job_states(portal, "uploads", uploads) == [("queued", 0), ("queued", 0)]

    # Another group set aside: out of the parked jobs, listed as archived.
    page.get_by_role("radio", name="Choose console_nippin_test, ValueError of lab-demo").check()
    page.get_by_role("textbox", name=re.compile("^Why retry or archive them")).fill("Known bad message")
    page.get_by_role("button", name="Archive the chosen jobs").click()
    expect(page.get_by_role("status")).to_contain_text("1 background job(s) archived")
    expect(page.locator("#parked-jobs tr[data-kind='console_nippin_test']")).to_have_count(0)
    assert _job_states(portal, "nippin", nippin) == [("archived", 8)]
    page.get_by_role("link", name="Archived", exact=True).click()
    expect(page.locator("#parked-jobs tr[data-kind='console_nippin_test']")).to_contain_text("ValueError")
    check_page(page, "operator-jobs-archived")
    page.get_by_role("radio", name="Choose console_nippin_test, ValueError of lab-demo").check()
    page.get_by_role("textbox", name=re.compile("^Why retry or archive them")).fill(
        "The message was corrected"
    )
    page.get_by_role("button", name="Retry the chosen archived jobs").click()
    expect(page.get_by_role("status")).to_contain_text("1 background job(s) queued again")
    assert _job_states(portal, "nippin", nippin) == [("queued", 0)]

    # Each action is in the installation's audit log with the group, the reason and the count.
    page.goto("/portal/operator/audit?action=operator.jobs.")
    audit = page.locator("table tbody tr")
    expect(audit).to_have_count(3)
    expect(audit.nth(0)).to_contain_text("operator.jobs.retried_archived")
    expect(audit.nth(0)).to_contain_text("nippin console_nippin_test ValueError")
    expect(audit.nth(0)).to_contain_text("The message was corrected")
    expect(audit.nth(1)).to_contain_text("operator.jobs.archived")
    expect(audit.nth(1)).to_contain_text("Known bad message")
    expect(audit.nth(2)).to_contain_text("operator.jobs.retried")
    expect(audit.nth(2)).to_contain_text("uploads console_upload_test ConnectionError")
    expect(audit.nth(2)).to_contain_text("The upload store is reachable again")


def test_the_operator_sees_an_expiring_certificate_first(page: Page, portal: Platform) -> None:
    """lab-demo's published certificate ends in 20 days (the demo's end in three years)."""
    with sqlite3.connect(portal.data_dir / "portal.db") as db:
        db.execute(
            "UPDATE certificates SET not_after = datetime('now', '+20 days', '+1 hour') "
            "WHERE organisation_id = 'lab-demo' AND published"
        )
    sign_in(page, *OPERATOR)
    page.get_by_role("link", name="Certificates of the organisations").click()
    expect(page.locator("h1")).to_have_text("Certificates of the organisations")
    expiring = page.locator("#expiring tbody tr")
    expect(expiring).to_have_count(1)
    expect(expiring.first).to_have_attribute("data-organisation", "lab-demo")
    expect(expiring.first).to_contain_text("Expiring soon")
    expect(expiring.first.locator("td").nth(3)).to_have_text("20")
    expect(page.locator("#valid tbody tr[data-organisation='az-demo']")).to_be_visible()
    check_page(page, "operator-certificates")
    # A narrower window (the URL carries it): nothing expires within 10 days.
    page.get_by_label("Expiring within (days)").fill("10")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("status")).to_contain_text("No published certificate expires within 10 days")
    expect(page).to_have_url(re.compile(r"days=10"))


def test_the_operator_onboards_an_organisation_with_its_first_user_manager(
    page: Page, portal: Platform
) -> None:
    nihdi = samples.nihdi("710007")
    sign_in(page, *OPERATOR)
    page.get_by_role("link", name="Onboard an organisation").click()
    expect(page.locator("h1")).to_have_text("Onboard an organisation")
    page.get_by_role("button", name="Create the organisation and its User Manager").click()
    expect(page.get_by_role("alert")).to_be_visible()  # every rule at once, nothing written
    check_page(page, "operator-onboard")
    page.get_by_label(re.compile("^Title")).fill("AZ Console")
    page.get_by_label(re.compile("^NIHDI number")).fill(nihdi)
    page.get_by_label(re.compile("^E-mail")).fill("uma@az-console.test")
    page.get_by_label(re.compile("^First name")).fill("Uma")
    page.get_by_role("button", name="Create the organisation and its User Manager").click()
    expect(page.locator("h1")).to_have_text("Organisation onboarded")
    expect(page.locator("main")).to_contain_text("uma@az-console.test is its User Manager")
    expect(page.get_by_role("status")).to_contain_text("you will not see this again")
    password = page.locator("#secret-value").inner_text()
    assert len(password) >= 12 and password not in page.url
    check_page(page, "operator-onboarded")
    # Audited in the new organisation, seen in the installation's audit log.
    page.get_by_role("link", name="Audit log of the installation").click()
    page.get_by_label(re.compile("^Action starts with")).fill("organisation.")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr").first).to_contain_text("organisation.create")
    expect(page.locator("tbody tr").first).to_contain_text("operator@hdhub.test")
    check_page(page, "operator-audit")
    # The new User Manager signs in with it (and must change it first).
    page.context.clear_cookies()
    sign_in(page, "uma@az-console.test", password)
    expect(page.locator("h1")).to_have_text(re.compile("password|Password"))


def test_the_operator_sees_account_requests_waiting_over_a_week(page: Page, portal: Platform) -> None:
    with sqlite3.connect(portal.data_dir / "identity.db") as db:
        for n, days in enumerate((9, 8, 1)):
            db.execute(
                "INSERT INTO account_requests (id, organisation_id, username, first_name, last_name, email,"
                " data_collections, status, created_at) VALUES (?, 'lab-demo', ?, 'Wachtende', 'Aanvrager', ?,"
                " '[]', 'pending', datetime('now', ?))",
                (
                    f"00000000-0000-4000-9000-00000000000{n}",
                    f"wait{n}@lab.test",
                    f"wait{n}@lab.test",
                    f"-{days} days",
                ),
            )
    sign_in(page, *OPERATOR)
    page.get_by_role("link", name="Account requests waiting").click()
    row = page.locator("tbody tr[data-organisation='lab-demo']")
    expect(row.locator("td").first).to_have_text("2")
    assert "Wachtende" not in page.content()  # counts, not the applicants
    check_page(page, "operator-requests")


@pytest.mark.parametrize("who", [NURSE, ADMIN], ids=["registrant", "user-manager"])
def test_the_console_is_refused_to_anyone_but_the_operator(
    page: Page, parked: dict[str, str], who: tuple[str, str]
) -> None:
    sign_in(page, *who)
    expect(page.locator("h1")).to_have_text(re.compile("^Welcome"))
    expect(page.get_by_role("link", name="Installation overview")).to_have_count(0)
    for path in PAGES:
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.locator("h1")).to_have_text("Forbidden")
    for path in POSTS:
        assert page.request.post(path).status == 403, path


def test_the_console_in_dutch_passes_axe(browser: Browser, portal: Platform, parked: dict[str, str]) -> None:
    context = new_context(browser, portal, lang="nl")
    page = context.new_page()
    sign_in(page, *OPERATOR)
    expect(page.locator("h1")).to_have_text(re.compile("^Welkom"))
    for name, path in (
        ("operator-overview", "/portal/operator"),
        ("operator-parked", f"/portal/operator/deliveries?organisation={ORG}"),
        ("operator-catalogue", "/portal/operator/catalogue"),
        ("operator-certificates", "/portal/operator/certificates"),
    ):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        check_page(page, name, "nl")
    expect(page.locator("h1")).to_have_text("Certificaten van de organisaties")
    context.close()
