"""Data entry in Chromium: a registrant fills in an ANGIO_HOSP registration by keyboard and
mouse (a skip rule, a cross-field constraint, a required field, a computed value), saves a
draft, submits it and watches it reach Submitted and status confirmation OK from the sim;
the same in French with the engine's French messages; a conflicting edit in two tabs;
another organisation's registration refused by direct URL. The form's evaluation travels
over its live connection (a WebSocket, allowed by the pages' CSP), and by POST when that
cannot open. Every page passes axe-core."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, WebSocket, expect

from services.portal.tests.browser.conftest import check_page, new_context, sign_in, sign_out
from tests.e2e.conftest import Platform
from tests.support.samples import record

# A walk-through waits for the sim's status confirmation: longer than the 120 s default
# on two shared cores.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NURSE = ("nurse@az-demo.test", "demo-nurse")  # registrant of az-demo
BIOLOGIST = ("biologist@lab-demo.test", "demo-lab")  # registrant of lab-demo
ANGIO_NEW = "/portal/o/az-demo/registrations/new?dcd=ANGIO_HOSP&version=1.0.0"
WORDS = {
    "en": {
        "new": "New registration",
        "save": "Save as draft",
        "submit": "Submit",
        "edit": "Edit",
        "required": "This field is required.",
        "constraint": "The discharge date must be on or after the admission date",
        "saved": "The draft is saved.",
        "open": "Open",
        "submitted": "Submitted",
        "ok": "OK",
        "other": "Other",
        "male": "Male",
        "yes": "Yes",
        "planned": "Planned (elective)",
        "hypertension": "Arterial hypertension",
        "none": "None of these",
        "no_stenosis": "No significant coronary stenosis",
        "alive": "Alive",
        "home": "Home",
        "aspirin": "Aspirin",
        "no": "No",
    },
    "fr": {
        "new": "Nouvel enregistrement",
        "save": "Enregistrer le brouillon",
        "submit": "Soumettre",
        "edit": "Modifier",
        "required": "Ce champ est obligatoire.",
        "constraint": "La date de sortie doit être égale ou postérieure à la date d'admission",
        "saved": "Le brouillon est enregistré.",
        "open": "Ouvert",
        "submitted": "Soumis",
        "ok": "OK",
        "other": "Autre",
        "male": "Masculin",
        "yes": "Oui",
        "planned": None,
        "hypertension": None,
        "none": None,
        "no_stenosis": None,
        "alive": None,
        "home": None,
        "aspirin": None,
        "no": "Non",
    },
}


def field(page: Page, name: str):  # noqa: ANN201 - a Playwright locator
    return page.locator(f"[data-field='{name}']")


def choose(page: Page, name: str, code: str) -> None:
    """A choice by mouse: the radio button or check box of ``code``, or the list's option."""
    if page.locator(f"select#{name}").count():
        page.locator(f"select#{name}").select_option(code)
    else:
        field(page, name).locator(f"input[value='{code}']").click()


def type_in(page: Page, name: str, text: str) -> None:
    """Typed by keyboard into the field, as a person does."""
    box = page.locator(f"#{name}")
    box.click()
    box.press("Control+A")
    page.keyboard.type(text, delay=5)


def first_part(page: Page, lang: str, values: dict[str, str]) -> None:
    w = WORDS[lang]
    # A skip rule: with a national register number, no names are asked.
    expect(field(page, "TX_PAT_LAST_NAME")).to_be_visible()
    type_in(page, "IDC_PAT", values["IDC_PAT"])
    expect(field(page, "TX_PAT_LAST_NAME")).to_be_hidden()
    page.keyboard.press("Tab")
    type_in(page, "DT_PAT_DOB", values["DT_PAT_DOB"])
    choose(page, "CD_PAT_SEX", "M")
    type_in(page, "CD_RIZIV_TREAT_PHYS", values["CD_RIZIV_TREAT_PHYS"])
    choose(page, "CD_PAT_CONSENT", "yes")
    # A cross-field constraint: discharged before admitted.
    type_in(page, "DT_HOSPZ", "03/02/2025")
    type_in(page, "DT_DISCH", "01/02/2025")
    expect(page.locator("#DT_DISCH-error")).to_contain_text(w["constraint"])
    expect(page.locator("#DT_DISCH")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#entry-summary")).to_contain_text(w["constraint"])
    # Typing goes on undisturbed: the text and the focus stay.
    expect(page.locator("#DT_DISCH")).to_be_focused()
    expect(page.locator("#DT_DISCH")).to_have_value("01/02/2025")
    type_in(page, "DT_DISCH", "05/02/2025")
    expect(page.locator("#DT_DISCH-error")).to_be_hidden()
    # A computed field follows the values it is computed from.
    expect(page.locator("#MS_LOS")).to_have_value("2")
    # Another skip rule, with a field it makes required.
    expect(field(page, "TX_INDICATION_OTHER")).to_be_hidden()
    choose(page, "CD_INDICATION", "other")
    expect(field(page, "TX_INDICATION_OTHER")).to_be_visible()
    expect(field(page, "TX_INDICATION_OTHER").locator(".required")).to_be_visible()


def second_part(page: Page, lang: str) -> None:
    choose(page, "CD_ADM_TYPE", "elective")
    type_in(page, "MS_HEIGHT", "171")
    # A decimal in the person's convention (a comma in French), and the BMI computed from it.
    type_in(page, "MS_WEIGHT", "80.5" if lang == "en" else "80,5")
    expect(page.locator("#MS_BMI")).to_have_value("27.5" if lang == "en" else "27,5")
    choose(page, "CD_RISK_FACTORS", "hypertension")
    choose(page, "CD_CARDIAC_HIST", "none")
    choose(page, "CD_CAD_EXTENT", "0")
    choose(page, "CD_CABG", "no")
    choose(page, "CD_DISCH_STATUS", "alive")
    choose(page, "CD_DISCH_DEST", "home")
    choose(page, "CD_DISCH_MED", "aspirin")


def fill_draft_and_submit(page: Page, lang: str) -> None:
    w = WORDS[lang]
    values = record()
    page.goto(ANGIO_NEW)
    expect(page.locator("h1")).to_contain_text(w["new"])
    first_part(page, lang, values)
    check_page(page, "registration-new", lang)
    page.get_by_role("button", name=w["save"]).click()
    expect(page.locator(".notice")).to_contain_text(w["saved"])
    expect(page.locator("#status")).to_contain_text(w["open"])
    check_page(page, "registration-draft", lang)
    page.get_by_role("link", name=w["edit"], exact=True).click()
    second_part(page, lang)
    # The required field left empty: submitting is refused, at the field and in the summary.
    page.get_by_role("button", name=w["submit"], exact=True).click()
    summary = page.locator(".error-summary[data-autofocus]")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("link", name=w["required"])).to_have_attribute("href", "#TX_INDICATION_OTHER")
    expect(page.locator("#TX_INDICATION_OTHER-error")).to_contain_text(w["required"])
    expect(page.locator("#MS_HEIGHT")).to_have_value("171")  # nothing typed is lost
    check_page(page, "registration-refused", lang)
    summary.get_by_role("link", name=w["required"]).click()
    type_in(page, "TX_INDICATION_OTHER", "Work-up before a kidney transplant")
    page.get_by_role("button", name=w["submit"], exact=True).click()
    expect(page.locator("#status")).to_contain_text(w["submitted"], timeout=30_000)
    expect(page.locator("#confirmation")).to_contain_text(w["ok"], timeout=90_000)
    check_page(page, "registration", lang)


def reopen_and_delete(page: Page) -> None:
    page.get_by_role("button", name="Reopen").click()
    expect(page.locator(".notice")).to_contain_text("The registration is open again.")
    expect(page.locator("#status")).to_contain_text("Open")
    page.get_by_role("link", name="Delete").click()
    expect(page.locator("h1")).to_contain_text("Delete the registration")
    check_page(page, "registration-delete")
    page.get_by_role("button", name="Delete the registration").click()
    expect(page.locator("#status")).to_contain_text("Deleted")
    history = page.locator("table.history")
    for action in ("Created", "Saved", "Submitted", "Reopened", "Deleted"):
        expect(history).to_contain_text(action)
    expect(history).to_contain_text("TX_INDICATION_OTHER")


def evaluations(page: Page) -> tuple[list[str], list[str]]:
    """What the page's form evaluation travels by, as it goes: the answers received over
    its live connection, and the evaluate route's URL for each change POSTed instead."""
    answers: list[str] = []
    posted: list[str] = []

    def opened(socket: WebSocket) -> None:
        if socket.url.endswith("/forms/ANGIO_HOSP/1.0.0/live"):
            socket.on("framereceived", lambda payload: answers.append(str(payload)))

    page.on("websocket", opened)
    page.on("request", lambda r: posted.append(r.url) if r.url.endswith("/evaluate") else None)
    return answers, posted


def test_a_registrant_enters_submits_and_follows_a_registration(browser: Browser, portal: Platform) -> None:
    context = new_context(browser, portal)
    page = context.new_page()
    sign_in(page, *NURSE)
    answers, posted = evaluations(page)
    page.goto("/portal/o/az-demo/registries")
    expect(page.locator("h1")).to_contain_text("Registries")
    row = page.get_by_role("row", name=re.compile(r"Hospitalisation \(ANGIO_HOSP\)"))
    expect(row).to_contain_text("latest")
    check_page(page, "registries")
    row.get_by_role("link", name=re.compile("New registration")).click()
    expect(page.locator("h1")).to_contain_text("New registration")
    fill_draft_and_submit(page, "en")
    # Every change was answered over the form's live connection, none by a POST.
    assert answers and all('"fields"' in a for a in answers)
    assert posted == []
    expect(page.locator(".timeline")).to_contain_text("Status confirmation OK")
    reopen_and_delete(page)
    context.close()


def test_the_live_connection_is_allowed_by_the_pages_csp(browser: Browser, portal: Platform) -> None:
    context = new_context(browser, portal, bypass_csp=False)  # connect-src 'self' enforced
    page = context.new_page()
    sign_in(page, *NURSE)
    answers, posted = evaluations(page)
    page.goto(ANGIO_NEW)
    type_in(page, "IDC_PAT", record()["IDC_PAT"])
    expect(field(page, "TX_PAT_LAST_NAME")).to_be_hidden()
    assert answers and posted == []
    context.close()


def test_a_change_is_posted_when_the_live_connection_cannot_open(browser: Browser, portal: Platform) -> None:
    context = new_context(browser, portal)
    # Every WebSocket of the page goes to a port where nothing listens: it never opens.
    context.add_init_script(
        "window.WebSocket = class extends window.WebSocket {"
        " constructor(url, protocols) { super('ws://127.0.0.1:9/', protocols); } };"
    )
    page = context.new_page()
    sign_in(page, *NURSE)
    answers, posted = evaluations(page)
    page.goto(ANGIO_NEW)
    type_in(page, "IDC_PAT", record()["IDC_PAT"])
    expect(field(page, "TX_PAT_LAST_NAME")).to_be_hidden()  # the skip rule, answered by the POST
    type_in(page, "DT_HOSPZ", "03/02/2025")
    type_in(page, "DT_DISCH", "01/02/2025")
    expect(page.locator("#DT_DISCH-error")).to_contain_text(WORDS["en"]["constraint"])
    assert answers == [] and len(posted) >= 2
    context.close()


def test_a_form_whose_session_ended_says_so_and_keeps_what_was_typed(
    browser: Browser, portal: Platform
) -> None:
    """Signed out in another tab, the form's next change is refused (the evaluate route
    sends the browser to the sign-in page; the live connection closes 4401 and its change
    is posted): the page says the session ended and what to do, with a sign-in link
    opening a new tab, instead of silently no longer checking (a fresh-eyes trial's
    finding); what was typed stays."""
    context = new_context(browser, portal)
    context.add_init_script(  # no socket: each change posted, as after a 4401
        "window.WebSocket = class extends window.WebSocket {"
        " constructor(url, protocols) { super('ws://127.0.0.1:9/', protocols); } };"
    )
    page = context.new_page()
    sign_in(page, *NURSE)
    page.goto(ANGIO_NEW)
    notice = page.locator("#entry-signed-out")
    type_in(page, "IDC_PAT", record()["IDC_PAT"])
    expect(field(page, "TX_PAT_LAST_NAME")).to_be_hidden()  # the skip rule, answered
    type_in(page, "DT_HOSPZ", "03/02/2025")
    expect(notice).to_be_hidden()
    other = context.new_page()
    other.goto("/portal/")
    sign_out(other)
    type_in(page, "DT_DISCH", "01/02/2025")
    expect(notice).to_be_visible()
    expect(notice.get_by_role("link")).to_have_attribute("target", "_blank")
    assert page.locator("#DT_DISCH").input_value() == "01/02/2025"
    assert page.locator("#DT_HOSPZ").input_value() == "03/02/2025"
    expect(page.locator("#DT_DISCH-error")).to_be_hidden()  # not checked: said above
    check_page(page, "registration-new-signed-out")
    context.close()


def test_a_field_that_stops_applying_while_typed_in_stays_until_left(
    browser: Browser, portal: Platform
) -> None:
    """The SSIN typed, the person moves on to the last name before the answer comes: the
    answer says the names do not apply (the SSIN stands for them), and the field stays,
    with the focus and what is being typed, until the person leaves it; then it goes (a
    fresh-eyes trial saw it hidden under the fingers, the focus lost)."""
    context = new_context(browser, portal)
    page = context.new_page()
    sign_in(page, *NURSE)
    page.goto(ANGIO_NEW)
    name = page.locator("#TX_PAT_LAST_NAME")
    page.locator("#IDC_PAT").click()
    page.keyboard.type(record()["IDC_PAT"], delay=5)
    name.click()  # before the answer (300 ms after the last key, then the round trip)
    page.keyboard.type("Peet", delay=5)
    expect(field(page, "TX_PAT_LAST_NAME")).to_have_attribute("data-relevant", "0")  # answered
    page.keyboard.type("ers", delay=5)
    expect(name).to_be_focused()
    expect(name).to_have_value("Peeters")
    expect(field(page, "TX_PAT_LAST_NAME")).to_be_visible()
    page.keyboard.press("Tab")
    expect(field(page, "TX_PAT_LAST_NAME")).to_be_hidden()
    expect(name).to_be_disabled()
    context.close()


def test_a_change_is_posted_when_the_live_connection_does_not_answer(
    browser: Browser, portal: Platform
) -> None:
    context = new_context(browser, portal)
    page = context.new_page()
    sign_in(page, *NURSE)
    answers, posted = evaluations(page)
    # A socket that opens and never answers (a proxy holding it): given up after 5 s.
    page.route_web_socket(re.compile(r"/live$"), lambda socket: None)
    page.goto(ANGIO_NEW)
    type_in(page, "IDC_PAT", record()["IDC_PAT"])
    expect(field(page, "TX_PAT_LAST_NAME")).to_be_hidden(timeout=10_000)
    assert answers == [] and posted
    context.close()


def test_the_same_in_french_with_the_messages_in_french(browser: Browser, portal: Platform) -> None:
    context = new_context(browser, portal, "fr")
    page = context.new_page()
    sign_in(page, *NURSE)
    fill_draft_and_submit(page, "fr")
    expect(page.locator(".timeline")).to_contain_text("Confirmation de statut OK")
    context.close()


def new_draft(page: Page) -> str:
    """A draft entered through the form; its page's path."""
    page.goto(ANGIO_NEW)
    type_in(page, "IDC_PAT", record()["IDC_PAT"])
    type_in(page, "DT_HOSPZ", "03/02/2025")
    page.get_by_role("button", name="Save as draft").click()
    expect(page.locator(".notice")).to_contain_text("The draft is saved.")
    return page.url.split("?")[0].removeprefix(portal_url(page))


def portal_url(page: Page) -> str:
    return re.match(r"https?://[^/]+", page.url).group(0)  # type: ignore[union-attr]


def test_a_conflicting_edit_in_two_tabs_is_refused_and_keeps_what_was_typed(
    browser: Browser, portal: Platform
) -> None:
    context = new_context(browser, portal)
    first = context.new_page()
    sign_in(first, *NURSE)
    registration = new_draft(first)
    second = context.new_page()
    for tab in (first, second):
        tab.goto(f"{registration}/edit")
        expect(tab.locator("h1")).to_contain_text("Edit registration")
    type_in(first, "MS_HEIGHT", "171")
    first.get_by_role("button", name="Save as draft").click()
    expect(first.locator(".notice")).to_contain_text("The draft is saved.")
    type_in(second, "MS_WEIGHT", "72")
    second.get_by_role("button", name="Save as draft").click()
    summary = second.locator(".error-summary[data-autofocus]")
    expect(summary).to_contain_text("Someone else changed this registration while you were editing it")
    expect(summary).to_contain_text("It is now at version 2")
    expect(second.locator("#MS_WEIGHT")).to_have_value("72")  # nothing typed is lost
    check_page(second, "registration-conflict")
    # Saving again, knowingly, replaces the other tab's change.
    second.get_by_role("button", name="Save as draft").click()
    expect(second.locator(".notice")).to_contain_text("The draft is saved.")
    values = second.locator("dl.values")
    expect(values).to_contain_text("72")
    expect(values).not_to_contain_text("171")
    expect(second.locator("table.history")).to_contain_text("MS_HEIGHT")
    context.close()


def test_another_organisations_registration_is_refused_by_direct_url(
    browser: Browser, portal: Platform
) -> None:
    nurse_context = new_context(browser, portal)
    nurse = nurse_context.new_page()
    sign_in(nurse, *NURSE)
    registration = new_draft(nurse)
    ssin = nurse.locator("dl.values dd").first.inner_text()
    registration_id = registration.rsplit("/", 1)[1]
    nurse_context.close()
    context = new_context(browser, portal)
    page = context.new_page()
    sign_in(page, *BIOLOGIST)
    for url, title in (
        (registration, "Organisation not found"),
        (f"{registration}/edit", "Organisation not found"),
        (f"/portal/o/lab-demo/registrations/{registration_id}", "Registration not found"),
        (f"/portal/o/lab-demo/registrations/{registration_id}/edit", "Registration not found"),
        (f"/portal/o/lab-demo/registrations/{registration_id}/status", "Registration not found"),
    ):
        answer = page.goto(url)
        assert answer is not None and answer.status == 404, url
        expect(page.locator("h1")).to_have_text(title)
        assert ssin not in page.content()
    check_page(page, "registration-not-found")
    # Nor can it be changed by a forged form.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post(
        f"/portal/o/lab-demo/registrations/{registration_id}/delete",
        form={"csrf_token": csrf or "", "_version": "1"},
    )
    assert answer.status == 404
    for organisation in ("az-demo", "lab-demo"):
        answer = page.request.post(
            f"/portal/o/{organisation}/forms/ANGIO_HOSP/1.0.0/evaluate",
            form={"csrf_token": csrf or "", "IDC_PAT": "x"},
        )
        # Not a member of az-demo; lab-demo's registrant may evaluate a form of lab-demo.
        assert answer.status == (404 if organisation == "az-demo" else 200)
        # Nor over the form's live connection: its handshake is refused.
        opened = page.evaluate(
            """url => new Promise(done => {
                const socket = new WebSocket(url);
                socket.onopen = () => { socket.close(); done(true); };
                socket.onclose = () => done(false);
            })""",
            f"{portal.base_url.replace('http', 'ws', 1)}/portal/o/{organisation}/forms/ANGIO_HOSP/1.0.0/live",
        )
        assert opened == (organisation == "lab-demo")
    context.close()


def test_problems_are_named_by_their_fields_label(browser: Browser, portal: Platform) -> None:
    context = new_context(browser, portal)
    page = context.new_page()
    sign_in(page, *NURSE)
    registration = new_draft(page)
    # The draft's "Still to do" list names each field as the form labels it.
    issues = page.locator("section[aria-labelledby='issues-title']")
    expect(issues).to_contain_text("Sex: This field is required.")
    expect(issues).not_to_contain_text("CD_PAT_SEX")
    page.goto(f"{registration}/edit")
    # The summary built as one types names the field too.
    type_in(page, "DT_DISCH", "01/02/2025")
    expect(page.locator("#entry-summary")).to_contain_text(
        "Discharge date: The discharge date must be on or after the admission date"
    )
    # And so does the one the server renders when submitting is refused.
    page.get_by_role("button", name="Submit", exact=True).click()
    summary = page.locator(".error-summary[data-autofocus]")
    expect(summary.get_by_role("link", name="Sex: This field is required.")).to_have_attribute(
        "href", "#CD_PAT_SEX"
    )
    expect(page.locator("#CD_PAT_SEX-error")).not_to_contain_text("Sex:")
    context.close()
