"""The languages people read hdhub in, and which one a request asks for: the portal's
pages and the answers given before any route (``hdhub.common.limits``) choose alike."""

from __future__ import annotations

LANGUAGES = ("nl", "fr", "en", "de")
#: The cookie the portal keeps a person's choice in.
LANG_COOKIE = "hdhub_lang"


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """The remembered choice, else the browser's first language we speak, else English."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip()[:2].lower()
        if code in LANGUAGES:
            return code
    return "en"
