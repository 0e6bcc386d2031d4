"""The portal in a real browser: `hdhub run all` as a process (as `make run` starts it) and
Debian's Chromium driven by Playwright. Every page a test visits goes through
:func:`check_page`: axe-core (from npm, pinned; tests/browser/vendor) finds no serious or
critical violation, and with ``HDHUB_SCREENSHOTS=<folder>`` (``make screenshots``) the
page is photographed for docs/portal.md."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.e2e.conftest import Platform, run_all

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
ROOT = Path(__file__).resolve().parents[4]
SCREENSHOTS = os.environ.get("HDHUB_SCREENSHOTS")


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed (make chromium)")
    with run_all(tmp_path_factory.mktemp("portal")) as running:
        yield running


# Module scope: Playwright's sync API runs an event loop of its own in this thread, and
# the asyncio tests collected after this module need it gone.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright, portal: Platform) -> Iterator[Browser]:  # noqa: ARG001 - started first
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()


def new_context(browser: Browser, portal: Platform, lang: str = "en", **options: Any) -> BrowserContext:
    # bypass_csp lets Playwright inject axe-core; test_security checks the CSP itself.
    context = browser.new_context(
        base_url=portal.base_url,
        locale={"en": "en-GB", "nl": "nl-BE", "fr": "fr-BE", "de": "de-BE"}[lang],
        extra_http_headers={"Accept-Language": lang},
        viewport={"width": 1280, "height": 900},
        bypass_csp=options.pop("bypass_csp", True),
        **options,
    )
    context.set_default_timeout(15_000)
    return context


@pytest.fixture
def context(browser: Browser, portal: Platform) -> Iterator[BrowserContext]:
    c = new_context(browser, portal)
    yield c
    c.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def check_page(page: Page, name: str, lang: str = "en") -> None:
    """axe-core on the page as it is now: no serious or critical violation; and its
    screenshot when asked for."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}))"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {bad}"
    if SCREENSHOTS:
        folder = ROOT / SCREENSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{lang}-{name}.png"), full_page=True)


def sign_in(page: Page, username: str, password: str, *, start: str = "/portal/") -> None:
    """Through the issuer's login page, as a person does."""
    page.goto(start)
    expect(page.locator("h1")).to_have_text(re.compile("Sign in|Aanmelden|Se connecter|[Aa]nmelden"))
    page.get_by_label(re.compile("Username|Gebruikersnaam|Nom d'utilisateur|Benutzername")).fill(username)
    page.locator("#password").fill(password)
    page.locator("button[type=submit]").click()


def sign_out(page: Page) -> None:
    page.locator("header form[action='/portal/logout'] button").click()
    expect(page.locator("h1")).to_have_text(re.compile("You are signed out|U bent afgemeld"))


def age_sessions(portal: Platform, *, idle_seconds: int = 0, access_expired: bool = False) -> None:
    """Make every portal session look idle for ``idle_seconds`` (or its access token
    expired), as time would: the portal's SQLite database, as `make run` keeps it."""
    with sqlite3.connect(portal.data_dir / "portal.db") as db:
        if idle_seconds:
            db.execute(
                "UPDATE portal_sessions SET last_seen_at = datetime(last_seen_at, ?)",
                (f"-{idle_seconds} seconds",),
            )
        if access_expired:
            db.execute("UPDATE portal_sessions SET access_expires_at = datetime('now', '-1 hour')")


def issuer_sessions(portal: Platform, username: str) -> int:
    """The person's sessions at the embedded issuer (what a refresh token renews)."""
    with sqlite3.connect(portal.data_dir / "identity.db") as db:
        row = db.execute(
            "SELECT count(*) FROM oidc_sessions s JOIN accounts a ON a.id = s.account_id WHERE a.username = ?",
            (username,),
        ).fetchone()
    return int(row[0])


def password_token(portal: Platform, username: str, password: str) -> str:
    """An access token of a demo person (the password grant the embedded issuer keeps for
    tests), to set up through REST what a page then shows."""
    r = httpx.post(
        f"{portal.base_url}/realms/hdhub/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": username,
            "password": password,
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
