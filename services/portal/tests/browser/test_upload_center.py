"""The Upload Center and the Files pages in Chromium: a linked HIV_Sequence upload with its
progress and reports, a CSV with errors whose error report is downloaded, the settings per
registry, a file put over SFTP and one sent from the files page, and another
organisation's upload and file refused by direct URL. Every page passes axe-core."""

from __future__ import annotations

import csv
import io
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from services.intake.tests.support import LAB_LOGIN, LAB_PASSWORD, sftp, stamp, unique, vcf
from services.portal.tests.browser.conftest import CHROMIUM, ROOT, check_page, new_context, sign_in
from tests.e2e.conftest import Platform, run_all
from tests.support.samples import record, ssin
from tests.support.stack import free_port

pytestmark = pytest.mark.e2e

NURSE = ("nurse@az-demo.test", "demo-nurse")  # registrant of az-demo
BIOLOGIST = ("biologist@lab-demo.test", "demo-lab")  # registrant and User Manager of lab-demo
MANAGER = ("manager@az-demo.test", "demo-manager")  # no registration rights
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`hdhub run all` with its SFTP server on a port the tests know."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed (make chromium)")
    port = free_port()
    with run_all(tmp_path_factory.mktemp("uploads"), HDHUB_INTAKE_SFTP_PORT=str(port)) as running:
        running.sftp_port = port  # type: ignore[attr-defined]
        yield running


def record_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=";", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def csv_file(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_bytes(record_csv(rows))
    return path


def hiv_pair(folder: Path) -> tuple[Path, Path]:
    """The examples' HIV_Sequence metadata and sequence file, for a patient and a file of
    their own (another laboratory time stamp, another national register number)."""
    name = stamp()
    patient = ssin("491110", serial=2 * (uuid.uuid4().int % 400) + 1)  # odd: a man, as CD_PAT_SEX says

    def fresh(text: str) -> str:
        return (
            text.replace("HSP_20240827092014", name)
            .replace("01030506748", patient)
            .replace("05/03/2001", "10/11/1949")
        )

    meta, sequences = folder / "hiv_sequence.csv", folder / f"{name}.csv"
    meta.write_text(fresh((EXAMPLES / "hiv_sequence.csv").read_text()))
    sequences.write_text(fresh((EXAMPLES / "HSP_20240827092014.csv").read_text()))
    return meta, sequences


def lab_upload_and_file(portal: Platform) -> tuple[str, str]:
    """An upload and a file of lab-demo, sent by its laboratory system over REST."""
    with portal.client(portal.token("lab-demo-lims", "demo-lims-secret")) as lims:
        sent = lims.post(
            "/api/v1/uploads",
            params={"dcd_code": "HIV_SEQUENCE", "dry_run": "true"},
            files={"file": ("lab-dry-run.csv", record_csv([record("HIV_SEQUENCE")]), "text/csv")},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert sent.status_code == 202, sent.text
        name = unique("NGS_LIMS") + ".vcf"
        put = lims.put(f"/api/v1/files/lab-demo/NGS/{name}", content=vcf())
        assert put.status_code == 201, put.text
    return sent.json()["id"], put.json()["id"]


def new_upload(page: Page, organisation: str, dcd: str, file: Path, sequences: Path | None = None) -> None:
    page.goto(f"/portal/o/{organisation}/uploads")
    page.get_by_role("link", name="New upload").click()
    expect(page.locator("h1")).to_contain_text("New upload")
    page.get_by_label(re.compile("^Form")).select_option(dcd)
    if sequences is not None:
        page.get_by_label(re.compile("^HIV sequence file")).set_input_files(str(sequences))
    page.get_by_label(re.compile("^CSV file")).set_input_files(str(file))


def wait_done(page: Page) -> None:
    """The page follows the steps live (server-sent events) until the upload is done."""
    expect(page.locator("#progress .status-line")).to_contain_text(
        re.compile("Done|Nothing stored"), timeout=60_000
    )


def test_a_linked_hiv_sequence_upload_shows_its_steps_live_and_its_reports(
    page: Page, tmp_path: Path
) -> None:
    meta, sequences = hiv_pair(tmp_path)
    sign_in(page, *BIOLOGIST)
    card = page.get_by_role("region", name="Demo Clinical Laboratory")
    card.get_by_role("link", name="Upload Center").click()
    expect(page.locator("h1")).to_contain_text("Upload Center")
    check_page(page, "uploads-empty")
    new_upload(page, "lab-demo", "HIV_SEQUENCE", meta, sequences)
    page.get_by_label("Validation").select_option("validate_all")
    check_page(page, "upload-new")
    page.get_by_role("button", name="Upload").click()
    # The bar fills while the browser sends, then the upload's own page follows its steps.
    expect(page.locator("h1")).to_contain_text("hiv_sequence.csv")
    expect(page.get_by_role("link", name="its HIV sequence file")).to_be_visible()
    wait_done(page)
    steps = page.locator("ol.steps li")
    expect(steps).to_have_count(4)
    for i in range(4):
        expect(steps.nth(i)).to_contain_text("Success")
    expect(page.locator("#progress .status-line")).to_contain_text("1 created, 0 updated, 0 rejected.")
    expect(page.locator("dl.summary")).to_contain_text("Validation: Validate all")
    check_page(page, "upload-done")
    with page.expect_download() as report:
        page.get_by_role("link", name=re.compile("^Success report")).click()
    assert report.value.suggested_filename == "hiv_sequence-success.csv"
    rows = list(csv.DictReader(io.StringIO(Path(report.value.path()).read_text("utf-8-sig")), delimiter=";"))
    assert [r["outcome"] for r in rows] == ["created"]
    with page.expect_download() as errors:
        page.get_by_role("link", name=re.compile("^Error report")).click()
    assert Path(errors.value.path()).read_text("utf-8-sig").splitlines() == [
        "line;record;column;value;rule;severity;message"
    ]
    # The sequence file is an upload of its own, read with the CSV that linked it.
    page.get_by_role("link", name="its HIV sequence file").click()
    expect(page.locator("#progress .status-line")).to_contain_text("Read with its linked upload")
    page.get_by_role("link", name="Upload Center").first.click()
    rows_shown = page.locator("tbody tr")
    expect(rows_shown).to_have_count(2)
    expect(rows_shown.first).to_contain_text("biologist@lab-demo.test")
    check_page(page, "uploads")


def test_a_csv_with_errors_is_reported_and_its_error_report_downloaded(page: Page, tmp_path: Path) -> None:
    bad = record(DT_HOSPZ="31/02/2024")
    rows = [record(), bad, record(CD_PAT_SEX="Q")]
    upload = csv_file(tmp_path / "angio-day.csv", rows)
    sign_in(page, *NURSE)
    new_upload(page, "az-demo", "ANGIO_HOSP", upload)
    page.get_by_label("Submit the stored records").select_option("no")
    page.get_by_role("button", name="Upload").click()
    wait_done(page)
    expect(page.locator("#progress .status-line")).to_contain_text("1 created, 0 updated, 2 rejected.")
    # The seed's steps: the validity check found errors in rows, the upload stored the rest.
    expect(page.locator("ol.steps li").nth(1)).to_contain_text("Errors")
    expect(page.locator("ol.steps li").nth(2)).to_contain_text("Warnings")
    check_page(page, "upload-errors")
    with page.expect_download() as report:
        page.get_by_role("link", name=re.compile("^Error report")).click()
    assert report.value.suggested_filename == "angio-day-errors.csv"
    found = list(csv.DictReader(io.StringIO(Path(report.value.path()).read_text("utf-8-sig")), delimiter=";"))
    assert [(f["line"], f["column"]) for f in found] == [("3", "DT_HOSPZ"), ("4", "CD_PAT_SEX")]
    # A file the Upload Center refuses: said at the field, in words.
    page.goto("/portal/o/az-demo/uploads/new")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".error-summary")).to_contain_text("Choose the form the rows belong to.")
    check_page(page, "upload-refused")
    # The same valid record sent twice, duplicates ignored: nothing new, said as such (not
    # "see the error report", which would hold nothing).
    same = csv_file(tmp_path / "angio-again.csv", [record()])
    for _ in range(2):
        new_upload(page, "az-demo", "ANGIO_HOSP", same)
        page.get_by_label("Ignore duplicate records").select_option("yes")
        page.get_by_role("button", name="Upload").click()
        wait_done(page)
    expect(page.locator("#progress .status-line")).to_contain_text(
        "Nothing new: every record is stored already"
    )
    # A version the form does not have (a typo): said at Version, the rest kept.
    new_upload(page, "az-demo", "ANGIO_HOSP", upload)
    page.get_by_label(re.compile("^Version")).fill("9.9.9")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".error-summary")).to_contain_text("This form has no such version")
    expect(page.get_by_label(re.compile("^Version"))).to_have_value("9.9.9")
    expect(page.get_by_label(re.compile("^Form"))).to_have_value("ANGIO_HOSP")


def test_the_settings_per_registry_say_who_may_change_them(page: Page) -> None:
    sign_in(page, *NURSE)
    page.goto("/portal/o/az-demo/upload-settings")
    expect(page.locator(".explain")).to_contain_text("with the role Registrant")
    check_page(page, "upload-settings")
    page.get_by_role("row", name=re.compile("NGS")).get_by_role("link", name=re.compile("^Change")).click()
    page.get_by_label("Validation").select_option("save_on_validations")
    page.get_by_label("Submit the stored records").select_option("yes")
    check_page(page, "upload-settings-edit")
    page.get_by_role("button", name="Save the settings").click()
    expect(page.get_by_role("status")).to_contain_text("were saved")
    row = page.get_by_role("row", name=re.compile("NGS"))
    expect(row).to_contain_text("Save on validations")
    expect(row).to_contain_text("nurse@az-demo.test")


def test_a_file_put_over_sftp_appears_on_the_files_page_waiting_for_its_registration(
    page: Page, portal: Platform
) -> None:
    name = unique("NGS_SFTP") + ".vcf"

    def put() -> None:
        with sftp(portal.sftp_port, LAB_LOGIN, LAB_PASSWORD) as client:  # type: ignore[attr-defined]
            with client.open(f"/NGS/{name}", "wb") as f:
                f.write(vcf())
            client.rename(f"/NGS/{name}", f"/NGS/Finished/{name}")

    worker = threading.Thread(target=put)
    worker.start()
    worker.join(30)
    sign_in(page, *BIOLOGIST)
    page.get_by_role("region", name="Demo Clinical Laboratory").get_by_role("link", name="Files").click()
    row = page.get_by_role("row", name=re.compile(name))
    expect(row).to_contain_text("Accepted")
    expect(row).to_contain_text("SFTP")
    expect(row).to_contain_text("Waiting for its registration")
    page.get_by_label("Only files waiting for their registration").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name=re.compile("^Waiting for their registration"))).to_be_visible()
    check_page(page, "files")
    page.get_by_role("link", name=name).click()
    expect(page.locator(".explain")).to_contain_text("Not linked to a registration yet")
    check_page(page, "file")


def test_a_file_linked_to_a_registration_not_delivered_says_why_it_waits(
    page: Page, portal: Platform
) -> None:
    """Linked to a draft (no registration delivered yet): the file's page says it passed its
    checks, is linked, and waits for the registration, in words."""
    name = unique("NGS_DRAFT") + ".vcf"
    with portal.client(portal.token("lab-demo-lims", "demo-lims-secret")) as lims:
        values = record("NGS", TX_VCF_FILE_NAME=name)
        r = lims.post(
            "/api/v1/registrations",
            json={"organisation_id": "lab-demo", "dcd": "NGS", "values": values, "submit": False},
        )
        assert r.status_code == 201, r.text
        put = lims.put(f"/api/v1/files/lab-demo/NGS/{name}", content=vcf())
        assert put.status_code == 201, put.text
        file_id = put.json()["id"]
        for _ in range(200):  # linked by the worker, then the send waits for the registration
            got = lims.get("/api/v1/files/lab-demo", params={"limit": 500}).json()["items"]
            mine = next(f for f in got if f["id"] == file_id)
            if mine["state"] == "linked" and mine["send_problem"]:
                break
            time.sleep(0.1)
        assert mine["send_problem"] == "registration-not-delivered", mine
    sign_in(page, *BIOLOGIST, start=f"/portal/o/lab-demo/files/{file_id}")
    expect(page.locator("dl.summary")).to_contain_text("Linked to its registration")
    expect(page.locator("#checks-title + p")).to_contain_text("Passed")
    expect(page.locator("#send-problem")).to_contain_text("is not delivered to the central platform yet")
    check_page(page, "file-waiting")


def test_a_vcf_sent_from_the_files_page_is_checked_and_a_refused_one_said_in_words(
    page: Page, tmp_path: Path
) -> None:
    good = tmp_path / (unique("NGS_WEB") + ".vcf")
    good.write_bytes(vcf(rows=160_000))  # 6.4 MB: over the platform's 5 MiB body limit, as real VCFs are
    assert good.stat().st_size > 6_000_000
    patient = tmp_path / (unique("NGS_WEB") + ".vcf")
    patient.write_bytes(vcf(meta=("##patient_id=85040216932",)))
    sign_in(page, *BIOLOGIST)
    page.goto("/portal/o/lab-demo/files")
    page.get_by_role("link", name="Send a file").click()
    page.get_by_label(re.compile("^Registry")).select_option("NGS")
    page.get_by_label(re.compile("^The file")).set_input_files(str(good))
    check_page(page, "file-new")
    page.get_by_role("button", name="Send the file").click()
    expect(page.get_by_role("status")).to_contain_text("The file was received and checked.")
    expect(page.locator("dl.summary")).to_contain_text("Accepted")
    expect(page.locator("dl.summary")).to_contain_text("Web upload")
    page.goto("/portal/o/lab-demo/files/new")
    page.get_by_label(re.compile("^Registry")).select_option("NGS")
    page.get_by_label(re.compile("^The file")).set_input_files(str(patient))
    page.get_by_role("button", name="Send the file").click()
    expect(page.locator(".panel.warning")).to_contain_text("The VCF header carries patient information")
    expect(page.locator(".panel.warning")).to_contain_text(
        "line 4: the header carries a national register number (SSIN)"
    )
    assert "85040216932" not in page.content()
    check_page(page, "file-rejected")
    # A name intake refuses: at the field, in words, nothing kept.
    renamed = tmp_path / "results.txt"
    renamed.write_bytes(vcf())
    page.goto("/portal/o/lab-demo/files/new")
    page.get_by_label(re.compile("^Registry")).select_option("NGS")
    page.get_by_label(re.compile("^The file")).set_input_files(str(renamed))
    page.get_by_role("button", name="Send the file").click()
    expect(page.locator("#file-error")).to_contain_text("The file's name is not allowed")
    check_page(page, "file-refused")
    # Outside the platform's body limit, the page bounds what it holds: fields, not files.
    answer = page.evaluate(
        """async () => {
            const form = new FormData();
            for (let i = 0; i < 100; i++) form.append('field' + i, 'x');
            form.append('file', new Blob(['x']), 'a.vcf');
            const r = await fetch('/portal/o/lab-demo/files/new', {method: 'POST', body: form});
            return [r.status, await r.text()];
        }"""
    )
    # (No form of ours sends that: the form is shown again with the refusal, nothing sent.)
    assert answer[0] == 422 and "The body is not multipart/form-data" in answer[1], answer
    # One name sent again and again counts each time (the trial sent 400,000 copies).
    answer = page.evaluate(
        """async () => {
            const form = new FormData();
            for (let i = 0; i < 100; i++) form.append('registry', 'NGS');
            form.append('file', new Blob(['x']), 'a.vcf');
            const r = await fetch('/portal/o/lab-demo/files/new', {method: 'POST', body: form});
            return [r.status, await r.text()];
        }"""
    )
    assert answer[0] == 422 and "The body is not multipart/form-data" in answer[1], answer


def test_another_organisations_uploads_and_files_are_refused_by_direct_url(
    page: Page, browser: Browser, portal: Platform
) -> None:
    upload_id, file_id = lab_upload_and_file(portal)

    sign_in(page, *NURSE)
    for path, heading in (
        (f"/portal/o/lab-demo/uploads/{upload_id}", "Organisation not found"),
        (f"/portal/o/lab-demo/uploads/{upload_id}/reports/errors.csv", "Organisation not found"),
        (f"/portal/o/lab-demo/files/{file_id}", "Organisation not found"),
        (f"/portal/o/az-demo/uploads/{upload_id}", "Upload not found"),
        (f"/portal/o/az-demo/uploads/{upload_id}/reports/errors.csv", "Upload not found"),
        (f"/portal/o/az-demo/uploads/{upload_id}/events", "Upload not found"),
        (f"/portal/o/az-demo/files/{file_id}", "File not found"),
    ):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
        expect(page.locator("h1")).to_have_text(heading)
    check_page(page, "upload-not-found")
    # Without registration rights there is no Upload Center, in the menu or by URL.
    sign_in_page = new_context(browser, portal).new_page()
    sign_in(sign_in_page, *MANAGER)
    expect(sign_in_page.get_by_role("link", name="Upload Center")).to_have_count(0)
    for path in ("/portal/o/az-demo/uploads", "/portal/o/az-demo/files", "/portal/o/az-demo/uploads/new"):
        response = sign_in_page.goto(path)
        assert response is not None and response.status == 403, path
    sign_in_page.context.close()


def test_sending_and_following_an_upload_run_under_the_strict_csp(
    browser: Browser, portal: Platform, tmp_path: Path
) -> None:
    """The form's bar (XMLHttpRequest) and the live steps (EventSource) need no inline
    script and nothing the Content-Security-Policy refuses."""
    context = new_context(browser, portal, bypass_csp=False)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(page, *NURSE)
    new_upload(page, "az-demo", "ANGIO_HOSP", csv_file(tmp_path / "csp.csv", [record()]))
    page.get_by_label("Dry run").check()
    page.get_by_role("button", name="Upload").click()
    wait_done(page)
    expect(page.locator("#progress .status-line")).to_contain_text("Dry run: nothing was stored.")
    # The page's own EventSource ran only if the upload was not done when the page came;
    # one more, as the page makes it, ends with `done`.
    followed = page.evaluate(
        """url => new Promise(resolve => {
            const source = new EventSource(url);
            source.addEventListener("done", () => { source.close(); resolve("done"); });
            source.onerror = () => { source.close(); resolve("error"); };
        })""",
        page.url + "/events",
    )
    assert followed == "done"
    assert not violations, violations
    context.close()


def test_the_new_pages_in_dutch_pass_axe(browser: Browser, portal: Platform) -> None:
    upload_id, file_id = lab_upload_and_file(portal)
    page = new_context(browser, portal, lang="nl").new_page()
    sign_in(page, *BIOLOGIST)
    for name, path in (
        ("uploads", "/portal/o/lab-demo/uploads"),
        ("upload-new", "/portal/o/lab-demo/uploads/new"),
        ("upload-settings", "/portal/o/lab-demo/upload-settings"),
        ("files", "/portal/o/lab-demo/files"),
        ("file-new", "/portal/o/lab-demo/files/new"),
    ):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        check_page(page, name, "nl")
    page.goto(f"/portal/o/lab-demo/uploads/{upload_id}")
    expect(page.locator("h2#progress-title")).to_have_text("Stappen")
    check_page(page, "upload-done", "nl")
    page.goto(f"/portal/o/lab-demo/files/{file_id}")
    check_page(page, "file", "nl")
    page.context.close()
