"""Sign-in (authorization code + PKCE at the issuer), the callback, sign-out (the session
ends here and at the issuer), the language switcher and the static files."""

from __future__ import annotations

import mimetypes
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from hdhub.common.errors import Problem, not_found
from hdhub.common.languages import LANG_COOKIE, LANGUAGES
from hdhub.portal.deps import CurrentPage, ServiceDep
from hdhub.portal.pages.oidc import IssuerRefused, generate_token
from hdhub.portal.pages.sessions import COOKIE, Tokens
from hdhub.portal.pages.web import (
    PREFIX,
    STATIC,
    Page,
    PageRoute,
    check_csrf,
    language_of,
    secure_cookies,
)


def _safe_next(value: str | None) -> str:
    """Only a path of the portal: never an open redirect."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/"


def set_session_cookie(response: Response, session_id: str) -> None:
    response.set_cookie(COOKIE, session_id, httponly=True, secure=secure_cookies(), samesite="lax", path="/")


router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)


@router.get("/login")
async def login(
    request: Request,
    service: ServiceDep,
    next: str | None = None,  # noqa: A002
    expired: str | None = None,
) -> Response:
    page = Page(request, language_of(request))
    if expired:
        return page.render("signed_out.html", expired=True, next=_safe_next(next))
    state, verifier, nonce = generate_token(32), generate_token(64), generate_token(32)
    session_id, _ = await service.portal_sessions.create(
        oauth_state=state, code_verifier=verifier, nonce=nonce, return_to=_safe_next(next)
    )
    url = service.oidc.authorization_url(state=state, code_verifier=verifier, nonce=nonce, lang=page.lang)
    response = RedirectResponse(url, status_code=303)
    set_session_cookie(response, session_id)
    return response


@router.get("/callback")
async def callback(
    request: Request, service: ServiceDep, code: str = "", state: str = "", error: str = ""
) -> Response:
    pending = await service.portal_sessions.get(request.cookies.get(COOKIE))
    if error or pending is None or not pending.oauth_state or pending.oauth_state != state or not code:
        # A callback this browser did not start (login CSRF) or one the issuer refused.
        raise Problem(400, "sign-in-failed", "Sign-in did not complete", "Start again from the sign-in page.")
    try:
        signed_in = await service.oidc.exchange(
            code=code, code_verifier=pending.code_verifier, nonce=pending.nonce
        )
    except IssuerRefused as exc:
        raise Problem(
            400, "sign-in-failed", "Sign-in did not complete", "Start again from the sign-in page."
        ) from exc
    await service.portal_sessions.end(pending)  # a new id once signed in (no fixation)
    claims = signed_in.claims
    session_id, row = await service.portal_sessions.create(
        subject=str(claims.get("sub", "")),
        username=str(claims.get("preferred_username", "")),
        display_name=str(claims.get("name", "") or claims.get("preferred_username", "")),
    )
    await service.portal_sessions.store_tokens(
        row,
        Tokens(signed_in.access_token, signed_in.refresh_token, signed_in.id_token),
        datetime.fromtimestamp(signed_in.expires_at, UTC),
    )
    response = RedirectResponse(_safe_next(pending.return_to), status_code=303)
    set_session_cookie(response, session_id)
    return response


@router.post("/logout")
async def logout(request: Request, page: CurrentPage, service: ServiceDep) -> Response:
    await check_csrf(request, page)
    assert page.session is not None
    tokens = service.portal_sessions.unseal(page.session)
    if tokens is not None:
        await service.oidc.end_session(tokens.refresh_token)
    await service.portal_sessions.end(page.session)
    response = RedirectResponse(f"{PREFIX}/signed-out", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/signed-out")
async def signed_out(request: Request) -> Response:
    return Page(request, language_of(request)).render("signed_out.html", expired=False, next=f"{PREFIX}/")


@router.get("/language/{lang}")
async def language(lang: str, next: str | None = None) -> Response:  # noqa: A002
    """Remember the language in a cookie of the browser's own (a display preference,
    nothing changes on the server) and go back."""
    if lang not in LANGUAGES:
        raise not_found("Language")
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        LANG_COOKIE, lang, max_age=365 * 86400, secure=secure_cookies(), samesite="lax", path="/"
    )
    return response


@router.get("/static/{path:path}")
async def static(path: str) -> Response:
    file = (STATIC / path).resolve()
    if not file.is_relative_to(STATIC) or not file.is_file():
        raise not_found("File")
    media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return Response(file.read_bytes(), media_type=media, headers={"Cache-Control": "public, max-age=3600"})
