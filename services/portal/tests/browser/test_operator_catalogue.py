"""The operator's DCD catalogue in Chromium: a workbook with problems is refused with each
one by sheet, row and column; a new minor and then a new major version imported from a
workbook file, what changed seen, the form previewed, published; the registrations the
major one invalidates counted per organisation and status, never shown; retiring the
older version. axe-core on every page."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from services.portal.tests.browser.conftest import check_page, new_context, password_token, sign_in
from tests.e2e.conftest import Platform
from tests.support.workbooks import DCD, broken_workbook, console_workbook

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OPERATOR = ("operator@hdhub.test", "demo-operator")
NURSE = ("nurse@az-demo.test", "demo-nurse")
SECRET = "CASE-SECRET-4417"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture(scope="module")
def version_one(portal: Platform) -> Iterator[None]:
    """Version 1.0.0 of the tests' own registry, published by the REST import; three
    registrations of az-demo follow it: two drafts and one submitted."""
    with portal.client(password_token(portal, *OPERATOR)) as c:
        files = {"workbook": ("console-1.0.0.xlsx", console_workbook("1.0.0"), XLSX)}
        r = c.post("/api/v1/dcds", files=files)
        assert r.status_code in (200, 201), r.text
    with portal.client(password_token(portal, *NURSE)) as c:
        for n, submit in ((1, False), (2, False), (3, True)):
            values = {"TX_KEY": f"{SECRET}-{n}", "CD_SIDE": "R", "NR_SIZE": "41"}
            r = c.post(
                "/api/v1/registrations",
                json={"organisation_id": "az-demo", "dcd": DCD, "values": values, "submit": submit},
            )
            assert r.status_code in (201, 202), r.text
    yield


def _import(page: Page, name: str, data: bytes) -> None:
    page.goto("/portal/operator/catalogue")
    page.get_by_label(re.compile("^The DCD workbook")).set_input_files(
        files=[{"name": name, "mimeType": XLSX, "buffer": data}]
    )
    page.get_by_role("button", name="Import as a draft").click()


def test_a_workbook_with_problems_is_refused_with_each_by_sheet_row_and_column(
    page: Page, version_one: None
) -> None:
    sign_in(page, *OPERATOR)
    page.get_by_role("link", name="DCD catalogue").click()
    page.get_by_role("button", name="Import as a draft").click()
    expect(page.get_by_role("alert")).to_contain_text("Choose the workbook to import.")
    _import(page, "broken.xlsx", broken_workbook())
    expect(page.get_by_role("alert")).to_contain_text("The workbook is not a valid DCD")
    rows = page.locator("#workbook-problems tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td")).to_have_text(["survey", "3", "type", "unknown type 'colour'"])
    expect(rows.nth(1).locator("td").nth(2)).to_have_text("constraint")
    expect(page.locator("tr[data-dcd='CONSOLE_DCD'][data-version='3.0.0']")).to_have_count(0)
    check_page(page, "operator-catalogue-refused")


def test_a_junk_or_oversized_workbook_is_refused_as_the_page_in_the_persons_language(
    page: Page, browser: Browser, portal: Platform
) -> None:
    """Over the platform's 5 MiB body limit the import still answers the catalogue page
    with the error at the workbook field (it answered raw problem+json); so does a
    workbook over the console's own limit, in French for a French reader."""
    sign_in(page, *OPERATOR)
    _import(page, "x.xlsx", os.urandom(6 * 1024 * 1024))
    expect(page.locator("h1")).to_have_text("DCD catalogue")
    expect(page.get_by_role("alert")).to_contain_text("The workbook is not a valid DCD")
    expect(page.locator("#workbook-error")).to_contain_text("1 problem(s) in the workbook")
    expect(page.locator("#workbook")).to_have_attribute("aria-invalid", "true")
    context = new_context(browser, portal, lang="fr")
    try:
        french = context.new_page()
        sign_in(french, *OPERATOR)
        french.goto("/portal/operator/catalogue")
        french.locator("#workbook").set_input_files(
            files=[{"name": "big.xlsx", "mimeType": XLSX, "buffer": bytes(32 * 1024 * 1024 + 1)}]
        )
        french.locator("form[action$='/catalogue/import'] button[type=submit]").click()
        expect(french.locator("h1")).to_have_text("Catalogue des DCD")
        expect(french.locator("#workbook-error")).to_contain_text("Le classeur est trop volumineux")
    finally:
        context.close()


def test_the_operator_imports_compares_and_publishes_a_minor_then_a_major_version(
    page: Page, version_one: None
) -> None:
    sign_in(page, *OPERATOR)
    # A minor version: a draft until published; what changed, the form as registrants see it.
    _import(page, "console-1.1.0.xlsx", console_workbook("1.1.0"))
    expect(page.locator("h1")).to_contain_text("1.1.0")
    expect(page.get_by_role("status")).to_contain_text("imported as a draft")
    expect(page.locator("#version-state")).to_contain_text("Draft")
    expect(page.locator("#change-kind")).to_contain_text("From 1.0.0 to 1.1.0: a minor version.")
    expect(page.locator("#change-kind")).to_contain_text("invalidates no registration")
    expect(page.locator("tr[data-field='TX_REMARK'][data-change='added']")).to_be_visible()
    expect(page.locator("tr[data-field='CD_SIDE'][data-change='changed']")).to_contain_text("choices added")
    expect(page.locator("tr[data-field='NR_SIZE'][data-change='changed']")).to_contain_text("label")
    expect(page.locator("#invalidated")).to_have_count(0)
    preview = page.locator("form.preview")
    expect(preview.get_by_label(re.compile("^Remark"))).to_be_disabled()
    expect(preview.get_by_role("radio", name="Both")).to_be_visible()
    check_page(page, "operator-dcd-minor")
    page.get_by_role("button", name="Publish version 1.1.0").click()
    expect(page.get_by_role("status")).to_contain_text("Version 1.1.0 is published.")
    expect(page.locator("#version-state")).to_contain_text("the current version")

    # A major version: compared with the current one, and what it would invalidate.
    _import(page, "console-2.0.0.xlsx", console_workbook("2.0.0"))
    expect(page.locator("#change-kind")).to_contain_text("From 1.1.0 to 2.0.0: a major version.")
    expect(page.locator("tr[data-field='NR_SIZE'][data-change='removed']")).to_be_visible()
    expect(page.locator("tr[data-field='DT_CHECK'][data-change='added']")).to_contain_text(
        "required in every record"
    )
    row = page.locator("#invalidated tr[data-organisation='az-demo']")
    expect(row.locator("th")).to_contain_text("AZ Demo")
    expect(row.locator("td").first).to_have_text("2")  # the two drafts (Open)
    html = page.content()
    assert SECRET not in html and "41" not in re.sub(r"<[^>]+>", " ", html).split()  # counts, never values
    check_page(page, "operator-dcd-major")
    page.get_by_role("button", name="Publish version 2.0.0").click()
    expect(page.get_by_role("status")).to_contain_text("Version 2.0.0 is published.")

    # The current version is never retired; the older minor one is, on its page.
    expect(page.get_by_role("button", name=re.compile("^Retire"))).to_have_count(0)
    page.goto(f"/portal/operator/catalogue/{DCD}/1.1.0")
    page.get_by_role("button", name="Retire version 1.1.0").click()
    expect(page.get_by_role("status")).to_contain_text("Version 1.1.0 is retired.")
    page.get_by_role("link", name="DCD catalogue").first.click()
    states = {
        v: page.locator(f"tr[data-dcd='{DCD}'][data-version='{v}']").get_attribute("data-state")
        for v in ("2.0.0", "1.1.0", "1.0.0")
    }
    assert states == {"2.0.0": "published", "1.1.0": "retired", "1.0.0": "published"}
    expect(page.locator(f"tr[data-dcd='{DCD}'][data-version='1.0.0']")).to_contain_text(
        "AZ Demo Hospital (3)"
    )
    check_page(page, "operator-catalogue")
    # Each import, publication and retirement is in the installation's audit log.
    page.goto("/portal/operator/audit?action=operator.catalogue.")
    actions = [
        (row.locator("td").nth(3).inner_text(), row.locator("td").nth(4).inner_text())
        for row in page.locator("table tbody tr").all()
    ]
    assert actions[:5] == [
        ("operator.catalogue.retired", f"{DCD} 1.1.0"),
        ("operator.catalogue.published", f"{DCD} 2.0.0"),
        ("operator.catalogue.imported", f"{DCD} 2.0.0"),
        ("operator.catalogue.published", f"{DCD} 1.1.0"),
        ("operator.catalogue.imported", f"{DCD} 1.1.0"),
    ], actions

    # Registrants now follow 2.0.0: the newest published version is the form they get.
    page.context.clear_cookies()
    sign_in(page, *NURSE)
    page.goto(f"/portal/o/az-demo/registrations/new?dcd={DCD}")
    expect(page.locator("h1")).to_contain_text(f"{DCD} 2.0.0")
