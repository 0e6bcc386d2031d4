"""What every page shares: templates, security headers, the signed-in person, CSRF, the
language, and how refusals become pages.

Every route of the pages' routers is a :class:`PageRoute`: whatever it answers gets the
security headers (a strict CSP without inline script, no framing, no caching), and what
it raises becomes a page in the person's language: :class:`SignInRequired` a redirect to
sign-in, a :class:`~hdhub.common.errors.Problem` (the owner's, over gRPC or from the
portal's own rules) the error page with the problem's title and detail.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import grpc
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import HTTPConnection

from hdhub.common.auth import Action, Principal, verifier
from hdhub.common.config import platform
from hdhub.common.errors import Problem
from hdhub.common.grpc import problem_from_rpc_error
from hdhub.common.languages import LANG_COOKIE, LANGUAGES, pick_language
from hdhub.portal.pages.i18n import LANGUAGE_NAMES, Formats, translations
from hdhub.portal.pages.oidc import IssuerRefused
from hdhub.portal.pages.roles import ROLE_NAMES
from hdhub.portal.pages.sessions import COOKIE, Tokens
from hdhub.portal.store import PortalSession

if TYPE_CHECKING:
    from hdhub.portal.runtime import PortalService

PREFIX = "/portal"
PACKAGE = Path(__file__).resolve().parent.parent
STATIC = PACKAGE / "static"
templates = Environment(
    loader=FileSystemLoader(PACKAGE / "templates"),
    autoescape=select_autoescape(["html"]),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
VENDOR = json.loads((STATIC / "vendor" / "MANIFEST.json").read_text())
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self' {issuer}; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SignInRequired(Exception):
    def __init__(self, return_to: str = "", *, expired: bool = False) -> None:
        super().__init__("sign-in required")
        self.return_to = return_to
        self.expired = expired


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(response: Response) -> Response:
    issuer = _origin(platform().oidc_issuer)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value.format(issuer=issuer))
    return response


def portal_origin() -> str:
    """The portal's own origin (``https://host``): what a browser's ``Origin`` says of a
    request from the portal's pages."""
    return _origin(platform().public_url)


def secure_cookies() -> bool:
    return platform().public_url.startswith("https://")


@dataclass
class Page:
    """One request's view of the person: language, formats, session and, once signed in,
    the verified principal (from the access token the portal holds). ``request`` is a
    form's live connection's WebSocket on that route (pages/entry.py)."""

    request: HTTPConnection
    lang: str
    session: PortalSession | None = None
    principal: Principal | None = None
    organisation_id: str | None = None
    flash: list[str] = field(default_factory=list)

    @property
    def gettext(self) -> Callable[[str], str]:
        return translations(self.lang).gettext

    def _(self, message: str, **values: Any) -> str:
        text = translations(self.lang).gettext(message)
        return text % values if values else text

    @property
    def csrf(self) -> str:
        return self.session.csrf_token if self.session else ""

    @property
    def person(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def can(self, action: Action, organisation_id: str | None = None) -> bool:
        return self.principal is not None and self.principal.can(
            action, organisation_id or self.organisation_id
        )

    def granted(self, registry: str) -> bool:
        """Whether the person works on this registry (project code) in the page's
        organisation, by its registry grants: menus and lists offer those only (the owning
        services refuse the others)."""
        if self.principal is None or self.organisation_id is None:
            return False
        registries = self.principal.registries_in(self.organisation_id)
        return registries is None or registry in registries

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata carrying the person's token to the owning service."""
        return (("authorization", f"Bearer {self.person.token}"),)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.html(template, **context), status_code=status)

    def html(self, template: str, **context: Any) -> str:
        """A template (a page, or a partial for a fragment) rendered for this person."""
        t = translations(self.lang)
        memberships = (
            sorted(self.principal.memberships.values(), key=lambda m: m.name.lower())
            if self.principal
            else []
        )
        return templates.get_template(template).render(
            page=self,
            _=self._,
            gettext=t.gettext,
            ngettext=t.ngettext,
            fmt=Formats(self.lang),
            languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
            memberships=memberships,
            organisation=self.principal.memberships.get(self.organisation_id or "")
            if self.principal
            else None,
            Action=Action,
            role_names=ROLE_NAMES,
            vendor=VENDOR,
            prefix=PREFIX,
            path=self.request.url.path,
            query=self.request.url.query,
            **context,
        )


def language_of(request: HTTPConnection) -> str:
    return pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def problem_messages(page: Page, problem: Problem) -> tuple[str, str, dict[str, str]]:
    """A problem's title, detail and per-field messages in the person's language: the
    owner's English words are the catalogue's message ids (pages/problems.py lists them)."""
    fields: dict[str, str] = {}
    for e in problem.errors:
        fields.setdefault(e.field, page._(e.message))
    title, detail = page._(problem.title), page._(problem.detail) if problem.detail else ""
    untranslated = page.lang != "en" and title == problem.title
    if problem.slug == "not-found" and untranslated and title.endswith(" not found"):
        # "DCD NOPE version 9.9.9 not found": no catalogue holds each such title; the
        # words in the person's language, what was not found after them (codes, mostly).
        title, detail = page._("Not found"), detail or problem.title.removesuffix(" not found")
    return title, detail, fields


class PageRoute(APIRoute):
    """A page's route: security headers on every answer, refusals as pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except SignInRequired as exc:
                target = f"{PREFIX}/login?next={quote(exc.return_to, safe='/')}" + (
                    "&expired=1" if exc.expired else ""
                )
                response = RedirectResponse(target, status_code=303)
                if exc.expired:
                    response.delete_cookie(COOKIE, path="/")
            except grpc.aio.AioRpcError as exc:
                response = refusal_page(request, problem_from_rpc_error(exc))
            except Problem as exc:
                response = refusal_page(request, exc)
            return security_headers(response)

        return handler


def refusal_page(request: Request, problem: Problem) -> Response:
    """The error page; a 401 (the person's access taken away meanwhile) ends the session."""
    if problem.status == 401:
        target = f"{PREFIX}/login?next={quote(request.url.path, safe='/')}&expired=1"
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response
    return error_page(request, problem)


def error_page(request: Request, problem: Problem) -> HTMLResponse:
    page: Page = getattr(request.state, "page", None) or Page(request, language_of(request))
    title, detail, fields = problem_messages(page, problem)
    status = problem.status if 400 <= problem.status < 600 else 500
    return page.render(
        "error.html", status=status, title=title, detail=detail, fields=fields, problem=problem
    )


# --- the signed-in person --------------------------------------------------------------

REFRESH_MARGIN_SECONDS = 30


async def current_page(
    request: HTTPConnection, service: PortalService, *, organisation_id: str | None = None
) -> Page:
    """The signed-in person's page context; :class:`SignInRequired` when there is none
    (never signed in, or the session ended: idle, maximum, or refused by the issuer)."""
    page = Page(request, language_of(request))
    request.state.page = page
    return_to = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    cookie = request.cookies.get(COOKIE)
    row = await service.portal_sessions.get(cookie)
    if row is None or row.tokens is None:
        raise SignInRequired(return_to, expired=bool(cookie))
    page.session = row
    tokens = service.portal_sessions.unseal(row)
    if tokens is None:  # sealed under an earlier secret key
        await service.portal_sessions.end(row)
        raise SignInRequired(return_to, expired=True)
    due = (
        row.access_expires_at is None
        or row.access_expires_at.timestamp() - REFRESH_MARGIN_SECONDS < time.time()
    )
    if due:
        tokens = await refresh(service, row, tokens, return_to)
    try:
        page.principal = await verifier().verify(tokens.access_token)
    except Problem as exc:
        if exc.status != 401:
            raise
        # Revoked (a role taken, removed): a refresh gets the access as it is now.
        tokens = await refresh(service, row, tokens, return_to)
        page.principal = await verifier().verify(tokens.access_token)
    if organisation_id is not None:
        if organisation_id not in page.person.memberships:
            raise Problem(404, "not-found", "Organisation not found")
        page.organisation_id = organisation_id
    return page


async def refresh(service: PortalService, row: PortalSession, tokens: Tokens, return_to: str) -> Tokens:
    """New tokens from the refresh token (silently); the session ends when the issuer says no."""
    try:
        signed_in = await service.oidc.refresh(tokens.refresh_token)
    except IssuerRefused:
        await service.portal_sessions.end(row)
        raise SignInRequired(return_to, expired=True) from None
    fresh = Tokens(
        signed_in.access_token,
        signed_in.refresh_token or tokens.refresh_token,
        signed_in.id_token or tokens.id_token,
    )
    await service.portal_sessions.store_tokens(row, fresh, datetime.fromtimestamp(signed_in.expires_at, UTC))
    return fresh


async def check_csrf(request: Request, page: Page) -> dict[str, str]:
    """The submitted form, once its CSRF token (form field or ``X-CSRF-Token`` header) is
    the session's and its Origin, when sent, is the portal's; a 403 page otherwise."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    verify_csrf(request, page, form.get("csrf_token", ""))
    return form


def verify_csrf(request: Request, page: Page, field: str) -> None:
    """The 403 problem unless the request carries the session's CSRF token (the
    ``X-CSRF-Token`` header, else the form's ``field``) and comes from the portal's origin.
    Pages that stream a file check it before its first byte."""
    sent = request.headers.get("x-csrf-token") or field
    origin = request.headers.get("origin")
    same_origin = origin is None or origin == portal_origin()
    if not page.csrf or not hmac.compare_digest(sent.encode(), page.csrf.encode()) or not same_origin:
        raise Problem(
            403,
            "csrf",
            "This form has expired or did not come from this portal",
            "Go back, reload the page and try again.",
        )
