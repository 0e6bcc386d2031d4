"""The way back from the central platform, exports and registry grants in Chromium: the
sim sends "Corrections needed" on a registration, the data manager sees the comment and
the fields concerned (highlighted in the form), corrects, resubmits, and it goes round
again; Follow-up needed lists the follow-up due; an NGS registration whose VCF is late is
flagged on the files page; a CSV Upload Manager exports and downloads, another
organisation's exports are refused; a User Manager narrows a member's registries, who then
no longer reaches the others. Every page passes axe-core."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from services.portal.tests.browser.conftest import check_page, new_context, password_token, sign_in
from tests.e2e.conftest import Platform, run_all
from tests.support.samples import record

pytestmark = pytest.mark.e2e

#: What the tests above leave for the Dutch one (the registration in Corrections needed).
SEEN: dict[str, str] = {}

NURSE = ("nurse@az-demo.test", "demo-nurse")
BIOLOGIST = ("biologist@lab-demo.test", "demo-lab")
MANAGER = ("manager@az-demo.test", "demo-manager")
OPERATOR = ("operator@hdhub.test", "demo-operator")


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The platform with decisions pulled every second and VCFs late at once."""
    import pathlib

    from services.portal.tests.browser.conftest import CHROMIUM

    if not pathlib.Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed (make chromium)")
    with run_all(
        tmp_path_factory.mktemp("returns"),
        HDHUB_REGISTRATIONS_DECISION_POLL_SECONDS="1",
        HDHUB_INTAKE_VCF_LATE_HOURS="0",
    ) as running:
        yield running


def until(
    c: httpx.Client, url: str, ok: Callable[[dict[str, Any]], bool], seconds: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        got: dict[str, Any] = c.get(url).json()
        if ok(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.25)


def decide(portal: Platform, code: str, status: str, comment: str = "", fields: tuple[str, ...] = ()) -> None:
    with portal.client(password_token(portal, *OPERATOR)) as central:
        r = central.post(
            "/sim/decisions",
            json={"registration_code": code, "status": status, "comment": comment, "fields": list(fields)},
        )
        assert r.status_code == 201, r.text


def submitted(portal: Platform, dcd: str = "ANGIO_HOSP_PCI", org: str = "az-demo") -> dict[str, Any]:
    client = ("az-demo-his", "demo-his-secret") if org == "az-demo" else ("lab-demo-lims", "demo-lims-secret")
    with portal.client(portal.token(*client)) as c:
        body = {"organisation_id": org, "dcd": dcd, "values": record(dcd), "submit": True}
        r = c.post("/api/v1/registrations", json=body)
        assert r.status_code == 201, r.text
        url = f"/api/v1/registrations/{r.json()['id']}"
        return until(c, url, lambda g: g["status_confirmation"] == "ok")


def wait_status(portal: Platform, reg_id: str, status: str) -> dict[str, Any]:
    with portal.client(portal.token("az-demo-his", "demo-his-secret")) as c:
        got = until(c, f"/api/v1/registrations/{reg_id}", lambda g: g["status"] == status)
    assert got["status"] == status, got
    return got


def test_corrections_needed_is_shown_corrected_resubmitted_and_goes_round_again(
    page: Page, portal: Platform
) -> None:
    reg = submitted(portal)
    assert reg["status"] == "submitted", reg
    decide(
        portal,
        reg["registration_code"],
        "corrections_needed",
        "Second PCI: please check its date",
        ("DT_PCI_2",),
    )
    wait_status(portal, reg["id"], "corrections_needed")

    sign_in(page, *NURSE, start=f"/portal/o/az-demo/registrations/{reg['id']}")
    panel = page.locator("#central-decision")
    expect(panel).to_contain_text("Corrections needed")
    expect(page.locator("#decision-comment")).to_have_text("Second PCI: please check its date")
    expect(page.locator("#decision-fields")).to_contain_text("DT_PCI_2")
    expect(page.locator("#decision-meaning")).to_contain_text("Correct the fields it names")
    # The API has no status confirmation in Corrections needed: the page says none (it said OK).
    assert wait_status(portal, reg["id"], "corrections_needed")["status_confirmation"] is None
    expect(page.locator("#confirmation")).to_have_text("None")
    check_page(page, "registration-corrections")

    page.locator("#correct").click()
    concerned = page.locator(".field-concerned[data-field='DT_PCI_2']")
    expect(concerned).to_be_visible()
    expect(concerned).to_contain_text("The central platform asks you to correct this field.")
    expect(page.locator("#central-decision")).to_contain_text("Second PCI: please check its date")
    check_page(page, "registration-correct")
    page.locator("#DT_PCI_2").fill("13/03/2025")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator(".notice")).to_contain_text("The registration is submitted.")

    with portal.client(portal.token("az-demo-his", "demo-his-secret")) as c:
        again = until(
            c,
            f"/api/v1/registrations/{reg['id']}",
            lambda g: g["status"] == "submitted" and g["status_confirmation"] == "ok",
        )
    assert again["values"]["DT_PCI_2"] == "2025-03-13"
    # Round again: a second correction, then approval.
    decide(portal, reg["registration_code"], "corrections_needed", "Still not right", ("DT_PCI_2",))
    wait_status(portal, reg["id"], "corrections_needed")
    page.goto(f"/portal/o/az-demo/registrations/{reg['id']}")
    expect(page.locator("#decision-comment")).to_have_text("Still not right")
    expect(page.locator("table.history")).to_contain_text("Corrections asked by the central platform")
    SEEN["corrections"] = reg["id"]


def test_follow_up_needed_lists_the_follow_up_due(page: Page, portal: Platform) -> None:
    reg = submitted(portal)
    decide(portal, reg["registration_code"], "follow_up_needed", "One-year follow-up please")
    wait_status(portal, reg["id"], "follow_up_needed")
    sign_in(page, *NURSE, start=f"/portal/o/az-demo/registrations/{reg['id']}")
    expect(page.locator("#central-decision")).to_contain_text("asks for a follow-up registration")
    page.get_by_role("link", name="Follow-ups due", exact=True).click()
    row = page.locator("#follow-ups tbody tr", has=page.locator(f"a[href$='{reg['id']}']"))
    expect(row).to_contain_text("ANGIO_FU_PCI")
    expect(row).to_contain_text("One-year follow-up please")
    check_page(page, "follow-ups")
    # Home leads there too, beside the deliveries.
    page.goto("/portal/")
    card = page.get_by_role("region", name="AZ Demo Hospital")
    expect(card.get_by_role("link", name="Deliveries")).to_be_visible()
    card.get_by_role("link", name="Follow-ups due").click()
    expect(page.locator("h1")).to_contain_text("Follow-ups due")
    row.get_by_role("link", name="Start the follow-up").click()
    expect(page.locator("h1")).to_contain_text("New registration")
    expect(page.locator("h1")).to_contain_text("ANGIO_FU_PCI")


def test_a_late_vcf_is_flagged_on_the_files_page(page: Page, portal: Platform) -> None:
    with portal.client(portal.token("lab-demo-lims", "demo-lims-secret")) as c:
        values = record("NGS", TX_VCF_FILE_NAME="LATE_LAB_2025_000999.vcf.gz")
        r = c.post(
            "/api/v1/registrations",
            json={"organisation_id": "lab-demo", "dcd": "NGS", "values": values, "submit": True},
        )
        assert r.status_code == 201, r.text
    sign_in(page, *BIOLOGIST, start="/portal/o/lab-demo/files")
    late = page.locator("#late-vcfs")
    expect(late).to_contain_text("LATE_LAB_2025_000999.vcf.gz")
    check_page(page, "files-late")
    # Another organisation's member sees none of lab-demo's.
    other = new_context(page.context.browser, portal).new_page()  # type: ignore[arg-type]
    sign_in(other, *NURSE, start="/portal/o/az-demo/files")
    expect(other.locator("body")).not_to_contain_text("LATE_LAB_2025_000999")
    response = other.goto("/portal/o/lab-demo/files")
    assert response is not None and response.status == 404
    other.context.close()


def give_role(portal: Platform, who: tuple[str, str], org: str, role: str) -> None:
    with portal.client(password_token(portal, *who)) as c:
        members = c.get(f"/api/v1/organisations/{org}/members", params={"limit": 500}).json()
        items = members["items"] if isinstance(members, dict) else members
        me = next(m for m in items if m["email"] == who[0])
        r = c.put(
            f"/api/v1/organisations/{org}/members/{me['account_id']}/roles",
            json={"roles": sorted({*me["roles"], role})},
        )
        assert r.status_code == 200, r.text


def test_a_csv_upload_manager_exports_and_downloads_and_another_organisation_is_refused(
    browser: Browser, portal: Platform
) -> None:
    submitted(portal, "ANGIO_HOSP")
    give_role(portal, MANAGER, "az-demo", "csv_upload_manager")
    give_role(portal, BIOLOGIST, "lab-demo", "csv_upload_manager")
    page = new_context(browser, portal).new_page()
    sign_in(page, *MANAGER, start="/portal/o/az-demo/exports")
    expect(page.locator("h1")).to_contain_text("Exports")
    check_page(page, "exports")
    page.get_by_role("button", name="Export", exact=True).click()  # nothing chosen
    expect(page.locator("#dcd-error")).to_contain_text("Choose the form and version to export.")
    page.get_by_label("Form and version").select_option("ANGIO_HOSP@1.0.0")
    page.get_by_label("Created on or after").fill("31/02/2026")
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#created_from-error")).to_contain_text("day/month/year")
    page.get_by_label("Created on or after").fill("")
    page.locator("#status-submitted").check()
    page.locator("#format-csv").check()
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#export-state")).to_contain_text("Ready", timeout=60_000)
    check_page(page, "export")
    export_url = page.url
    with page.expect_download() as info:
        page.locator("#download").click()
    data = open(info.value.path(), "rb").read()  # noqa: SIM115, PTH123
    assert data.startswith("\ufeff".encode()) and b"STATUS" in data.splitlines()[0]
    page.goto("/portal/o/az-demo/exports")
    expect(page.locator("#exports tbody tr").first).to_contain_text("ANGIO_HOSP")

    foreign = new_context(browser, portal).new_page()
    sign_in(foreign, *BIOLOGIST, start="/portal/o/lab-demo/exports")
    expect(foreign.locator("body")).not_to_contain_text("ANGIO_HOSP_2")
    export_id = export_url.rsplit("/", 1)[1]
    for url in (
        f"/portal/o/lab-demo/exports/{export_id}",
        f"/portal/o/lab-demo/exports/{export_id}/download",
        f"/portal/o/az-demo/exports/{export_id}",
        "/portal/o/az-demo/exports",
    ):
        response = foreign.goto(url)
        assert response is not None and response.status == 404, url
    # A member without the export role is refused the page.
    nurse = new_context(browser, portal).new_page()
    sign_in(nurse, *NURSE, start="/portal/o/az-demo/registrations")
    response = nurse.goto("/portal/o/az-demo/exports")
    assert response is not None and response.status == 403
    for p in (page, foreign, nurse):
        p.context.close()


def test_a_user_manager_narrows_a_members_registries(browser: Browser, portal: Platform) -> None:
    reg = submitted(portal, "ANGIO_HOSP")
    page = new_context(browser, portal).new_page()
    sign_in(page, *MANAGER, start="/portal/o/az-demo/members")
    page.get_by_role("link", name=NURSE[0]).first.click()
    expect(page.locator("#registries")).to_be_visible()
    expect(page.locator("#requested")).to_be_visible()
    check_page(page, "member-registries")
    page.locator("#registry-all").uncheck()
    page.locator("#registry-HDBP0012").uncheck()
    page.locator("#registry-HDBP0257").check()
    page.get_by_role("button", name="Save the registries").click()
    expect(page.locator("#registries-saved")).to_contain_text("The registries are saved.")
    expect(page.locator("#registry-HDBP0257")).to_be_checked()
    expect(page.locator("#registry-HDBP0012")).not_to_be_checked()

    nurse = new_context(browser, portal).new_page()
    sign_in(nurse, *NURSE, start="/portal/o/az-demo/follow-ups")
    expect(nurse.locator("h1")).to_contain_text("Follow-ups due")
    expect(nurse.locator("body")).not_to_contain_text("ANGIO_FU_PCI")  # ANGIO is not theirs now
    response = nurse.goto(f"/portal/o/az-demo/registrations/{reg['id']}")
    assert response is not None and response.status == 404

    # A hospital system limited to NGS: its tokens do not reach the ANGIO registration.
    page.goto("/portal/o/az-demo/clients")
    page.get_by_label("Name").fill("NGS pipeline")
    page.get_by_label("Client id").fill("az-demo-ngs-pipeline")
    page.locator("#client-registry-HDBP0257").check()
    page.get_by_role("button", name="Create", exact=True).click()
    secret = page.locator("#secret-value").inner_text()
    row = page.locator("tr", has=page.locator("code", has_text="az-demo-ngs-pipeline"))
    expect(row.locator(".client-registries")).to_have_text("HDBP0257")
    check_page(page, "clients-registries")
    with portal.client(portal.token("az-demo-ngs-pipeline", secret)) as c:
        assert c.get(f"/api/v1/registrations/{reg['id']}").status_code == 404
    with portal.client(portal.token("az-demo-his", "demo-his-secret")) as c:
        assert c.get(f"/api/v1/registrations/{reg['id']}").status_code == 200

    # Given back, for the other tests of the module.
    page.goto(page.url.replace("/clients", "/members"))
    page.get_by_role("link", name=NURSE[0]).first.click()
    page.locator("#registry-all").check()
    page.get_by_role("button", name="Save the registries").click()
    expect(page.locator("#registries-saved")).to_be_visible()
    for p in (page, nurse):
        p.context.close()


def test_none_ticked_is_no_registry_for_a_member_and_every_one_for_a_hospital_system(
    browser: Browser, portal: Platform
) -> None:
    reg = submitted(portal, "ANGIO_HOSP")
    page = new_context(browser, portal).new_page()
    sign_in(page, *MANAGER, start="/portal/o/az-demo/clients")
    expect(page.locator("#registries-hint")).to_contain_text("None ticked: every registry")
    page.get_by_label("Name").fill("Every registry")
    page.get_by_label("Client id").fill("az-demo-every-registry")
    page.get_by_role("button", name="Create", exact=True).click()
    secret = page.locator("#secret-value").inner_text()
    with portal.client(portal.token("az-demo-every-registry", secret)) as c:
        assert c.get(f"/api/v1/registrations/{reg['id']}").status_code == 200

    page.goto("/portal/o/az-demo/members")
    page.get_by_role("link", name=NURSE[0]).first.click()
    expect(page.locator("#registries-hint")).to_contain_text("None ticked: no registry")
    for box in page.locator("#registries input[type=checkbox]").all():
        box.uncheck()
    page.get_by_role("button", name="Save the registries").click()
    expect(page.locator("#registries-saved")).to_be_visible()
    expect(page.locator("#registries input[type=checkbox]:checked")).to_have_count(0)
    nurse = new_context(browser, portal).new_page()
    sign_in(nurse, *NURSE, start="/portal/o/az-demo/follow-ups")
    response = nurse.goto(f"/portal/o/az-demo/registrations/{reg['id']}")
    assert response is not None and response.status == 404

    page.locator("#registry-all").check()  # given back, for the other tests of the module
    page.get_by_role("button", name="Save the registries").click()
    expect(page.locator("#registries-saved")).to_be_visible()
    for p in (page, nurse):
        p.context.close()


@pytest.mark.parametrize("lang", ["nl", "fr", "de"])
def test_the_new_pages_in_other_languages_pass_axe(browser: Browser, portal: Platform, lang: str) -> None:
    """The decision, the fields to correct, the follow-ups and the exports pages in Dutch,
    French and German (the meaning of the decision said in the language)."""
    words = {
        "nl": ("De beslissing van het centrale platform", "Te doen opvolgingen", "Eerdere exports"),
        "fr": ("La décision de la plateforme centrale", "Suivis à faire", "Exports précédents"),
        "de": ("Die Entscheidung der zentralen Plattform", "Fällige Nachsorgen", "Frühere Exporte"),
    }[lang]
    reg_id = SEEN.get("corrections") or ""
    if not reg_id:
        pytest.skip("needs the corrections test first")
    page = new_context(browser, portal, lang).new_page()
    sign_in(page, *NURSE, start=f"/portal/o/az-demo/registrations/{reg_id}")
    expect(page.locator("#central-decision")).to_contain_text(words[0])
    check_page(page, "registration-corrections", lang)
    page.goto(f"/portal/o/az-demo/registrations/{reg_id}/edit")
    expect(page.locator(".field-concerned[data-field='DT_PCI_2']")).to_be_visible()
    check_page(page, "registration-correct", lang)
    page.goto("/portal/o/az-demo/follow-ups")
    expect(page.locator("h1")).to_contain_text(words[1])
    check_page(page, "follow-ups", lang)
    page.context.close()
    manager = new_context(browser, portal, lang).new_page()
    sign_in(manager, *MANAGER, start="/portal/o/az-demo/exports")
    expect(manager.locator("body")).to_contain_text(words[2])
    check_page(manager, "exports", lang)
    manager.context.close()
