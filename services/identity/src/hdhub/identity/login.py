"""The embedded issuer's login page: the authorization endpoint, the first-login password
change (Keycloak's UPDATE_PASSWORD required action) and end-session, at Keycloak's paths.

Production shows Keycloak's own pages; these stand in for them on a laptop and in tests,
in the four languages (``ui_locales``). Every attempt goes through the same throttle as
the token endpoint (:mod:`hdhub.identity.logins`); a throttled source is told how long to
wait. The page loads nothing but its own stylesheet, under a strict CSP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from hdhub.common.config import platform
from hdhub.identity import codeflow
from hdhub.identity.deps import ServiceDep, SettingsDep
from hdhub.identity.directory import password_problems
from hdhub.identity.issuer import check_secret, hash_secret, private_key, signing_key
from hdhub.identity.ratelimit import Throttled
from hdhub.identity.runtime import IdentityService
from hdhub.identity.settings import IdentitySettings
from hdhub.identity.store import Account, SigningKey

TEMPLATES = Path(__file__).parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
OIDC = "/realms/hdhub/protocol/openid-connect"
CSS = "/realms/hdhub/login-resources/login.css"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self' {portal}; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Sign in to hdhub",
        "username": "Username or e-mail",
        "password": "Password",
        "sign_in": "Sign in",
        "request_account": "No account yet? Request one",
        "invalid": "Invalid username or password.",
        "disabled": "This account is disabled. Ask your organisation's User Manager.",
        "throttled": "Too many failed attempts from your address. For your safety, sign-in is paused: try again in {minutes} minute(s).",
        "rate": "Too many sign-in attempts. Try again in {minutes} minute(s).",
        "change_title": "Change your password",
        "change_intro": "You must change your password before you continue.",
        "new_password": "New password",
        "new_password_again": "New password again",
        "password_hint": "At least 12 characters, different from the current one.",
        "change_submit": "Change password and continue",
        "mismatch": "The two passwords are not the same.",
        "password-length": "A password has at least 12 characters.",
        "password-reused": "The new password must differ from the current one.",
        "expired": "This sign-in took too long. Start again.",
        "error_title": "This sign-in request cannot be served",
        "signed_out_title": "Signed out",
        "signed_out": "You are signed out.",
        "sign_in_again": "Sign in again",
    },
    "nl": {
        "title": "Aanmelden bij hdhub",
        "username": "Gebruikersnaam of e-mailadres",
        "password": "Wachtwoord",
        "sign_in": "Aanmelden",
        "request_account": "Nog geen account? Vraag er een aan",
        "invalid": "Ongeldige gebruikersnaam of wachtwoord.",
        "disabled": "Deze account is uitgeschakeld. Vraag het aan de User Manager van uw organisatie.",
        "throttled": "Te veel mislukte pogingen vanaf uw adres. Voor uw veiligheid is aanmelden gepauzeerd: probeer opnieuw over {minutes} minuut/minuten.",
        "rate": "Te veel aanmeldpogingen. Probeer opnieuw over {minutes} minuut/minuten.",
        "change_title": "Wijzig uw wachtwoord",
        "change_intro": "U moet uw wachtwoord wijzigen voordat u verdergaat.",
        "new_password": "Nieuw wachtwoord",
        "new_password_again": "Nieuw wachtwoord opnieuw",
        "password_hint": "Minstens 12 tekens, anders dan het huidige.",
        "change_submit": "Wachtwoord wijzigen en verdergaan",
        "mismatch": "De twee wachtwoorden zijn niet gelijk.",
        "password-length": "Een wachtwoord heeft minstens 12 tekens.",
        "password-reused": "Het nieuwe wachtwoord moet verschillen van het huidige.",
        "expired": "Deze aanmelding duurde te lang. Begin opnieuw.",
        "error_title": "Deze aanmeldaanvraag kan niet worden behandeld",
        "signed_out_title": "Afgemeld",
        "signed_out": "U bent afgemeld.",
        "sign_in_again": "Opnieuw aanmelden",
    },
    "fr": {
        "title": "Se connecter à hdhub",
        "username": "Nom d'utilisateur ou e-mail",
        "password": "Mot de passe",
        "sign_in": "Se connecter",
        "request_account": "Pas encore de compte ? Demandez-en un",
        "invalid": "Nom d'utilisateur ou mot de passe invalide.",
        "disabled": "Ce compte est désactivé. Adressez-vous au User Manager de votre organisation.",
        "throttled": "Trop de tentatives échouées depuis votre adresse. Pour votre sécurité, la connexion est suspendue : réessayez dans {minutes} minute(s).",
        "rate": "Trop de tentatives de connexion. Réessayez dans {minutes} minute(s).",
        "change_title": "Changez votre mot de passe",
        "change_intro": "Vous devez changer votre mot de passe avant de continuer.",
        "new_password": "Nouveau mot de passe",
        "new_password_again": "Nouveau mot de passe (encore)",
        "password_hint": "Au moins 12 caractères, différent de l'actuel.",
        "change_submit": "Changer le mot de passe et continuer",
        "mismatch": "Les deux mots de passe ne sont pas identiques.",
        "password-length": "Un mot de passe compte au moins 12 caractères.",
        "password-reused": "Le nouveau mot de passe doit différer de l'actuel.",
        "expired": "Cette connexion a pris trop de temps. Recommencez.",
        "error_title": "Cette demande de connexion ne peut pas être traitée",
        "signed_out_title": "Déconnecté",
        "signed_out": "Vous êtes déconnecté.",
        "sign_in_again": "Se reconnecter",
    },
    "de": {
        "title": "Bei hdhub anmelden",
        "username": "Benutzername oder E-Mail",
        "password": "Passwort",
        "sign_in": "Anmelden",
        "request_account": "Noch kein Konto? Beantragen Sie eines",
        "invalid": "Ungültiger Benutzername oder ungültiges Passwort.",
        "disabled": "Dieses Konto ist deaktiviert. Wenden Sie sich an den User Manager Ihrer Organisation.",
        "throttled": "Zu viele fehlgeschlagene Versuche von Ihrer Adresse. Zu Ihrer Sicherheit ist die Anmeldung pausiert: versuchen Sie es in {minutes} Minute(n) erneut.",
        "rate": "Zu viele Anmeldeversuche. Versuchen Sie es in {minutes} Minute(n) erneut.",
        "change_title": "Ändern Sie Ihr Passwort",
        "change_intro": "Sie müssen Ihr Passwort ändern, bevor Sie fortfahren.",
        "new_password": "Neues Passwort",
        "new_password_again": "Neues Passwort wiederholen",
        "password_hint": "Mindestens 12 Zeichen, anders als das aktuelle.",
        "change_submit": "Passwort ändern und fortfahren",
        "mismatch": "Die beiden Passwörter sind nicht gleich.",
        "password-length": "Ein Passwort hat mindestens 12 Zeichen.",
        "password-reused": "Das neue Passwort muss sich vom aktuellen unterscheiden.",
        "expired": "Diese Anmeldung hat zu lange gedauert. Beginnen Sie erneut.",
        "error_title": "Diese Anmeldeanfrage kann nicht bearbeitet werden",
        "signed_out_title": "Abgemeldet",
        "signed_out": "Sie sind abgemeldet.",
        "sign_in_again": "Erneut anmelden",
    },
}


def _lang(ui_locales: str, request: Request) -> str:
    for code in [
        *ui_locales.split(),
        *(p.split(";")[0].strip() for p in request.headers.get("accept-language", "").split(",")),
    ]:
        if code[:2].lower() in TEXTS:
            return code[:2].lower()
    return "en"


def redirect_uris(settings: Any) -> list[str]:
    return [*settings.redirect_uris, f"{platform().public_url}/portal/callback"]


def _page(step: str, *, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
    portal = platform().public_url
    html = _env.get_template("login.html").render(
        t=TEXTS[lang],
        lang=lang,
        step=step,
        css=CSS,
        action=f"{OIDC}/auth",
        fields=context.pop("fields", {}),
        username=context.pop("username", ""),
        request_url=f"{portal}/portal/request-account?lang={lang}",
        **context,
    )
    headers = {k: v.format(portal=portal) for k, v in SECURITY_HEADERS.items()}
    return HTMLResponse(html, status_code=status, headers=headers)


#: The embedded issuer's sign-in pages (``IdentityService.routers``: not with Keycloak,
#: which shows its own).
router = APIRouter(include_in_schema=False)


def _request(settings: IdentitySettings, params: dict[str, str]) -> codeflow.AuthorizationRequest:
    return codeflow.check_request(
        params, public_clients=settings.public_clients, redirect_uris=redirect_uris(settings)
    )


@router.get(CSS)
async def stylesheet() -> Response:
    return Response(
        (TEMPLATES / "login.css").read_text(),
        media_type="text/css",
        headers={"Cache-Control": "max-age=3600"},
    )


@router.get(f"{OIDC}/auth")
async def authorize(request: Request, settings: SettingsDep) -> Response:
    params = dict(request.query_params)
    lang = _lang(params.get("ui_locales", ""), request)
    try:
        auth = _request(settings, params)
    except codeflow.BadAuthorizationRequest as exc:
        return _page("error", lang=lang, status=400, error=str(exc))
    return _page("login", lang=lang, fields=auth.fields(), username=params.get("login_hint", ""))


@router.post(f"{OIDC}/auth")
async def sign_in(request: Request, service: ServiceDep) -> Response:
    settings, logins = service.settings, service.logins
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    lang = _lang(form.get("ui_locales", ""), request)
    try:
        auth = _request(settings, form)
    except codeflow.BadAuthorizationRequest as exc:
        return _page("error", lang=lang, status=400, error=str(exc))
    if form.get("ticket"):
        return await _change_password(service, auth, form, lang)
    username = form.get("username", "").strip()[:254]
    source = logins.source(request)
    t = TEXTS[lang]
    try:
        await logins.check(username, source)
    except Throttled as exc:
        minutes = max(1, -(-exc.retry_after // 60))
        message = t["throttled" if exc.reason == "wait" else "rate"].format(minutes=minutes)
        return _page("login", lang=lang, status=429, fields=auth.fields(), username=username, error=message)
    async with service.db.system_session() as session:
        account = (
            await session.execute(
                select(Account).where((Account.username == username) | (Account.email == username))
            )
        ).scalar_one_or_none()
        ok = await check_secret(account.password_hash if account else None, form.get("password", ""))
        if not ok or account is None:
            await logins.failed(username, source)
            return _page(
                "login",
                lang=lang,
                status=401,
                fields=auth.fields(),
                username=username,
                error=t["invalid"],
            )
        if not account.enabled:
            return _page(
                "login",
                lang=lang,
                status=403,
                fields=auth.fields(),
                username=username,
                error=t["disabled"],
            )
        try:
            await logins.succeeded(username, source)
        except Throttled as exc:
            message = t["rate"].format(minutes=max(1, -(-exc.retry_after // 60)))
            return _page(
                "login", lang=lang, status=429, fields=auth.fields(), username=username, error=message
            )
        row, ticket = await codeflow.start_session(
            session,
            account,
            client_id=auth.client_id,
            lifetime=settings.session_max_seconds,
            pending_password=account.must_change_password,
        )
        if ticket is not None:
            return _page("password", lang=lang, fields=auth.fields(), ticket=ticket)
        location = await codeflow.issue_code(session, row, auth, platform().oidc_issuer)
    return RedirectResponse(location, status_code=302, headers={"Cache-Control": "no-store"})


async def _change_password(
    service: IdentityService, auth: codeflow.AuthorizationRequest, form: dict[str, str], lang: str
) -> Response:
    t, ticket = TEXTS[lang], form["ticket"]
    new = form.get("new_password", "")
    async with service.db.system_session() as session:
        pending = await codeflow.pending_session(session, ticket)
        if pending is None:
            return _page("login", lang=lang, status=400, fields=auth.fields(), error=t["expired"])
        row, account = pending
        if new != form.get("new_password_again", ""):
            return _page(
                "password",
                lang=lang,
                status=422,
                fields=auth.fields(),
                ticket=ticket,
                error=t["mismatch"],
            )
        problems = password_problems(new)
        if not problems and await check_secret(account.password_hash, new):
            problems = password_problems(new, current=new)
        if problems:
            error = t.get(problems[0].rule, problems[0].message)
            return _page("password", lang=lang, status=422, fields=auth.fields(), ticket=ticket, error=error)
        account.password_hash, account.must_change_password = await hash_secret(new), False
        codeflow.activate(row, lifetime=service.settings.session_max_seconds)
        location = await codeflow.issue_code(session, row, auth, platform().oidc_issuer)
    record = await service.backend.get_account(account.id)
    for org in await service.backend.memberships(account.id):
        await service.directory.audit(
            None, org, "account.password", account.email, actor=record, account_id=account.id
        )
    return RedirectResponse(location, status_code=302, headers={"Cache-Control": "no-store"})


@router.api_route(f"{OIDC}/logout", methods=["GET", "POST"])
async def end_session(request: Request, service: ServiceDep) -> Response:
    """Keycloak's end-session: ``refresh_token`` + ``client_id`` from a back end (POST,
    answers 204), or ``id_token_hint`` from a browser (the signed-out page, or back to
    ``post_logout_redirect_uri`` when it is the portal's)."""
    values = dict(request.query_params)
    if request.method == "POST":
        values |= {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    lang = _lang(values.get("ui_locales", ""), request)
    async with service.db.system_session() as session:
        if values.get("refresh_token") and values.get("client_id"):
            await codeflow.end_by_refresh_token(
                session, client_id=values["client_id"], refresh_token=values["refresh_token"]
            )
            if request.method == "POST" and not values.get("id_token_hint"):
                return Response(status_code=204, headers={"Cache-Control": "no-store"})
        if values.get("id_token_hint"):
            keys = (await session.execute(select(SigningKey).where(SigningKey.active))).scalars().all() or [
                await signing_key(session)
            ]
            for key in keys:
                if await codeflow.end_by_id_token(session, values["id_token_hint"], public_key=_public(key)):
                    break
    back = values.get("post_logout_redirect_uri", "")
    if back.startswith(f"{platform().public_url}/portal/"):
        return RedirectResponse(back, status_code=302)
    return _page("signed-out", lang=lang, back_url=f"{platform().public_url}/portal/")


def _public(key: SigningKey) -> Any:
    return private_key(key.private_pem).public_key()
