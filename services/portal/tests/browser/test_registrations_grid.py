"""The registrations grid in Chromium: counts per status under the filters, filters as
removable chips, the two sort orders, keyset pages both ways ("Next page", "Previous
page"), several registrations submitted and deleted at once with each outcome said, a typed date refused at its field, and another
organisation's member and a member without registration rights refused. Every page
passes axe-core (no serious or critical violation)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from services.portal.tests.browser.conftest import check_page, new_context, sign_in
from tests.e2e.conftest import Platform
from tests.support.samples import record

pytestmark = pytest.mark.e2e

NURSE = ("nurse@az-demo.test", "demo-nurse")  # registrant of az-demo
BIOLOGIST = ("biologist@lab-demo.test", "demo-lab")  # registrant of lab-demo
MANAGER = ("manager@az-demo.test", "demo-manager")  # no registration rights
GRID = "/portal/o/az-demo/registrations"


def _store(portal: Platform, token: str, n: int, *, submit: bool) -> list[dict[str, Any]]:
    out = []
    with portal.client(token) as c:
        for _ in range(n):
            body = {"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": record(), "submit": submit}
            r = c.post("/api/v1/registrations", json=body)
            assert r.status_code == 201, r.text
            out.append(r.json())
    return out


@pytest.fixture(scope="module")
def seeded(portal: Platform) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """53 Open drafts of az-demo and 2 submitted, stored by its hospital system."""
    token = portal.token("az-demo-his", "demo-his-secret")
    opened = _store(portal, token, 53, submit=False)
    sent = _store(portal, token, 2, submit=True)
    yield {"open": opened, "sent": sent}


def rows(page: Page) -> list[str]:
    """The registration ids of the grid's rows, top to bottom."""
    hrefs = page.locator("#bulk tbody tr td:nth-child(2) a").evaluate_all(
        "as => as.map(a => a.getAttribute('href'))"
    )
    return [h.rsplit("/", 1)[-1] for h in hrefs]


def test_the_grid_pages_sorts_and_counts(page: Page, seeded: dict[str, list[dict[str, Any]]]) -> None:
    opened, sent = seeded["open"], seeded["sent"]
    sign_in(page, *NURSE, start="/portal/o/az-demo/files")
    page.get_by_role("link", name="Registrations", exact=True).click()
    expect(page.locator("h1")).to_contain_text("Registrations")
    # The counts per status, each a link that filters by it.
    expect(page.locator("#counts [data-status=open] .count-n")).to_have_text("53")
    expect(page.locator("#total")).to_have_text("55 registration(s)")
    # Newest change first, 50 a page; the next page carries on where this one ended.
    first = rows(page)
    assert len(first) == 50
    check_page(page, "registrations")
    page.get_by_role("link", name="Next page").click()
    second = rows(page)
    assert len(second) == 5 and not set(first) & set(second)
    assert sorted(first + second) == sorted(r["id"] for r in opened + sent)
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    # Back by keyset too: the page before is the first page, row for row, with no page
    # before it; and on again to the same second page. (Drafts only: a submitted one moves
    # to the top when the worker records its delivery or confirmation meanwhile.)
    drafts = {r["id"] for r in opened}

    def still(ids: list[str]) -> list[str]:
        return [i for i in ids if i in drafts]

    page.get_by_role("link", name="Previous page").click()
    assert still(rows(page)) == still(first)
    expect(page.get_by_role("link", name="Previous page")).to_have_count(0)
    check_page(page, "registrations-previous")
    page.get_by_role("link", name="Next page").click()
    assert still(rows(page)) == still(second)
    page.get_by_role("link", name="First page").click()
    assert still(rows(page)) == still(first)
    expect(page.get_by_role("link", name="Previous page")).to_have_count(0)

    # Sort by creation, oldest first: the first draft stored comes first.
    page.get_by_role("link", name=re.compile("^Created")).click()
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Created")
    page.get_by_role("link", name=re.compile("^Created")).click()
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Created")
    assert rows(page)[0] == opened[0]["id"]
    # A row leads to the registration's own page (it led to a 404 before).
    page.locator("#bulk tbody tr td:nth-child(2) a").first.click()
    expect(page).to_have_url(re.compile(f"/portal/o/az-demo/registrations/{opened[0]['id']}$"))
    expect(page.locator("h1")).to_contain_text("Registration")


def test_the_grid_filters_with_removable_chips(page: Page, seeded: dict[str, list[dict[str, Any]]]) -> None:
    sent = seeded["sent"]
    sign_in(page, *NURSE, start=GRID)
    # The status Open from its count, shown as a removable chip.
    page.locator("#counts [data-status=open]").click()
    expect(page.locator("ul[aria-label='Filters in use']")).to_contain_text("Status: Open")
    expect(page.locator("#total")).to_have_text("53 registration(s)")
    page.get_by_label("Status confirmation").select_option("none")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("ul[aria-label='Filters in use'] li")).to_have_count(2)
    page.locator("ul[aria-label='Filters in use'] a", has_text="Status: Open").click()
    expect(page.locator("ul[aria-label='Filters in use'] li")).to_have_count(1)
    # A registration code finds its registration.
    code = sent[0]["registration_code"]
    page.goto(GRID)
    page.get_by_label("Registration code or business key").fill(code)
    page.get_by_role("button", name="Filter").click()
    assert rows(page) == [sent[0]["id"]]
    expect(page.locator("#bulk tbody")).to_contain_text(code)
    # Registry, form and dates narrow it too; a date that is no date is said at its field.
    page.goto(GRID + "?registry=HDBP0300")
    expect(page.locator(".empty")).to_contain_text("No registration matches these filters")
    page.goto(GRID)
    page.get_by_label("Created from").fill("31/02/2025")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#created_from-error")).to_contain_text("There is no 31/02/2025 in the calendar")
    expect(page.locator(".error-summary")).to_be_visible()
    check_page(page, "registrations-bad-date")
    for typed in ("last week", "1/1/27"):  # a year in two digits was read as the year 27
        page.get_by_label("Created from").fill(typed)
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#created_from-error")).to_contain_text("Type a date as day/month/year")
    # A status or confirmation the lists do not have (a hand-typed or an old address) is
    # said at its field, and nothing is listed under a filter that was not applied.
    response = page.goto(GRID + "?status=archived&confirmation=maybe")
    assert response is not None and response.status == 200
    expect(page.locator("#status-error")).to_contain_text("Choose a status from the list.")
    expect(page.locator("#confirmation-error")).to_contain_text("Choose a status confirmation from the list.")
    expect(page.locator("#status")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".error-summary a[href='#status']")).to_be_visible()
    assert rows(page) == []
    check_page(page, "registrations-unknown-status")
    page.get_by_label("Created from").fill("01/01/2020")
    page.get_by_label("Form").select_option("ANGIO_HOSP")
    page.get_by_role("button", name="Filter").click()
    # A date range: the matches counted (up to 10,000), counts per status with them.
    expect(page.locator("#total")).to_have_text(re.compile(r"^\d+ registration\(s\)$"))
    expect(page.locator("#counts [data-status=open] .count-n")).to_have_text(re.compile(r"^\d+$"))
    assert len(rows(page)) == 50
    page.goto(GRID + "?created_from=01/01/3020")
    expect(page.locator("#total")).to_have_text("0 registration(s)")
    expect(page.locator("#counts li")).to_have_count(0)
    # The first and the last day there are: every registration lies between them (each was
    # a server error, found by a fresh-eyes trial: the day after 31/12/9999 is no date, and
    # 01/01/0001 in Brussels is before year 1 in UTC).
    for edges in ("created_to=31/12/9999", "created_from=1/1/0001&updated_to=31/12/9999"):
        response = page.goto(f"{GRID}?{edges}")
        assert response is not None and response.status == 200, edges
        expect(page.locator("#total")).to_have_text(re.compile(r"^\d+ registration\(s\)$"))
        assert len(rows(page)) == 50
    # A damaged page link is said in words, not a server error.
    response = page.goto(GRID + "?cursor=damaged")
    assert response is not None and response.status == 200
    expect(page.locator(".error-summary")).to_be_visible()


def test_several_are_submitted_and_deleted_at_once_each_with_its_outcome(
    page: Page, seeded: dict[str, list[dict[str, Any]]]
) -> None:
    opened, sent = seeded["open"], seeded["sent"]
    sign_in(page, *NURSE, start=GRID + "?status=open")
    a, b = opened[10]["id"], opened[11]["id"]
    page.goto(GRID)
    for id_ in (a, b, sent[1]["id"]):
        page.locator(f"#sel-{id_}").check()
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator("h1")).to_have_text("Submitted: 2 of 3")
    outcomes = page.locator("#outcomes tbody tr")

    def outcome(id_: str):  # noqa: ANN202 - a Playwright locator
        return outcomes.filter(has=page.locator(f"a[href$='/registrations/{id_}']"))

    # Each named by its code and form, linking to its page; no raw ids.
    refused = outcome(sent[1]["id"])
    expect(refused).to_contain_text(sent[1]["registration_code"])
    expect(refused).to_contain_text("ANGIO_HOSP")
    expect(refused).to_contain_text("Its status does not allow this.")
    expect(outcome(a)).to_contain_text("Done")
    expect(outcome(a).get_by_role("link")).to_have_text(re.compile(r"\S"))
    expect(page.locator("#outcomes")).not_to_contain_text(a)
    # The outcome is a page of its own (POST-redirect-GET): a reload shows it, not acts again.
    assert page.url.endswith("/portal/o/az-demo/registrations/bulk")
    page.reload()
    expect(page.locator("h1")).to_have_text("Submitted: 2 of 3")
    expect(outcome(a)).to_contain_text("Done")
    check_page(page, "registrations-submitted")
    page.get_by_role("link", name="Back to the registrations").click()
    expect(page.locator("h1")).to_contain_text("Registrations")

    c, d = opened[20]["id"], opened[21]["id"]
    page.goto(GRID + "?status=open")
    page.locator(f"#sel-{c}").check()
    page.locator(f"#sel-{d}").check()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.locator("h1")).to_have_text("Delete the 2 selected registration(s)?")
    check_page(page, "registrations-delete")
    page.get_by_role("button", name="Delete them").click()
    expect(page.locator("h1")).to_have_text("Deleted: 2 of 2")
    # Drafts have no code yet: named as the grid names them.
    expect(page.locator("#outcomes")).to_contain_text(f"Draft {c[-8:]}")
    expect(page.locator("#outcomes")).to_contain_text(f"Draft {d[-8:]}")
    page.get_by_role("link", name="Back to the registrations").click()
    assert page.url.endswith("?status=open")
    assert c not in rows(page) and d not in rows(page)
    page.goto(GRID + "?status=deleted")
    assert {c, d} <= set(rows(page))
    # Nothing selected: said, nothing done.
    page.goto(GRID)
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.locator(".error-summary")).to_contain_text("Select at least one registration")
    # A selection whose version was tampered with (too large, not digits, missing): said,
    # nothing done; without the version seen the owner would act on whatever the row is now.
    token = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    e = opened[22]["id"]
    for ref in (f"{e}:99999999999999999999999", f"{e}:\u00b2", f"{e}:abc", e):
        answer = page.request.post(
            f"{GRID}/bulk",
            form={"csrf_token": token, "action": "submit", "ref": ref},
            headers={"Origin": page.url.split("/portal/")[0]},
        )
        assert answer.status == 422, (ref, answer.status, answer.text()[:300])
        assert "The selection is damaged" in answer.text()
    page.goto(GRID + "?status=open")
    assert e in rows(page)


def test_another_organisations_member_sees_none_of_it(
    browser: Browser, portal: Platform, seeded: dict[str, list[dict[str, Any]]]
) -> None:
    page = new_context(browser, portal).new_page()
    sign_in(page, *BIOLOGIST)
    response = page.goto(GRID)
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Organisation not found")
    page.goto("/portal/o/lab-demo/registrations")
    ids = {r["id"] for r in seeded["open"] + seeded["sent"]}
    expect(page.locator("h1")).to_contain_text("Registrations")
    assert not ids & set(rows(page))
    expect(page.locator("#bulk tbody td:nth-child(3)", has_text="ANGIO_HOSP")).to_have_count(0)
    # A forged bulk delete of az-demo's registrations from lab-demo's grid changes nothing.
    token = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    target = seeded["open"][30]["id"]
    answer = page.request.post(
        "/portal/o/lab-demo/registrations/bulk",
        form={"csrf_token": token, "action": "delete", "confirmed": "yes", "ref": f"{target}:1"},
        headers={"Origin": portal.base_url},
    )
    assert answer.status == 200 and "Registration not found" in answer.text()
    answer = page.request.post(
        f"{GRID}/bulk",
        form={"csrf_token": token, "action": "delete", "confirmed": "yes", "ref": f"{target}:1"},
        headers={"Origin": portal.base_url},
    )
    assert answer.status == 404
    page.context.close()
    # Without registration rights: no menu entry, refused by URL.
    page = new_context(browser, portal).new_page()
    sign_in(page, *MANAGER, start="/portal/o/az-demo/members")
    expect(page.locator("h1")).to_contain_text("Members")
    expect(page.get_by_role("link", name="Registrations", exact=True)).to_have_count(0)
    response = page.goto(GRID)
    assert response is not None and response.status == 403
    page.context.close()


def test_the_grid_in_french_names_statuses_and_refusals_in_french(
    browser: Browser, portal: Platform, seeded: Any
) -> None:
    """ "Open" the status is "Ouvert", not the verb; the owner's refusals of a range or a
    damaged link are in French too."""
    page = new_context(browser, portal, lang="fr").new_page()
    sign_in(page, *NURSE, start=GRID + "?status=open")
    expect(page.locator("#bulk tbody")).to_contain_text("Ouvert")
    expect(page.locator("#bulk tbody")).not_to_contain_text("Ouvrir")
    expect(page.locator("select#status")).to_contain_text("Ouvert")
    page.goto(GRID + "?created_from=31/12/2026&created_to=01/01/2026")
    expect(page.locator(".error-summary")).not_to_contain_text("The end of the range")
    page.goto(GRID + "?cursor=abc")
    expect(page.locator(".error-summary")).not_to_contain_text("The link to this page is damaged")
    page.context.close()


def test_the_grid_in_dutch_passes_axe(browser: Browser, portal: Platform, seeded: Any) -> None:
    page = new_context(browser, portal, lang="nl").new_page()
    sign_in(page, *NURSE, start=GRID)
    expect(page.locator("h1")).to_contain_text("Registraties")
    check_page(page, "registrations", "nl")
    page.goto(GRID + "?created_from=30/02/2025&status=archived")
    expect(page.locator("#created_from-error")).to_contain_text("30/02/2025 bestaat niet in de kalender")
    expect(page.locator("#status-error")).to_contain_text("Kies een status uit de lijst.")
    page.context.close()
